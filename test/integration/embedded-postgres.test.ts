import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedDatabase, startEmbeddedPostgres } from '../../src/adapters/postgres/embedded.js';

/**
 * The embedded server shared by several processes on one DATA_DIR (the service, a second service, the
 * CLI): a Ctrl-C meant for one of them must not reach Postgres, and none may stop the server while
 * another still uses it.
 */

let dataDir: string;
const started: EmbeddedDatabase[] = [];

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'ledger-embedded-'));
});
afterAll(async () => {
  for (const db of started) await db.stop().catch(() => {});
  const pid = await postmasterPid();
  if (pid !== null) {
    process.kill(pid, 'SIGINT');
    while (existsSync(path.join(dataDir, 'pg', 'postmaster.pid'))) await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await rm(dataDir, { recursive: true, force: true });
});

const postmasterPid = async (): Promise<number | null> => {
  const file = path.join(dataDir, 'pg', 'postmaster.pid');
  if (!existsSync(file)) return null;
  return Number((await readFile(file, 'utf8')).split('\n')[0]);
};

/** Process group of a process (Linux /proc; field 5 of stat, after the parenthesised command). */
const processGroup = async (pid: number | 'self'): Promise<number> => {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
};

const canConnect = async (url: string): Promise<boolean> => {
  const client = new pg.Client({ connectionString: url });
  try {
    await client.connect();
    await client.query('select 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
};

describe('embedded Postgres shared by several processes', () => {
  it('runs the server outside our process group, so a terminal Ctrl-C reaches only the service', async () => {
    const first = await startEmbeddedPostgres({ dataDir, detached: true });
    started.push(first);
    expect(first.owned).toBe(true);
    const pid = await postmasterPid();
    expect(pid).not.toBeNull();
    if (process.platform === 'linux') {
      expect(await processGroup(pid as number)).not.toBe(await processGroup('self'));
    }
    expect(await canConnect(first.url)).toBe(true);
  });

  it('the last process out stops it; one still in use by another process is left running', async () => {
    const [first] = started as [EmbeddedDatabase];
    const second = await startEmbeddedPostgres({ dataDir, detached: true });
    started.push(second);
    expect(second.owned).toBe(false);
    expect(second.url).toBe(first.url);

    // The second process still has a connection open: the owner's shutdown must not pull it away.
    const client = new pg.Client({ connectionString: second.url });
    await client.connect();
    try {
      await first.stop({ onlyIfUnused: true });
      expect((await client.query<{ one: number }>('select 1 as one')).rows[0]?.one).toBe(1);
    } finally {
      await client.end();
    }

    // The second process goes last: it stops the server it did not start.
    await second.stop({ onlyIfUnused: true });
    expect(await postmasterPid()).toBeNull();
    expect(await canConnect(second.url)).toBe(false);

    // And the next process starts it again on the same data.
    const third = await startEmbeddedPostgres({ dataDir, detached: true });
    started.push(third);
    expect(third.owned).toBe(true);
    expect(await canConnect(third.url)).toBe(true);
    await third.stop();
    expect(await postmasterPid()).toBeNull();
  });
});
