import { describe, it } from 'vitest';
import { given, NOW } from './support/decider-specification.js';
import { alloc, bal, DAY, granted, plus, purchased, reserved, spent } from './support/fixtures.js';

const spendEvent = (spend_id: string, allocation: { lot_id: string; amount: number }[], balance_after: number, reserved_after = 0) => ({
  type: 'CreditsSpent' as const,
  data: {
    at: NOW,
    spend_id,
    amount: allocation.reduce((s, e) => s + e.amount, 0),
    allocation,
    description: null,
    metadata: null,
    reservation_id: null,
    counts_api_call: true,
    reference_type: null,
    reference_id: null,
    balance_after,
    reserved_after,
  },
});

describe('Spend', () => {
  it('takes the amount from a lot and records the allocation and the balance after', () => {
    given([purchased({ lot_id: 'p1', credits: 100 }, bal(100))])
      .when({
        type: 'Spend',
        spend_id: 's1',
        amount: 30,
        description: 'AI generation using gpt-4',
        metadata: { model: 'gpt-4' },
        reference_type: 'ai_request',
        reference_id: 'req-1',
      })
      .then([
        {
          type: 'CreditsSpent',
          data: {
            at: NOW,
            spend_id: 's1',
            amount: 30,
            allocation: alloc(['p1', 30]),
            description: 'AI generation using gpt-4',
            metadata: { model: 'gpt-4' },
            reservation_id: null,
            counts_api_call: true,
            reference_type: 'ai_request',
            reference_id: 'req-1',
            balance_after: 70,
            reserved_after: 0,
          },
        },
      ]);
  });

  it('may spend the whole available balance', () => {
    given([purchased({ lot_id: 'p1', credits: 10 }, bal(10))])
      .when({ type: 'Spend', spend_id: 's1', amount: 10 })
      .then([spendEvent('s1', alloc(['p1', 10]), 0)]);
  });

  it('refuses more than is available, reporting available as balance', () => {
    given([purchased({ lot_id: 'p1', credits: 10 }, bal(10))])
      .when({ type: 'Spend', spend_id: 's1', amount: 11 })
      .thenError({ code: 'insufficient_credits', balance: 10, required: 11 });
  });

  it('refuses on an empty account', () => {
    given([]).when({ type: 'Spend', spend_id: 's1', amount: 1 }).thenError({ code: 'insufficient_credits', balance: 0, required: 1 });
  });

  it('counts held credits out of what it may spend', () => {
    given([
      purchased({ lot_id: 'p1', credits: 10 }, bal(10)),
      reserved({ reservation_id: 'r1', allocation: alloc(['p1', 8]), expires_at: plus(NOW, 60_000) }, bal(10, 8)),
    ])
      .when({ type: 'Spend', spend_id: 's1', amount: 3 })
      .thenError({ code: 'insufficient_credits', balance: 2, required: 3 });
  });

  it('takes unheld credits only, leaving the reservation intact', () => {
    given([
      purchased({ lot_id: 'p1', credits: 10 }, bal(10)),
      reserved({ reservation_id: 'r1', allocation: alloc(['p1', 8]), expires_at: plus(NOW, 60_000) }, bal(10, 8)),
    ])
      .when({ type: 'Spend', spend_id: 's1', amount: 2 })
      .then([spendEvent('s1', alloc(['p1', 2]), 8, 8)]);
  });

  it.each([
    ['zero', 0],
    ['negative', -5],
    ['fractional', 1.5],
    ['above 1,000,000,000', 1_000_000_001],
    ['unsafe', Number.MAX_SAFE_INTEGER + 1],
    ['NaN', Number.NaN],
  ])('rejects a %s amount as validation_failed', (_name, amount) => {
    given([purchased({ lot_id: 'p1', credits: 100 }, bal(100))])
      .when({ type: 'Spend', spend_id: 's1', amount })
      .thenError({ code: 'validation_failed', errors: [{ path: 'amount', message: 'must be an integer from 1 to 1000000000' }] });
  });

  it('rejects a string amount (no coercion)', () => {
    given([purchased({ lot_id: 'p1', credits: 100 }, bal(100))])
      .when({ type: 'Spend', spend_id: 's1', amount: '10' as unknown as number })
      .then('validation_failed');
  });

  it('rejects a spend id that was already used', () => {
    given([purchased({ lot_id: 'p1', credits: 100 }, bal(100)), spent({ spend_id: 's1', allocation: alloc(['p1', 1]) }, bal(99))])
      .when({ type: 'Spend', spend_id: 's1', amount: 1 })
      .thenError({ code: 'validation_failed', errors: [{ path: 'spend_id', message: 'is already used' }] });
  });

  it('records counts_api_call: false when the caller says the spend is not an API call', () => {
    given([purchased({ lot_id: 'p1', credits: 100 }, bal(100))])
      .when({ type: 'Spend', spend_id: 's1', amount: 5, counts_api_call: false })
      .then([{ ...spendEvent('s1', alloc(['p1', 5]), 95), data: { ...spendEvent('s1', alloc(['p1', 5]), 95).data, counts_api_call: false } }]);
  });
});

describe('burn order (API §5)', () => {
  it('takes higher priority first, then soonest expiry, then granted before paid, then oldest', () => {
    given([
      purchased({ lot_id: 'paid-old', credits: 10 }, bal(10)),
      granted({ lot_id: 'bonus-no-expiry', amount: 10 }, bal(20)),
      granted({ lot_id: 'promo-late', amount: 10, kind: 'promotional', expires_at: plus(NOW, 10 * DAY) }, bal(30)),
      granted({ lot_id: 'comp-soon', amount: 10, kind: 'compensation', expires_at: plus(NOW, DAY) }, bal(40)),
      purchased({ lot_id: 'paid-priority', credits: 10, priority: 5 }, bal(50)),
    ])
      .when({ type: 'Spend', spend_id: 's1', amount: 45 })
      .then([
        spendEvent(
          's1',
          alloc(['paid-priority', 10], ['comp-soon', 10], ['promo-late', 10], ['bonus-no-expiry', 10], ['paid-old', 5]),
          5,
        ),
      ]);
  });

  it('prefers the sooner-expiring lot even when it is paid', () => {
    given([
      granted({ lot_id: 'bonus', amount: 10 }, bal(10)),
      purchased({ lot_id: 'paid-expiring', credits: 10, expires_at: plus(NOW, DAY) }, bal(20)),
    ])
      .when({ type: 'Spend', spend_id: 's1', amount: 12 })
      .then([spendEvent('s1', alloc(['paid-expiring', 10], ['bonus', 2]), 8)]);
  });

  it('at equal priority and expiry takes granted before paid, though the paid lot is older', () => {
    const expires_at = plus(NOW, DAY);
    given([
      purchased({ lot_id: 'paid', credits: 10, expires_at }, bal(10)),
      granted({ lot_id: 'bonus', amount: 10, expires_at }, bal(20)),
    ])
      .when({ type: 'Spend', spend_id: 's1', amount: 3 })
      .then([spendEvent('s1', alloc(['bonus', 3]), 17)]);
  });

  it('among equal lots takes the oldest first', () => {
    given([
      purchased({ lot_id: 'first', credits: 10 }, bal(10)),
      purchased({ lot_id: 'second', credits: 10 }, bal(20)),
    ])
      .when({ type: 'Spend', spend_id: 's1', amount: 15 })
      .then([spendEvent('s1', alloc(['first', 10], ['second', 5]), 5)]);
  });

  it('a negative priority burns after priority 0', () => {
    given([
      granted({ lot_id: 'last', amount: 10, priority: -1 }, bal(10)),
      purchased({ lot_id: 'normal', credits: 10 }, bal(20)),
    ])
      .when({ type: 'Spend', spend_id: 's1', amount: 11 })
      .then([spendEvent('s1', alloc(['normal', 10], ['last', 1]), 9)]);
  });
});
