/**
 * Rebuilds of different projections at the same time (each holds only its own rebuild lock), while
 * the leader keeps projecting and writes keep coming: every projection switches to its new generation,
 * and each rebuilt generation equals, row for row, the retired one brought up to the same point
 * incrementally — nothing skipped or applied twice by the concurrent replays and switches.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createLogBatches } from '../../src/activity/log-batches.js';
import { createPostgresEventStore } from '../../src/adapters/postgres-event-store/event-store.js';
import { comparePositions, type EventStore } from '../../src/core/event-store.js';
import { schemaOf } from '../../projections/definition.js';
import { PROJECTIONS } from '../../projections/index.js';
import { rebuildProjection } from '../../projections/rebuild.js';
import { ProjectorRunner } from '../../projections/runner.js';
import { ProjectionWorker } from '../../projections/worker.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { dumpProjectionTables, LedgerDriver, silentLogger, waitForProjections } from './projections.harness.js';

let db: TestDatabase;
let store: EventStore;
let leader: ProjectorRunner;

beforeAll(async () => {
  db = await createTestDatabase({ maxPoolSize: 20 });
  store = createPostgresEventStore({ pool: db.pool, pollIntervalMs: 50 });
  leader = new ProjectorRunner({ pool: db.pool, eventStore: store, logger: silentLogger, batchSize: 20 });
  await leader.start();
});

afterAll(async () => {
  await leader?.stop();
  await store?.close();
  await db?.drop();
});

it('three rebuilds at once, while writes continue, each equal incremental projection row for row', async () => {
  const driver = new LedgerDriver(store);
  const logBatches = createLogBatches({ pool: db.pool, eventStore: store, clock: { now: () => driver.now } });
  const users = Array.from({ length: 3 }, () => randomUUID());
  const round = async (n: number) => {
    for (const userId of users) {
      const tag = `${userId}-${n}`;
      await driver.run(userId, { type: 'Grant', lot_id: `lot-${tag}`, kind: 'bonus', amount: 30, reason: 'r', expires_at: new Date(driver.nowMs + 90_000).toISOString() });
      await driver.run(userId, { type: 'Spend', spend_id: `spend-${tag}`, amount: 7, counts_api_call: true });
      await driver.run(userId, { type: 'Reserve', reservation_id: `res-${tag}`, amount: 5 });
      if (n % 2 === 0) await driver.run(userId, { type: 'Settle', reservation_id: `res-${tag}`, spend_id: `settle-${tag}`, amount: 2 });
      if (n % 3 === 0) await driver.run(userId, { type: 'RefundSpend', refund_id: `refund-${tag}`, spend_id: `spend-${tag}`, reason: 'r' });
      if (n % 5 === 0) await driver.run(userId, { type: 'ChangeTier', tier: n % 10 === 0 ? 'pro' : 'basic', reason: 'r' });
      await driver.run(userId, { type: 'ExpireDue' });
      await logBatches.record({ userId, batchId: `b-${tag}`, entries: [{ action: 'a' }, { action: 'b', metadata: { n } }], ip: null, userAgent: null });
    }
    driver.advance(61_000);
  };
  for (let n = 0; n < 8; n++) await round(n);

  let writing = true;
  let rounds = 8;
  const writer = (async () => {
    while (writing) await round(rounds++);
  })();
  const results = await Promise.all(
    PROJECTIONS.map((definition) => rebuildProjection({ pool: db.pool, eventStore: store, logger: silentLogger, definition, batchSize: 15 })),
  );
  await new Promise((resolve) => setTimeout(resolve, 200));
  writing = false;
  await writer;
  expect(rounds).toBeGreaterThan(8);
  expect(results.map((r) => [r.name, r.previousGeneration, r.generation])).toEqual(PROJECTIONS.map((p) => [p.name, 1, 2]));
  await waitForProjections(db.pool, store, { target: driver.lastPosition });

  const stop = new AbortController();
  await Promise.all(
    PROJECTIONS.map(async (definition) => {
      const worker = new ProjectionWorker({
        pool: db.pool,
        eventStore: store,
        definition,
        generation: 1,
        status: 'retired',
        logger: silentLogger,
        signal: stop.signal,
        onProgress: (position, idle) => idle && position !== null && comparePositions(position, driver.lastPosition!) >= 0,
      });
      expect((await worker.run()).kind).toBe('stopped');
    }),
  );
  const incremental = await dumpProjectionTables(db.pool, { credits: schemaOf('credits', 1), activity: schemaOf('activity', 1), tiers: schemaOf('tiers', 1) });
  const served = await dumpProjectionTables(db.pool, { credits: 'public', activity: 'public', tiers: 'public' });
  for (const table of Object.keys(incremental)) {
    expect(served[table]?.length, table).toBeGreaterThan(0);
    expect(served[table], table).toEqual(incremental[table]);
  }
  for (const userId of users) {
    const state = driver.state(userId);
    expect(served.user_credits?.some((row) => row.includes(userId) && row.includes(`,${state.balance},${state.reserved},`))).toBe(true);
  }
});
