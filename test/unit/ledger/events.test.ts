import { describe, expect, it } from 'vitest';
import {
  ACCOUNT_STREAM_PREFIX,
  accountStreamId,
  InvalidLedgerEventError,
  isLedgerEventType,
  LEDGER_EVENT_TYPES,
  parseLedgerEvent,
  tryParseLedgerEvent,
  userIdOfAccountStream,
} from '../../../src/ledger/events.js';
import { alloc, bal, spent } from './support/fixtures.js';

const validSpend = spent({ spend_id: 's1', allocation: alloc(['p1', 3]), metadata: { model: 'gpt-4', nested: [1, { a: null }] } }, bal(7));

describe('account streams', () => {
  it('are named account-<userId>', () => {
    expect(ACCOUNT_STREAM_PREFIX).toBe('account-');
    expect(accountStreamId('u-1')).toBe('account-u-1');
    expect(userIdOfAccountStream('account-u-1')).toBe('u-1');
    expect(userIdOfAccountStream('account-')).toBeNull();
    expect(userIdOfAccountStream('session-u-1')).toBeNull();
  });
});

describe('parseLedgerEvent', () => {
  it('returns the typed event for valid data', () => {
    expect(parseLedgerEvent('CreditsSpent', JSON.parse(JSON.stringify(validSpend.data)))).toEqual(validSpend);
  });

  it('knows the twelve event types', () => {
    expect(LEDGER_EVENT_TYPES).toEqual([
      'CreditsPurchased',
      'CreditsGranted',
      'CreditsSpent',
      'CreditsReserved',
      'ReservationSettled',
      'ReservationReleased',
      'ReservationExpired',
      'CreditsRefunded',
      'CreditsAdjusted',
      'CreditsExpired',
      'PurchaseRefunded',
      'TierChanged',
    ]);
    expect(isLedgerEventType('UserSignedUp')).toBe(false);
    expect(isLedgerEventType('toString')).toBe(false);
  });

  it('throws on an unknown type', () => {
    expect(() => parseLedgerEvent('UserSignedUp', {})).toThrow(InvalidLedgerEventError);
    expect(tryParseLedgerEvent('UserSignedUp', {})).toBeNull();
  });

  it.each([
    ['a missing field', { ...validSpend.data, balance_after: undefined }, 'balance_after'],
    ['a fractional amount', { ...validSpend.data, amount: 1.5 }, 'amount'],
    ['a string amount', { ...validSpend.data, amount: '3' }, 'amount'],
    ['a non-UTC instant', { ...validSpend.data, at: '2026-11-25T10:00:00+01:00' }, 'at'],
    ['a negative allocation', { ...validSpend.data, allocation: alloc(['p1', -3]) }, 'allocation.0.amount'],
    ['a non-JSON metadata', { ...validSpend.data, metadata: 'x' }, 'metadata'],
  ])('throws on %s, naming the path', (_name, data, path) => {
    try {
      parseLedgerEvent('CreditsSpent', data);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(InvalidLedgerEventError);
      expect((error as InvalidLedgerEventError).issues.map((i) => i.path)).toContain(path);
    }
  });

  it('drops unknown properties (tolerant reader)', () => {
    expect(parseLedgerEvent('CreditsSpent', { ...validSpend.data, added_in_v2: true }).data).not.toHaveProperty('added_in_v2');
  });

  it('refuses a zero adjustment and accepts negative ones', () => {
    const base = { at: '2026-11-25T10:00:00.000Z', adjustment_id: 'a', lot_id: null, allocation: [], reason: 'r', actor_id: null, ...bal(0) };
    expect(() => parseLedgerEvent('CreditsAdjusted', { ...base, amount: 0 })).toThrow(InvalidLedgerEventError);
    expect(parseLedgerEvent('CreditsAdjusted', { ...base, amount: -2 }).type).toBe('CreditsAdjusted');
  });
});
