/**
 * Audit benchmark (called by `npm run bench` through `runAuditBench()`, or on its own:
 * `npx tsx bench/audit.ts [--accounts N] [--events-per-account N] [--workers N]`), on a fresh embedded
 * Postgres under the OS temp dir.
 *
 * 1. Fixture (bench/audit-fixture.ts): 10,000 accounts × 100 events = 1,000,000 ledger events decided
 *    by the real decider, hash-chained with the recipe of src/core/hash-chain.ts, bulk-inserted, and the
 *    credits read models written by the real projection code.
 * 2. Baseline, same run, same data: raw `readAll` through the event-store port (no verification) over
 *    the first 300,000 events → `audit_readall_events_per_s`.
 * 3. `audit verify --all` (src/audit/verify-all.ts; chain + schema-checked replay through `evolve` + read
 *    models) → `verify_events_per_s`, `verify_vs_readall_ratio`; peak RSS sampled every 50 ms, and the
 *    RSS at half-way and at the end (flat memory: the two are close, whatever the ledger's size); the
 *    process's CPU per event and the machine's load average, to read the throughput against.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startEmbeddedPostgres } from '../src/adapters/postgres/embedded.js';
import { migrate } from '../src/adapters/postgres/migrations.js';
import { createDatabasePool, sql } from '../src/adapters/postgres/pool.js';
import { createPostgresEventStore } from '../src/adapters/postgres-event-store/event-store.js';
import { createAuditDeps } from '../src/audit/verify.js';
import { verifyAll } from '../src/audit/verify-all.js';
import { loadLedgerFixture } from './audit-fixture.js';

export interface AuditBenchOptions {
  readonly accounts?: number;
  readonly eventsPerAccount?: number;
  /** Verify workers (default: the machine's parallelism, at most 4). */
  readonly workers?: number;
  /** Events read for the readAll baseline. Default 300,000. */
  readonly baselineEvents?: number;
  readonly log?: (line: string) => void;
}

const round = (n: number, digits = 2) => Math.round(n * 10 ** digits) / 10 ** digits;
const mb = (bytes: number) => Math.round(bytes / 1024 / 1024);

export async function runAuditBench(options: AuditBenchOptions = {}): Promise<Record<string, number>> {
  const accounts = options.accounts ?? 10_000;
  const eventsPerAccount = options.eventsPerAccount ?? 100;
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const dataDir = await mkdtemp(path.join(tmpdir(), 'ledger-audit-bench-'));
  log(`bench: audit on an embedded Postgres in ${dataDir}`);
  const db = await startEmbeddedPostgres({ dataDir, database: 'ledger' });
  const results: Record<string, number> = {};
  try {
    await migrate(db.url);
    const pool = await createDatabasePool(db.url, { maxPoolSize: 8 });
    const eventStore = createPostgresEventStore({ pool, batchSize: 2000, notifyUrl: false });
    try {
      // 1. Fixture.
      let started = performance.now();
      let reported = 0;
      const fixture = await loadLedgerFixture(pool, {
        accounts,
        eventsPerAccount,
        project: true,
        onProgress: (written) => {
          if (written - reported >= 100_000) {
            reported = written;
            log(`bench: audit fixture ${written.toLocaleString('en')} events (${((performance.now() - started) / 1000).toFixed(0)} s)`);
          }
        },
      });
      results.audit_fixture_events = fixture.events;
      results.audit_fixture_s = round((performance.now() - started) / 1000, 1);
      // What a long-lived table looks like to readers: statistics and the visibility map up to date.
      await pool.query(sql.unsafe`vacuum (analyze)`);
      log(`bench: audit fixture of ${fixture.events.toLocaleString('en')} events in ${results.audit_fixture_s} s`);

      // 2. Baseline: raw readAll through the port.
      const baselineEvents = Math.min(fixture.events, options.baselineEvents ?? 300_000);
      started = performance.now();
      let read = 0;
      for await (const _event of eventStore.readAll({ maxCount: baselineEvents })) read++;
      const readSeconds = (performance.now() - started) / 1000;
      results.audit_readall_events_per_s = Math.round(read / readSeconds);
      log(`bench: readAll baseline ${read.toLocaleString('en')} events in ${readSeconds.toFixed(2)} s`);

      // 3. audit verify --all.
      results.verify_load_avg_1m = round(loadavg()[0] ?? 0, 1);
      const cpuBefore = process.cpuUsage();
      let peak = process.memoryUsage().rss;
      const rssBefore = peak;
      let rssMid = 0;
      let done = 0;
      const sampler = setInterval(() => {
        peak = Math.max(peak, process.memoryUsage().rss);
      }, 50);
      const summary = await verifyAll(createAuditDeps(eventStore, pool), {
        workers: options.workers,
        onProgress: (events) => {
          done += events;
          if (rssMid === 0 && done >= fixture.events / 2) rssMid = process.memoryUsage().rss;
        },
      });
      clearInterval(sampler);
      const cpu = process.cpuUsage(cpuBefore);
      peak = Math.max(peak, process.memoryUsage().rss);
      const rssEnd = process.memoryUsage().rss;
      if (summary.failed > 0 || summary.lagging > 0 || summary.events !== fixture.events) {
        throw new Error(
          `bench: audit verify found ${summary.failed} failed / ${summary.lagging} lagging accounts over ${summary.events} events ` +
            `(first: ${summary.failures[0]?.detail ?? '-'})`,
        );
      }
      results.verify_events = summary.events;
      results.verify_accounts = summary.accounts;
      results.verify_workers = summary.workers;
      results.verify_seconds = round(summary.seconds, 2);
      results.verify_events_per_s = summary.events_per_s;
      results.verify_vs_readall_ratio = round(summary.events_per_s / results.audit_readall_events_per_s, 2);
      // CPU of this process (all its threads) per event: what the run cost, whatever else the machine did.
      results.verify_cpu_us_per_event = round((cpu.user + cpu.system) / summary.events, 1);
      results.verify_rss_before_mb = mb(rssBefore);
      results.verify_rss_mid_mb = mb(rssMid);
      results.verify_rss_end_mb = mb(rssEnd);
      results.verify_peak_rss_mb = mb(peak);
      log(
        `bench: audit verify --all: ${summary.events.toLocaleString('en')} events, ${summary.accounts.toLocaleString('en')} accounts in ` +
          `${summary.seconds.toFixed(2)} s = ${summary.events_per_s.toLocaleString('en')} events/s on ${summary.workers} workers ` +
          `(${results.verify_vs_readall_ratio}x raw readAll); peak RSS ${results.verify_peak_rss_mb} MB`,
      );
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
  const arg = (name: string) => {
    const index = process.argv.indexOf(name);
    return index >= 0 ? Number(process.argv[index + 1]) : undefined;
  };
  runAuditBench({ accounts: arg('--accounts'), eventsPerAccount: arg('--events-per-account'), workers: arg('--workers') }).then(
    (results) => process.stdout.write(`${JSON.stringify(results, null, 2)}\n`),
    (error) => {
      process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exit(1);
    },
  );
}
