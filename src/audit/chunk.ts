import pg from 'pg';
import type { DatabasePool } from '../adapters/postgres/pool.js';
import { comparePositions, type JsonObject, parsePosition, type Position } from '../core/event-store.js';
import { userIdOfAccountStream } from '../ledger/index.js';
import { projectionProgress } from './projection-wait.js';
import { compareWithReadModels, fetchProjected } from './read-models.js';
import { type VerifyResult, verifyResultOf } from './verify.js';
import { type StreamReport, StreamVerifier } from './verifier.js';

/**
 * `audit verify --all` on the Postgres event store, the part that runs in each worker: a chunk of
 * account streams — a range of stream ids, (after, upTo] in the `events` primary-key order — read
 * straight from the table in stream order (so exactly one account's state is in memory at a time),
 * verified, and compared with the read models in one batch.
 *
 * Why not the port: `readAll` walks the global log, which interleaves every account, so a single pass
 * would hold every account's state at once. The table's primary key (stream_id, stream_revision) gives
 * stream order for free. Rows come through a plain `pg` client in array mode (measured ~2 µs/row
 * cheaper than the pool's per-row interceptors); every value is then checked by the verifier itself
 * (hashes, schemas, revisions), which is a stronger validation than a row schema.
 */

export interface Chunk {
  readonly id: number;
  /** Exclusive lower bound of stream ids (null: from the first). */
  readonly after: string | null;
  /** Inclusive upper bound (null: to the last). */
  readonly upTo: string | null;
  /** Stream heads recorded by the store (`streams.revision`), read before the chunk's events. */
  readonly heads: readonly (readonly [string, number])[];
}

export interface AccountOutcome {
  readonly user_id: string;
  readonly events: number;
  /** `ok`; `failed` (see result); `recheck`: the projector had not reached the account's last event, or the account moved during the scan. */
  readonly status: 'ok' | 'failed' | 'recheck';
  readonly result: VerifyResult | null;
}

export interface ChunkOutcome {
  readonly id: number;
  readonly events: number;
  readonly accounts: number;
  readonly ok: number;
  /** Only the accounts that are not `ok`. */
  readonly outcomes: readonly AccountOutcome[];
}

export interface ChunkScanner {
  /** Verifies chunks in order; the next chunk's first page is requested while the current one is processed. */
  run(chunks: AsyncIterable<Chunk>, onChunk: (outcome: ChunkOutcome) => void | Promise<void>, onEvents?: (events: number) => void): Promise<void>;
  close(): Promise<void>;
}

const INT8_MAX = '9223372036854775807';

type Row = [string, string, string, string, string, string, JsonObject, JsonObject];

// No casts: an output column named like a table column would take its place in ORDER BY. The driver
// hands uuid, int8 and xid8 over as text.
const COLUMNS = `event_id, type, stream_id, stream_revision, transaction_id, global_position, data, metadata`;
const BOUNDED = `select ${COLUMNS} from events
  where (stream_id, stream_revision) > ($1, $2::bigint) and stream_id <= $3
  order by stream_id, stream_revision limit $4`;
const UNBOUNDED = `select ${COLUMNS} from events
  where (stream_id, stream_revision) > ($1, $2::bigint)
  order by stream_id, stream_revision limit $3`;

export interface ChunkScannerOptions {
  readonly connectionUri: string;
  /** For the read models (the comparison); null: events only. */
  readonly pool: DatabasePool | null;
  /** Rows per query. Default 2000. */
  readonly pageSize?: number;
}

export async function createChunkScanner(options: ChunkScannerOptions): Promise<ChunkScanner> {
  const client = new pg.Client({ connectionString: options.connectionUri });
  await client.connect();
  // The whole scan reads committed data only; no transaction is held open, so the scan never holds
  // back the event store's readers (their xmin horizon).
  const pageSize = options.pageSize ?? 2000;

  const page = (chunk: Chunk, afterStream: string, afterRevision: string): Promise<Row[]> =>
    client
      .query<Row>({
        text: chunk.upTo === null ? UNBOUNDED : BOUNDED,
        values: chunk.upTo === null ? [afterStream, afterRevision, pageSize] : [afterStream, afterRevision, chunk.upTo, pageSize],
        rowMode: 'array',
      })
      .then((result) => result.rows);
  const firstPage = (chunk: Chunk) => page(chunk, chunk.after ?? '', chunk.after === null ? '-1' : INT8_MAX);

  async function run(chunks: AsyncIterable<Chunk>, onChunk: (outcome: ChunkOutcome) => void | Promise<void>, onEvents?: (events: number) => void) {
    const iterator = chunks[Symbol.asyncIterator]();
    let next = await iterator.next();
    let pending: Promise<Row[]> | null = next.done ? null : firstPage(next.value);
    while (!next.done) {
      const chunk = next.value;
      const reports: StreamReport[] = [];
      const heads = new Map(chunk.heads);
      let verifier: StreamVerifier | null = null;
      let streamId = '';
      let events = 0;
      const finishStream = () => {
        if (!verifier) return;
        const head = heads.get(streamId);
        if (head !== undefined) verifier.expectHead(BigInt(head));
        heads.delete(streamId);
        reports.push(verifier.report());
        verifier = null;
      };
      for (;;) {
        const rows = await (pending as Promise<Row[]>);
        const last = rows[rows.length - 1];
        const full = rows.length === pageSize;
        if (full && last) {
          pending = page(chunk, last[2], last[3]);
        } else {
          next = await iterator.next();
          pending = next.done ? null : firstPage(next.value);
        }
        for (const row of rows) {
          if (row[2] !== streamId) {
            finishStream();
            streamId = row[2];
            const userId = userIdOfAccountStream(streamId);
            verifier = userId === null ? null : new StreamVerifier(userId);
          }
          if (!verifier) continue;
          events += 1;
          (verifier as StreamVerifier).add({
            id: row[0],
            type: row[1],
            revision: BigInt(row[3]),
            position: { major: BigInt(row[4]), minor: BigInt(row[5]) },
            data: row[6],
            metadata: row[7],
          });
        }
        onEvents?.(rows.length);
        if (!full) break;
      }
      finishStream();
      // Streams the store lists but whose events are all gone.
      for (const [missing, head] of heads) {
        const userId = userIdOfAccountStream(missing);
        if (userId === null) continue;
        const empty = new StreamVerifier(userId);
        empty.expectHead(BigInt(head));
        reports.push(empty.report());
      }
      await onChunk(await judge(chunk.id, reports, events));
    }
  }

  /** Compares a chunk's replayed accounts with the read models (one batch). */
  async function judge(id: number, reports: readonly StreamReport[], events: number): Promise<ChunkOutcome> {
    const outcomes: AccountOutcome[] = [];
    let ok = 0;
    if (options.pool === null) {
      for (const report of reports) {
        const result = verifyResultOf(report, null, null);
        if (result.first_mismatch === null) ok += 1;
        else outcomes.push({ user_id: report.user_id, events: report.events, status: 'failed', result });
      }
      return { id, events, accounts: reports.length, ok, outcomes };
    }
    // Read before the read models: they reflect at least this checkpoint.
    const progress = await projectionProgress(options.pool);
    const projected = await fetchProjected(options.pool, reports.map((report) => report.user_id));
    for (const report of reports) {
      const mine = projected.get(report.user_id);
      const lastEvent = report.position;
      const projectorBehind = lastEvent !== null && (progress?.position == null || comparePositions(progress.position, lastEvent) < 0);
      const modelAhead = isAfter(mine?.figures.last_position ?? null, report.replayed.last_position);
      if (projectorBehind || modelAhead) {
        outcomes.push({ user_id: report.user_id, events: report.events, status: 'recheck', result: null });
        continue;
      }
      const result = verifyResultOf(report, mine ?? null, compareWithReadModels(report, mine));
      if (result.hash_chain_ok && result.matches) ok += 1;
      else outcomes.push({ user_id: report.user_id, events: report.events, status: 'failed', result });
    }
    return { id, events, accounts: reports.length, ok, outcomes };
  }

  return {
    run,
    close: () => client.end(),
  };
}

const isAfter = (a: string | null, b: string | null): boolean => {
  const pa: Position | null = a === null ? null : parsePosition(a);
  const pb: Position | null = b === null ? null : parsePosition(b);
  if (pa === null) return false;
  return pb === null || comparePositions(pa, pb) > 0;
};

