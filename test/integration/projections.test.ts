/**
 * The projector: batches commit with their checkpoint (a crash in between changes nothing), failing
 * batches are retried and never skipped, a poison event stops only its projection and says why, two
 * writers of one checkpoint cannot double count, and one projector leads while another stands by.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { sql } from '../../src/adapters/postgres/pool.js';
import { createPostgresEventStore } from '../../src/adapters/postgres-event-store/event-store.js';
import { systemClock } from '../../src/core/clock.js';
import { type EventStore, formatPosition } from '../../src/core/event-store.js';
import { accountStreamId } from '../../src/ledger/index.js';
import { creditsProjection } from '../../projections/credits.js';
import { ProjectionReader } from '../../projections/reader.js';
import { ProjectorRunner } from '../../projections/runner.js';
import { loadActiveCheckpoints, loadCheckpoint } from '../../projections/store.js';
import { ProjectionWorker } from '../../projections/worker.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { LedgerDriver, silentLogger, transactionRow, userCreditsRow, waitForProjections } from './projections.harness.js';

let db: TestDatabase;
let store: EventStore;
const runners: ProjectorRunner[] = [];

beforeEach(async () => {
  db = await createTestDatabase();
  store = createPostgresEventStore({ pool: db.pool, pollIntervalMs: 50 });
});

afterEach(async () => {
  await Promise.all(runners.splice(0).map((runner) => runner.stop()));
  await store?.close();
  await db?.drop();
});

const runner = (options: Partial<ConstructorParameters<typeof ProjectorRunner>[0]> = {}) => {
  const created = new ProjectorRunner({
    pool: db.pool,
    eventStore: store,
    logger: silentLogger,
    lockRetryMs: 100,
    heartbeatMs: 200,
    backoffMs: { initial: 10, max: 50 },
    ...options,
  });
  runners.push(created);
  return created;
};

const eventually = async (check: () => Promise<boolean> | boolean, timeoutMs = 10_000, what = 'condition'): Promise<number> => {
  const started = Date.now();
  for (;;) {
    if (await check()) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
};

/** An account with history: grants, spends, a reservation and a refund. */
async function someHistory(driver: LedgerDriver, userId: string, spends = 8): Promise<void> {
  await driver.run(userId, { type: 'Grant', lot_id: `lot-${userId}`, kind: 'bonus', amount: 1000, reason: 'welcome' });
  for (let i = 0; i < spends; i++) {
    await driver.run(userId, { type: 'Spend', spend_id: `spend-${userId}-${i}`, amount: 7 + i, counts_api_call: true });
  }
  await driver.run(userId, { type: 'Reserve', reservation_id: `res-${userId}`, amount: 50 });
  await driver.run(userId, { type: 'RefundSpend', refund_id: `refund-${userId}`, spend_id: `spend-${userId}-0`, reason: 'sorry' });
}

async function expectCreditsMatch(driver: LedgerDriver, userId: string): Promise<void> {
  const state = driver.state(userId);
  const account = await db.pool.one(sql.type(userCreditsRow)`
    select user_id, balance, reserved, total_purchased, total_used, total_bonus, total_refunded, total_expired, total_adjusted,
      total_clawed_back from user_credits where user_id = ${userId}`);
  expect(account).toMatchObject({
    balance: state.balance,
    reserved: state.reserved,
    total_used: state.totals.spent,
    total_bonus: state.totals.granted,
    total_refunded: state.totals.refunded,
  });
  const rows = await db.pool.any(sql.type(transactionRow)`
    select id::text as id, user_id, type, amount, balance_before, balance_after, event_type
    from credit_transactions where user_id = ${userId}`);
  const expected = driver.appended.filter((a) => a.userId === userId && !['CreditsReserved', 'ReservationSettled', 'ReservationReleased', 'ReservationExpired', 'TierChanged'].includes(a.event.type));
  expect(rows.map((r) => r.id).sort()).toEqual(expected.map((a) => a.id).sort());
}

describe('batches and checkpoints', () => {
  it('a crash between applying a batch and committing its checkpoint changes nothing; the next projector carries on without double counting', async () => {
    const driver = new LedgerDriver(store);
    const userId = randomUUID();
    await someHistory(driver, userId, 12);

    // The first projector applies its second batch, then "dies" before the commit.
    const batchSizes: number[] = [];
    let reachedCrashPoint!: () => void;
    const atCrashPoint = new Promise<void>((resolve) => (reachedCrashPoint = resolve));
    let kill!: (error: Error) => void;
    const killed = new Promise<never>((_, reject) => (kill = reject));
    killed.catch(() => {});
    const doomed = runner({
      projections: [creditsProjection],
      batchSize: 4,
      hooks: {
        async beforeCommit({ events }) {
          batchSizes.push(events.length);
          if (batchSizes.length === 2) {
            reachedCrashPoint();
            await killed;
          }
        },
      },
    });
    try {
      await doomed.start();
      await atCrashPoint;

      // Its second batch is written but not committed: nobody else sees it.
      const committed = batchSizes[0] as number;
      const midway = await loadCheckpoint(db.pool, 'credits', 1);
      expect(midway?.eventsProcessed).toBe(committed);
      const visible = await db.pool.oneFirst(sql.type(z.object({ n: z.number() }))`select count(*)::int as n from credit_transactions`);
      expect(visible).toBe(committed);
    } finally {
      // Crash: the lock connection drops, the open transaction dies with the process.
      const crashing = doomed.crash();
      kill(new Error('process killed'));
      await crashing;
    }

    const successor = runner({ projections: [creditsProjection], batchSize: 4 });
    await successor.start();
    // The dead connection's advisory lock is released once the server has noticed it is gone: the
    // successor may first be a follower, which retries the lock every second.
    for (let attempt = 0; attempt < 50 && !successor.isLeader; attempt++) await new Promise((resolve) => setTimeout(resolve, 100));
    expect(successor.isLeader).toBe(true);
    await waitForProjections(db.pool, store, { target: driver.lastPosition, names: ['credits'] });
    await expectCreditsMatch(driver, userId);
    const checkpoint = await loadCheckpoint(db.pool, 'credits', 1);
    expect(checkpoint?.eventsProcessed).toBe(driver.appended.length);
  });

  it('a batch that fails transiently is retried with backoff until it commits, nothing skipped', async () => {
    const driver = new LedgerDriver(store);
    const userId = randomUUID();
    await someHistory(driver, userId);
    let failures = 0;
    const projector = runner({
      projections: [creditsProjection],
      batchSize: 3,
      hooks: {
        beforeCommit() {
          if (failures < 5) {
            failures++;
            throw Object.assign(new Error('could not serialize access'), { code: '40001' });
          }
        },
      },
    });
    await projector.start();
    await waitForProjections(db.pool, store, { target: driver.lastPosition, names: ['credits'] });
    expect(failures).toBe(5);
    await expectCreditsMatch(driver, userId);
  });

  it('two writers of one checkpoint (two leaders for a moment) cannot double count: the compare-and-set fences one out', async () => {
    const driver = new LedgerDriver(store);
    const users = [randomUUID(), randomUUID(), randomUUID()];
    const stop = new AbortController();
    const outcomes: string[] = [];
    const worker = () =>
      new ProjectionWorker({
        pool: db.pool,
        eventStore: store,
        definition: creditsProjection,
        generation: 1,
        status: 'running',
        logger: silentLogger,
        signal: stop.signal,
        batchSize: 5,
      });
    // Each "leader" keeps going after being fenced, like a runner would.
    const leader = async () => {
      while (!stop.signal.aborted) outcomes.push((await worker().run()).kind);
    };
    const running = [leader(), leader()];
    for (const userId of users) await someHistory(driver, userId, 10);
    await waitForProjections(db.pool, store, { target: driver.lastPosition, names: ['credits'] });
    stop.abort();
    await Promise.all(running);
    for (const userId of users) await expectCreditsMatch(driver, userId);
    expect((await loadCheckpoint(db.pool, 'credits', 1))?.eventsProcessed).toBe(driver.appended.length);
    expect(outcomes).toContain('fenced');
  });
});

describe('poison events', () => {
  it('an event that cannot be read stops its projection loudly (status failed, the reason), not the others', async () => {
    const driver = new LedgerDriver(store);
    const userId = randomUUID();
    await driver.run(userId, { type: 'Grant', lot_id: 'lot-1', kind: 'bonus', amount: 100, reason: 'welcome' });
    // A TierChanged the ledger could never have written (no such tier): only the tiers and activity projections read it.
    const poisonId = randomUUID();
    const poison = await store.appendToStream(
      accountStreamId(userId),
      [{ id: poisonId, type: 'TierChanged', data: { at: driver.now.toISOString(), tier: 'platinum', previous_tier: 'free', expires_at: null, reason: 'x', actor_id: null } }],
      { expectedRevision: 0n },
    );
    driver.states.get(userId)!.revision = 1n;
    await driver.run(userId, { type: 'Spend', spend_id: 'after-poison', amount: 30 });

    const logged: string[] = [];
    const logger = silentLogger.child({});
    logger.error = ((_obj: unknown, message?: string) => {
      logged.push(String(message));
    }) as typeof logger.error;
    const projector = runner({ logger, batchSize: 100, maxAttempts: 2 });
    await projector.start();
    await waitForProjections(db.pool, store, { target: driver.lastPosition, names: ['credits'] });
    await eventually(async () => (await loadActiveCheckpoints(db.pool)).filter((c) => c.status === 'failed').length === 2, 10_000, 'two failed projections');

    const checkpoints = Object.fromEntries((await loadActiveCheckpoints(db.pool)).map((c) => [c.name, c]));
    // credits never reads TierChanged: it carries on past the poison.
    expect(checkpoints.credits?.status).toBe('running');
    expect(checkpoints.credits?.position).toEqual(driver.lastPosition);
    expect(await db.pool.oneFirst(sql.type(z.object({ balance: z.bigint() }))`select balance from user_credits where user_id = ${userId}`)).toBe(70n);
    for (const name of ['tiers', 'activity']) {
      const failed = checkpoints[name]!;
      expect(failed.status).toBe('failed');
      expect(failed.failedEventId).toBe(poisonId);
      expect(failed.failedEventType).toBe('TierChanged');
      expect(failed.failedPosition).toBe(formatPosition(poison.position));
      expect(failed.error).toMatch(/tier/);
      // Everything before the poison event landed; nothing after it.
      expect(failed.eventsProcessed).toBe(1);
    }
    expect(await db.pool.oneFirst(sql.type(z.object({ n: z.number() }))`select count(*)::int as n from activity_logs`)).toBe(1);
    expect(logged.some((line) => /STOPPED on a poison event/.test(line))).toBe(true);

    // GET /admin/projections shows it (through the reader it is served from).
    const reader = new ProjectionReader({ pool: db.pool, eventStore: store, clock: systemClock });
    const statuses = await reader.statuses();
    const tiers = statuses.find((s) => s.name === 'tiers');
    expect(tiers).toMatchObject({ status: 'failed', error: { event_id: poisonId, event_type: 'TierChanged', position: formatPosition(poison.position) } });
    expect(tiers?.lag_events).toBe(2);
    expect(statuses.find((s) => s.name === 'credits')).toMatchObject({ status: 'running', lag_events: 0, lag_ms: 0, error: null });
    await reader.close();
  });

  it('a handler that keeps throwing on one event: the events before it commit, the projection fails on exactly that event, and a new leader retries it', async () => {
    const driver = new LedgerDriver(store);
    const userId = randomUUID();
    await someHistory(driver, userId, 6);
    const culprit = driver.appended[4]!;
    let broken = true;
    const hooks = {
      beforeCommit({ events }: { events: readonly { id: string }[] }) {
        if (broken && events.some((e) => e.id === culprit.id)) throw new Error(`cannot project ${culprit.id}`);
      },
    };
    const first = runner({ projections: [creditsProjection], batchSize: 50, maxAttempts: 2, hooks });
    await first.start();
    await eventually(async () => (await loadCheckpoint(db.pool, 'credits', 1))?.status === 'failed', 10_000, 'credits to fail');
    const failed = (await loadCheckpoint(db.pool, 'credits', 1))!;
    expect(failed.failedEventId).toBe(culprit.id);
    expect(failed.eventsProcessed).toBe(4);
    expect(failed.error).toContain(`cannot project ${culprit.id}`);
    expect(first.status().projections[0]).toMatchObject({ name: 'credits', state: 'failed' });

    // The fix is deployed: the next leader gives the failed projection another try and catches up.
    await first.stop();
    broken = false;
    const second = runner({ projections: [creditsProjection], hooks });
    await second.start();
    await waitForProjections(db.pool, store, { target: driver.lastPosition, names: ['credits'] });
    expect((await loadCheckpoint(db.pool, 'credits', 1))?.status).toBe('running');
    await expectCreditsMatch(driver, userId);
  });
});

describe('leader election', () => {
  it('exactly one of two projectors projects; the other takes over within seconds when the leader dies', async () => {
    const a = runner();
    const b = runner();
    await a.start();
    await b.start();
    expect([a.isLeader, b.isLeader]).toEqual([true, false]);

    const driver = new LedgerDriver(store);
    const userId = randomUUID();
    await someHistory(driver, userId, 3);
    await waitForProjections(db.pool, store, { target: driver.lastPosition });
    expect(a.status().projections.every((p) => p.state === 'running')).toBe(true);
    expect(b.status().projections.every((p) => p.state === 'stopped')).toBe(true);

    await a.crash();
    const takeover = await eventually(() => b.isLeader, 5_000, 'the follower to lead');
    expect(takeover).toBeLessThan(3_000);
    for (let i = 0; i < 5; i++) await driver.run(userId, { type: 'Spend', spend_id: `after-failover-${i}`, amount: 1 });
    await waitForProjections(db.pool, store, { target: driver.lastPosition });
    await expectCreditsMatch(driver, userId);
    expect(a.isLeader).toBe(false);
  });
});
