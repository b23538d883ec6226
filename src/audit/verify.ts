import { z } from 'zod';
import { type DatabasePool, sql } from '../adapters/postgres/pool.js';
import { comparePositions, type EventStore, formatPosition, parsePosition } from '../core/event-store.js';
import { accountStreamId } from '../ledger/index.js';
import { ProjectionLaggingError, type ProjectionWaiter, waitForProjection } from './projection-wait.js';
import { compareWithReadModels, fetchProjected, type Mismatch, type ProjectedAccount, statementRows } from './read-models.js';
import { type AccountFigures, type ExpectedStatementRow, type StreamReport, StreamVerifier } from './verifier.js';

/**
 * `GET /audit/accounts/:user_id/verify` and `audit verify --user`: the account's stream replayed and
 * its chain checked (./verifier.ts), then compared with the read models once the projector has caught
 * up with the stream's last event.
 */

export interface AuditDeps {
  readonly eventStore: EventStore;
  readonly pool: DatabasePool;
  /** How to wait for the credits projection (default: poll its checkpoint). */
  readonly waitForProjection?: ProjectionWaiter;
  /**
   * The stream's head revision as the store records it apart from the events (null: no stream), read
   * before the events: catches events deleted from the end, which no hash chain can (nothing links to
   * them). The port has no such call; the Postgres adapter's `streams` table has it.
   */
  readonly streamHead?: (streamId: string) => Promise<bigint | null>;
}

const headRow = z.object({ revision: z.coerce.bigint() });

/** The audit's dependencies: the Postgres store also answers stream heads from its `streams` table. */
export function createAuditDeps(eventStore: EventStore, pool: DatabasePool, waitForProjection?: ProjectionWaiter): AuditDeps {
  return {
    eventStore,
    pool,
    waitForProjection,
    streamHead:
      eventStore.name === 'postgres'
        ? async (streamId) => (await pool.maybeOne(sql.type(headRow)`select revision from streams where stream_id = ${streamId}`))?.revision ?? null
        : undefined,
  };
}

export interface VerifyOptions {
  /** How long to wait for the projector to reach the stream's last event. Default 2000 ms (API §1). */
  readonly projectionWaitMs?: number;
  /** Compare with the read models (default true). Without, `projected` is null and `matches` speaks for the events alone. */
  readonly compareReadModels?: boolean;
}

export interface VerifyResult {
  readonly user_id: string;
  /** Events in the stream. */
  readonly events: number;
  /** Revision of the stream's last event (-1: none). */
  readonly revision: number;
  /** Position of the stream's last event. */
  readonly position: string | null;
  /** `hash` of the last event: note it down, and a later verify proves the history before it unchanged. */
  readonly last_hash: string;
  readonly hash_chain_ok: boolean;
  readonly replayed: AccountFigures;
  readonly projected: AccountFigures | null;
  /**
   * The replay succeeded, every event's own balance_after/reserved_after agrees with it, and the read
   * models show exactly the replayed figures. (The chain is reported by `hash_chain_ok`.)
   */
  readonly matches: boolean;
  /** The first thing wrong, chain included: the lowest bad revision of the events, else the first read-model field. */
  readonly first_mismatch: Mismatch | null;
}

const READ_BATCH = 1000;

/** Reads the stream from after the verifier's last revision into it. */
async function readInto(eventStore: EventStore, verifier: StreamVerifier, userId: string): Promise<void> {
  const streamId = accountStreamId(userId);
  for (;;) {
    let count = 0;
    for await (const event of eventStore.readStream(streamId, { fromRevision: verifier.revision + 1n, maxCount: READ_BATCH })) {
      verifier.add(event);
      count += 1;
    }
    if (count < READ_BATCH) return;
  }
}

/** The first problem the events themselves show (chain, replay, entries), lowest revision first. */
export function eventMismatch(report: StreamReport): Mismatch | null {
  const candidates: Mismatch[] = [];
  const chain = report.chain_break;
  if (chain) {
    candidates.push({
      revision: chain.revision,
      field: 'hash_chain',
      problem: chain.problem,
      expected: chain.expected,
      actual: chain.actual,
      detail: chainDetail(chain.problem, chain.revision, chain.expected),
    });
  }
  const replay = report.replay_failure;
  if (replay) {
    candidates.push({ revision: replay.revision, field: 'replay', problem: replay.problem, expected: null, actual: null, detail: replay.message });
  }
  const entry = report.entry_mismatch;
  if (entry) {
    candidates.push({
      revision: entry.revision,
      field: `data.${entry.field}`,
      problem: 'entry_mismatch',
      expected: entry.expected,
      actual: entry.actual,
      detail: `revision ${entry.revision} says ${entry.field} ${entry.actual}; replaying the stream gives ${entry.expected}`,
    });
  }
  let first: Mismatch | null = null;
  for (const candidate of candidates) {
    if (first === null || (candidate.revision as number) < (first.revision as number)) first = candidate;
  }
  return first;
}

const chainDetail = (problem: string, revision: number, expected: string): string => {
  switch (problem) {
    case 'revision_gap':
      return `revision ${revision} is missing from the stream`;
    case 'revision_out_of_order':
      return `revision ${revision} appears out of order`;
    case 'prev_hash_mismatch':
      return `revision ${revision} does not link to the hash of the event before it`;
    case 'missing_tail':
      return `the store records the stream up to ${expected}, but revision ${revision} onwards is missing`;
    case 'head_behind':
      return `the store records the stream's head below revision ${revision}, yet the stream holds events up to ${expected} (its next append would collide)`;
    case 'missing_hash':
      return `revision ${revision} carries no hash`;
    case 'hash_mismatch':
      return `revision ${revision} is not the event that was recorded: its hash does not match its content`;
    default:
      return `revision ${revision}: ${problem}`;
  }
};

/** The API result from a report and (optionally) the read models. */
export function verifyResultOf(report: StreamReport, projected: ProjectedAccount | undefined | null, readModelMismatch: Mismatch | null): VerifyResult {
  const fromEvents = eventMismatch(report);
  const eventsConsistent = report.replay_failure === null && report.entry_mismatch === null;
  return {
    user_id: report.user_id,
    events: report.events,
    revision: report.revision,
    position: report.position === null ? null : formatPosition(report.position),
    last_hash: report.last_hash,
    hash_chain_ok: report.hash_chain_ok,
    replayed: report.replayed,
    projected: projected === null ? null : (projected?.figures ?? null),
    matches: eventsConsistent && readModelMismatch === null,
    first_mismatch: fromEvents ?? readModelMismatch,
  };
}

const positionAfter = (a: string | null, b: string | null): boolean => {
  const pa = a === null ? null : parsePosition(a);
  const pb = b === null ? null : parsePosition(b);
  if (pa === null) return false;
  return pb === null || comparePositions(pa, pb) > 0;
};

/** Verifies one account: chain, replay, entries and (by default) the read models. */
export async function verifyAccount(deps: AuditDeps, userId: string, options: VerifyOptions = {}): Promise<VerifyResult> {
  const verifier = new StreamVerifier(userId);
  const head = await deps.streamHead?.(accountStreamId(userId));
  await readInto(deps.eventStore, verifier, userId);
  if (head != null) verifier.expectHead(head);
  if (verifier.headIsUnconfirmed) {
    const after = await deps.streamHead?.(accountStreamId(userId));
    if (after != null) verifier.confirmHead(after);
  }
  if (options.compareReadModels === false) return verifyResultOf(verifier.report(), null, null);

  // Events may be appended while we compare: when the read model turns out to be ahead of what we
  // replayed, read the new events and compare again (a few rounds; a busy account then reports
  // whatever it differs in).
  for (let round = 0; ; round += 1) {
    const report = verifier.report();
    if (report.position !== null) {
      try {
        await waitForProjection(deps.pool, report.position, options.projectionWaitMs ?? 2000, deps.waitForProjection);
      } catch (error) {
        // What the events alone prove does not depend on the projector: a broken chain or a replay
        // that contradicts itself is reported as such (read models not compared), not as lag. (A
        // tampered event can itself be what stopped the projector.)
        if (error instanceof ProjectionLaggingError && eventMismatch(report) !== null) return verifyResultOf(report, null, null);
        throw error;
      }
    }
    const projected = (await fetchProjected(deps.pool, [userId])).get(userId);
    if (round < 3 && positionAfter(projected?.figures.last_position ?? null, report.replayed.last_position)) {
      const before = verifier.revision;
      await readInto(deps.eventStore, verifier, userId);
      // Nothing new: the read model is ahead of the stream itself (events gone), which is the finding.
      if (verifier.revision !== before) continue;
    }
    let mismatch = compareWithReadModels(report, projected);
    if (mismatch?.field.startsWith('credit_transactions')) {
      mismatch = (await firstStatementDifference(deps, userId, report.revision)) ?? mismatch;
    }
    return verifyResultOf(report, projected, mismatch);
  }
}

/**
 * Names the first `credit_transactions` row that differs from what the events imply: replays the stream
 * again (up to `lastRevision`) and walks the stored rows alongside, page by page.
 */
export async function firstStatementDifference(deps: AuditDeps, userId: string, lastRevision: number): Promise<Mismatch | null> {
  const expected: ExpectedStatementRow[] = [];
  const verifier = new StreamVerifier(userId, { onStatementRow: (row) => expected.push(row) });
  const streamId = accountStreamId(userId);
  let afterRevision = -1;
  let actualPage: Awaited<ReturnType<typeof statementRows>> = [];
  let actualIndex = 0;
  let actualDone = false;
  const nextActual = async () => {
    if (actualIndex >= actualPage.length && !actualDone) {
      actualPage = await statementRows(deps.pool, userId, afterRevision, lastRevision, READ_BATCH);
      actualIndex = 0;
      if (actualPage.length < READ_BATCH) actualDone = true;
    }
    const row = actualPage[actualIndex];
    if (row) {
      actualIndex += 1;
      afterRevision = row.stream_revision;
    }
    return row;
  };
  const mismatch = (revision: number, field: string, want: number | string | null, got: number | string | null): Mismatch => ({
    revision,
    field: `credit_transactions[revision=${revision}]${field}`,
    problem: 'read_model_mismatch',
    expected: want,
    actual: got,
    detail: `the statement row of revision ${revision}${field ? ` (${field.slice(1)})` : ''}: the events say ${JSON.stringify(want)}, the read model says ${JSON.stringify(got)}`,
  });

  let readFrom = 0n;
  let streamDone = false;
  while (!streamDone) {
    let count = 0;
    for await (const event of deps.eventStore.readStream(streamId, { fromRevision: readFrom, maxCount: READ_BATCH })) {
      if (event.revision > BigInt(lastRevision)) break;
      verifier.add(event);
      readFrom = event.revision + 1n;
      count += 1;
    }
    streamDone = count < READ_BATCH;
    while (expected.length > 0) {
      const want = expected.shift() as ExpectedStatementRow;
      const got = await nextActual();
      if (!got || got.stream_revision > want.stream_revision) return mismatch(want.stream_revision, '', 'a row', null);
      if (got.stream_revision < want.stream_revision) return mismatch(got.stream_revision, '', null, 'a row');
      for (const field of ['type', 'amount', 'balance_before', 'balance_after'] as const) {
        if (want[field] !== got[field]) return mismatch(want.stream_revision, `.${field}`, want[field], got[field]);
      }
    }
  }
  const extra = await nextActual();
  return extra ? mismatch(extra.stream_revision, '', null, 'a row') : null;
}
