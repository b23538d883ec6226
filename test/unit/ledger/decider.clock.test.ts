/**
 * Writers with clocks that disagree (a second process whose clock lags): the decider never decides
 * before the `at` of the stream's last event, so time never runs backwards within a stream.
 */
import { describe, expect, it } from 'vitest';
import type { LedgerCommand } from '../../../src/ledger/commands.js';
import { decide } from '../../../src/ledger/decider.js';
import type { CreditsSpent, LedgerEvent } from '../../../src/ledger/events.js';
import { evolve, type LedgerState } from '../../../src/ledger/state.js';
import { DEFAULT_TIER_TABLE } from '../../../src/ledger/tiers.js';
import { given, NOW, stateOf } from './support/decider-specification.js';
import { alloc, bal, expired, granted, HOUR, MINUTE, plus, purchased, spent } from './support/fixtures.js';

const START = 10_000;
const funded = purchased({ lot_id: 'p1', credits: START, at: '2026-11-01T00:00:00.000Z' }, bal(START));
const calls = (n: number, at: string, spentBefore: number): CreditsSpent[] =>
  Array.from({ length: n }, (_, i) => spent({ spend_id: `call-${spentBefore + i}`, allocation: alloc(['p1', 1]), at }, bal(START - spentBefore - i - 1)));

const BEFORE_MIDNIGHT = '2026-11-25T23:59:58.000Z';
const AFTER_MIDNIGHT = '2026-11-26T00:00:00.500Z';
const LAGGING = '2026-11-25T23:59:59.900Z';

describe('a writer whose clock lags the last event', () => {
  // the free tier's day is full (100 calls); another writer already counted the first call of the next day
  const history = [funded, ...calls(100, BEFORE_MIDNIGHT, 0), ...calls(1, AFTER_MIDNIGHT, 100)];

  it('decides at the instant of the last event, so its API call counts in the window the stream is in', () => {
    const events = given(history).when({ type: 'Spend', spend_id: 'late', amount: 1 }, { now: LAGGING }).events();
    expect(events).toMatchObject([{ type: 'CreditsSpent', data: { at: AFTER_MIDNIGHT, counts_api_call: true } }]);
  });

  it('cannot make API calls past the day limit, however often it tries', () => {
    let state: LedgerState = stateOf(history);
    const log: LedgerEvent[] = [...history];
    for (let i = 0; i < 150; i++) {
      const decision = decide({ type: 'Spend', spend_id: `late-${i}`, amount: 1 }, state, { now: new Date(LAGGING), tiers: DEFAULT_TIER_TABLE });
      if (decision.kind !== 'applied') continue;
      for (const event of decision.events) {
        state = evolve(state, event);
        log.push(event);
      }
    }
    const perDay = new Map<string, number>();
    for (const event of log) {
      if (event.type === 'CreditsSpent' && event.data.counts_api_call) {
        const day = event.data.at.slice(0, 10);
        perDay.set(day, (perDay.get(day) ?? 0) + 1);
      }
    }
    expect(Object.fromEntries(perDay)).toEqual({ '2026-11-25': 100, '2026-11-26': 100 });
  });

  it('cannot spend credits the stream already expired: refunded into the expired lot, they expire at once', () => {
    const lotExpiry = plus(NOW, HOUR);
    const sweptAt = plus(lotExpiry, 1);
    const lagging = plus(lotExpiry, -10);
    const history = [
      granted({ lot_id: 'g1', amount: 15, expires_at: lotExpiry, at: NOW }, bal(15)),
      spent({ spend_id: 's1', allocation: alloc(['g1', 10]), at: plus(NOW, 30 * MINUTE) }, bal(5)),
      expired({ lot_id: 'g1', amount: 5, expires_at: lotExpiry, at: sweptAt }, bal(0)),
    ];
    given(history)
      .when({ type: 'RefundSpend', refund_id: 'rf1', spend_id: 's1', reason: 'x' }, { now: lagging })
      .then([
        {
          type: 'CreditsRefunded',
          data: { at: sweptAt, refund_id: 'rf1', spend_id: 's1', amount: 10, allocation: alloc(['g1', 10]), reason: 'x', actor_id: null, balance_after: 10, reserved_after: 0 },
        },
        { type: 'CreditsExpired', data: { at: sweptAt, lot_id: 'g1', amount: 10, expires_at: lotExpiry, balance_after: 0, reserved_after: 0 } },
      ]);
    given(history).when({ type: 'Spend', spend_id: 's2', amount: 1 }, { now: lagging }).thenError({ code: 'insufficient_credits', balance: 0 });
  });

  it('validates instants against the stream time: an expiry before the last event is in the past', () => {
    const history = [granted({ lot_id: 'g1', amount: 1, at: plus(NOW, MINUTE) }, bal(1))];
    const grant: LedgerCommand = { type: 'Grant', lot_id: 'g2', kind: 'bonus', amount: 1, reason: 'x', expires_at: plus(NOW, 30 * 1000) };
    given(history).when(grant, { now: NOW }).then('validation_failed');
  });

  it('a clock ahead of the stream is taken as it is', () => {
    const events = given([funded]).when({ type: 'Spend', spend_id: 's1', amount: 1 }, { now: plus(NOW, HOUR) }).events();
    expect(events[0]?.data.at).toBe(plus(NOW, HOUR));
  });
});
