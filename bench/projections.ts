/**
 * Projection benchmark (called by `npm run bench` through `runProjectionBench()`, or on its own:
 * `npx tsx bench/projections.ts [--events N]`), on a fresh embedded Postgres under the OS temp dir.
 *
 * 1. Appends N ledger events (default 200,000) made by the real decider: 400 accounts, each a grant
 *    then spends, reservations settled or released, refunds and tier changes, appended in chunks
 *    with exact expected revisions.
 * 2. Baseline: `readAll` of the same N events through the port (`readall_events_per_s`).
 * 3. Catch-up: the projector from position zero, all three projections at once, until every one has
 *    processed the last event (`projection_events_per_s`, and the ratio to the baseline), with the CPU
 *    it took per event in this process and in Postgres (machine load does not change those).
 * 4. Lag under load: 16 writers spend for a few seconds through a second event-store instance (the
 *    projector learns of appends the way it does from another process: LISTEN/NOTIFY); after a warm-up
 *    second, per event, the time from its recording to the commit of its batch (`projection_lag_p50_ms`,
 *    `_p99_ms`).
 */
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { startEmbeddedPostgres } from '../src/adapters/postgres/embedded.js';
import { migrate } from '../src/adapters/postgres/migrations.js';
import { createDatabasePool, type DatabasePool } from '../src/adapters/postgres/pool.js';
import { createPostgresEventStore } from '../src/adapters/postgres-event-store/event-store.js';
import { comparePositions, type EventStore, type NewEvent, type Position } from '../src/core/event-store.js';
import {
  accountStreamId,
  DEFAULT_TIER_TABLE,
  decide,
  evolve,
  initialState,
  type LedgerCommand,
  type LedgerState,
  ledgerEventMetadata,
} from '../src/ledger/index.js';
import { ProjectorRunner } from '../projections/runner.js';
import { loadActiveCheckpoints } from '../projections/store.js';

export interface ProjectionBenchOptions {
  /** Ledger events to project from zero. Default 200,000. */
  readonly events?: number;
  /** Seconds of spend load for the lag measurement. Default 5. */
  readonly loadSeconds?: number;
  readonly log?: (line: string) => void;
}

const ACCOUNTS = 400;
const APPEND_CHUNK = 250;
const WRITERS = 16;
/** Load before the lag is measured (see the lag phase). */
const WARM_UP_MS = 1000;

const round = (n: number, digits = 2) => Math.round(n * 10 ** digits) / 10 ** digits;
const percentile = (values: readonly number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
};

/** One account's history, decided by the real decider, `perAccount` events long. */
function* accountCommands(account: number): Generator<LedgerCommand> {
  yield { type: 'Grant', lot_id: `lot-${account}-0`, kind: 'bonus', amount: 100_000_000, reason: 'bench' };
  for (let i = 1; ; i++) {
    const tag = `${account}-${i}`;
    switch (i % 10) {
      case 3:
        yield { type: 'Reserve', reservation_id: `res-${tag}`, amount: 20 };
        yield { type: 'Settle', reservation_id: `res-${tag}`, spend_id: `settle-${tag}`, amount: 12 };
        break;
      case 5:
        yield { type: 'Reserve', reservation_id: `res-${tag}`, amount: 10 };
        yield { type: 'Release', reservation_id: `res-${tag}` };
        break;
      case 7:
        yield { type: 'RefundSpend', refund_id: `refund-${tag}`, spend_id: `spend-${account}-${i - 1}`, amount: 1, reason: 'bench' };
        break;
      case 9:
        if (i % 100 === 9) yield { type: 'ChangeTier', tier: i % 200 === 9 ? 'pro' : 'enterprise', reason: 'bench' };
        else yield { type: 'Grant', lot_id: `lot-${tag}`, kind: 'promotional', amount: 50, reason: 'bench' };
        break;
      default:
        yield { type: 'Spend', spend_id: `spend-${tag}`, amount: 3, counts_api_call: true, metadata: { model: 'gpt-4' } };
    }
  }
}

interface Seeded {
  readonly events: number;
  readonly last: Position;
  readonly states: Map<string, LedgerState>;
}

/** Decides and appends `total` events over ACCOUNTS accounts; returns the last position. */
async function seed(eventStore: EventStore, total: number, log: (line: string) => void): Promise<Seeded> {
  const perAccount = Math.ceil(total / ACCOUNTS);
  const startMs = Date.parse('2026-11-01T00:00:00.000Z');
  const states = new Map<string, LedgerState>();
  let appended = 0;
  let last: Position | null = null;
  const accounts = Array.from({ length: ACCOUNTS }, (_, index) => index);
  const seedAccount = async (account: number) => {
    const userId = randomUUID();
    const state = initialState();
    states.set(userId, state);
    const commands = accountCommands(account);
    let pending: NewEvent[] = [];
    let expected: bigint | 'no_stream' = 'no_stream';
    let count = 0;
    let step = 0;
    const flush = async () => {
      if (pending.length === 0) return;
      const result = await eventStore.appendToStream(accountStreamId(userId), pending, { expectedRevision: expected });
      expected = result.nextExpectedRevision;
      appended += pending.length;
      if (last === null || comparePositions(result.position, last) > 0) last = result.position;
      pending = [];
    };
    while (count < perAccount && appended + pending.length < total) {
      const command = commands.next().value as LedgerCommand;
      step++;
      const decision = decide(command, state, { now: new Date(startMs + step * 1000), tiers: DEFAULT_TIER_TABLE });
      if (decision.kind !== 'applied') continue;
      const metadata = ledgerEventMetadata(command);
      for (const event of decision.events) {
        evolve(state, event);
        pending.push({ id: randomUUID(), type: event.type, data: event.data as never, metadata });
        count++;
      }
      if (pending.length >= APPEND_CHUNK) await flush();
    }
    await flush();
  };
  let next = 0;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < accounts.length) await seedAccount(accounts[next++] as number);
    }),
  );
  log(`bench: appended ${appended} ledger events in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  if (last === null) throw new Error('bench: nothing appended');
  return { events: appended, last, states };
}

/** For profiling scripts: the seeding step alone. */
export const seedForProfile = (eventStore: EventStore, total: number) => seed(eventStore, total, () => {});

/**
 * CPU milliseconds used so far by the embedded server's processes (Linux /proc; null elsewhere), so
 * the cost per event can be told apart from a busy machine's scheduling delays.
 */
function postgresCpuMs(dataDir: string): number | null {
  try {
    const postmaster = Number(readFileSync(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[0]);
    let ticks = 0;
    for (const pid of readdirSync('/proc').filter((entry) => /^\d+$/.test(entry))) {
      try {
        const fields = (readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1] ?? '').split(' ');
        if (Number(pid) === postmaster || Number(fields[1]) === postmaster) ticks += Number(fields[11]) + Number(fields[12]);
      } catch {
        // the process ended meanwhile
      }
    }
    return ticks * 10; // USER_HZ = 100 on Linux
  } catch {
    return null;
  }
}

async function waitFor(pool: DatabasePool, target: Position, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const checkpoints = await loadActiveCheckpoints(pool);
    if (checkpoints.every((c) => c.position !== null && comparePositions(c.position, target) >= 0)) return;
    const failed = checkpoints.find((c) => c.status === 'failed');
    if (failed) throw new Error(`bench: projection ${failed.name} failed: ${failed.error}`);
    if (Date.now() > deadline) throw new Error('bench: projections did not catch up in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export async function runProjectionBench(options: ProjectionBenchOptions = {}): Promise<Record<string, number>> {
  const total = options.events ?? 200_000;
  const loadSeconds = options.loadSeconds ?? 5;
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const logger = pino({ level: 'silent' });
  const dataDir = await mkdtemp(path.join(tmpdir(), 'ledger-projection-bench-'));
  log(`bench: projections on an embedded Postgres in ${dataDir}`);
  const db = await startEmbeddedPostgres({ dataDir, database: 'ledger' });
  const results: Record<string, number> = {};
  try {
    await migrate(db.url);
    const pool = await createDatabasePool(db.url, { maxPoolSize: 30 });
    const eventStore = createPostgresEventStore({ pool, batchSize: 2000 });
    try {
      const seeded = await seed(eventStore, total, log);

      // Baseline: read the same events through the port.
      let read = 0;
      let started = process.hrtime.bigint();
      for await (const _event of eventStore.readAll()) read++;
      const readSeconds = Number(process.hrtime.bigint() - started) / 1e9;
      results.readall_events_per_s = Math.round(read / readSeconds);
      log(`bench: readAll ${read} events in ${readSeconds.toFixed(2)} s`);

      // Catch-up from zero, all projections at once.
      const runner = new ProjectorRunner({ pool, eventStore, logger, batchSize: 5000 });
      const nodeCpu = process.cpuUsage();
      const pgCpu = postgresCpuMs(dataDir);
      started = process.hrtime.bigint();
      await runner.start();
      await waitFor(pool, seeded.last, 600_000);
      const projectSeconds = Number(process.hrtime.bigint() - started) / 1e9;
      const nodeCpuUsed = process.cpuUsage(nodeCpu);
      const pgCpuAfter = postgresCpuMs(dataDir);
      results.projection_node_cpu_us_per_event = round(((nodeCpuUsed.user + nodeCpuUsed.system) / seeded.events), 1);
      if (pgCpu !== null && pgCpuAfter !== null) results.projection_postgres_cpu_us_per_event = round(((pgCpuAfter - pgCpu) * 1000) / seeded.events, 1);
      results.projection_events = seeded.events;
      results.projection_catchup_s = round(projectSeconds, 2);
      results.projection_events_per_s = Math.round(seeded.events / projectSeconds);
      results.projection_vs_readall_ratio = round(results.projection_events_per_s / results.readall_events_per_s, 3);
      log(`bench: projected ${seeded.events} events (3 projections) in ${projectSeconds.toFixed(2)} s`);

      // Lag under a spend load from "another process" (a second store instance: woken by NOTIFY).
      // Measured from the end of a warm-up second: the writers' first transactions run on cold connections
      // (function compilation, first plans) and can take 100-200 ms from their start, which is when an
      // event is recorded — their events' "lag" was the writer's cold start, not the projector's.
      const lags: number[] = [];
      let measuring = false;
      runner.onCommit((batch) => {
        if (!measuring || batch.name !== 'credits') return;
        const now = Date.now();
        for (const event of batch.events) lags.push(now - event.recordedAt.getTime());
      });
      const writerStore = createPostgresEventStore({ pool, notifyUrl: false });
      let writing = true;
      let spends = 0;
      const users = [...seeded.states.keys()].slice(0, WRITERS * 4);
      const writer = async (index: number) => {
        for (let i = 0; writing; i++) {
          const userId = users[(index + i * WRITERS) % users.length] as string;
          const state = seeded.states.get(userId) as LedgerState;
          const command: LedgerCommand = { type: 'Spend', spend_id: `load-${index}-${i}`, amount: 1, counts_api_call: false };
          const decision = decide(command, state, { now: new Date(), tiers: DEFAULT_TIER_TABLE });
          if (decision.kind !== 'applied') continue;
          try {
            await writerStore.appendToStream(
              accountStreamId(userId),
              decision.events.map((event) => ({ id: randomUUID(), type: event.type, data: event.data as never, metadata: ledgerEventMetadata(command) })),
              { expectedRevision: state.revision },
            );
            for (const event of decision.events) evolve(state, event);
            spends++;
          } catch {
            // another writer took this account's revision first: re-decide next round
          }
        }
      };
      const load = Array.from({ length: WRITERS }, (_, index) => writer(index));
      await new Promise((resolve) => setTimeout(resolve, WARM_UP_MS));
      const spendsBefore = spends;
      measuring = true;
      await new Promise((resolve) => setTimeout(resolve, loadSeconds * 1000));
      writing = false;
      await Promise.all(load);
      const head = await eventStore.headPosition();
      if (head) await waitFor(pool, head, 60_000);
      await writerStore.close();
      results.projection_load_spends_per_s = Math.round((spends - spendsBefore) / loadSeconds);
      results.projection_lag_p50_ms = round(percentile(lags, 50), 1);
      results.projection_lag_p99_ms = round(percentile(lags, 99), 1);
      log(`bench: ${spends - spendsBefore} spends under load (after the warm-up); projection lag p50 ${results.projection_lag_p50_ms} ms, p99 ${results.projection_lag_p99_ms} ms`);
      await runner.stop();
    } finally {
      await eventStore.close();
      await pool.end();
    }
  } finally {
    await db.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
  return results;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const index = process.argv.indexOf('--events');
  const events = index >= 0 ? Number(process.argv[index + 1]) : undefined;
  runProjectionBench(events ? { events } : {}).then(
    (results) => process.stdout.write(`${JSON.stringify(results, null, 2)}\n`),
    (error) => {
      process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exit(1);
    },
  );
}
