import { createWriteStream } from 'node:fs';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import cliProgress from 'cli-progress';
import { z } from 'zod';
import { sql } from '../../adapters/postgres/pool.js';
import { type ExportFormat, exportLines } from '../../audit/export.js';
import { CREDITS_PROJECTION, ProjectionLaggingError } from '../../audit/projection-wait.js';
import type { Mismatch } from '../../audit/read-models.js';
import { type AuditDeps, createAuditDeps, type VerifyResult, verifyAccount } from '../../audit/verify.js';
import { type VerifyAllFailure, verifyAll } from '../../audit/verify-all.js';
import type { AccountFigures } from '../../audit/verifier.js';
import { parsePosition } from '../../core/event-store.js';
import { type CliCommand, type CliContext, UsageError } from '../context.js';

/**
 * `audit verify --user ID | --all` and `audit export --format ndjson|csv` (API §12).
 *
 * verify exits 0 when every account verifies, 1 when any account's chain is broken or its replay
 * disagrees with itself or with the read models (each named with its first bad revision / field),
 * 3 when nothing failed but some accounts could not be compared because the projector lagged.
 */

export const EXIT_MISMATCH = 1;
export const EXIT_LAGGING = 3;

const table = (rows: readonly (readonly string[])[]): string[] => {
  const widths = rows[0]?.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length))) ?? [];
  return rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ').trimEnd());
};

const auditDeps = ({ deps }: CliContext): AuditDeps =>
  createAuditDeps(deps.eventStore, deps.pool, (target, timeoutMs) => deps.projections.waitFor([CREDITS_PROJECTION], target, timeoutMs));

const progressBar = (label: string) =>
  new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {percentage}% | {value}/{total} events | {speed} events/s | ETA {eta_formatted}`,
      hideCursor: true,
      stream: process.stderr,
      noTTYOutput: process.stderr.isTTY !== true,
      notTTYSchedule: 2000,
      etaBuffer: 100,
    },
    cliProgress.Presets.shades_classic,
  );

const describeMismatch = (m: Mismatch | null): string =>
  m === null ? '-' : m.problem === 'read_model_mismatch' ? m.detail : `${m.field} (${m.problem}): ${m.detail}`;

const FIGURES: readonly (keyof AccountFigures)[] = [
  'balance',
  'reserved',
  'available',
  'total_purchased',
  'total_used',
  'total_bonus',
  'total_refunded',
  'total_expired',
  'total_adjusted',
  'total_clawed_back',
  'last_event_id',
];

const show = (value: unknown): string => (value === null || value === undefined ? '-' : String(value));

/** One account: the comparison table, then the verdict. */
function printAccount(print: (line: string) => void, result: VerifyResult): void {
  print(`account ${result.user_id}: ${result.events} events, last revision ${result.revision}, last hash ${result.last_hash}`);
  const p = result.projected;
  const r = result.replayed;
  const rows: string[][] = [['figure', 'replayed (events)', 'read models', '']];
  for (const field of FIGURES) {
    rows.push([field, show(r[field]), show(p?.[field]), p && p[field] !== r[field] ? 'DIFFERS' : '']);
  }
  const pairs: [string, unknown, unknown][] = [
    ['transactions.count', r.transactions.count, p?.transactions.count],
    ['transactions.sum', r.transactions.sum, p?.transactions.sum],
    ['transactions.last_balance_after', r.transactions.last_balance_after, p?.transactions.last_balance_after],
    ['transactions.digest', r.transactions.digest.slice(0, 16), p?.transactions.digest.slice(0, 16)],
    ['lots.count', r.lots.count, p?.lots.count],
    ['lots.remaining', r.lots.remaining, p?.lots.remaining],
    ['lots.held', r.lots.held, p?.lots.held],
  ];
  for (const [name, replayed, projected] of pairs) rows.push([name, show(replayed), show(projected), p && replayed !== projected ? 'DIFFERS' : '']);
  for (const line of table(rows)) print(`  ${line}`);
  print(`  hash chain: ${result.hash_chain_ok ? 'ok' : 'BROKEN'}   matches: ${result.matches ? 'yes' : 'NO'}`);
  if (result.first_mismatch) {
    const m = result.first_mismatch;
    print(`  first mismatch${m.revision === null ? '' : ` at revision ${m.revision}`}: ${describeMismatch(m)}`);
  }
}

const uuid = z.uuid();

export const auditVerifyCommand: CliCommand = {
  name: 'audit verify',
  usage:
    'audit verify --user ID | --all [--workers N] [--events-only] [--json]\n' +
    '                                replay streams, check hash chains, compare with the read models (exit 1 on any mismatch)',
  options: {
    user: { type: 'string' },
    all: { type: 'boolean' },
    workers: { type: 'string' },
    'events-only': { type: 'boolean' },
    json: { type: 'boolean' },
  },
  async run(context, values) {
    const { print, deps } = context;
    const all = values.all === true;
    if (all === (values.user !== undefined)) throw new UsageError('give exactly one of --user ID and --all');
    const compareReadModels = values['events-only'] !== true;
    const audit = auditDeps(context);
    try {
      if (!all) {
        const userId = uuid.safeParse(values.user);
        if (!userId.success) throw new UsageError('--user must be a user id (UUID)');
        let result: VerifyResult;
        try {
          result = await verifyAccount(audit, userId.data.toLowerCase(), { compareReadModels, projectionWaitMs: 10_000 });
        } catch (error) {
          if (!(error instanceof ProjectionLaggingError)) throw error;
          print(`account ${userId.data}: not compared: ${error.message}`);
          return EXIT_LAGGING;
        }
        if (values.json === true) print(JSON.stringify(result, null, 2));
        else printAccount(print, result);
        return result.hash_chain_ok && result.matches ? 0 : EXIT_MISMATCH;
      }

      const workers = values.workers === undefined ? undefined : Number(values.workers);
      if (workers !== undefined && !(Number.isInteger(workers) && workers >= 0 && workers <= 64)) {
        throw new UsageError('--workers must be a whole number from 0 to 64');
      }
      const bar = progressBar('verify');
      const startedAt = Date.now();
      let started = false;
      let done = 0;
      const summary = await verifyAll(audit, {
        workers,
        compareReadModels,
        onStart: ({ events }) => {
          started = true;
          bar.start(Math.max(1, events), 0, { speed: '0' });
        },
        onProgress: (events) => {
          done += events;
          if (started) bar.update(done, { speed: Math.round(done / Math.max(0.001, (Date.now() - startedAt) / 1000)).toLocaleString('en') });
        },
      });
      if (started) {
        bar.update(done);
        bar.stop();
      }
      if (values.json === true) {
        print(JSON.stringify(summary, null, 2));
      } else {
        print(
          `audit verify --all: ${summary.accounts} accounts, ${summary.events} events in ${summary.seconds.toFixed(1)} s ` +
            `(${summary.events_per_s.toLocaleString('en')} events/s, ${summary.mode}, ${summary.workers} workers)`,
        );
        for (const line of table([
          ['ok', String(summary.ok)],
          ['failed', String(summary.failed)],
          ['lagging', String(summary.lagging)],
          ['rechecked', String(summary.rechecked)],
        ])) {
          print(`  ${line}`);
        }
        if (summary.failures.length > 0) {
          print('');
          const rows: string[][] = [['account', 'status', 'events', 'chain', 'matches', 'first bad revision', 'what']];
          for (const failure of summary.failures) rows.push(failureRow(failure));
          for (const line of table(rows)) print(line);
          if (summary.failures_truncated) print(`(only the first ${summary.failures.length} failing accounts are listed)`);
        }
      }
      if (summary.failed > 0) return EXIT_MISMATCH;
      return summary.lagging > 0 ? EXIT_LAGGING : 0;
    } finally {
      await deps.projections.close();
    }
  },
};

const failureRow = (failure: VerifyAllFailure): string[] => {
  const r = failure.result;
  const m = r?.first_mismatch ?? null;
  return [
    failure.user_id,
    failure.status,
    show(r?.events),
    r ? (r.hash_chain_ok ? 'ok' : 'BROKEN') : '-',
    r ? (r.matches ? 'yes' : 'NO') : '-',
    show(m?.revision),
    m ? describeMismatch(m) : failure.detail,
  ];
};

const countRow = z.object({ events: z.coerce.number().int() });

export const auditExportCommand: CliCommand = {
  name: 'audit export',
  usage:
    'audit export --format ndjson|csv [--from-position P] [--output FILE]\n' +
    '                                every ledger event in position order (stdout unless --output)',
  options: { format: { type: 'string' }, 'from-position': { type: 'string' }, output: { type: 'string' } },
  async run({ deps }, values) {
    const format = values.format ?? 'ndjson';
    if (format !== 'ndjson' && format !== 'csv') throw new UsageError('--format must be ndjson or csv');
    const from = values['from-position'];
    const fromPosition = typeof from === 'string' ? parsePosition(from) : undefined;
    if (fromPosition === null) throw new UsageError('--from-position must be a position (as printed in an export)');
    // Progress goes to stderr (stdout carries the export); the total is known on the Postgres store only.
    const total =
      deps.eventStore.name === 'postgres'
        ? (await deps.pool.one(sql.type(countRow)`select count(*) as events from events where starts_with(stream_id, 'account-')`)).events
        : 0;
    const bar = progressBar('export');
    bar.start(Math.max(1, total), 0, { speed: '-' });
    let exported = 0;
    const lines = exportLines(deps.eventStore, {
      format: format as ExportFormat,
      fromPosition,
      onEvent: () => {
        exported += 1;
        if (exported % 1000 === 0) bar.update(exported);
      },
    });
    const output: Writable = typeof values.output === 'string' ? createWriteStream(values.output) : process.stdout;
    try {
      await pipeline(Readable.from(lines), output, { end: output !== process.stdout });
    } finally {
      bar.update(exported);
      bar.stop();
    }
    process.stderr.write(`exported ${exported} events (${format})\n`);
  },
};
