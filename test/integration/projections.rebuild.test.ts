/**
 * Rebuild without downtime: a new generation replayed from position zero, while the old one keeps
 * serving and writes keep coming, switched in atomically — and row for row equal to what incremental
 * projection produced.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createLogBatches } from '../../src/activity/log-batches.js';
import { recordActivity } from '../../src/activity/record.js';
import { userSignedIn } from '../../src/activity/events.js';
import { sql } from '../../src/adapters/postgres/pool.js';
import { createPostgresEventStore } from '../../src/adapters/postgres-event-store/event-store.js';
import { comparePositions, type EventStore } from '../../src/core/event-store.js';
import { schemaOf } from '../../projections/definition.js';
import { PROJECTIONS } from '../../projections/index.js';
import { RebuildError, type RebuildProgress, rebuildProjection } from '../../projections/rebuild.js';
import { ProjectorRunner } from '../../projections/runner.js';
import { loadCheckpoint } from '../../projections/store.js';
import { ProjectionWorker } from '../../projections/worker.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { dumpProjectionTables, LedgerDriver, silentLogger, userCreditsRow, waitForProjections } from './projections.harness.js';

let db: TestDatabase;
let store: EventStore;
let leader: ProjectorRunner;

beforeAll(async () => {
  db = await createTestDatabase({ maxPoolSize: 20 });
  store = createPostgresEventStore({ pool: db.pool, pollIntervalMs: 50 });
  leader = new ProjectorRunner({ pool: db.pool, eventStore: store, logger: silentLogger, batchSize: 50 });
  await leader.start();
});

afterAll(async () => {
  await leader?.stop();
  await store?.close();
  await db?.drop();
});

const activeGeneration = (name: string) =>
  db.pool.oneFirst(sql.type(z.object({ g: z.number().int() }))`select active_generation as g from projections where name = ${name}`);

/** One round of varied traffic for a user: ledger commands, a launcher log batch, a sign-in. */
async function traffic(driver: LedgerDriver, logBatches: ReturnType<typeof createLogBatches>, userId: string, round: number): Promise<void> {
  const tag = `${userId}-${round}`;
  await driver.run(userId, { type: 'Grant', lot_id: `lot-${tag}`, kind: 'promotional', amount: 40, reason: 'r', expires_at: new Date(driver.nowMs + 3_600_000).toISOString() });
  await driver.run(userId, { type: 'Spend', spend_id: `spend-${tag}`, amount: 15, counts_api_call: true, metadata: { round } });
  await driver.run(userId, { type: 'Reserve', reservation_id: `res-${tag}`, amount: 10 });
  await driver.run(userId, { type: 'Settle', reservation_id: `res-${tag}`, spend_id: `settle-${tag}`, amount: 4 });
  if (round % 3 === 0) await driver.run(userId, { type: 'RefundSpend', refund_id: `refund-${tag}`, spend_id: `spend-${tag}`, reason: 'r' });
  if (round % 4 === 0) await driver.run(userId, { type: 'ChangeTier', tier: round % 8 === 0 ? 'pro' : 'basic', reason: 'r' });
  await logBatches.record({
    userId,
    batchId: `batch-${tag}`,
    entries: [{ action: 'flow_opened', resource_type: 'flow', resource_id: tag }, { action: 'flow_saved', metadata: { round } }],
    ip: '198.51.100.7',
    userAgent: 'launcher/2.0',
  });
  await recordActivity(store, userId, userSignedIn(randomUUID(), { at: driver.now, method: 'google', ip: null, user_agent: null, device_info: null }));
  driver.advance(61_000);
}

describe('projections rebuild', () => {
  it('replays into a new generation while the old one serves and writes continue, switches atomically, and equals incremental projection row for row', async () => {
    const driver = new LedgerDriver(store);
    const logBatches = createLogBatches({ pool: db.pool, eventStore: store, clock: { now: () => driver.now } });
    const users = Array.from({ length: 4 }, () => randomUUID());
    for (let round = 0; round < 12; round++) for (const userId of users) await traffic(driver, logBatches, userId, round);
    await waitForProjections(db.pool, store, { target: driver.lastPosition });
    const before = await db.pool.any(sql.type(userCreditsRow.pick({ user_id: true, balance: true }))`select user_id, balance from user_credits order by user_id`);

    // Writes keep coming during the rebuild.
    let writing = true;
    let rounds = 12;
    const writer = (async () => {
      while (writing) {
        for (const userId of users) await traffic(driver, logBatches, userId, rounds);
        rounds++;
      }
    })();

    const progress: RebuildProgress[] = [];
    const servedDuringRebuild: Promise<number>[] = [];
    const results = [];
    for (const definition of PROJECTIONS) {
      const result = await rebuildProjection({
        pool: db.pool,
        eventStore: store,
        logger: silentLogger,
        definition,
        batchSize: 25,
        onProgress: (p) => {
          progress.push(p);
          // While replaying, the API still reads generation 1.
          if (p.remaining > 100) servedDuringRebuild.push(activeGeneration(definition.name));
        },
      });
      results.push(result);
      expect(result.generation).toBe(2);
      expect(result.previousGeneration).toBe(1);
      expect(await activeGeneration(definition.name)).toBe(2);
    }
    expect(servedDuringRebuild.length).toBeGreaterThan(0);
    expect(new Set(await Promise.all(servedDuringRebuild))).toEqual(new Set([1]));
    expect(progress.some((p) => p.processed > 0 && p.remaining > 0 && p.eventsPerSecond > 0)).toBe(true);
    expect(results.every((r) => r.events > 0)).toBe(true);

    // More writes after the switch land in the new generation (the leader moved over).
    await new Promise((resolve) => setTimeout(resolve, 200));
    writing = false;
    await writer;
    expect(rounds).toBeGreaterThan(12);
    await waitForProjections(db.pool, store, { target: driver.lastPosition });
    expect(leader.status().projections.map((p) => [p.name, p.generation])).toEqual(PROJECTIONS.map((p) => [p.name, 2]));

    // Bring the retired generation up to the same point incrementally, then compare the two, row for row.
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
    const rebuilt = await dumpProjectionTables(db.pool, { credits: schemaOf('credits', 2), activity: schemaOf('activity', 2), tiers: schemaOf('tiers', 2) });
    const served = await dumpProjectionTables(db.pool, { credits: 'public', activity: 'public', tiers: 'public' });
    for (const table of Object.keys(incremental)) {
      expect(rebuilt[table]?.length, table).toBeGreaterThan(0);
      expect(rebuilt[table], table).toEqual(incremental[table]);
      expect(served[table], table).toEqual(rebuilt[table]);
    }
    // And both equal the decider.
    for (const userId of users) {
      const balance = await db.pool.oneFirst(sql.type(z.object({ balance: z.bigint() }))`select balance from user_credits where user_id = ${userId}`);
      expect(Number(balance)).toBe(driver.state(userId).balance);
    }
    expect(before.length).toBe(users.length);
  });

  it('refuses a second rebuild of the same projection while one runs, and drops unserved generations next time', async () => {
    const definition = PROJECTIONS.find((p) => p.name === 'tiers')!;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const first = rebuildProjection({
      pool: db.pool,
      eventStore: store,
      logger: silentLogger,
      definition,
      batchSize: 10,
      hooks: { beforeCommit: () => gate },
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    await expect(rebuildProjection({ pool: db.pool, eventStore: store, logger: silentLogger, definition })).rejects.toThrow(RebuildError);
    release();
    const result = await first;
    expect(result.generation).toBe(3);
    const schemas = await db.pool.anyFirst(sql.type(z.object({ s: z.string() }))`
      select nspname as s from pg_namespace where nspname like 'proj_tiers_g%' order by 1`);
    // g1 was dropped when g3 started (retired before); g2 was served until g3 took over.
    expect(schemas).toEqual(['proj_tiers_g2', 'proj_tiers_g3']);
  });

  it('the switch brings the new generation up to the served one inside its transaction (never a step back)', async () => {
    const definition = PROJECTIONS.find((p) => p.name === 'credits')!;
    const served = await loadCheckpoint(db.pool, 'credits', await activeGeneration('credits'));
    // Switch as soon as possible: after its first small batch the replay is far behind the served generation.
    const result = await rebuildProjection({ pool: db.pool, eventStore: store, logger: silentLogger, definition, batchSize: 10, switchWithinEvents: 1_000_000 });
    expect(result.appliedAtSwitch).toBeGreaterThan(0);
    expect(result.events).toBeGreaterThanOrEqual(served?.eventsProcessed ?? 0);
    expect(comparePositions(result.position!, served!.position!)).toBeGreaterThanOrEqual(0);
    const previous = result.previousGeneration;
    const dump = (g: number) => dumpProjectionTables(db.pool, { credits: schemaOf('credits', g), activity: 'public', tiers: 'public' });
    const [old, rebuilt] = await Promise.all([dump(previous), dump(result.generation)]);
    expect(rebuilt.credit_transactions).toEqual(old.credit_transactions);
    expect(rebuilt.user_credits).toEqual(old.user_credits);
    expect(rebuilt.credit_lots).toEqual(old.credit_lots);
  });
});
