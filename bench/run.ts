/**
 * `npm run bench [-- --json FILE] [--quick]`: the ledger's command path under load, on a fresh embedded
 * Postgres (a new data directory under the OS temp dir, removed afterwards).
 *
 * The service runs in a child process (bench/server.ts); this process sets up accounts directly
 * through the ledger, drives HTTP with bench/load.ts on loopback, and afterwards replays every account
 * from the store to check that each 201 took exactly one credit (`lost_or_doubled`).
 *
 * Phases (32 concurrent clients unless said otherwise):
 * - baseline: one-row INSERT commits (autocommit, one round trip each) through `pg` on the same server;
 * - spends on 1,000 distinct accounts (enterprise tier: no quota; credits granted up front);
 * - spends on one hot account;
 * - sequential spends alternating between an account with 100,000 events and a fresh one (after one
 *   warm-up request each): `long_stream_latency_ratio` = p50(long) / p50(fresh).
 */
import { fork } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { pino } from 'pino';
import { startEmbeddedPostgres } from '../src/adapters/postgres/embedded.js';
import { migrate } from '../src/adapters/postgres/migrations.js';
import { createDatabasePool } from '../src/adapters/postgres/pool.js';
import { createPostgresEventStore } from '../src/adapters/postgres-event-store/event-store.js';
import { loadConfig } from '../src/config.js';
import { createAccounts } from '../src/core/accounts.js';
import type { NewEvent } from '../src/core/event-store.js';
import { chainEvents, GENESIS_HASH } from '../src/core/hash-chain.js';
import {
  accountStreamId,
  DEFAULT_TIER_TABLE,
  decide,
  evolve,
  initialState,
  type LedgerCommand,
  ledgerEventMetadata,
} from '../src/ledger/index.js';
import { buildDeps } from '../src/services.js';
import { runAuditBench } from './audit.js';
import { runReplayBench } from './ledger-replay.js';
import { runLoad } from './load.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const jsonIndex = args.indexOf('--json');
const jsonFile = jsonIndex >= 0 ? args[jsonIndex + 1] : undefined;

const CONNECTIONS = 32;
const ACCOUNTS = quick ? 200 : 1000;
const PHASE_SECONDS = quick ? 4 : 10;
const BASELINE_SECONDS = quick ? 3 : 6;
const LONG_STREAM_EVENTS = quick ? 20_000 : 100_000;
const LATENCY_SAMPLES = quick ? 100 : 300;
const INITIAL_CREDITS = 1_000_000;

const log = (line: string) => process.stderr.write(`${line}\n`);
const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
};
const round = (n: number, digits = 2) => Math.round(n * 10 ** digits) / 10 ** digits;

interface Account {
  readonly userId: string;
  readonly token: string;
  successes: number;
}

async function main() {
  const started = Date.now();
  const dataDir = await mkdtemp(path.join(tmpdir(), 'ledger-bench-'));
  log(`bench: embedded Postgres in ${dataDir}`);
  // BENCH_PG_STATS=1: statement statistics (pg_stat_statements) of the distinct-account phase, printed to stderr.
  // BENCH_PG_STATS=hot: of the hot-account phase instead.
  const pgStats = process.env.BENCH_PG_STATS === '1';
  const pgStatsHot = process.env.BENCH_PG_STATS === 'hot';
  const db = await startEmbeddedPostgres({ dataDir, database: 'ledger', ...(pgStats || pgStatsHot ? { settings: { shared_preload_libraries: 'pg_stat_statements' } } : {}) });
  let child: ReturnType<typeof fork> | null = null;
  try {
    await migrate(db.url);
    const pool = await createDatabasePool(db.url, { maxPoolSize: 40 });
    const eventStore = createPostgresEventStore({ pool, notifyUrl: false });
    const secrets = { access: randomBytes(32).toString('base64url'), refresh: randomBytes(32).toString('base64url') };
    const config = loadConfig({ NODE_ENV: 'test', DATABASE_URL: db.url, JWT_ACCESS_SECRET: secrets.access, JWT_REFRESH_SECRET: secrets.refresh });
    const deps = buildDeps({ config, logger: pino({ level: 'silent' }), pool, eventStore, secrets });

    // ---- accounts: enterprise tier (no quota), credits up front
    const newAccount = async (index: number, credits = INITIAL_CREDITS): Promise<Account> => {
      const user = await deps.users.create({ email: `bench-${index}-${randomBytes(3).toString('hex')}@example.com` });
      const session = await deps.sessions.open({ userId: user.id, now: new Date() });
      const token = await deps.accessTokens.sign({ userId: user.id, email: user.email, tier: 'enterprise', role: 'user', sessionId: session.id });
      await deps.ledger.execute(user.id, { type: 'ChangeTier', tier: 'enterprise', reason: 'bench' });
      if (credits > 0) await deps.ledger.execute(user.id, { type: 'Grant', lot_id: randomUUID(), kind: 'bonus', amount: credits, reason: 'bench' });
      return { userId: user.id, token, successes: 0 };
    };
    log(`bench: creating ${ACCOUNTS + 3} accounts`);
    const accounts: Account[] = [];
    for (let i = 0; i < ACCOUNTS; i += 50) {
      accounts.push(...(await Promise.all(Array.from({ length: Math.min(50, ACCOUNTS - i) }, (_, j) => newAccount(i + j)))));
    }
    const hot = await newAccount(-1);
    const fresh = await newAccount(-2);
    const long = await newAccount(-3, 0);
    log(`bench: appending ${LONG_STREAM_EVENTS} events to one account`);
    await appendLongHistory(eventStore, long.userId, LONG_STREAM_EVENTS);

    // ---- baseline: one-row INSERT commits, same server, same concurrency
    const postmasterPid = Number((await readFile(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8')).split('\n')[0]);
    const baselineCpuBefore = cpuSnapshot(undefined, postmasterPid);
    const { perSecond: baseline_commit_per_s, commits: baselineCommits } = await baseline(db.url);
    const baselineCpu = cpuPerOperation(baselineCpuBefore, cpuSnapshot(undefined, postmasterPid), baselineCommits);
    log(`bench: baseline ${Math.round(baseline_commit_per_s)} commits/s`);

    // ---- the service, in its own process
    child = fork(path.join(here, 'server.ts'), [], {
      // BENCH_CPU_PROF=<dir>: a V8 CPU profile of the service, for finding where its time goes.
      ...(process.env.BENCH_CPU_PROF ? { execArgv: [...process.execArgv, '--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] } : {}),
      env: { ...process.env, DATABASE_URL: db.url, JWT_ACCESS_SECRET: secrets.access, JWT_REFRESH_SECRET: secrets.refresh },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const port = await new Promise<number>((resolve, reject) => {
      child?.once('message', (message: { type?: string; port?: number }) => (message.type === 'ready' ? resolve(message.port as number) : reject(new Error('bad message'))));
      child?.once('exit', (code) => reject(new Error(`bench server exited with ${code}`)));
    });
    const url = `http://127.0.0.1:${port}`;
    const statuses = new Map<number, number>();
    /** Requests sent without an answer seen (a connection that failed mid-request): key → account, body. */
    const inflight = new Map<string, { account: Account; body: string }>();
    let resent = 0;

    // Keys unique across all phases: a key reused on an account would be (rightly) answered as a replay.
    const runId = randomBytes(4).toString('hex');
    let next = 0;
    const spendLoad = (pick: () => Account, seconds: number) => {
      return runLoad<{ account: Account; key: string }>({
        host: '127.0.0.1',
        port,
        connections: CONNECTIONS,
        seconds,
        next: () => {
          const account = pick();
          next += 1;
          const key = `bench-${runId}-${next}`;
          inflight.set(key, { account, body: '{"amount":1}' });
          return {
            request: {
              method: 'POST',
              path: '/credits/spend',
              headers: { authorization: `Bearer ${account.token}`, 'content-type': 'application/json', 'idempotency-key': key },
              body: '{"amount":1}',
            },
            context: { account, key },
          };
        },
        onResponse: (status, context) => {
          inflight.delete(context.key);
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
          if (status === 201) context.account.successes += 1;
        },
      });
    };

    /**
     * A request whose answer was never seen (its connection failed) did take effect or not without
     * anyone knowing. A client would retry it with the same key; so do we — each must answer 201
     * exactly once, replayed or not.
     */
    const settleInflight = async () => {
      const pending = [...inflight.entries()];
      inflight.clear();
      for (const [key, { account, body }] of pending) {
        const response = await fetch(`${url}/credits/spend`, {
          method: 'POST',
          headers: { authorization: `Bearer ${account.token}`, 'content-type': 'application/json', 'idempotency-key': key },
          body,
        });
        await response.arrayBuffer();
        resent += 1;
        if (response.status === 201) account.successes += 1;
      }
    };

    log('bench: warm-up (every account once)');
    let cursor = 0;
    await spendLoad(() => accounts[cursor++ % accounts.length] as Account, 2);
    await settleInflight();

    log(`bench: spends on ${ACCOUNTS} accounts, ${CONNECTIONS} clients, ${PHASE_SECONDS} s`);
    if (pgStats) await statementStats(db.url, 'reset');
    const cpuBefore = cpuSnapshot(child.pid, postmasterPid);
    const distinct = await spendLoad(() => accounts[Math.floor(Math.random() * accounts.length)] as Account, PHASE_SECONDS);
    const spend_per_s = distinct.ok / distinct.duration;
    const spendCpu = cpuPerOperation(cpuBefore, cpuSnapshot(child.pid, postmasterPid), distinct.ok);
    if (pgStats) await statementStats(db.url, 'print', distinct.ok);
    await settleInflight();

    log(`bench: spends on one hot account, ${CONNECTIONS} clients, ${PHASE_SECONDS} s`);
    if (pgStatsHot) await statementStats(db.url, 'reset');
    const hotCpuBefore = cpuSnapshot(child.pid, postmasterPid);
    const hotRun = await spendLoad(() => hot, PHASE_SECONDS);
    const hot_spend_per_s = hotRun.ok / hotRun.duration;
    const hotCpu = cpuPerOperation(hotCpuBefore, cpuSnapshot(child.pid, postmasterPid), hotRun.ok);
    if (pgStatsHot) await statementStats(db.url, 'print', hotRun.ok);
    await settleInflight();

    log(`bench: latency on a ${LONG_STREAM_EVENTS}-event account vs a fresh one`);
    const spendOnce = async (account: Account): Promise<number> => {
      const t0 = performance.now();
      const response = await fetch(`${url}/credits/spend`, {
        method: 'POST',
        headers: { authorization: `Bearer ${account.token}`, 'content-type': 'application/json', 'idempotency-key': randomUUID() },
        body: '{"amount":1}',
      });
      await response.arrayBuffer();
      const ms = performance.now() - t0;
      statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
      if (response.status === 201) account.successes += 1;
      return ms;
    };
    // Long account: grant first (its history has no credits left to spend), then load it once.
    const coldStart = performance.now();
    await deps.ledger.execute(long.userId, { type: 'Grant', lot_id: randomUUID(), kind: 'bonus', amount: INITIAL_CREDITS, reason: 'bench' });
    await spendOnce(long);
    const long_stream_cold_load_ms = performance.now() - coldStart;
    await spendOnce(fresh);
    const longTimes: number[] = [];
    const freshTimes: number[] = [];
    for (let i = 0; i < LATENCY_SAMPLES; i++) {
      longTimes.push(await spendOnce(long));
      freshTimes.push(await spendOnce(fresh));
    }
    const long_p50 = percentile(longTimes, 50);
    const fresh_p50 = percentile(freshTimes, 50);

    child.send({ type: 'stop' });
    await new Promise((resolve) => child?.once('exit', resolve));
    child = null;

    // ---- every 201 took exactly one credit: replay each account from the store (no cache)
    log('bench: checking balances against the store');
    const audit = createAccounts({ eventStore, clock: { now: () => new Date() }, tiers: DEFAULT_TIER_TABLE, cacheSize: 10 });
    let lost_or_doubled = 0;
    const expectedLong = INITIAL_CREDITS + LONG_STREAM_FUNDS - (LONG_STREAM_EVENTS - 2);
    for (const account of [...accounts, hot, fresh, long]) {
      const { state } = await audit.load(account.userId);
      const start = account === long ? expectedLong : INITIAL_CREDITS;
      lost_or_doubled += Math.abs(start - account.successes - state.balance);
    }

    const projectionResults = await projectionBench({ databaseUrl: db.url, pool, eventStore });
    await eventStore.close();
    await pool.end();
    log('bench: ledger replay (bench/ledger-replay.ts)');
    const replayResults = runReplayBench();
    const auditResults = await auditBench();

    const results = {
      spend_per_s: round(spend_per_s, 1),
      spend_p50_ms: round(distinct.latency.p50, 1),
      spend_p99_ms: round(distinct.latency.p99, 1),
      hot_spend_per_s: round(hot_spend_per_s, 1),
      hot_spend_p50_ms: round(hotRun.latency.p50, 1),
      hot_spend_p99_ms: round(hotRun.latency.p99, 1),
      baseline_commit_per_s: round(baseline_commit_per_s, 1),
      spend_vs_baseline: round(spend_per_s / baseline_commit_per_s, 3),
      hot_vs_baseline: round(hot_spend_per_s / baseline_commit_per_s, 3),
      long_stream_events: LONG_STREAM_EVENTS,
      long_stream_p50_ms: round(long_p50, 3),
      fresh_stream_p50_ms: round(fresh_p50, 3),
      long_stream_latency_ratio: round(long_p50 / fresh_p50, 3),
      long_stream_cold_load_ms: round(long_stream_cold_load_ms, 1),
      lost_or_doubled,
      // CPU per 201 in the distinct-account phase (µs; Linux /proc): what each spend costs, whatever the machine's load.
      spend_cpu_us_service: spendCpu.service,
      spend_cpu_us_postgres: spendCpu.postgres,
      spend_cpu_us_load_generator: spendCpu.loadGenerator,
      // The same for one baseline commit: Postgres, and the pg client (in this process).
      baseline_cpu_us_postgres: baselineCpu.postgres,
      baseline_cpu_us_client: baselineCpu.loadGenerator,
      hot_spend_cpu_us_service: hotCpu.service,
      hot_spend_cpu_us_postgres: hotCpu.postgres,
      hot_spend_cpu_us_load_generator: hotCpu.loadGenerator,
      http_statuses: Object.fromEntries([...statuses.entries()].sort((a, b) => a[0] - b[0])),
      errors: distinct.errors + hotRun.errors,
      resent_in_flight: resent,
      accounts: ACCOUNTS,
      connections: CONNECTIONS,
      phase_seconds: PHASE_SECONDS,
      quick,
      node_version: process.version,
      event_store: eventStore.name,
      duration_s: round((Date.now() - started) / 1000, 1),
      ...projectionResults,
      ...replayResults,
      ...auditResults,
    };
    const json = JSON.stringify(results, null, 2);
    process.stdout.write(`${json}\n`);
    printTable(results);
    const out = path.join(here, 'results');
    await mkdir(out, { recursive: true });
    await writeFile(path.join(out, 'latest.json'), `${json}\n`);
    if (jsonFile) await writeFile(path.resolve(jsonFile), `${json}\n`);
  } finally {
    child?.kill();
    await db.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

/** Credits the long account's own history granted (its spends take 1 each). */
const LONG_STREAM_FUNDS = 1_000_000_000;

/**
 * Appends a valid history straight to the store: a tier change, one grant, then spends of 1 credit,
 * each decided by the real decider on the evolving state and hash-chained like the handler does.
 */
async function appendLongHistory(eventStore: ReturnType<typeof createPostgresEventStore>, userId: string, count: number) {
  const streamId = accountStreamId(userId);
  let revision = -1n;
  for await (const event of eventStore.readStream(streamId)) revision = event.revision;
  // Replay what newAccount appended (the tier change) so the decider sees the real state.
  let state = initialState();
  let lastHash = GENESIS_HASH;
  for await (const event of eventStore.readStream(streamId)) {
    state = evolve(state, { type: event.type, data: event.data, metadata: event.metadata, revision: event.revision } as never);
    lastHash = typeof event.metadata.hash === 'string' ? event.metadata.hash : lastHash;
  }
  const ctx = { now: new Date(), tiers: DEFAULT_TIER_TABLE };
  let batch: NewEvent[] = [];
  const flush = async () => {
    if (batch.length === 0) return;
    const { events, lastHash: hash } = chainEvents(batch as (NewEvent & { metadata: NewEvent['metadata'] & object })[], lastHash);
    const result = await eventStore.appendToStream(streamId, events, { expectedRevision: revision < 0n ? 'no_stream' : revision });
    revision = result.nextExpectedRevision;
    lastHash = hash;
    batch = [];
  };
  const existing = Number(revision + 1n);
  for (let i = existing; i < count; i++) {
    const command: LedgerCommand =
      i === existing
        ? { type: 'Grant', lot_id: randomUUID(), kind: 'bonus', amount: LONG_STREAM_FUNDS, reason: 'bench history' }
        : { type: 'Spend', spend_id: randomUUID(), amount: 1, counts_api_call: false };
    const decision = decide(command, state, ctx);
    if (decision.kind !== 'applied') throw new Error(`bench history: ${command.type} not applied`);
    for (const event of decision.events) {
      state = evolve(state, event);
      batch.push({ id: randomUUID(), type: event.type, data: event.data, metadata: ledgerEventMetadata(command) });
    }
    if (batch.length >= 2000) await flush();
  }
  await flush();
}

interface CpuSnapshot {
  readonly service: number;
  readonly postgres: number;
  readonly self: number;
}

/** CPU seconds so far of the service process, of this benchmark's Postgres, and of this process (Linux /proc). */
function cpuSnapshot(servicePid: number | undefined, postmasterPid: number): CpuSnapshot {
  const ticks = 100; // USER_HZ
  const cpuOf = (pid: string): { name: string; parent: number; seconds: number } | null => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // utime + stime, plus cutime + cstime: the CPU of children that ended and were waited for
      // (a Postgres backend whose connection closed is reaped by the postmaster).
      const seconds = (Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) / ticks;
      return { name, parent: Number(fields[1]), seconds };
    } catch {
      return null;
    }
  };
  let postgres = 0;
  try {
    for (const pid of readdirSync('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      const cpu = cpuOf(pid);
      // This benchmark's server only: its postmaster and the backends it forked.
      if (cpu && (Number(pid) === postmasterPid || cpu.parent === postmasterPid)) postgres += cpu.seconds;
    }
  } catch {
    postgres = Number.NaN;
  }
  const usage = process.cpuUsage();
  return { service: servicePid ? (cpuOf(String(servicePid))?.seconds ?? Number.NaN) : Number.NaN, postgres, self: (usage.user + usage.system) / 1e6 };
}

const cpuPerOperation = (before: CpuSnapshot, after: CpuSnapshot, operations: number) => {
  const per = (key: keyof CpuSnapshot) => round(((after[key] - before[key]) * 1e6) / Math.max(1, operations), 0);
  return { service: per('service'), postgres: per('postgres'), loadGenerator: per('self') };
};

/** pg_stat_statements: reset before a phase, print the top statements (calls and time per spend) after it. */
async function statementStats(url: string, action: 'reset' | 'print', spends = 1) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('create extension if not exists pg_stat_statements');
    if (action === 'reset') {
      await client.query('select pg_stat_statements_reset()');
      return;
    }
    const { rows } = await client.query(
      `select calls, total_exec_time, rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 110) as query
       from pg_stat_statements where query not like '%pg_stat_statements%' order by total_exec_time desc limit 15`,
    );
    log(`bench: top statements per spend (${spends} spends)`);
    for (const row of rows) {
      log(`  ${(row.calls / spends).toFixed(3).padStart(7)} calls  ${((row.total_exec_time * 1000) / spends).toFixed(1).padStart(7)} µs  ${row.query}`);
    }
  } finally {
    await client.end();
  }
}

async function baseline(url: string): Promise<{ perSecond: number; commits: number }> {
  const pool = new pg.Pool({ connectionString: url, max: CONNECTIONS });
  await pool.query('create table if not exists bench_baseline (id bigserial primary key, payload text not null, created_at timestamptz not null default now())');
  let count = 0;
  const until = Date.now() + BASELINE_SECONDS * 1000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      const client = await pool.connect();
      try {
        while (Date.now() < until) {
          await client.query('insert into bench_baseline (payload) values ($1)', [randomUUID()]);
          count += 1;
        }
      } finally {
        client.release();
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  await pool.end();
  return { perSecond: count / seconds, commits: count };
}

/** bench/audit.ts: `audit verify --all` over 1,000,000 events in 10,000 accounts (BENCH_SKIP_AUDIT=1 skips it). */
async function auditBench(): Promise<Record<string, unknown>> {
  if (process.env.BENCH_SKIP_AUDIT === '1') return {};
  try {
    log('bench: audit verify (bench/audit.ts)');
    return await runAuditBench({ log });
  } catch (error) {
    log(`bench: audit bench failed: ${error instanceof Error ? error.message : String(error)}`);
    return { audit_bench_error: error instanceof Error ? error.message : String(error) };
  }
}

/** bench/projections.ts (the projections' own benchmark), when present: its keys join the report. */
async function projectionBench(context: Record<string, unknown>): Promise<Record<string, unknown>> {
  const file = path.join(here, 'projections.ts');
  if (!existsSync(file) || process.env.BENCH_SKIP_PROJECTIONS === '1') return {};
  try {
    const module = (await import('./projections.js' as string)) as { runProjectionBench?: (context: Record<string, unknown>) => Promise<unknown> };
    if (typeof module.runProjectionBench !== 'function') return {};
    log('bench: projections (bench/projections.ts)');
    const result = await module.runProjectionBench(context);
    return result && typeof result === 'object' ? (result as Record<string, unknown>) : {};
  } catch (error) {
    log(`bench: projections bench failed: ${error instanceof Error ? error.message : String(error)}`);
    return { projection_bench_error: error instanceof Error ? error.message : String(error) };
  }
}

function printTable(results: Record<string, unknown>) {
  const rows = Object.entries(results).filter(([, value]) => typeof value !== 'object');
  const width = Math.max(...rows.map(([key]) => key.length));
  log('');
  for (const [key, value] of rows) log(`  ${key.padEnd(width)}  ${String(value)}`);
}

main().catch((error) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
