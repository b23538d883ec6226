import { describe, expect, it } from 'vitest';
import type { CreditsSpent } from '../../../src/ledger/events.js';
import { DEFAULT_TIER_TABLE, tierTable, DEFAULT_TIERS } from '../../../src/ledger/tiers.js';
import { given, NOW } from './support/decider-specification.js';
import { alloc, bal, DAY, HOUR, MINUTE, plus, purchased, reserved, tierChanged } from './support/fixtures.js';

const START = 10_000;
const funded = purchased({ lot_id: 'p1', credits: START, at: '2026-11-01T00:00:00.000Z' }, bal(START));

/** `n` one-credit spends at `at`, continuing from `spentBefore`. */
const calls = (n: number, at: string, spentBefore = 0, counts_api_call = true): CreditsSpent[] =>
  Array.from({ length: n }, (_, i) => ({
    type: 'CreditsSpent' as const,
    data: {
      at,
      spend_id: `call-${spentBefore + i}`,
      amount: 1,
      allocation: alloc(['p1', 1]),
      description: null,
      metadata: null,
      reservation_id: null,
      counts_api_call,
      reference_type: null,
      reference_id: null,
      ...bal(START - spentBefore - i - 1),
    },
  }));

const spend = { type: 'Spend' as const, spend_id: 'next', amount: 1 };
const TODAY = '2026-11-25T08:00:00.000Z';

describe('API call quota (API §6)', () => {
  it('free tier: the 100th call of the UTC day is allowed', () => {
    given([funded, ...calls(99, TODAY)]).when(spend).events();
  });

  it('free tier: the 101st call of the UTC day is quota_exceeded until midnight UTC, and nothing is charged', () => {
    given([funded, ...calls(100, TODAY)])
      .when(spend)
      .thenError({
        code: 'quota_exceeded',
        limit: 100,
        used: 100,
        window: 'day',
        retry_after_seconds: 14 * 60 * 60,
        resets_at: '2026-11-26T00:00:00.000Z',
      });
  });

  it("yesterday's calls do not count today", () => {
    given([funded, ...calls(100, plus(TODAY, -DAY))]).when(spend).events();
  });

  it('the month window: 1000 calls this UTC month → quota_exceeded until the 1st', () => {
    given([funded, ...calls(1000, '2026-11-10T12:00:00.000Z')])
      .when(spend)
      .thenError({ code: 'quota_exceeded', limit: 1000, used: 1000, window: 'month', resets_at: '2026-12-01T00:00:00.000Z', retry_after_seconds: (5 * 24 + 14) * 3600 });
  });

  it("last month's calls do not count this month", () => {
    given([funded, ...calls(1000, '2026-10-31T23:59:59.999Z')]).when(spend).events();
  });

  it('uses the tier table from the context', () => {
    const tiny = tierTable(DEFAULT_TIERS.map((t) => (t.tier === 'free' ? { ...t, max_api_calls_day: 2 } : t)));
    given([funded, ...calls(2, TODAY)]).when(spend, { tiers: tiny }).thenError({ code: 'quota_exceeded', limit: 2, window: 'day' });
  });

  it('a higher tier has a higher limit', () => {
    given([funded, tierChanged({ tier: 'basic' }), ...calls(100, TODAY)]).when(spend).events();
  });

  it('enterprise is unlimited (-1)', () => {
    given([funded, tierChanged({ tier: 'enterprise' }), ...calls(1000, TODAY)]).when(spend).events();
  });

  it('falls back to free once tier_expires_at has passed', () => {
    given([funded, tierChanged({ tier: 'pro', expires_at: plus(NOW, -MINUTE) }), ...calls(100, TODAY)])
      .when(spend)
      .thenError({ code: 'quota_exceeded', limit: 100, window: 'day' });
  });

  it('keeps the tier until the instant it expires', () => {
    given([funded, tierChanged({ tier: 'pro', expires_at: plus(NOW, 1) }), ...calls(100, TODAY)]).when(spend).events();
  });

  it('spends that do not count as API calls neither count nor are refused', () => {
    given([funded, ...calls(100, TODAY), ...calls(5, TODAY, 100, false)])
      .when({ ...spend, counts_api_call: false })
      .events();
    given([funded, ...calls(99, TODAY), ...calls(5, TODAY, 99, false)]).when(spend).events();
  });

  it('settle counts as a call and is refused at the limit, leaving the reservation open', () => {
    const history = [
      funded,
      reserved({ reservation_id: 'r1', allocation: alloc(['p1', 5]), expires_at: plus(NOW, HOUR), at: TODAY }, bal(START, 5)),
      ...calls(100, TODAY).map((e) => ({ ...e, data: { ...e.data, reserved_after: 5 } })),
    ];
    given(history).when({ type: 'Settle', reservation_id: 'r1', spend_id: 's1', amount: 5 }).then('quota_exceeded');
    given(history).when({ type: 'Release', reservation_id: 'r1' }).events();
  });

  it('reserve checks the quota (without counting) so an AI call is refused before the provider is called', () => {
    given([funded, ...calls(100, TODAY)]).when({ type: 'Reserve', reservation_id: 'r1', amount: 1 }).then('quota_exceeded');
    const events = given([funded, ...calls(99, TODAY)]).when({ type: 'Reserve', reservation_id: 'r1', amount: 1 }).events();
    expect(events.map((e) => e.type)).toEqual(['CreditsReserved']);
  });

  it('grants and adjustments ignore the quota', () => {
    given([funded, ...calls(100, TODAY)]).when({ type: 'Grant', lot_id: 'g1', kind: 'bonus', amount: 1, reason: 'x' }).events();
  });
});

describe('ChangeTier', () => {
  it('records the new tier, the effective previous one and the expiry', () => {
    const expires_at = plus(NOW, 30 * DAY);
    given([tierChanged({ tier: 'basic' })])
      .when({ type: 'ChangeTier', tier: 'pro', expires_at, reason: 'upgrade', actor_id: 'admin-1' })
      .then([{ type: 'TierChanged', data: { at: NOW, tier: 'pro', previous_tier: 'basic', expires_at, reason: 'upgrade', actor_id: 'admin-1' } }]);
  });

  it('reports free as the previous tier when the stored one had expired', () => {
    const events = given([tierChanged({ tier: 'pro', expires_at: plus(NOW, -1) })])
      .when({ type: 'ChangeTier', tier: 'basic', reason: 'renewal' })
      .events();
    expect(events[0]?.data).toMatchObject({ previous_tier: 'free', expires_at: null });
  });

  it('rejects an unknown tier or an expiry in the past', () => {
    given([]).when({ type: 'ChangeTier', tier: 'gold' as never, reason: 'x' }).then('validation_failed');
    given([]).when({ type: 'ChangeTier', tier: 'pro', expires_at: NOW, reason: 'x' }).then('validation_failed');
  });

  it('the new tier governs the next decision', () => {
    const upgrade = given([funded, ...calls(100, TODAY)]).when({ type: 'ChangeTier', tier: 'basic', reason: 'x' }).events();
    given([funded, ...calls(100, TODAY), ...upgrade]).when(spend, { tiers: DEFAULT_TIER_TABLE }).events();
  });
});

describe('quota windows at their edges (UTC)', () => {
  const tiny = tierTable(DEFAULT_TIERS.map((t) => (t.tier === 'free' ? { ...t, max_api_calls_day: 2, max_api_calls_month: 3 } : t)));

  it('the last millisecond of a day is still that day (Retry-After 1 s); its first millisecond is a new day', () => {
    const day = '2026-11-25';
    given([funded, ...calls(2, `${day}T00:00:00.000Z`)])
      .when(spend, { now: `${day}T23:59:59.999Z`, tiers: tiny })
      .thenError({ code: 'quota_exceeded', window: 'day', used: 2, retry_after_seconds: 1, resets_at: '2026-11-26T00:00:00.000Z' });
    given([funded, ...calls(2, `${day}T23:59:59.999Z`)]).when(spend, { now: '2026-11-26T00:00:00.000Z', tiers: tiny }).events();
  });

  for (const [month, lastDay, next] of [
    ['2026-02', '28', '2026-03'],
    ['2028-02', '29', '2028-03'],
    ['2026-04', '30', '2026-05'],
    ['2026-12', '31', '2027-01'],
  ] as const) {
    it(`a ${lastDay}-day month (${month}) ends at the 1st of ${next}, 00:00:00.000 UTC`, () => {
      const last = `${month}-${lastDay}T23:59:59.999Z`;
      // three calls on three days of the month: the day has room, the month is full
      const history = [funded, ...calls(1, `${month}-01T00:00:00.000Z`), ...calls(1, `${month}-15T12:00:00.000Z`, 1), ...calls(1, `${month}-${lastDay}T00:00:00.000Z`, 2)];
      given(history)
        .when(spend, { now: last, tiers: tiny })
        .thenError({ code: 'quota_exceeded', window: 'month', used: 3, limit: 3, retry_after_seconds: 1, resets_at: `${next}-01T00:00:00.000Z` });
      const events = given(history).when(spend, { now: `${next}-01T00:00:00.000Z`, tiers: tiny }).events();
      expect(events[0]?.data.at).toBe(`${next}-01T00:00:00.000Z`);
    });
  }

  it('a leap day is a day of its own', () => {
    given([funded, ...calls(2, '2028-02-28T23:00:00.000Z')]).when(spend, { now: '2028-02-29T00:00:00.000Z', tiers: tiny }).events();
    given([funded, ...calls(2, '2028-02-29T00:00:00.000Z')])
      .when(spend, { now: '2028-02-29T23:59:59.999Z', tiers: tiny })
      .thenError({ code: 'quota_exceeded', window: 'day', resets_at: '2028-03-01T00:00:00.000Z' });
  });

  it('the tier falls back to free at the very instant tier_expires_at', () => {
    const expires_at = NOW;
    given([funded, tierChanged({ tier: 'pro', expires_at, at: plus(NOW, -DAY) }), ...calls(100, TODAY)])
      .when(spend)
      .thenError({ code: 'quota_exceeded', limit: 100, window: 'day' });
    const events = given([tierChanged({ tier: 'pro', expires_at, at: plus(NOW, -DAY) })])
      .when({ type: 'ChangeTier', tier: 'basic', reason: 'renewal' })
      .events();
    expect(events[0]?.data).toMatchObject({ previous_tier: 'free' });
  });
});
