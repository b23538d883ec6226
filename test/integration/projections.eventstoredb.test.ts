/**
 * The projector only talks to the event-store port: the same runner, read models and rebuild over the
 * EventStoreDB adapter (against the in-process gRPC double), with the read models in Postgres.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { z } from 'zod';
import { createLogBatches } from '../../src/activity/log-batches.js';
import { sql } from '../../src/adapters/postgres/pool.js';
import { createEventStoreDbEventStore } from '../../src/adapters/eventstoredb/event-store.js';
import { systemClock } from '../../src/core/clock.js';
import type { EventStore } from '../../src/core/event-store.js';
import { PROJECTIONS } from '../../projections/index.js';
import { ProjectionReader } from '../../projections/reader.js';
import { rebuildProjection } from '../../projections/rebuild.js';
import { ProjectorRunner } from '../../projections/runner.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { type EsdbDouble, startEsdbDouble } from '../support/esdb-double/index.js';
import { dumpProjectionTables, LedgerDriver, silentLogger, userCreditsRow, waitForProjections } from './projections.harness.js';

let db: TestDatabase;
let double: EsdbDouble;
let store: EventStore;
let runner: ProjectorRunner;

beforeAll(async () => {
  db = await createTestDatabase();
  double = await startEsdbDouble();
  store = createEventStoreDbEventStore({ connectionString: double.connectionString, logger: { debug: () => undefined, warn: () => undefined } });
  runner = new ProjectorRunner({ pool: db.pool, eventStore: store, logger: silentLogger, batchSize: 10 });
  await runner.start();
});

afterAll(async () => {
  await runner?.stop();
  await store?.close();
  await double?.stop();
  await db?.drop();
});

it('projects ledger events and log batches from EventStoreDB, lags and rebuilds the same way', async () => {
  const driver = new LedgerDriver(store);
  const users = [randomUUID(), randomUUID()];
  const logBatches = createLogBatches({ pool: db.pool, eventStore: store, clock: systemClock });
  for (const userId of users) {
    await driver.run(userId, { type: 'Grant', lot_id: `lot-${userId}`, kind: 'bonus', amount: 300, reason: 'r', expires_at: new Date(driver.nowMs + 86_400_000).toISOString() });
    for (let i = 0; i < 12; i++) await driver.run(userId, { type: 'Spend', spend_id: `s-${userId}-${i}`, amount: 5 + i, counts_api_call: true });
    await driver.run(userId, { type: 'Reserve', reservation_id: `r-${userId}`, amount: 40 });
    await driver.run(userId, { type: 'ChangeTier', tier: 'basic', reason: 'r' });
    const first = await logBatches.record({ userId, batchId: 'b1', entries: [{ action: 'opened' }, { action: 'closed' }], ip: null, userAgent: null });
    const again = await logBatches.record({ userId, batchId: 'b1', entries: [{ action: 'opened' }, { action: 'closed' }], ip: null, userAgent: null });
    expect(again).toEqual({ ...first, replayed: true });
  }
  double.writeSystemEvent();
  const head = await store.headPosition();
  await waitForProjections(db.pool, store, { target: head });

  for (const userId of users) {
    const state = driver.state(userId);
    const account = await db.pool.one(sql.type(userCreditsRow)`
      select user_id, balance, reserved, total_purchased, total_used, total_bonus, total_refunded, total_expired,
        total_adjusted, total_clawed_back from user_credits where user_id = ${userId}`);
    expect(account).toMatchObject({ balance: state.balance, reserved: state.reserved, total_used: state.totals.spent });
    const activity = await db.pool.oneFirst(sql.type(z.object({ n: z.number() }))`select count(*)::int as n from activity_logs where user_id = ${userId}`);
    expect(activity).toBe(driver.appended.filter((a) => a.userId === userId).length + 2);
  }

  const reader = new ProjectionReader({ pool: db.pool, eventStore: store, clock: systemClock });
  const statuses = await reader.statuses();
  expect(statuses.map((s) => [s.name, s.status, s.lag_events])).toEqual([
    ['activity', 'running', 0],
    ['credits', 'running', 0],
    ['tiers', 'running', 0],
  ]);
  await reader.close();

  const incremental = await dumpProjectionTables(db.pool, { credits: 'public', activity: 'public', tiers: 'public' });
  for (const definition of PROJECTIONS) {
    const result = await rebuildProjection({ pool: db.pool, eventStore: store, logger: silentLogger, definition, batchSize: 7 });
    expect(result.generation).toBe(2);
  }
  expect(await dumpProjectionTables(db.pool, { credits: 'public', activity: 'public', tiers: 'public' })).toEqual(incremental);
});
