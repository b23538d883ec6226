/**
 * Property tests: random command sequences (spend, reserve, settle, release, grants with and without
 * expiry, adjustments ±, refunds, purchases and their refunds, idempotent retries, time passing expiries)
 * run through decide → ledgerEventMetadata → evolve, as the command handler does. After every step the
 * ledger invariants must hold; at the end the whole log is replayed from scratch and checked again.
 * Some commands come from a writer whose clock lags (up to 2 h behind): the decider then decides at the
 * stream's last instant, so every invariant is checked at the time the decision actually took.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type LedgerCommand, ledgerEventMetadata } from '../../../src/ledger/commands.js';
import { type Decision, decide } from '../../../src/ledger/decider.js';
import { type LedgerEvent, parseLedgerEvent } from '../../../src/ledger/events.js';
import { evolve, initialState, type LedgerState } from '../../../src/ledger/state.js';
import { DEFAULT_TIERS, type TierTable, tierTable } from '../../../src/ledger/tiers.js';
import { snapshot } from './support/decider-specification.js';

const START = Date.parse('2026-11-25T22:00:00.000Z'); // close to midnight, so runs cross UTC days
const DAY_LIMIT = 6;
const TIERS: TierTable = tierTable(DEFAULT_TIERS.map((t) => (t.tier === 'free' ? { ...t, max_api_calls_day: DAY_LIMIT } : t)));
const KEYS = ['k1', 'k2', 'k3', 'k4', 'k5'];

type Step =
  | { op: 'spend'; amount: number; counts: boolean }
  | { op: 'reserve'; amount: number; ttl: number }
  | { op: 'settle'; pick: number; amount: number }
  | { op: 'release'; pick: number }
  | { op: 'grant'; amount: number; expiresIn: number | null; priority: number; kind: 'bonus' | 'promotional' | 'compensation' }
  | { op: 'adjust'; amount: number }
  | { op: 'refund'; pick: number; amount: number | null }
  | { op: 'purchase'; credits: number; duplicateOf: number | null }
  | { op: 'refundPurchase'; pick: number }
  | { op: 'expireDue' }
  | { op: 'advance'; seconds: number };

type KeyedStep = { step: Step; key: string | null; lagMs: number };

const amount = fc.integer({ min: 1, max: 60 });
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('spend' as const), amount, counts: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('reserve' as const), amount, ttl: fc.integer({ min: 1, max: 3600 }) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('settle' as const), pick: fc.nat(), amount: fc.integer({ min: 0, max: 70 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('release' as const), pick: fc.nat() }) },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('grant' as const),
      amount: fc.integer({ min: 1, max: 120 }),
      expiresIn: fc.option(fc.integer({ min: 1, max: 3000 }), { nil: null }),
      priority: fc.integer({ min: -2, max: 2 }),
      kind: fc.constantFrom('bonus' as const, 'promotional' as const, 'compensation' as const),
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('adjust' as const), amount: fc.integer({ min: -60, max: 60 }).filter((n) => n !== 0) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('refund' as const), pick: fc.nat(), amount: fc.option(amount, { nil: null }) }) },
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant('purchase' as const), credits: fc.integer({ min: 1, max: 200 }), duplicateOf: fc.oneof({ weight: 4, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.nat() }) }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('refundPurchase' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.constant({ op: 'expireDue' as const }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('advance' as const), seconds: fc.integer({ min: 1, max: 1800 }) }) },
);
const keyedStepArb: fc.Arbitrary<KeyedStep> = fc.record({
  step: stepArb,
  key: fc.oneof({ weight: 8, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.constantFrom(...KEYS) }),
  lagMs: fc.oneof({ weight: 6, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 2 * 3600 * 1000 }) }),
});

const fundingArb = fc.integer({ min: 1, max: 1500 });

/** Mostly one of the latest few items (open reservations, fresh spends), sometimes any. */
const pickFrom = <T>(items: readonly T[], pick: number): T | undefined =>
  items.length === 0 ? undefined : pick % 4 === 0 ? items[pick % items.length] : items[items.length - 1 - (pick % Math.min(items.length, 3))];

interface World {
  nowMs: number;
  /** `at` of the last appended event (time of the stream). */
  lastAtMs: number;
  seq: number;
  state: LedgerState;
  log: { event: LedgerEvent; metadata: ReturnType<typeof ledgerEventMetadata> }[];
  spends: string[];
  reservations: string[];
  purchases: { payment_id: string; provider_event_id: string }[];
  keys: Map<string, { hash: string; atMs: number }>;
}

const toCommand = (w: World, { step, key }: KeyedStep): LedgerCommand | null => {
  const id = (prefix: string) => `${prefix}-${++w.seq}`;
  let command: LedgerCommand;
  switch (step.op) {
    case 'advance':
      w.nowMs += step.seconds * 1000;
      return null;
    case 'spend':
      command = { type: 'Spend', spend_id: id('spend'), amount: step.amount, counts_api_call: step.counts };
      break;
    case 'reserve':
      command = { type: 'Reserve', reservation_id: id('res'), amount: step.amount, ttl_seconds: step.ttl };
      break;
    case 'settle':
      command = { type: 'Settle', reservation_id: pickFrom(w.reservations, step.pick) ?? 'res-none', spend_id: id('spend'), amount: step.amount };
      break;
    case 'release':
      command = { type: 'Release', reservation_id: pickFrom(w.reservations, step.pick) ?? 'res-none' };
      break;
    case 'grant':
      command = {
        type: 'Grant',
        lot_id: id('grant'),
        kind: step.kind,
        amount: step.amount,
        reason: 'property',
        expires_at: step.expiresIn === null ? null : new Date(w.nowMs + step.expiresIn * 1000).toISOString(),
        priority: step.priority,
      };
      break;
    case 'adjust':
      command = { type: 'Adjust', adjustment_id: id('adj'), amount: step.amount, reason: 'property' };
      break;
    case 'refund':
      command = {
        type: 'RefundSpend',
        refund_id: id('refund'),
        spend_id: pickFrom(w.spends, step.pick) ?? 'spend-none',
        reason: 'property',
        ...(step.amount === null ? {} : { amount: step.amount }),
      };
      break;
    case 'purchase': {
      const duplicate = step.duplicateOf === null ? undefined : pickFrom(w.purchases, step.duplicateOf);
      const n = ++w.seq;
      command = {
        type: 'Purchase',
        purchase_id: `pu-${n}`,
        lot_id: `lot-pu-${n}`,
        payment_id: duplicate?.payment_id ?? `pi-${n}`,
        package_id: 'starter',
        credits: step.credits,
        amount_cents: 500,
        currency: 'usd',
        provider_event_id: `evt-${n}`,
      };
      break;
    }
    case 'refundPurchase': {
      const purchase = pickFrom(w.purchases, step.pick);
      command = { type: 'RefundPurchase', payment_id: purchase?.payment_id ?? 'pi-none', provider_event_id: id('evt-refund') };
      break;
    }
    case 'expireDue':
      command = { type: 'ExpireDue' };
      break;
  }
  if (key === null) return command;
  // the handler's hash covers the request, not the ids it generated: same op + amount = same request
  const { seq: _ignored, ...request } = { seq: 0, ...step };
  return { ...command, idempotency: { key, request_hash: JSON.stringify(request) } };
};

const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);

/** Invariants of a state, computed from its lots and reservations independently of its counters. */
const checkState = (state: LedgerState, nowMs: number) => {
  const lots = [...state.lots.values()];
  for (const lot of lots) {
    expect(lot.held).toBeGreaterThanOrEqual(0);
    expect(lot.remaining).toBeGreaterThanOrEqual(lot.held);
    expect(lot.remaining).toBeLessThanOrEqual(lot.original);
  }
  const live = lots.filter((l) => l.remaining > 0);
  expect([...state.live.keys()].sort()).toEqual(live.map((l) => l.lot_id).sort());
  expect(state.balance).toBe(sum(live.map((l) => l.remaining)));
  expect(state.balance).toBeGreaterThanOrEqual(0);
  const open = [...state.reservations.values()].filter((r) => r.status === 'open');
  expect(state.reserved).toBe(sum(open.map((r) => r.held)));
  expect(state.reserved).toBe(sum(lots.map((l) => l.held)));
  expect(state.reserved).toBeLessThanOrEqual(state.balance);
  return { lotsPastExpiryWithUnheld: live.filter((l) => l.expires_at_ms <= nowMs && l.remaining > l.held).length };
};

/** Checks computed from the event log alone (what an auditor can do). */
const checkLog = (log: readonly LedgerEvent[], balance: number) => {
  for (let i = 1; i < log.length; i++) {
    expect((log[i] as LedgerEvent).data.at >= (log[i - 1] as LedgerEvent).data.at, 'time never runs backwards in a stream').toBe(true);
  }
  const spent = new Map<string, number>();
  const refunded = new Map<string, number>();
  let flow = 0;
  for (const event of log) {
    switch (event.type) {
      case 'CreditsPurchased':
        flow += event.data.credits;
        break;
      case 'CreditsGranted':
        flow += event.data.amount;
        break;
      case 'CreditsAdjusted':
        flow += event.data.amount;
        break;
      case 'CreditsRefunded':
        flow += event.data.amount;
        refunded.set(event.data.spend_id, (refunded.get(event.data.spend_id) ?? 0) + event.data.amount);
        break;
      case 'CreditsSpent':
        flow -= event.data.amount;
        spent.set(event.data.spend_id, event.data.amount);
        break;
      case 'CreditsExpired':
      case 'PurchaseRefunded':
        flow -= event.data.amount;
        break;
      default:
        break;
    }
  }
  expect(flow, 'no credit created or lost').toBe(balance);
  for (const [spendId, amount] of refunded) {
    expect(amount, `refunds of ${spendId}`).toBeLessThanOrEqual(spent.get(spendId) ?? -1);
  }
  // each payment and each provider event takes effect once, however often it is delivered
  const payments = log.flatMap((e) => (e.type === 'CreditsPurchased' ? [e.data.payment_id] : []));
  expect(new Set(payments).size).toBe(payments.length);
  const providerEvents = log.flatMap((e) =>
    e.type === 'CreditsPurchased' || (e.type === 'PurchaseRefunded' && e.data.provider_event_id !== null) ? [e.data.provider_event_id] : [],
  );
  expect(new Set(providerEvents).size).toBe(providerEvents.length);
  const clawbacks = log.flatMap((e) => (e.type === 'PurchaseRefunded' && e.data.provider_event_id !== null ? [e.data.purchase_id] : []));
  expect(new Set(clawbacks).size, 'a purchase is refunded once').toBe(clawbacks.length);

  const callsPerDay = new Map<string, number>();
  for (const event of log) {
    if (event.type === 'CreditsSpent' && event.data.counts_api_call) {
      const day = event.data.at.slice(0, 10);
      callsPerDay.set(day, (callsPerDay.get(day) ?? 0) + 1);
    }
  }
  for (const [day, calls] of callsPerDay) expect(calls, `API calls on ${day}`).toBeLessThanOrEqual(DAY_LIMIT);
};

const run = (funding: number, steps: readonly KeyedStep[]) => {
  const w: World = { nowMs: START, lastAtMs: Number.NEGATIVE_INFINITY, seq: 0, state: initialState(), log: [], spends: [], reservations: [], purchases: [], keys: new Map() };
  const opening: KeyedStep = { step: { op: 'grant', amount: funding, expiresIn: null, priority: 0, kind: 'bonus' }, key: null, lagMs: 0 };
  const stats = { applied: 0, rejected: 0, already: 0, events: 0 };
  for (const keyed of [opening, ...steps]) {
    const command = toCommand(w, keyed);
    if (command === null) continue;
    const now = new Date(w.nowMs - keyed.lagMs);
    // the instant the decision takes: the writer's clock, or the stream's last instant when that is later
    const decidedMs = Math.max(now.getTime(), w.lastAtMs);
    const before = snapshot(w.state, now);
    const decision: Decision = decide(command, w.state, { now, tiers: TIERS });
    expect(snapshot(w.state, now), 'decide does not mutate').toEqual(before);

    const recorded = command.idempotency ? w.keys.get(command.idempotency.key) : undefined;
    if (command.idempotency && recorded && decidedMs - recorded.atMs < 24 * 3600 * 1000) {
      if (recorded.hash === command.idempotency.request_hash) {
        expect(decision).toMatchObject({ kind: 'already_applied', already_applied: { reason: 'idempotent_replay' } });
      } else {
        expect(decision).toMatchObject({ kind: 'rejected', error: { code: 'idempotency_key_reused' } });
      }
    }

    if (decision.kind === 'rejected') {
      stats.rejected++;
      if (decision.error.code === 'insufficient_credits') {
        // `balance` is what is available once the due expiries are applied (the decider sweeps first)
        const sweep = decide({ type: 'ExpireDue' }, w.state, { now, tiers: TIERS });
        const last = sweep.kind === 'applied' ? sweep.events.at(-1) : undefined;
        const available =
          last && last.type !== 'TierChanged' ? last.data.balance_after - last.data.reserved_after : w.state.balance - w.state.reserved;
        expect(decision.error.balance).toBe(available);
        expect(decision.error.required).toBeGreaterThan(decision.error.balance);
      }
      continue;
    }
    if (decision.kind === 'already_applied') {
      stats.already++;
      continue;
    }
    stats.applied++;
    const metadata = ledgerEventMetadata(command);
    for (const event of decision.events) {
      expect(parseLedgerEvent(event.type, JSON.parse(JSON.stringify(event.data)))).toEqual(event);
      expect(event.data.at).toBe(new Date(decidedMs).toISOString());
      w.state = evolve(w.state, { ...event, metadata });
      w.log.push({ event, metadata });
      stats.events++;
      if (event.type === 'CreditsSpent') w.spends.push(event.data.spend_id);
      if (event.type === 'CreditsReserved') w.reservations.push(event.data.reservation_id);
      if (event.type === 'CreditsPurchased') w.purchases.push({ payment_id: event.data.payment_id, provider_event_id: event.data.provider_event_id });
    }
    if (decision.events.length > 0) w.lastAtMs = decidedMs;
    if (command.idempotency && decision.events.length > 0) {
      w.keys.set(command.idempotency.key, { hash: command.idempotency.request_hash, atMs: decidedMs });
    }
    const { lotsPastExpiryWithUnheld } = checkState(w.state, decidedMs);
    expect(lotsPastExpiryWithUnheld, 'a decision leaves no unheld credit in an expired lot').toBe(0);
    expect([...w.state.open_reservations.values()].filter((r) => r.expires_at_ms <= decidedMs)).toEqual([]);
  }

  // replay the whole log from scratch: every balance_after holds, and the state is the same
  let replayed = initialState();
  for (const { event, metadata } of w.log) {
    replayed = evolve(replayed, { ...event, metadata });
    if (event.type !== 'TierChanged') {
      expect({ balance: replayed.balance, reserved: replayed.reserved }, `${event.type} balance_after`).toEqual({
        balance: event.data.balance_after,
        reserved: event.data.reserved_after,
      });
      expect(sum([...replayed.live.values()].map((l) => l.remaining))).toBe(event.data.balance_after);
    }
  }
  const now = new Date(w.nowMs);
  expect(snapshot(replayed, now)).toEqual(snapshot(w.state, now));
  checkState(replayed, w.nowMs);
  checkLog(
    w.log.map((l) => l.event),
    replayed.balance,
  );
  return stats;
};

describe('ledger invariants over random command sequences', () => {
  it('hold after every decision and on replay', () => {
    const totals = { applied: 0, rejected: 0, already: 0, events: 0 };
    fc.assert(
      fc.property(fundingArb, fc.array(keyedStepArb, { minLength: 1, maxLength: 80, size: 'max' }), (funding, steps) => {
        const stats = run(funding, steps);
        for (const k of Object.keys(totals) as (keyof typeof totals)[]) totals[k] += stats[k];
      }),
      { numRuns: 300 },
    );
    // the generator must exercise the ledger, not only its error paths
    expect(totals.applied).toBeGreaterThan(totals.rejected);
    expect(totals.already).toBeGreaterThan(0);
  });

  it('a long busy history (spends, reservations and expiries over days) keeps the invariants', () => {
    fc.assert(
      fc.property(fundingArb, fc.array(keyedStepArb, { minLength: 300, maxLength: 400, size: 'max' }), (funding, steps) => {
        run(funding, steps);
      }),
      { numRuns: 15 },
    );
  });
});
