import { describe, expect, it } from 'vitest';
import { given, NOW } from './support/decider-specification.js';
import {
  alloc,
  bal,
  granted,
  MINUTE,
  plus,
  purchased,
  released,
  reservationExpired,
  reserved,
  SECOND,
  settled,
  spent,
} from './support/fixtures.js';

const EXPIRES = plus(NOW, 5 * MINUTE);
const history = [
  purchased({ lot_id: 'p1', credits: 100 }, bal(100)),
  reserved({ reservation_id: 'r1', allocation: alloc(['p1', 40]), expires_at: EXPIRES, at: NOW }, bal(100, 40)),
];

describe('Reserve', () => {
  it('holds credits out of available (not balance) for 300 s by default, earmarking lots', () => {
    given([purchased({ lot_id: 'p1', credits: 100 }, bal(100))])
      .when({ type: 'Reserve', reservation_id: 'r1', amount: 40, description: 'gpt-4' })
      .then([
        {
          type: 'CreditsReserved',
          data: {
            at: NOW,
            reservation_id: 'r1',
            amount: 40,
            expires_at: plus(NOW, 300 * SECOND),
            allocation: alloc(['p1', 40]),
            description: 'gpt-4',
            balance_after: 100,
            reserved_after: 40,
          },
        },
      ]);
  });

  it('honours ttl_seconds up to 3600', () => {
    const events = given([purchased({ lot_id: 'p1', credits: 100 }, bal(100))])
      .when({ type: 'Reserve', reservation_id: 'r1', amount: 1, ttl_seconds: 3600 })
      .events();
    expect(events[0]?.type === 'CreditsReserved' && events[0].data.expires_at).toBe(plus(NOW, 3600 * SECOND));
  });

  it.each([0, 3601, 1.5, -1])('rejects ttl_seconds %s', (ttl_seconds) => {
    given([purchased({ lot_id: 'p1', credits: 100 }, bal(100))])
      .when({ type: 'Reserve', reservation_id: 'r1', amount: 1, ttl_seconds })
      .thenError({ code: 'validation_failed', errors: [{ path: 'ttl_seconds', message: 'must be an integer from 1 to 3600' }] });
  });

  it('earmarks lots in burn order across several lots', () => {
    const events = given([
      purchased({ lot_id: 'p1', credits: 10 }, bal(10)),
      granted({ lot_id: 'b1', amount: 5 }, bal(15)),
    ])
      .when({ type: 'Reserve', reservation_id: 'r1', amount: 8 })
      .events();
    expect(events).toMatchObject([{ type: 'CreditsReserved', data: { allocation: alloc(['b1', 5], ['p1', 3]), reserved_after: 8 } }]);
  });

  it('refuses more than available, counting other reservations', () => {
    given(history)
      .when({ type: 'Reserve', reservation_id: 'r2', amount: 61 })
      .thenError({ code: 'insufficient_credits', balance: 60, required: 61 });
  });

  it('rejects a reservation id that is already used', () => {
    given(history).when({ type: 'Reserve', reservation_id: 'r1', amount: 1 }).then('validation_failed');
  });
});

describe('Settle', () => {
  it('spends the amount from the earmarked lots and releases the rest', () => {
    given(history)
      .when({ type: 'Settle', reservation_id: 'r1', spend_id: 's1', amount: 25, metadata: { model: 'gpt-4' } }, { now: plus(NOW, MINUTE) })
      .then([
        {
          type: 'CreditsSpent',
          data: {
            at: plus(NOW, MINUTE),
            spend_id: 's1',
            amount: 25,
            allocation: alloc(['p1', 25]),
            description: null,
            metadata: { model: 'gpt-4' },
            reservation_id: 'r1',
            counts_api_call: true,
            reference_type: null,
            reference_id: null,
            balance_after: 75,
            reserved_after: 15,
          },
        },
        {
          type: 'ReservationSettled',
          data: {
            at: plus(NOW, MINUTE),
            reservation_id: 'r1',
            spend_id: 's1',
            credits_used: 25,
            released: 15,
            released_allocation: alloc(['p1', 15]),
            balance_after: 75,
            reserved_after: 0,
          },
        },
      ]);
  });

  it('spends from the earmarked lots even when a preferred lot appeared since', () => {
    const events = given([
      ...history,
      granted({ lot_id: 'b-priority', amount: 50, priority: 9, at: NOW }, bal(150, 40)),
    ])
      .when({ type: 'Settle', reservation_id: 'r1', spend_id: 's1', amount: 40 })
      .events();
    expect(events[0]).toMatchObject({ type: 'CreditsSpent', data: { allocation: alloc(['p1', 40]), balance_after: 110, reserved_after: 0 } });
  });

  it('settles for one less than reserved, releasing exactly 1', () => {
    const events = given(history).when({ type: 'Settle', reservation_id: 'r1', spend_id: 's1', amount: 39 }).events();
    expect(events[1]?.data).toMatchObject({ credits_used: 39, released: 1, released_allocation: alloc(['p1', 1]), balance_after: 61, reserved_after: 0 });
  });

  it('settles for the whole reservation with nothing released', () => {
    const events = given(history).when({ type: 'Settle', reservation_id: 'r1', spend_id: 's1', amount: 40 }).events();
    expect(events.map((e) => e.type)).toEqual(['CreditsSpent', 'ReservationSettled']);
    expect(events[1]?.data).toMatchObject({ credits_used: 40, released: 0, released_allocation: [], balance_after: 60, reserved_after: 0 });
  });

  it('settles for 0: a zero spend (the API call still counts) and everything released', () => {
    const events = given(history).when({ type: 'Settle', reservation_id: 'r1', spend_id: 's1', amount: 0 }).events();
    expect(events[0]?.data).toMatchObject({ amount: 0, allocation: [], counts_api_call: true, balance_after: 100, reserved_after: 40 });
    expect(events[1]?.data).toMatchObject({ credits_used: 0, released: 40, balance_after: 100, reserved_after: 0 });
  });

  it('settles across several earmarked lots in their burn order', () => {
    const events = given([
      granted({ lot_id: 'b1', amount: 5 }, bal(5)),
      purchased({ lot_id: 'p1', credits: 10 }, bal(15)),
      reserved({ reservation_id: 'r1', allocation: alloc(['b1', 5], ['p1', 5]), expires_at: EXPIRES }, bal(15, 10)),
    ])
      .when({ type: 'Settle', reservation_id: 'r1', spend_id: 's1', amount: 7 })
      .events();
    expect(events[0]?.data).toMatchObject({ allocation: alloc(['b1', 5], ['p1', 2]) });
    expect(events[1]?.data).toMatchObject({ released_allocation: alloc(['p1', 3]), released: 3 });
  });

  it('rejects an amount above what is reserved', () => {
    given(history)
      .when({ type: 'Settle', reservation_id: 'r1', spend_id: 's1', amount: 41 })
      .thenError({ code: 'validation_failed', errors: [{ path: 'amount', message: 'must not exceed the reserved 40' }] });
  });

  it('rejects a negative amount', () => {
    given(history).when({ type: 'Settle', reservation_id: 'r1', spend_id: 's1', amount: -1 }).then('validation_failed');
  });

  it('answers not_found for an unknown reservation', () => {
    given(history)
      .when({ type: 'Settle', reservation_id: 'nope', spend_id: 's1', amount: 1 })
      .thenError({ code: 'not_found', resource: 'reservation', id: 'nope' });
  });

  it('answers reservation_expired once the reservation is past expires_at, even before the sweeper ran', () => {
    given(history)
      .when({ type: 'Settle', reservation_id: 'r1', spend_id: 's1', amount: 1 }, { now: EXPIRES })
      .thenError({ code: 'reservation_expired', reservation_id: 'r1', expires_at: EXPIRES });
  });

  it('still settles 1 ms before expires_at', () => {
    const events = given(history).when({ type: 'Settle', reservation_id: 'r1', spend_id: 's1', amount: 1 }, { now: plus(EXPIRES, -1) }).events();
    expect(events.map((e) => e.type)).toEqual(['CreditsSpent', 'ReservationSettled']);
  });

  it('answers reservation_expired for a reservation the sweeper expired', () => {
    given([...history, reservationExpired({ reservation_id: 'r1', expires_at: EXPIRES, released_allocation: alloc(['p1', 40]), at: EXPIRES }, bal(100))])
      .when({ type: 'Settle', reservation_id: 'r1', spend_id: 's1', amount: 1 }, { now: EXPIRES })
      .then('reservation_expired');
  });

  it('answers reservation_closed for a settled reservation', () => {
    given([
      ...history,
      spent({ spend_id: 's0', allocation: alloc(['p1', 10]), reservation_id: 'r1' }, bal(90, 30)),
      settled({ reservation_id: 'r1', spend_id: 's0', credits_used: 10, released_allocation: alloc(['p1', 30]) }, bal(90)),
    ])
      .when({ type: 'Settle', reservation_id: 'r1', spend_id: 's1', amount: 1 })
      .thenError({ code: 'reservation_closed', reservation_id: 'r1', status: 'settled' });
  });

  it('answers reservation_closed for a released reservation', () => {
    given([...history, released({ reservation_id: 'r1', released_allocation: alloc(['p1', 40]) }, bal(100))])
      .when({ type: 'Settle', reservation_id: 'r1', spend_id: 's1', amount: 1 })
      .thenError({ code: 'reservation_closed', status: 'released' });
  });
});

describe('Release', () => {
  it('gives everything held back to available', () => {
    given(history)
      .when({ type: 'Release', reservation_id: 'r1' })
      .then([
        {
          type: 'ReservationReleased',
          data: { at: NOW, reservation_id: 'r1', released: 40, released_allocation: alloc(['p1', 40]), balance_after: 100, reserved_after: 0 },
        },
      ]);
  });

  it('answers reservation_closed when released twice', () => {
    given([...history, released({ reservation_id: 'r1', released_allocation: alloc(['p1', 40]) }, bal(100))])
      .when({ type: 'Release', reservation_id: 'r1' })
      .then('reservation_closed');
  });

  it('answers reservation_expired for an expired reservation (its credits are already back)', () => {
    given(history).when({ type: 'Release', reservation_id: 'r1' }, { now: plus(EXPIRES, 1) }).then('reservation_expired');
  });

  it('answers not_found for an unknown reservation', () => {
    given(history).when({ type: 'Release', reservation_id: 'r2' }).then('not_found');
  });
});

describe('held credits and lot expiry', () => {
  const LOT_EXPIRES = plus(NOW, MINUTE);
  const heldInExpiringLot = [
    granted({ lot_id: 'b1', amount: 10, expires_at: LOT_EXPIRES }, bal(10)),
    reserved({ reservation_id: 'r1', allocation: alloc(['b1', 6]), expires_at: EXPIRES, at: NOW }, bal(10, 6)),
  ];

  it('expires only the unheld part of a lot; the held part can still be settled, and what is released expires at once', () => {
    const at = plus(NOW, 2 * MINUTE);
    given(heldInExpiringLot)
      .when({ type: 'Settle', reservation_id: 'r1', spend_id: 's1', amount: 4 }, { now: at })
      .then([
        { type: 'CreditsExpired', data: { at, lot_id: 'b1', amount: 4, expires_at: LOT_EXPIRES, balance_after: 6, reserved_after: 6 } },
        {
          type: 'CreditsSpent',
          data: {
            at,
            spend_id: 's1',
            amount: 4,
            allocation: alloc(['b1', 4]),
            description: null,
            metadata: null,
            reservation_id: 'r1',
            counts_api_call: true,
            reference_type: null,
            reference_id: null,
            balance_after: 2,
            reserved_after: 2,
          },
        },
        {
          type: 'ReservationSettled',
          data: { at, reservation_id: 'r1', spend_id: 's1', credits_used: 4, released: 2, released_allocation: alloc(['b1', 2]), balance_after: 2, reserved_after: 0 },
        },
        { type: 'CreditsExpired', data: { at, lot_id: 'b1', amount: 2, expires_at: LOT_EXPIRES, balance_after: 0, reserved_after: 0 } },
      ]);
  });

  it('a reservation expiring releases into an expired lot, which then expires in the same sweep', () => {
    given(heldInExpiringLot)
      .when({ type: 'ExpireDue' }, { now: EXPIRES })
      .then([
        reservationExpired({ reservation_id: 'r1', expires_at: EXPIRES, released_allocation: alloc(['b1', 6]), at: EXPIRES }, bal(10, 0)),
        { type: 'CreditsExpired', data: { at: EXPIRES, lot_id: 'b1', amount: 10, expires_at: LOT_EXPIRES, balance_after: 0, reserved_after: 0 } },
      ]);
  });
});
