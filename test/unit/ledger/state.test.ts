import { describe, expect, it } from 'vitest';
import { InvalidLedgerEventError, type LedgerEvent } from '../../../src/ledger/events.js';
import {
  availableOf,
  fromRecorded,
  balanceOf,
  effectiveTier,
  evolve,
  initialState,
  LedgerReplayError,
  liveLots,
  openReservations,
  replay,
  reservedOf,
  spendOf,
  totalsOf,
  usageOf,
} from '../../../src/ledger/state.js';
import { given, NOW } from './support/decider-specification.js';
import {
  alloc,
  bal,
  DAY,
  expired,
  granted,
  HOUR,
  MINUTE,
  plus,
  purchased,
  refunded,
  released,
  reserved,
  spent,
  T0,
  tierChanged,
} from './support/fixtures.js';

describe('evolve and the read helpers', () => {
  const history = [
    purchased({ lot_id: 'p1', credits: 100 }, bal(100)),
    granted({ lot_id: 'g1', amount: 20, expires_at: plus(NOW, DAY), kind: 'promotional' }, bal(120)),
    spent({ spend_id: 's1', allocation: alloc(['g1', 15]) }, bal(105)),
    reserved({ reservation_id: 'r1', allocation: alloc(['g1', 5], ['p1', 5]), expires_at: plus(NOW, MINUTE) }, bal(105, 10)),
  ];

  it('tracks balance, reserved and available', () => {
    const state = replay(history);
    expect([balanceOf(state), reservedOf(state), availableOf(state)]).toEqual([105, 10, 95]);
    expect(state.revision).toBe(3n);
    expect(state.updated_at).toBe(T0);
  });

  it('lists live lots in burn order with what is left and held', () => {
    expect(liveLots(replay(history))).toEqual([
      { lot_id: 'g1', kind: 'promotional', amount: 5, held: 5, expires_at: plus(NOW, DAY), priority: 0, created_at: T0, purchase_id: null },
      { lot_id: 'p1', kind: 'purchase', amount: 100, held: 5, expires_at: null, priority: 0, created_at: T0, purchase_id: 'purchase-p1' },
    ]);
  });

  it('lists open reservations and forgets closed ones 24 h after closing', () => {
    const closedAt = plus(T0, HOUR);
    let state = replay([...history, released({ reservation_id: 'r1', released_allocation: alloc(['g1', 5], ['p1', 5]), at: closedAt }, bal(105))]);
    expect(openReservations(state)).toEqual([]);
    expect(state.reservations.has('r1')).toBe(true);
    state = evolve(state, granted({ lot_id: 'g2', amount: 1, at: plus(closedAt, DAY) }, bal(106)));
    expect(state.reservations.has('r1')).toBe(false);
    given([...history, released({ reservation_id: 'r1', released_allocation: alloc(['g1', 5], ['p1', 5]), at: closedAt }, bal(105)), granted({ lot_id: 'g2', amount: 1, at: plus(closedAt, DAY) }, bal(106))])
      .when({ type: 'Release', reservation_id: 'r1' }, { now: plus(closedAt, DAY) })
      .then('not_found');
  });

  it('tracks spends and what is refundable', () => {
    const state = replay([...history, refunded({ refund_id: 'rf', spend_id: 's1', allocation: alloc(['g1', 4]) }, bal(109, 10))]);
    expect(spendOf(state, 's1')).toMatchObject({ amount: 15, refunded: 4, refundable: 11 });
    expect(spendOf(state, 'nope')).toBeNull();
  });

  it('keeps totals of every movement', () => {
    const state = replay([
      ...history,
      refunded({ refund_id: 'rf', spend_id: 's1', allocation: alloc(['g1', 4]) }, bal(109, 10)),
      expired({ lot_id: 'g1', amount: 4, expires_at: T0 }, bal(105, 10)),
    ]);
    expect(totalsOf(state)).toEqual({ purchased: 100, granted: 20, adjusted_in: 0, adjusted_out: 0, spent: 15, refunded: 4, expired: 4, clawed_back: 0 });
  });

  it('counts API calls per UTC day and month with their reset instants', () => {
    const state = replay([
      purchased({ lot_id: 'p1', credits: 100 }, bal(100)),
      spent({ spend_id: 'a', allocation: alloc(['p1', 1]), at: '2026-11-24T23:59:59.999Z' }, bal(99)),
      spent({ spend_id: 'b', allocation: alloc(['p1', 1]), at: '2026-11-25T00:00:00.000Z' }, bal(98)),
      spent({ spend_id: 'c', allocation: alloc(['p1', 1]), at: '2026-11-25T01:00:00.000Z', counts_api_call: false }, bal(97)),
    ]);
    expect(usageOf(state, new Date(NOW))).toEqual({
      day: { used: 1, resets_at: '2026-11-26T00:00:00.000Z' },
      month: { used: 2, resets_at: '2026-12-01T00:00:00.000Z' },
    });
    expect(usageOf(state, new Date('2026-12-31T23:00:00.000Z'))).toEqual({
      day: { used: 0, resets_at: '2027-01-01T00:00:00.000Z' },
      month: { used: 0, resets_at: '2027-01-01T00:00:00.000Z' },
    });
  });

  it('gives the effective tier, free once tier_expires_at has passed', () => {
    const state = replay([tierChanged({ tier: 'pro', expires_at: NOW })]);
    expect(effectiveTier(state, new Date(plus(NOW, -1)))).toBe('pro');
    expect(effectiveTier(state, new Date(NOW))).toBe('free');
    expect(effectiveTier(initialState(), new Date(NOW))).toBe('free');
  });

  it('takes revisions and positions from recorded events', () => {
    const state = evolve(initialState(), { ...history[0]!, revision: 41n, position: { major: 3n, minor: 9n } });
    expect(state.revision).toBe(41n);
    expect(state.position).toEqual({ major: 3n, minor: 9n });
  });

  it('counts but otherwise ignores event types it does not know', () => {
    const state = evolve(replay(history), { type: 'SomethingNew', data: { at: NOW } } as unknown as LedgerEvent);
    expect(state.revision).toBe(4n);
    expect(balanceOf(state)).toBe(105);
  });

  it.each([
    ['a spend from an unknown lot', spent({ spend_id: 's9', allocation: alloc(['nope', 1]) }, bal(0))],
    ['a spend larger than the lot', spent({ spend_id: 's9', allocation: alloc(['p1', 101]) }, bal(0))],
    ['a spend of held credits', spent({ spend_id: 's9', allocation: alloc(['p1', 100]) }, bal(0))],
    ['an allocation that does not sum to the amount', { ...spent({ spend_id: 's9', allocation: alloc(['p1', 1]) }, bal(0)), data: { ...spent({ spend_id: 's9', allocation: alloc(['p1', 1]) }, bal(0)).data, amount: 2 } }],
    ['a refund of an unknown spend', refunded({ refund_id: 'x', spend_id: 'nope', allocation: alloc(['p1', 1]) }, bal(0))],
    ['a refund above the spend', refunded({ refund_id: 'x', spend_id: 's1', allocation: alloc(['g1', 16]) }, bal(0))],
    ['a lot created twice', purchased({ lot_id: 'p1', credits: 1 }, bal(0))],
    ['a release of a closed reservation', released({ reservation_id: 'nope', released_allocation: [] }, bal(0))],
  ])('refuses to replay %s (corrupt stream)', (_name, event) => {
    expect(() => replay([...history, event as LedgerEvent])).toThrow(LedgerReplayError);
  });
});

describe('fromRecorded', () => {
  const recorded = (type: string, data: unknown) => ({
    id: 'e1',
    type,
    streamId: 'account-u1',
    revision: 5n,
    position: { major: 1n, minor: 2n },
    data: data as never,
    metadata: { idempotency_key: 'k', request_hash: 'h' },
    recordedAt: new Date(NOW),
  });

  it('maps a recorded ledger event to evolve input with metadata, revision and position', () => {
    const event = granted({ lot_id: 'g1', amount: 5 }, bal(5));
    expect(fromRecorded(recorded('CreditsGranted', event.data))).toEqual({
      ...event,
      metadata: { idempotency_key: 'k', request_hash: 'h' },
      revision: 5n,
      position: { major: 1n, minor: 2n },
    });
  });

  it('returns null for other event types and validates data unless told not to', () => {
    expect(fromRecorded(recorded('UserSignedUp', {}))).toBeNull();
    expect(() => fromRecorded(recorded('CreditsGranted', { at: NOW }))).toThrow(InvalidLedgerEventError);
    expect(fromRecorded(recorded('CreditsGranted', { at: NOW }), { validate: false })?.type).toBe('CreditsGranted');
  });
});
