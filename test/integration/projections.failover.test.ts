/**
 * Two `npm run projector` processes on one database: exactly one leads; when it is killed (SIGKILL:
 * no cleanup, Postgres drops its session and with it the lock) the other takes over within seconds
 * and the read models carry on without a gap or a double count.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { z } from 'zod';
import { sql } from '../../src/adapters/postgres/pool.js';
import { createPostgresEventStore } from '../../src/adapters/postgres-event-store/event-store.js';
import type { EventStore } from '../../src/core/event-store.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { LedgerDriver, waitForProjections } from './projections.harness.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

interface Projector {
  readonly child: ChildProcess;
  readonly messages: string[];
  exited: boolean;
}

let db: TestDatabase;
let store: EventStore;
const projectors: Projector[] = [];

const start = (): Projector => {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/projector-main.ts'], {
    cwd: root,
    env: { ...process.env, DATABASE_URL: db.url, NODE_ENV: 'test', LOG_LEVEL: 'info', EVENTSTORE_URL: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const projector: Projector = { child, messages: [], exited: false };
  let buffer = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    buffer += chunk.toString('utf8');
    let newline = buffer.indexOf('\n');
    while (newline >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      try {
        projector.messages.push(String(JSON.parse(line).msg));
      } catch {
        projector.messages.push(line);
      }
      newline = buffer.indexOf('\n');
    }
  });
  child.stderr?.on('data', (chunk: Buffer) => projector.messages.push(chunk.toString('utf8')));
  child.on('exit', () => {
    projector.exited = true;
  });
  projectors.push(projector);
  return projector;
};

const leads = (p: Projector) => p.messages.filter((m) => m === 'projector: leading' || m === 'projector: started, leading').length > 0;
const started = (p: Projector) => p.messages.some((m) => m.startsWith('projector: started'));

const eventually = async (check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<number> => {
  const begin = Date.now();
  for (;;) {
    if (await check()) return Date.now() - begin;
    if (Date.now() - begin > timeoutMs) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(projectors.map((p) => p.messages))}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
};

beforeAll(async () => {
  db = await createTestDatabase();
  store = createPostgresEventStore({ pool: db.pool });
});

afterAll(async () => {
  for (const p of projectors) {
    if (!p.exited) {
      p.child.kill('SIGTERM');
      await eventually(() => p.exited, 15_000, 'a projector to exit').catch(() => p.child.kill('SIGKILL'));
    }
  }
  await store?.close();
  await db?.drop();
});

it('two projector processes: one leads, the other takes over within seconds when the leader is killed', async () => {
  const first = start();
  await eventually(() => started(first), 30_000, 'the first projector to start');
  const second = start();
  await eventually(() => started(second), 30_000, 'the second projector to start');
  expect([leads(first), leads(second)]).toEqual([true, false]);

  const driver = new LedgerDriver(store);
  const userId = randomUUID();
  await driver.run(userId, { type: 'Grant', lot_id: 'lot', kind: 'bonus', amount: 500, reason: 'r' });
  for (let i = 0; i < 10; i++) await driver.run(userId, { type: 'Spend', spend_id: `s-${i}`, amount: 3 });
  await waitForProjections(db.pool, store, { target: driver.lastPosition });

  first.child.kill('SIGKILL');
  const takeover = await eventually(() => leads(second), 10_000, 'the second projector to lead');
  expect(takeover).toBeLessThan(5_000);

  for (let i = 10; i < 20; i++) await driver.run(userId, { type: 'Spend', spend_id: `s-${i}`, amount: 3 });
  await waitForProjections(db.pool, store, { target: driver.lastPosition });
  const account = await db.pool.one(sql.type(z.object({ balance: z.bigint(), total_used: z.bigint() }))`
    select balance, total_used from user_credits where user_id = ${userId}`);
  expect(account).toEqual({ balance: 440n, total_used: 60n });
  const rows = await db.pool.oneFirst(sql.type(z.object({ n: z.number() }))`select count(*)::int as n from credit_transactions where user_id = ${userId}`);
  expect(rows).toBe(21);
}, 90_000);
