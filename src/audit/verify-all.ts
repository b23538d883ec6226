import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { z } from 'zod';
import { sql } from '../adapters/postgres/pool.js';
import { userIdOfAccountStream } from '../ledger/index.js';
import { AsyncQueue } from './async-queue.js';
import { type AccountOutcome, type Chunk, type ChunkOutcome, createChunkScanner, type ScannedChunk } from './chunk.js';
import { judgeChunk } from './judge.js';
import { ProjectionLaggingError, waitForProjection } from './projection-wait.js';
import { type AuditDeps, firstStatementDifference, type VerifyResult, verifyAccount } from './verify.js';
import type { WorkerInit } from './verify-worker.js';

/**
 * `audit verify --all`: every account stream verified like `verifyAccount`, fast.
 *
 * On the Postgres event store the streams are split into chunks of ~`chunkEvents` events (by the store's
 * `streams` table, in primary-key order) and verified by worker threads and this thread, each reading
 * its chunks in stream order straight from the `events` table (./chunk.ts): one account's state in memory per lane,
 * whatever the ledger's size. Before the scan it waits for the credits projection to reach the log's
 * head; accounts that move during the scan are verified again at the end, one by one, like
 * `GET /audit/accounts/:id/verify` (waiting for the projector), so a busy ledger reports lag, not
 * mismatches. On another event store it lists the account streams with one `readAll` pass (ids only)
 * and verifies them one by one through the port.
 */

export interface VerifyAllOptions {
  /**
   * Worker threads (Postgres only), besides this thread, which verifies chunks too; 0 = this thread
   * alone. Default: the machine's parallelism (at most 4) for ledgers of 200,000 events or more, else 0
   * (a worker costs about a second to start).
   */
  readonly workers?: number;
  /** Events per chunk. Default 20,000. */
  readonly chunkEvents?: number;
  /** Rows per query inside a chunk. Default 2000. */
  readonly pageSize?: number;
  readonly compareReadModels?: boolean;
  /** How long to wait for the projector to reach the head before the scan (default 10 s) and per recheck (2 s). */
  readonly projectionWaitMs?: number;
  /** Failing results kept in the summary (the counts are always complete). Default 1000. */
  readonly maxFailuresKept?: number;
  readonly onStart?: (totals: { accounts: number; events: number }) => void;
  readonly onProgress?: (events: number) => void;
  /** Every account that is not ok (failed or lagging), as soon as it is known. */
  readonly onFailure?: (result: VerifyAllFailure) => void;
}

export interface VerifyAllFailure {
  readonly user_id: string;
  readonly status: 'failed' | 'lagging';
  readonly result: VerifyResult | null;
  readonly detail: string;
}

export interface VerifyAllSummary {
  readonly mode: 'postgres-scan' | 'event-store';
  readonly workers: number;
  readonly accounts: number;
  readonly events: number;
  readonly ok: number;
  readonly failed: number;
  /** Accounts that could not be compared because the projector did not catch up in time. */
  readonly lagging: number;
  readonly rechecked: number;
  readonly seconds: number;
  readonly events_per_s: number;
  readonly failures: readonly VerifyAllFailure[];
  readonly failures_truncated: boolean;
}

const streamRow = z.object({ stream_id: z.string(), revision: z.coerce.number().int() });
const totalsRow = z.object({ accounts: z.coerce.number().int(), events: z.coerce.number().int() });

const PLAN_PAGE = 2000;
const WORKERS_FROM_EVENTS = 200_000;

const userIdRow = z.object({ user_id: z.string() });

/**
 * Accounts with rows in the credits read models but no stream in the store: on Postgres, neither a
 * `streams` row nor an event; on another store, not among `streams` (the account streams it lists).
 */
async function readModelOnlyAccounts(deps: AuditDeps, streams: ReadonlySet<string> | null): Promise<string[]> {
  const projected = sql.fragment`
    select user_id from user_credits union select user_id from credit_transactions union select user_id from credit_lots`;
  if (streams !== null) {
    const rows = await deps.pool.any(sql.type(userIdRow)`select user_id from (${projected}) r order by user_id`);
    return rows.map((row) => row.user_id).filter((userId) => !streams.has(userId));
  }
  const rows = await deps.pool.any(sql.type(userIdRow)`
    select user_id from (${projected}) r
    where not exists (select 1 from streams s where s.stream_id = 'account-' || r.user_id)
      and not exists (select 1 from events e where e.stream_id = 'account-' || r.user_id)
    order by user_id`);
  return rows.map((row) => row.user_id);
}

/** Chunks of account streams from the store's `streams` table, in primary-key order; the first and last are open-ended. */
export async function* planChunks(deps: AuditDeps, chunkEvents: number): AsyncGenerator<Chunk> {
  let id = 0;
  let after: string | null = null;
  let heads: [string, number][] = [];
  let events = 0;
  let cursor = '';
  for (;;) {
    const rows = await deps.pool.any(sql.type(streamRow)`
      select stream_id, revision from streams where stream_id > ${cursor} order by stream_id limit ${PLAN_PAGE}`);
    for (const row of rows) {
      cursor = row.stream_id;
      if (userIdOfAccountStream(row.stream_id) === null) continue;
      heads.push([row.stream_id, row.revision]);
      events += row.revision + 1;
      if (events >= chunkEvents) {
        yield { id: id++, after, upTo: row.stream_id, heads };
        after = row.stream_id;
        heads = [];
        events = 0;
      }
    }
    if (rows.length < PLAN_PAGE) break;
  }
  yield { id, after, upTo: null, heads };
}

/** tsx's ESM register API (its `import` export; the CJS build cannot register ESM hooks here). */
const tsxEsmApi = (from: string): string => {
  try {
    return import.meta.resolve('tsx/esm/api');
  } catch {
    const manifest = createRequire(from).resolve('tsx/package.json');
    return pathToFileURL(manifest.replace(/package\.json$/, 'dist/esm/api/index.mjs')).href;
  }
};

/**
 * The worker's entry. Built: the compiled `verify-worker.js`. From source (tsx, vitest): a bootstrap that
 * registers tsx's loader inside the worker, then imports `verify-worker.ts` (a loader registered by the
 * parent does not reach a worker thread, and the sources import each other with `.js` specifiers).
 */
const workerScript = (): { script: string | URL; eval: boolean } => {
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return { script: new URL('./verify-worker.js', here), eval: false };
  const api = tsxEsmApi(here);
  const target = new URL('./verify-worker.ts', here).href;
  const script = `import(${JSON.stringify(api)})
    .then((tsx) => { (tsx.register ?? tsx.default.register)(); return import(${JSON.stringify(target)}); })
    .catch((error) => { process.nextTick(() => { throw error; }); });`;
  return { script, eval: true };
};

/** Runs the chunks on `count` workers (or this thread), calling `onChunk` with each outcome. */
async function scanChunks(
  deps: AuditDeps,
  chunks: AsyncIterable<Chunk>,
  count: number,
  compareReadModels: boolean,
  pageSize: number | undefined,
  onChunk: (outcome: ChunkOutcome) => void,
  onEvents: (events: number) => void,
): Promise<void> {
  const connectionUri = deps.pool.configuration.connectionUri;
  const pool = compareReadModels ? deps.pool : null;
  if (count === 0) {
    const scanner = await createChunkScanner({ connectionUri, pageSize });
    try {
      await scanner.run(chunks, async (scanned) => onChunk(await judgeChunk(pool, scanned)), onEvents);
    } finally {
      await scanner.close();
    }
    return;
  }

  const entry = workerScript();
  const init: WorkerInit = { connectionUri, pageSize };
  // Lanes 0..count-1 are the workers; lane `count` is this thread, which verifies chunks too: it starts
  // at once while the workers load their modules (most of a second each), and later it only takes its
  // share of the chunks, between its other duties (planning, progress).
  const outstanding: number[] = new Array(count + 1).fill(0);
  let wake: (() => void) | null = null;
  const slotFreed = () => {
    const resolve = wake;
    wake = null;
    resolve?.();
  };
  let failure: Error | null = null;
  // Chunks scanned by any lane are judged here (./judge.ts), while the lanes go on.
  const judging = new Set<Promise<void>>();
  const judge = (scanned: ScannedChunk) => {
    const judged = judgeChunk(pool, scanned).then(onChunk, (error: unknown) => {
      failure ??= error instanceof Error ? error : new Error(String(error));
      slotFreed();
    });
    judging.add(judged);
    void judged.finally(() => judging.delete(judged));
  };
  const workers = Array.from({ length: count }, (_, index) => {
    const worker = new Worker(entry.script, { workerData: init, eval: entry.eval });
    const done = new Promise<void>((resolve, reject) => {
      worker.on('message', (message: { type: string; scanned?: ScannedChunk; events?: number; message?: string }) => {
        if (message.type === 'progress') onEvents(message.events as number);
        else if (message.type === 'chunk') {
          outstanding[index] = (outstanding[index] as number) - 1;
          judge(message.scanned as ScannedChunk);
          slotFreed();
        } else if (message.type === 'done') resolve();
        else if (message.type === 'error') {
          failure = new Error(`audit worker failed: ${message.message}`);
          slotFreed();
          reject(failure);
        }
      });
      worker.on('error', (error) => {
        failure = error;
        slotFreed();
        reject(error);
      });
      worker.on('exit', (code) => {
        if (code === 0) return resolve();
        failure ??= new Error(`audit worker exited with ${code}`);
        slotFreed();
        reject(failure);
      });
    });
    // Observed below (Promise.all); until then a failure must not count as unhandled.
    done.catch(() => {});
    return { worker, done };
  });
  const here = new AsyncQueue<Chunk>();
  const scanner = await createChunkScanner({ connectionUri, pageSize });
  const hereDone = scanner
    .run(
      here,
      (scanned) => {
        outstanding[count] = (outstanding[count] as number) - 1;
        judge(scanned);
        slotFreed();
      },
      onEvents,
    )
    .catch((error: unknown) => {
      failure = error instanceof Error ? error : new Error(String(error));
      slotFreed();
      throw failure;
    });
  hereDone.catch(() => {});
  try {
    for await (const chunk of chunks) {
      for (;;) {
        if (failure) throw failure;
        const index = outstanding.indexOf(Math.min(...outstanding));
        if ((outstanding[index] as number) < 2) {
          outstanding[index] = (outstanding[index] as number) + 1;
          if (index === count) here.push(chunk);
          else workers[index]?.worker.postMessage({ type: 'chunk', chunk });
          break;
        }
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
    }
    here.end();
    for (const { worker } of workers) worker.postMessage({ type: 'end' });
    await Promise.all([hereDone, ...workers.map(({ done }) => done)]);
    while (judging.size > 0) await Promise.all(judging);
    if (failure) throw failure;
  } finally {
    here.end();
    await Promise.all(workers.map(({ worker }) => worker.terminate()));
    await hereDone.catch(() => {});
    await scanner.close();
    await Promise.allSettled(judging);
  }
}

/** Verifies every account stream. */
export async function verifyAll(deps: AuditDeps, options: VerifyAllOptions = {}): Promise<VerifyAllSummary> {
  const started = performance.now();
  const compareReadModels = options.compareReadModels ?? true;
  const maxKept = options.maxFailuresKept ?? 1000;
  const failures: VerifyAllFailure[] = [];
  let failed = 0;
  let lagging = 0;
  let ok = 0;
  let accounts = 0;
  let events = 0;
  let truncated = false;
  const recheck: string[] = [];
  const record = (failure: VerifyAllFailure) => {
    if (failure.status === 'failed') failed += 1;
    else lagging += 1;
    if (failures.length < maxKept) failures.push(failure);
    else truncated = true;
    options.onFailure?.(failure);
  };

  const verifyOne = async (userId: string, countEvents: boolean): Promise<void> => {
    try {
      const result = await verifyAccount(deps, userId, { compareReadModels, projectionWaitMs: 2000 });
      if (countEvents) {
        events += result.events;
        options.onProgress?.(result.events);
      }
      if (result.hash_chain_ok && result.matches) ok += 1;
      else record({ user_id: userId, status: 'failed', result, detail: result.first_mismatch?.detail ?? 'mismatch' });
    } catch (error) {
      if (!(error instanceof ProjectionLaggingError)) throw error;
      record({ user_id: userId, status: 'lagging', result: null, detail: error.message });
    }
  };

  const mode = deps.eventStore.name === 'postgres' ? 'postgres-scan' : 'event-store';
  let workerCount = 0;

  if (compareReadModels) {
    const head = await deps.eventStore.headPosition();
    if (head !== null) {
      try {
        await waitForProjection(deps.pool, head, options.projectionWaitMs ?? 10_000, deps.waitForProjection);
      } catch (error) {
        // Scan anyway: accounts the projector has not reached are rechecked (and reported lagging) at the end.
        if (!(error instanceof ProjectionLaggingError)) throw error;
      }
    }
  }

  if (mode === 'postgres-scan') {
    const totals = await deps.pool.one(sql.type(totalsRow)`
      select count(*) as accounts, coalesce(sum(revision + 1), 0) as events from streams where starts_with(stream_id, 'account-')`);
    options.onStart?.(totals);
    workerCount = options.workers ?? (totals.events >= WORKERS_FROM_EVENTS ? Math.min(4, availableParallelism()) : 0);
    const refine: VerifyAllFailure[] = [];
    const handleOutcome = (account: AccountOutcome) => {
      if (account.status === 'recheck') {
        recheck.push(account.user_id);
        return;
      }
      const failure: VerifyAllFailure = {
        user_id: account.user_id,
        status: 'failed',
        result: account.result,
        detail: account.result?.first_mismatch?.detail ?? 'mismatch',
      };
      if (account.result?.first_mismatch?.field.startsWith('credit_transactions.') && refine.length < 100) refine.push(failure);
      else record(failure);
    };
    await scanChunks(
      deps,
      planChunks(deps, options.chunkEvents ?? 20_000),
      workerCount,
      compareReadModels,
      options.pageSize,
      (outcome) => {
        accounts += outcome.accounts;
        events += outcome.events;
        ok += outcome.ok;
        for (const account of outcome.outcomes) handleOutcome(account);
      },
      (n) => options.onProgress?.(n),
    );
    // A statement compared by digest: name the first differing row.
    for (const failure of refine) {
      const result = failure.result as VerifyResult;
      const named = await firstStatementDifference(deps, failure.user_id, result.revision);
      const first = named ?? result.first_mismatch;
      record({ ...failure, result: { ...result, first_mismatch: first }, detail: first?.detail ?? failure.detail });
    }
  } else {
    const ids = new Set<string>();
    for await (const event of deps.eventStore.readAll()) {
      const userId = userIdOfAccountStream(event.streamId);
      if (userId !== null) ids.add(userId);
      events += 1;
    }
    options.onStart?.({ accounts: ids.size, events });
    events = 0;
    for (const userId of ids) recheck.push(userId);
  }

  for (const userId of recheck) {
    if (mode === 'event-store') accounts += 1;
    await verifyOne(userId, mode === 'event-store');
  }
  // Accounts the read models show but the store holds no stream for (deleted whole, events and head):
  // the scan above never meets them, so they are verified here (no events, rows in the read models:
  // a mismatch).
  if (compareReadModels) {
    const listed = mode === 'event-store' ? new Set(recheck) : null;
    for (const userId of await readModelOnlyAccounts(deps, listed)) {
      accounts += 1;
      await verifyOne(userId, false);
    }
  }
  const seconds = (performance.now() - started) / 1000;
  return {
    mode,
    workers: workerCount,
    accounts,
    events,
    ok,
    failed,
    lagging,
    rechecked: mode === 'postgres-scan' ? recheck.length : 0,
    seconds,
    events_per_s: seconds > 0 ? Math.round(events / seconds) : 0,
    failures,
    failures_truncated: truncated,
  };
}
