import { describe, expect, it } from 'vitest';
import { given, NOW } from './support/decider-specification.js';
import { alloc, bal, DAY, granted, MINUTE, plus, purchased, reserved } from './support/fixtures.js';

const SOON = plus(NOW, -MINUTE);
const LATER = plus(NOW, -1);

describe('ExpireDue and the sweep every decision starts with', () => {
  it('decides nothing when nothing is due', () => {
    given([granted({ lot_id: 'g1', amount: 5, expires_at: plus(NOW, 1) }, bal(5))]).when({ type: 'ExpireDue' }).then([]);
  });

  it('expires a lot at its expires_at instant exactly', () => {
    const expires_at = NOW;
    given([granted({ lot_id: 'g1', amount: 5, expires_at }, bal(5))])
      .when({ type: 'ExpireDue' })
      .then([{ type: 'CreditsExpired', data: { at: NOW, lot_id: 'g1', amount: 5, expires_at, balance_after: 0, reserved_after: 0 } }]);
  });

  it('expires due lots soonest first and leaves the others', () => {
    given([
      purchased({ lot_id: 'p1', credits: 100 }, bal(100)),
      granted({ lot_id: 'later', amount: 3, expires_at: LATER }, bal(103)),
      granted({ lot_id: 'soon', amount: 2, expires_at: SOON }, bal(105)),
    ])
      .when({ type: 'ExpireDue' })
      .then([
        { type: 'CreditsExpired', data: { at: NOW, lot_id: 'soon', amount: 2, expires_at: SOON, balance_after: 103, reserved_after: 0 } },
        { type: 'CreditsExpired', data: { at: NOW, lot_id: 'later', amount: 3, expires_at: LATER, balance_after: 100, reserved_after: 0 } },
      ]);
  });

  it('expires a reservation past its expires_at and releases its credits', () => {
    const expires_at = plus(NOW, -1);
    given([
      purchased({ lot_id: 'p1', credits: 100 }, bal(100)),
      reserved({ reservation_id: 'r1', allocation: alloc(['p1', 30]), expires_at, at: plus(NOW, -5 * MINUTE) }, bal(100, 30)),
    ])
      .when({ type: 'ExpireDue' })
      .then([
        {
          type: 'ReservationExpired',
          data: { at: NOW, reservation_id: 'r1', expires_at, released: 30, released_allocation: alloc(['p1', 30]), balance_after: 100, reserved_after: 0 },
        },
      ]);
  });

  it('any command first appends the due expiries, then its own events', () => {
    const events = given([
      purchased({ lot_id: 'p1', credits: 100 }, bal(100)),
      granted({ lot_id: 'g1', amount: 50, expires_at: SOON, priority: 9 }, bal(150)),
    ])
      .when({ type: 'Spend', spend_id: 's1', amount: 10 })
      .events();
    expect(events).toMatchObject([
      { type: 'CreditsExpired', data: { lot_id: 'g1', amount: 50, balance_after: 100 } },
      { type: 'CreditsSpent', data: { allocation: alloc(['p1', 10]), balance_after: 90 } },
    ]);
  });

  it('expired credits cannot be spent, even before the sweeper ran (insufficient_credits counts them out)', () => {
    given([granted({ lot_id: 'g1', amount: 50, expires_at: SOON }, bal(50))])
      .when({ type: 'Spend', spend_id: 's1', amount: 1 })
      .thenError({ code: 'insufficient_credits', balance: 0, required: 1 });
  });

  it('a rejected command appends nothing, not even the due expiries', () => {
    const decision = given([granted({ lot_id: 'g1', amount: 50, expires_at: SOON }, bal(50))])
      .when({ type: 'Spend', spend_id: 's1', amount: 1 }).decision;
    expect(decision).not.toHaveProperty('events');
  });

  it('a purchase lot with an expiry expires like any other', () => {
    given([purchased({ lot_id: 'p1', credits: 10, expires_at: plus(NOW, -DAY) }, bal(10))])
      .when({ type: 'ExpireDue' })
      .then([{ type: 'CreditsExpired', data: { at: NOW, lot_id: 'p1', amount: 10, expires_at: plus(NOW, -DAY), balance_after: 0, reserved_after: 0 } }]);
  });
});
