import { describe, expect, it } from 'vitest';
import { given, NOW } from './support/decider-specification.js';
import {
  adjusted,
  alloc,
  bal,
  DAY,
  expired,
  granted,
  MINUTE,
  plus,
  purchased,
  purchaseRefunded,
  refunded,
  reserved,
  settled,
  spent,
} from './support/fixtures.js';

describe('Grant', () => {
  it('adds a lot with no expiry and priority 0 by default', () => {
    given([purchased({ lot_id: 'p1', credits: 10 }, bal(10))])
      .when({ type: 'Grant', lot_id: 'g1', kind: 'bonus', amount: 50, reason: 'welcome', actor_id: 'admin-1' })
      .then([
        {
          type: 'CreditsGranted',
          data: {
            at: NOW,
            lot_id: 'g1',
            kind: 'bonus',
            amount: 50,
            reason: 'welcome',
            expires_at: null,
            priority: 0,
            actor_id: 'admin-1',
            balance_after: 60,
            reserved_after: 0,
          },
        },
      ]);
  });

  it('records expiry, priority and kind', () => {
    const expires_at = plus(NOW, 30 * DAY);
    const events = given([])
      .when({ type: 'Grant', lot_id: 'g1', kind: 'compensation', amount: 5, reason: 'outage', expires_at, priority: 3 })
      .events();
    expect(events[0]?.data).toMatchObject({ kind: 'compensation', expires_at, priority: 3, actor_id: null, balance_after: 5 });
  });

  it.each([
    ['an expiry in the past', { expires_at: plus(NOW, -1) }, 'expires_at'],
    ['an expiry equal to now', { expires_at: NOW }, 'expires_at'],
    ['an expiry that is not ISO UTC', { expires_at: '2027-01-01' }, 'expires_at'],
    ['an unknown kind', { kind: 'gift' }, 'kind'],
    ['an empty reason', { reason: '  ' }, 'reason'],
    ['a fractional priority', { priority: 0.5 }, 'priority'],
    ['a zero amount', { amount: 0 }, 'amount'],
  ])('rejects %s', (_name, override, path) => {
    const decision = given([])
      .when({ type: 'Grant', lot_id: 'g1', kind: 'bonus', amount: 5, reason: 'x', ...override } as never)
      .decision;
    expect(decision.kind === 'rejected' && decision.error.code === 'validation_failed' && decision.error.errors.map((e) => e.path)).toEqual([path]);
  });

  it('rejects a lot id that is already used', () => {
    given([granted({ lot_id: 'g1', amount: 1 }, bal(1))])
      .when({ type: 'Grant', lot_id: 'g1', kind: 'bonus', amount: 5, reason: 'x' })
      .then('validation_failed');
  });

  it('refuses to take the balance beyond the largest safe integer', () => {
    given([granted({ lot_id: 'g0', amount: Number.MAX_SAFE_INTEGER - 10 }, bal(Number.MAX_SAFE_INTEGER - 10))])
      .when({ type: 'Grant', lot_id: 'g1', kind: 'bonus', amount: 11, reason: 'x' })
      .then('validation_failed');
  });
});

describe('Adjust', () => {
  it('a positive adjustment creates a lot named by the adjustment id', () => {
    given([])
      .when({ type: 'Adjust', adjustment_id: 'adj-1', amount: 25, reason: 'migration', actor_id: 'admin-1' })
      .then([
        {
          type: 'CreditsAdjusted',
          data: {
            at: NOW,
            adjustment_id: 'adj-1',
            amount: 25,
            lot_id: 'adj-1',
            allocation: [],
            reason: 'migration',
            actor_id: 'admin-1',
            balance_after: 25,
            reserved_after: 0,
          },
        },
      ]);
  });

  it('a negative adjustment burns lots like a spend', () => {
    given([granted({ lot_id: 'g1', amount: 5 }, bal(5)), purchased({ lot_id: 'p1', credits: 10 }, bal(15))])
      .when({ type: 'Adjust', adjustment_id: 'adj-1', amount: -8, reason: 'fraud' })
      .then([
        {
          type: 'CreditsAdjusted',
          data: {
            at: NOW,
            adjustment_id: 'adj-1',
            amount: -8,
            lot_id: null,
            allocation: alloc(['g1', 5], ['p1', 3]),
            reason: 'fraud',
            actor_id: null,
            balance_after: 7,
            reserved_after: 0,
          },
        },
      ]);
  });

  it('may not drive the balance below zero', () => {
    given([purchased({ lot_id: 'p1', credits: 10 }, bal(10))])
      .when({ type: 'Adjust', adjustment_id: 'adj-1', amount: -11, reason: 'fraud' })
      .thenError({ code: 'insufficient_credits', balance: 10, required: 11 });
  });

  it('may not drive the balance below what is reserved', () => {
    given([
      purchased({ lot_id: 'p1', credits: 10 }, bal(10)),
      reserved({ reservation_id: 'r1', allocation: alloc(['p1', 4]), expires_at: plus(NOW, MINUTE) }, bal(10, 4)),
    ])
      .when({ type: 'Adjust', adjustment_id: 'adj-1', amount: -7, reason: 'fraud' })
      .thenError({ code: 'insufficient_credits', balance: 6, required: 7 });
  });

  it.each([0, 1.5, 1_000_000_001, -1_000_000_001])('rejects amount %s', (amount) => {
    given([purchased({ lot_id: 'p1', credits: 10 }, bal(10))])
      .when({ type: 'Adjust', adjustment_id: 'adj-1', amount, reason: 'x' })
      .then('validation_failed');
  });

  it('requires a reason', () => {
    given([]).when({ type: 'Adjust', adjustment_id: 'adj-1', amount: 1, reason: '' }).then('validation_failed');
  });
});

describe('RefundSpend', () => {
  const history = [
    granted({ lot_id: 'g1', amount: 30 }, bal(30)),
    purchased({ lot_id: 'p1', credits: 100 }, bal(130)),
    spent({ spend_id: 's1', allocation: alloc(['g1', 30], ['p1', 20]) }, bal(80)),
  ];

  it('refunds everything not yet refunded by default, to exactly the lots the spend took', () => {
    given(history)
      .when({ type: 'RefundSpend', refund_id: 'rf1', spend_id: 's1', reason: 'bad output', actor_id: 'admin-1' })
      .then([
        {
          type: 'CreditsRefunded',
          data: {
            at: NOW,
            refund_id: 'rf1',
            spend_id: 's1',
            amount: 50,
            allocation: alloc(['p1', 20], ['g1', 30]),
            reason: 'bad output',
            actor_id: 'admin-1',
            balance_after: 130,
            reserved_after: 0,
          },
        },
      ]);
  });

  it('partial refunds restore the most recently burned credits first', () => {
    const first = given(history).when({ type: 'RefundSpend', refund_id: 'rf1', spend_id: 's1', amount: 25, reason: 'x' }).events();
    expect(first[0]?.data).toMatchObject({ amount: 25, allocation: alloc(['p1', 20], ['g1', 5]), balance_after: 105 });
    const second = given([...history, ...first]).when({ type: 'RefundSpend', refund_id: 'rf2', spend_id: 's1', reason: 'x' }).events();
    expect(second[0]?.data).toMatchObject({ amount: 25, allocation: alloc(['g1', 25]), balance_after: 130 });
  });

  it('refuses more than is still refundable', () => {
    given([...history, refunded({ refund_id: 'rf1', spend_id: 's1', allocation: alloc(['p1', 20]) }, bal(100))])
      .when({ type: 'RefundSpend', refund_id: 'rf2', spend_id: 's1', amount: 31, reason: 'x' })
      .thenError({ code: 'refund_exceeds_spend', refundable: 30, requested: 31 });
  });

  it('refuses a default refund of a fully refunded spend', () => {
    given([...history, refunded({ refund_id: 'rf1', spend_id: 's1', allocation: alloc(['p1', 20], ['g1', 30]) }, bal(130))])
      .when({ type: 'RefundSpend', refund_id: 'rf2', spend_id: 's1', reason: 'x' })
      .thenError({ code: 'refund_exceeds_spend', refundable: 0 });
  });

  it('answers not_found for an unknown spend', () => {
    given(history)
      .when({ type: 'RefundSpend', refund_id: 'rf1', spend_id: 's9', reason: 'x' })
      .thenError({ code: 'not_found', resource: 'spend', id: 's9' });
  });

  it('refunds a settled reservation spend', () => {
    const events = given([
      purchased({ lot_id: 'p1', credits: 10 }, bal(10)),
      reserved({ reservation_id: 'r1', allocation: alloc(['p1', 10]), expires_at: plus(NOW, MINUTE) }, bal(10, 10)),
      spent({ spend_id: 's1', allocation: alloc(['p1', 6]), reservation_id: 'r1' }, bal(4, 4)),
      settled({ reservation_id: 'r1', spend_id: 's1', credits_used: 6, released_allocation: alloc(['p1', 4]) }, bal(4)),
    ])
      .when({ type: 'RefundSpend', refund_id: 'rf1', spend_id: 's1', reason: 'x' })
      .events();
    expect(events[0]?.data).toMatchObject({ amount: 6, allocation: alloc(['p1', 6]), balance_after: 10 });
  });

  it('credits refunded into an expired lot expire at once', () => {
    const lotExpiry = plus(NOW, -DAY);
    given([
      granted({ lot_id: 'g1', amount: 10, expires_at: lotExpiry, at: plus(NOW, -2 * DAY) }, bal(10)),
      spent({ spend_id: 's1', allocation: alloc(['g1', 4]), at: plus(NOW, -2 * DAY) }, bal(6)),
      expired({ lot_id: 'g1', amount: 6, expires_at: lotExpiry, at: lotExpiry }, bal(0)),
    ])
      .when({ type: 'RefundSpend', refund_id: 'rf1', spend_id: 's1', reason: 'x' })
      .then([
        {
          type: 'CreditsRefunded',
          data: { at: NOW, refund_id: 'rf1', spend_id: 's1', amount: 4, allocation: alloc(['g1', 4]), reason: 'x', actor_id: null, balance_after: 4, reserved_after: 0 },
        },
        { type: 'CreditsExpired', data: { at: NOW, lot_id: 'g1', amount: 4, expires_at: lotExpiry, balance_after: 0, reserved_after: 0 } },
      ]);
  });
});

describe('Purchase', () => {
  const purchase = {
    type: 'Purchase' as const,
    purchase_id: 'pu1',
    lot_id: 'lot-pu1',
    payment_id: 'pi_1',
    package_id: 'starter',
    credits: 100,
    amount_cents: 500,
    currency: 'usd',
    provider_event_id: 'evt_1',
  };

  it('adds a paid lot', () => {
    given([])
      .when(purchase)
      .then([
        {
          type: 'CreditsPurchased',
          data: {
            at: NOW,
            lot_id: 'lot-pu1',
            purchase_id: 'pu1',
            payment_id: 'pi_1',
            package_id: 'starter',
            credits: 100,
            amount_cents: 500,
            currency: 'usd',
            provider_event_id: 'evt_1',
            expires_at: null,
            priority: 0,
            balance_after: 100,
            reserved_after: 0,
          },
        },
      ]);
  });

  it('a second delivery of the same payment is already applied, with no events', () => {
    const first = given([]).when(purchase).events();
    given(first)
      .when({ ...purchase, provider_event_id: 'evt_2', purchase_id: 'pu2', lot_id: 'lot-pu2' })
      .thenAlreadyApplied({ reason: 'duplicate_purchase', purchase_id: 'pu1', lot_id: 'lot-pu1' });
  });

  it('a second delivery of the same provider event is already applied', () => {
    const first = given([]).when(purchase).events();
    given(first)
      .when({ ...purchase, payment_id: 'pi_2', purchase_id: 'pu2', lot_id: 'lot-pu2' })
      .thenAlreadyApplied({ reason: 'duplicate_provider_event', provider_event_id: 'evt_1' });
  });

  it.each([
    ['an upper-case currency', { currency: 'USD' }],
    ['zero credits', { credits: 0 }],
    ['negative cents', { amount_cents: -1 }],
    ['an empty payment id', { payment_id: '' }],
  ])('rejects %s', (_name, override) => {
    given([]).when({ ...purchase, ...override }).then('validation_failed');
  });
});

describe('RefundPurchase', () => {
  const history = [
    granted({ lot_id: 'g1', amount: 10 }, bal(10)),
    purchased({ lot_id: 'p1', credits: 100 }, bal(110)),
    spent({ spend_id: 's1', allocation: alloc(['g1', 10], ['p1', 30]) }, bal(70)),
  ];

  it('claws back what is left of the purchase lot', () => {
    given(history)
      .when({ type: 'RefundPurchase', payment_id: 'pi-p1', provider_event_id: 'evt_r1' })
      .then([
        {
          type: 'PurchaseRefunded',
          data: { at: NOW, purchase_id: 'purchase-p1', payment_id: 'pi-p1', lot_id: 'p1', amount: 70, provider_event_id: 'evt_r1', balance_after: 0, reserved_after: 0 },
        },
      ]);
  });

  it('finds the purchase by purchase_id when given', () => {
    const events = given(history)
      .when({ type: 'RefundPurchase', payment_id: 'unknown', purchase_id: 'purchase-p1', provider_event_id: 'evt_r1' })
      .events();
    expect(events).toMatchObject([{ type: 'PurchaseRefunded', data: { purchase_id: 'purchase-p1', amount: 70 } }]);
  });

  it('leaves held credits alone, and claws them back when the reservation lets go', () => {
    const withHold = [
      purchased({ lot_id: 'p1', credits: 100 }, bal(100)),
      reserved({ reservation_id: 'r1', allocation: alloc(['p1', 40]), expires_at: plus(NOW, MINUTE) }, bal(100, 40)),
    ];
    const refund = given(withHold).when({ type: 'RefundPurchase', payment_id: 'pi-p1', provider_event_id: 'evt_r1' }).events();
    expect(refund[0]?.data).toMatchObject({ amount: 60, balance_after: 40, reserved_after: 40 });
    given([...withHold, ...refund])
      .when({ type: 'Release', reservation_id: 'r1' })
      .then([
        {
          type: 'ReservationReleased',
          data: { at: NOW, reservation_id: 'r1', released: 40, released_allocation: alloc(['p1', 40]), balance_after: 40, reserved_after: 0 },
        },
        {
          type: 'PurchaseRefunded',
          data: { at: NOW, purchase_id: 'purchase-p1', payment_id: 'pi-p1', lot_id: 'p1', amount: 40, provider_event_id: null, balance_after: 0, reserved_after: 0 },
        },
      ]);
  });

  it('a refunded spend from a clawed-back lot is clawed back at once', () => {
    const events = given([...history, purchaseRefunded({ lot_id: 'p1', amount: 70 }, bal(0))])
      .when({ type: 'RefundSpend', refund_id: 'rf1', spend_id: 's1', reason: 'x' })
      .events();
    expect(events).toMatchObject([
      { type: 'CreditsRefunded', data: { amount: 40, allocation: alloc(['p1', 30], ['g1', 10]), balance_after: 40 } },
      { type: 'PurchaseRefunded', data: { lot_id: 'p1', amount: 30, provider_event_id: null, balance_after: 10 } },
    ]);
  });

  it('a second delivery of the same provider event is already applied', () => {
    given([...history, purchaseRefunded({ lot_id: 'p1', amount: 70, provider_event_id: 'evt_r1' }, bal(0))])
      .when({ type: 'RefundPurchase', payment_id: 'pi-p1', provider_event_id: 'evt_r1' })
      .thenAlreadyApplied({ reason: 'duplicate_provider_event', provider_event_id: 'evt_r1' });
  });

  it('another refund event for an already refunded purchase is already applied', () => {
    given([...history, purchaseRefunded({ lot_id: 'p1', amount: 70, provider_event_id: 'evt_r1' }, bal(0))])
      .when({ type: 'RefundPurchase', payment_id: 'pi-p1', provider_event_id: 'evt_r2' })
      .thenAlreadyApplied({ reason: 'purchase_already_refunded', purchase_id: 'purchase-p1' });
  });

  it('answers not_found for an unknown payment', () => {
    given(history)
      .when({ type: 'RefundPurchase', payment_id: 'pi_x', provider_event_id: 'evt_r1' })
      .thenError({ code: 'not_found', resource: 'purchase', id: 'pi_x' });
  });

  it('records a refund of a fully spent purchase with amount 0', () => {
    const events = given([purchased({ lot_id: 'p1', credits: 5 }, bal(5)), spent({ spend_id: 's1', allocation: alloc(['p1', 5]) }, bal(0))])
      .when({ type: 'RefundPurchase', payment_id: 'pi-p1', provider_event_id: 'evt_r1' })
      .events();
    expect(events).toMatchObject([{ type: 'PurchaseRefunded', data: { amount: 0, balance_after: 0 } }]);
  });

  it('a negative adjustment cannot take credits of a clawed-back lot', () => {
    given([...history, purchaseRefunded({ lot_id: 'p1', amount: 70 }, bal(0)), adjusted({ adjustment_id: 'a1', amount: 5 }, bal(5))])
      .when({ type: 'Adjust', adjustment_id: 'a2', amount: -6, reason: 'x' })
      .thenError({ code: 'insufficient_credits', balance: 5, required: 6 });
  });
});
