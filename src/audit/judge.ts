import type { DatabasePool } from '../adapters/postgres/pool.js';
import { comparePositions, parsePosition, type Position } from '../core/event-store.js';
import type { AccountOutcome, ChunkOutcome, ScannedChunk } from './chunk.js';
import { projectionProgress } from './projection-wait.js';
import { compareWithReadModels, fetchProjected } from './read-models.js';
import { eventMismatch, verifyResultOf } from './verify.js';

/**
 * `audit verify --all`, second half of a chunk: its replayed accounts (./chunk.ts) compared with the read
 * models in one batch, on the thread that hands out the chunks (it holds the pool). `pool` null: events
 * only.
 */
export async function judgeChunk(pool: DatabasePool | null, scanned: ScannedChunk): Promise<ChunkOutcome> {
  const { id, events, reports } = scanned;
  const outcomes: AccountOutcome[] = [];
  let ok = 0;
  if (pool === null) {
    for (const report of reports) {
      const result = verifyResultOf(report, null, null);
      if (result.first_mismatch === null) ok += 1;
      else outcomes.push({ user_id: report.user_id, events: report.events, status: 'failed', result });
    }
    return { id, events, accounts: reports.length, ok, outcomes };
  }
  // Read before the read models: they reflect at least this checkpoint. (The chunk's events were read
  // before both, so a projector that has moved on since only makes an account a recheck.)
  const progress = await projectionProgress(pool);
  const projected = await fetchProjected(pool, reports.map((report) => report.user_id));
  for (const report of reports) {
    const mine = projected.get(report.user_id);
    const lastEvent = report.position;
    const projectorBehind = lastEvent !== null && (progress?.position == null || comparePositions(progress.position, lastEvent) < 0);
    const modelAhead = isAfter(mine?.figures.last_position ?? null, report.replayed.last_position);
    // A head below the events read: the stream moved on during the scan, or its head was lowered; the
    // one-by-one recheck reads the head again after the events and tells.
    if (projectorBehind || modelAhead || report.head_unconfirmed) {
      // The events alone already fail (chain, replay, entries): a failure, whatever the projector does
      // (a tampered event may be what stopped it). Otherwise compare later, once it has caught up.
      if (eventMismatch(report) !== null) {
        outcomes.push({ user_id: report.user_id, events: report.events, status: 'failed', result: verifyResultOf(report, null, null) });
      } else {
        outcomes.push({ user_id: report.user_id, events: report.events, status: 'recheck', result: null });
      }
      continue;
    }
    const result = verifyResultOf(report, mine ?? null, compareWithReadModels(report, mine));
    if (result.hash_chain_ok && result.matches) ok += 1;
    else outcomes.push({ user_id: report.user_id, events: report.events, status: 'failed', result });
  }
  return { id, events, accounts: reports.length, ok, outcomes };
}

const isAfter = (a: string | null, b: string | null): boolean => {
  const pa: Position | null = a === null ? null : parsePosition(a);
  const pb: Position | null = b === null ? null : parsePosition(b);
  if (pa === null) return false;
  return pb === null || comparePositions(pa, pb) > 0;
};
