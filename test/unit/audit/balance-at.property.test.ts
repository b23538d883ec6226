/**
 * Balance at T, by property: for random histories decided by the real decider (grants with and without
 * expiry, purchases, spends, reservations settled, released or left to expire, refunds, adjustments,
 * several decisions at one instant), the balance at every event's instant is the running balance the
 * events themselves record (`balance_after` of the last event decided at or before it), and so is the
 * balance a millisecond before each instant.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { balanceAt } from '../../../src/audit/balance-at.js';
import { DEFAULT_TIER_TABLE, decide, evolve, initialState, type LedgerCommand, type LedgerEvent, type LedgerState } from '../../../src/ledger/index.js';
import { memoryStore, recordAccount } from './support.js';

const USER = '33333333-3333-4333-8333-333333333333';
const START = Date.parse('2026-03-01T00:00:00.000Z');

type Op =
  | { kind: 'wait'; ms: number }
  | { kind: 'grant'; amount: number; expiresMin: number | null }
  | { kind: 'purchase'; credits: number }
  | { kind: 'spend'; amount: number }
  | { kind: 'reserve'; amount: number; ttl: number }
  | { kind: 'settle'; pick: number; amount: number }
  | { kind: 'release'; pick: number }
  | { kind: 'refund'; pick: number; amount: number }
  | { kind: 'adjust'; amount: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('wait' as const), ms: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 3 * 3600_000 })) }),
  fc.record({ kind: fc.constant('grant' as const), amount: fc.integer({ min: 1, max: 100 }), expiresMin: fc.option(fc.integer({ min: 1, max: 240 })) }),
  fc.record({ kind: fc.constant('purchase' as const), credits: fc.integer({ min: 1, max: 500 }) }),
  fc.record({ kind: fc.constant('spend' as const), amount: fc.integer({ min: 1, max: 60 }) }),
  fc.record({ kind: fc.constant('reserve' as const), amount: fc.integer({ min: 1, max: 60 }), ttl: fc.integer({ min: 1, max: 3600 }) }),
  fc.record({ kind: fc.constant('settle' as const), pick: fc.nat(), amount: fc.nat({ max: 60 }) }),
  fc.record({ kind: fc.constant('release' as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant('refund' as const), pick: fc.nat(), amount: fc.integer({ min: 1, max: 60 }) }),
  fc.record({ kind: fc.constant('adjust' as const), amount: fc.integer({ min: -30, max: 30 }).filter((n) => n !== 0) }),
);

/** Decides the ops in order (rejected ones leave no trace) and returns the events with their instants. */
function history(ops: readonly Op[]): LedgerEvent[] {
  let state: LedgerState = initialState();
  let now = START;
  let seq = 0;
  const reservations: string[] = [];
  const spends: string[] = [];
  const events: LedgerEvent[] = [];
  const pick = <T>(list: readonly T[], n: number): T | undefined => list[n % Math.max(1, list.length)];
  for (const o of ops) {
    let command: LedgerCommand | null = null;
    const id = `${o.kind}-${++seq}`;
    switch (o.kind) {
      case 'wait':
        now += o.ms;
        continue;
      case 'grant':
        command = { type: 'Grant', lot_id: id, kind: 'bonus', amount: o.amount, reason: 'p', expires_at: o.expiresMin === null ? null : new Date(now + o.expiresMin * 60_000).toISOString() };
        break;
      case 'purchase':
        command = { type: 'Purchase', purchase_id: id, lot_id: `lot-${id}`, payment_id: `pi-${id}`, package_id: 'x', credits: o.credits, amount_cents: 100, currency: 'usd', provider_event_id: `evt-${id}` };
        break;
      case 'spend':
        command = { type: 'Spend', spend_id: id, amount: o.amount, counts_api_call: false };
        spends.push(id);
        break;
      case 'reserve':
        command = { type: 'Reserve', reservation_id: id, amount: o.amount, ttl_seconds: o.ttl };
        reservations.push(id);
        break;
      case 'settle': {
        const reservation = pick(reservations, o.pick);
        if (reservation) command = { type: 'Settle', reservation_id: reservation, spend_id: id, amount: o.amount, counts_api_call: false };
        spends.push(id);
        break;
      }
      case 'release': {
        const reservation = pick(reservations, o.pick);
        if (reservation) command = { type: 'Release', reservation_id: reservation };
        break;
      }
      case 'refund': {
        const spend = pick(spends, o.pick);
        if (spend) command = { type: 'RefundSpend', refund_id: id, spend_id: spend, amount: o.amount, reason: 'p' };
        break;
      }
      case 'adjust':
        command = { type: 'Adjust', adjustment_id: id, amount: o.amount, reason: 'p' };
        break;
    }
    if (!command) continue;
    const decision = decide(command, state, { now: new Date(now), tiers: DEFAULT_TIER_TABLE });
    if (decision.kind !== 'applied') continue;
    for (const event of decision.events) {
      state = evolve(state, event);
      events.push(event);
    }
  }
  return events;
}

const balanceAfter = (event: LedgerEvent): number => (event.type === 'TierChanged' ? Number.NaN : event.data.balance_after);

describe('balance at T', () => {
  it('is the running balance at every event instant, and just before it', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 60 }), async (ops) => {
        const events = history(ops);
        const store = memoryStore(recordAccount(USER, events));
        const instants = [...new Set(events.map((e) => Date.parse(e.data.at)))];
        for (const instant of instants) {
          for (const t of [instant, instant - 1]) {
            let last = -1;
            events.forEach((e, index) => {
              if (Date.parse(e.data.at) <= t) last = index;
            });
            const result = await balanceAt(store, USER, new Date(t));
            const expected = last < 0 ? 0 : balanceAfter(events[last] as LedgerEvent);
            expect(result.balance, `at ${new Date(t).toISOString()}`).toBe(expected);
            expect(result.revision).toBe(last < 0 ? null : last);
            expect(result.events).toBe(last + 1);
          }
        }
        const end = await balanceAt(store, USER, new Date('2100-01-01T00:00:00.000Z'));
        expect(end.balance).toBe(events.length === 0 ? 0 : balanceAfter(events[events.length - 1] as LedgerEvent));
      }),
      { numRuns: 150 },
    );
  });

  it('the generator makes interesting histories (expiries, same-instant decisions)', () => {
    const sample = fc.sample(fc.array(op, { minLength: 40, maxLength: 60 }), { numRuns: 50, seed: 7 }).map(history);
    const types = new Set(sample.flat().map((e) => e.type));
    for (const type of ['CreditsGranted', 'CreditsPurchased', 'CreditsSpent', 'CreditsReserved', 'ReservationSettled', 'ReservationReleased', 'ReservationExpired', 'CreditsRefunded', 'CreditsAdjusted', 'CreditsExpired']) {
      expect(types, type).toContain(type);
    }
    expect(sample.some((events) => new Set(events.map((e) => e.data.at)).size < events.length)).toBe(true);
  });
});
