/**
 * Property: for random sequences of ledger commands (decided by the real decider, appended to the real
 * Postgres event store), every read model equals what the events imply — balance, reserved, totals,
 * lots, statement rows with balance before/after, tier and API-call usage, one activity row per event —
 * compared with the state the real `evolve` folds from the same events.
 */
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { sql } from '../../src/adapters/postgres/pool.js';
import { createPostgresEventStore } from '../../src/adapters/postgres-event-store/event-store.js';
import type { EventStore } from '../../src/core/event-store.js';
import { LEDGER_EVENT_TYPES, type LedgerCommand, type LedgerEvent, type TierName } from '../../src/ledger/index.js';
import { ProjectorRunner } from '../../projections/runner.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import {
  LedgerDriver,
  lotRow,
  silentLogger,
  tierRow,
  transactionRow,
  userCreditsRow,
  waitForProjections,
} from './projections.harness.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

type Step =
  | { kind: 'grant'; user: number; amount: number; expiresIn: number | null; priority: number; grantKind: 'bonus' | 'promotional' | 'compensation' }
  | { kind: 'purchase'; user: number; credits: number; expiresIn: number | null }
  | { kind: 'spend'; user: number; amount: number; countsCall: boolean }
  | { kind: 'reserve'; user: number; amount: number; ttl: number }
  | { kind: 'settle'; user: number; pick: number; fraction: number }
  | { kind: 'release'; user: number; pick: number }
  | { kind: 'refund'; user: number; pick: number; partial: number | null }
  | { kind: 'adjust'; user: number; amount: number }
  | { kind: 'expireDue'; user: number }
  | { kind: 'refundPurchase'; user: number; pick: number }
  | { kind: 'tier'; user: number; tier: TierName; expiresIn: number | null }
  | { kind: 'advance'; ms: number };

const USERS = 3;
const user = fc.integer({ min: 0, max: USERS - 1 });
const expiresIn = fc.option(fc.integer({ min: MINUTE, max: 3 * 24 * HOUR }), { nil: null });

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('grant' as const), user, amount: fc.integer({ min: 1, max: 500 }), expiresIn, priority: fc.integer({ min: 0, max: 2 }), grantKind: fc.constantFrom('bonus' as const, 'promotional' as const, 'compensation' as const) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('purchase' as const), user, credits: fc.integer({ min: 1, max: 1000 }), expiresIn }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('spend' as const), user, amount: fc.integer({ min: 1, max: 120 }), countsCall: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('reserve' as const), user, amount: fc.integer({ min: 1, max: 100 }), ttl: fc.integer({ min: 60, max: 3600 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('settle' as const), user, pick: fc.nat(), fraction: fc.double({ min: 0, max: 1, noNaN: true }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('release' as const), user, pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('refund' as const), user, pick: fc.nat(), partial: fc.option(fc.integer({ min: 1, max: 150 }), { nil: null }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('adjust' as const), user, amount: fc.integer({ min: -200, max: 200 }).filter((n) => n !== 0) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('expireDue' as const), user }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('refundPurchase' as const), user, pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('tier' as const), user, tier: fc.constantFrom<TierName>('free', 'basic', 'pro', 'enterprise'), expiresIn }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: MINUTE, max: 2 * 24 * HOUR }) }) },
);

/** Turns a generated step into a decider command against the driver's current state (null: nothing to do). */
const commandOf = (driver: LedgerDriver, userId: string, s: Exclude<Step, { kind: 'advance' }>, seq: number): LedgerCommand | null => {
  const state = driver.state(userId);
  const at = (ms: number | null) => (ms === null ? null : new Date(driver.nowMs + ms).toISOString());
  const id = (prefix: string) => `${prefix}-${seq}`;
  const pick = <T>(items: readonly T[], index: number): T | null => (items.length === 0 ? null : (items[index % items.length] as T));
  switch (s.kind) {
    case 'grant':
      return { type: 'Grant', lot_id: id('lot'), kind: s.grantKind, amount: s.amount, reason: 'property', expires_at: at(s.expiresIn), priority: s.priority };
    case 'purchase':
      return {
        type: 'Purchase',
        purchase_id: id('purchase'),
        lot_id: id('plot'),
        payment_id: id('pi'),
        package_id: 'starter',
        credits: s.credits,
        amount_cents: 500,
        currency: 'usd',
        provider_event_id: id('evt'),
        expires_at: at(s.expiresIn),
      };
    case 'spend':
      return { type: 'Spend', spend_id: id('spend'), amount: s.amount, counts_api_call: s.countsCall, description: `spend ${seq}`, metadata: { model: 'gpt-4', seq } };
    case 'reserve':
      return { type: 'Reserve', reservation_id: id('res'), amount: s.amount, ttl_seconds: s.ttl };
    case 'settle': {
      const reservation = pick([...state.open_reservations.values()], s.pick);
      if (!reservation) return null;
      return { type: 'Settle', reservation_id: reservation.reservation_id, spend_id: id('settle'), amount: Math.floor(reservation.held * s.fraction) };
    }
    case 'release': {
      const reservation = pick([...state.open_reservations.values()], s.pick);
      return reservation ? { type: 'Release', reservation_id: reservation.reservation_id } : null;
    }
    case 'refund': {
      const spend = pick([...state.spends.values()], s.pick);
      if (!spend) return null;
      return { type: 'RefundSpend', refund_id: id('refund'), spend_id: spend.spend_id, ...(s.partial !== null ? { amount: s.partial } : {}), reason: 'property' };
    }
    case 'adjust':
      return { type: 'Adjust', adjustment_id: id('adj'), amount: s.amount, reason: 'property' };
    case 'expireDue':
      return { type: 'ExpireDue' };
    case 'refundPurchase': {
      const purchase = pick([...state.purchases.values()], s.pick);
      return purchase ? { type: 'RefundPurchase', payment_id: purchase.payment_id, provider_event_id: id('evt-refund') } : null;
    }
    case 'tier':
      return { type: 'ChangeTier', tier: s.tier, expires_at: at(s.expiresIn), reason: 'property' };
  }
};

/** The statement row each event should make: the spec of projections/credits.ts, written out again. */
const expectedTransaction = (event: LedgerEvent): { type: string; amount: number } | null => {
  switch (event.type) {
    case 'CreditsPurchased':
      return { type: 'purchase', amount: event.data.credits };
    case 'CreditsGranted':
      return { type: 'bonus', amount: event.data.amount };
    case 'CreditsSpent':
      return { type: 'use', amount: 0 - event.data.amount };
    case 'CreditsRefunded':
      return { type: 'refund', amount: event.data.amount };
    case 'CreditsAdjusted':
      return { type: 'admin', amount: event.data.amount };
    case 'CreditsExpired':
      return { type: 'expire', amount: 0 - event.data.amount };
    case 'PurchaseRefunded':
      return { type: 'refund', amount: 0 - event.data.amount };
    default:
      return null;
  }
};

let db: TestDatabase;
let store: EventStore;
let runner: ProjectorRunner;

beforeAll(async () => {
  db = await createTestDatabase();
  store = createPostgresEventStore({ pool: db.pool, pollIntervalMs: 50 });
  // Small batches: many batch boundaries, several events of one account inside one batch.
  runner = new ProjectorRunner({ pool: db.pool, eventStore: store, logger: silentLogger, batchSize: 7 });
  await runner.start();
});

afterAll(async () => {
  await runner?.stop();
  await store?.close();
  await db?.drop();
});

const asIso = (date: Date | null) => (date === null ? null : date.toISOString());

async function checkReadModels(driver: LedgerDriver, userIds: readonly string[]): Promise<void> {
  for (const userId of userIds) {
    const state = driver.state(userId);
    const events = driver.appended.filter((a) => a.userId === userId);
    const balanceEvents = events.filter((a) => a.event.type !== 'TierChanged');

    // user_credits
    const account = await db.pool.maybeOne(sql.type(userCreditsRow)`
      select user_id, balance, reserved, total_purchased, total_used, total_bonus, total_refunded, total_expired,
        total_adjusted, total_clawed_back from user_credits where user_id = ${userId}`);
    if (balanceEvents.length === 0) {
      expect(account).toBeNull();
    } else {
      const t = state.totals;
      expect(account).toEqual({
        user_id: userId,
        balance: state.balance,
        reserved: state.reserved,
        total_purchased: t.purchased,
        total_used: t.spent,
        total_bonus: t.granted,
        total_refunded: t.refunded,
        total_expired: t.expired,
        total_adjusted: t.adjusted_in - t.adjusted_out,
        total_clawed_back: t.clawed_back,
      });
      // The totals explain the balance.
      expect(t.purchased + t.granted + t.adjusted_in - t.adjusted_out + t.refunded - t.spent - t.expired - t.clawed_back).toBe(state.balance);
    }

    // credit_lots: every lot the account ever had
    const lots = await db.pool.any(sql.type(lotRow)`
      select user_id, lot_id, kind, original, remaining, held, expires_at, priority, clawed_back
      from credit_lots where user_id = ${userId} order by lot_id`);
    const expectedLots = [...state.lots.values()]
      .map((lot) => ({
        user_id: userId,
        lot_id: lot.lot_id,
        kind: lot.kind,
        original: lot.original,
        remaining: lot.remaining,
        held: lot.held,
        expires_at: lot.expires_at,
        priority: lot.priority,
        clawed_back: lot.clawed_back,
      }))
      .sort((a, b) => (a.lot_id < b.lot_id ? -1 : 1));
    expect(lots.map((lot) => ({ ...lot, expires_at: asIso(lot.expires_at) }))).toEqual(expectedLots);
    expect(lots.reduce((sum, lot) => sum + lot.remaining, 0)).toBe(state.balance);

    // credit_transactions: one row per balance-moving event, in order, balance before and after
    const rows = await db.pool.any(sql.type(transactionRow)`
      select id::text as id, user_id, type, amount, balance_before, balance_after, event_type
      from credit_transactions where user_id = ${userId} order by position_major, position_minor`);
    const expectedRows = events.flatMap((a) => {
      const row = expectedTransaction(a.event);
      if (!row || a.event.type === 'TierChanged') return [];
      return [{
        id: a.id,
        user_id: userId,
        type: row.type,
        amount: row.amount,
        balance_before: a.before.balance,
        balance_after: a.event.data.balance_after,
        event_type: a.event.type,
      }];
    });
    expect(rows).toEqual(expectedRows);
    for (const row of rows) expect(row.balance_before + row.amount).toBe(row.balance_after);

    // user_tiers: tier and the API-call counters exactly as evolve keeps them
    const tier = await db.pool.maybeOne(sql.type(tierRow)`
      select user_id, tier, tier_expires_at, api_calls_day, api_calls_today, api_calls_month_window, api_calls_month
      from user_tiers where user_id = ${userId}`);
    const touchesTier = events.some((a) => a.event.type === 'TierChanged' || (a.event.type === 'CreditsSpent' && a.event.data.counts_api_call));
    if (!touchesTier) {
      expect(tier).toBeNull();
    } else {
      expect({ ...tier, tier_expires_at: asIso(tier?.tier_expires_at ?? null) }).toEqual({
        user_id: userId,
        tier: state.tier,
        tier_expires_at: state.tier_expires_at,
        api_calls_day: state.api_calls.day,
        api_calls_today: state.api_calls.day_count,
        api_calls_month_window: state.api_calls.month,
        api_calls_month: state.api_calls.month_count,
      });
    }

    // activity_logs: one row per ledger event, with the event's id and time
    const activity = await db.pool.any(sql.type(z.object({ id: z.string(), created_at: z.date() }))`
      select id::text as id, created_at from activity_logs where user_id = ${userId} order by position_major, position_minor`);
    expect(activity.map((a) => [a.id, a.created_at.toISOString()])).toEqual(events.map((a) => [a.id, a.event.data.at]));
  }
}

describe('read models equal what the events imply', () => {
  it('for random command sequences, projected while they are appended', async () => {
    const seen = new Set<string>();
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 80, size: 'max' }), async (steps) => {
        const driver = new LedgerDriver(store);
        const userIds = Array.from({ length: USERS }, () => randomUUID());
        let seq = 0;
        for (const s of steps) {
          seq++;
          if (s.kind === 'advance') {
            driver.advance(s.ms);
            continue;
          }
          const userId = userIds[s.user] as string;
          const command = commandOf(driver, userId, s, seq);
          if (command) await driver.run(userId, command);
        }
        if (driver.lastPosition) await waitForProjections(db.pool, store, { target: driver.lastPosition });
        await checkReadModels(driver, userIds);
        for (const a of driver.appended) seen.add(a.event.type);
      }),
      { numRuns: 50 },
    );
    // The generator reaches every event type (a property over rejected commands only would prove nothing).
    expect([...seen].sort()).toEqual([...LEDGER_EVENT_TYPES].sort());
  });
});
