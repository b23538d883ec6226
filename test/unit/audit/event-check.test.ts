/**
 * The audit's fast event check (src/audit/event-check.ts) against the schemas it stands in for: it
 * never accepts what `parseLedgerEvent` rejects, what it accepts is what the schema returns, and what it
 * does not accept is answered by `parseLedgerEvent` itself — the same event, or the same error.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EVENT_FIELDS, fastAccepts, parseLedgerEventFast } from '../../../src/audit/event-check.js';
import type { JsonObject } from '../../../src/core/event-store.js';
import { LEDGER_EVENT_SCHEMAS, LEDGER_EVENT_TYPES, type LedgerEventType, parseLedgerEvent } from '../../../src/ledger/index.js';
import { generateHistory, seededRandom } from '../../../bench/audit-fixture.js';
import {
  adjusted,
  alloc,
  bal,
  expired,
  granted,
  purchased,
  purchaseRefunded,
  refunded,
  released,
  reservationExpired,
  reserved,
  settled,
  spent,
  tierChanged,
} from '../ledger/support/fixtures.js';

/** The schema's verdict: the parsed event, or the error message. */
const schemaVerdict = (type: string, data: unknown) => {
  try {
    return { event: parseLedgerEvent(type, data) };
  } catch (error) {
    return { error: (error as Error).message };
  }
};
const fastVerdict = (type: string, data: unknown) => {
  try {
    return { event: parseLedgerEventFast(type, data as JsonObject) };
  } catch (error) {
    return { error: (error as Error).message };
  }
};

// One valid event of every type, the ones the decider writes (bench fixture) and hand-made ones.
const histories = [1, 2, 3, 4].flatMap((seed) => generateHistory(seededRandom(seed), 300));
const handMade = [
  purchased({ lot_id: 'p', credits: 100, expires_at: '2026-12-25T09:00:00.000Z' }, bal(100)),
  granted({ lot_id: 'g', amount: 5, kind: 'promotional' }, bal(105)),
  spent({ spend_id: 's', allocation: alloc(['p', 10]) }, bal(95)),
  reserved({ reservation_id: 'r', allocation: alloc(['p', 10]), expires_at: '2026-11-25T10:00:00.000Z' }, bal(95, 10)),
  settled({ reservation_id: 'r', spend_id: 's2', credits_used: 4, released_allocation: alloc(['p', 6]) }, bal(91)),
  released({ reservation_id: 'r2', released_allocation: alloc(['p', 1]) }, bal(91)),
  reservationExpired({ reservation_id: 'r3', expires_at: '2026-11-25T10:00:00.000Z', released_allocation: alloc(['p', 1]) }, bal(91)),
  refunded({ refund_id: 'f', spend_id: 's', allocation: alloc(['p', 1]) }, bal(92)),
  adjusted({ adjustment_id: 'a', amount: -2, allocation: alloc(['p', 2]) }, bal(90)),
  expired({ lot_id: 'g', amount: 5, expires_at: '2026-11-25T10:00:00.000Z' }, bal(85)),
  purchaseRefunded({ lot_id: 'p', amount: 10 }, bal(75)),
  tierChanged({ tier: 'pro' }),
].map((event) => ({ type: event.type, data: event.data as unknown as JsonObject }));
const valid = [...histories.map((event) => ({ type: event.type, data: event.data })), ...handMade];
const baseOf = new Map<string, JsonObject>(valid.map((event) => [event.type, event.data]));
// Every valid value seen per field name: mutations mostly keep an event valid, so both answers occur.
const validValues = new Map<string, unknown[]>();
for (const event of valid) {
  for (const [key, value] of Object.entries(event.data)) validValues.set(key, [...(validValues.get(key) ?? []), value]);
}

// Values to put in any field: valid for some fields, invalid for others, and things JSON cannot hold.
const allocationValues = [
  [],
  [{ lot_id: 'a', amount: 1 }],
  [{ amount: 2, lot_id: 'b' }, { lot_id: 'c', amount: 3 }],
  [{ lot_id: '', amount: 1 }],
  [{ lot_id: 'a', amount: 0 }],
  [{ lot_id: 'a', amount: 1.5 }],
  [{ lot_id: 'a', amount: 1, extra: 1 }],
  [{ lot_id: 'a' }],
  [null],
  [[]],
  { lot_id: 'a', amount: 1 },
];
const candidates: unknown[] = [
  null,
  undefined,
  true,
  false,
  0,
  -0,
  1,
  -1,
  7,
  1.5,
  -2.5,
  2 ** 53,
  -(2 ** 53),
  Number.MAX_SAFE_INTEGER,
  -Number.MAX_SAFE_INTEGER,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  1e21,
  '',
  'x',
  'usd',
  'USD',
  'us',
  'eur ',
  'bonus',
  'promotional',
  'free',
  'pro',
  'enterprise',
  'gold',
  '2026-01-05T08:00:00.000Z',
  '2026-02-30T08:00:00.000Z',
  '2026-13-01T00:00:00.000Z',
  '2026-01-05T24:00:00.000Z',
  '2026-01-05T08:00:00Z',
  '2026-01-05T08:00:00.000+00:00',
  ' 2026-01-05T08:00:00.000Z',
  ...allocationValues,
  {},
  { a: [1, { b: null }], c: 'd', e: 1.25 },
  JSON.parse('{"__proto__": {"a": 1}}'),
  Object.create(null),
  { a: undefined },
  { a: Number.NaN },
  new Date(0),
  [1, 2],
  () => 1,
  Symbol('s'),
  10n,
];

const typeArb = fc.constantFrom(...LEDGER_EVENT_TYPES);
const rarely = <T>(arb: fc.Arbitrary<T>) => fc.oneof({ arbitrary: fc.constant(null), weight: 10 }, { arbitrary: arb, weight: 1 });
const mutation = fc.record({
  // Per field: another event's valid value for it (index into its list), or anything at all.
  fields: fc.array(
    fc.tuple(
      fc.nat(),
      fc.oneof(
        { arbitrary: fc.nat().map((n) => ({ valid: n })), weight: 3 },
        { arbitrary: fc.oneof(fc.constantFrom(...candidates), fc.jsonValue(), fc.anything()).map((value) => ({ value })), weight: 1 },
      ),
    ),
    { maxLength: 4 },
  ),
  drop: rarely(fc.nat()),
  extra: rarely(fc.tuple(fc.constantFrom('extra', 'hash', '__proto__', 'toString'), fc.jsonValue())),
});

type Mutation = typeof mutation extends fc.Arbitrary<infer T> ? T : never;

const mutate = (type: LedgerEventType, m: Mutation): Record<string, unknown> => {
  const data: Record<string, unknown> = structuredClone(baseOf.get(type) as JsonObject);
  const keys = Object.keys(EVENT_FIELDS[type]);
  for (const [index, change] of m.fields) {
    const key = keys[index % keys.length] as string;
    const seen = validValues.get(key) ?? [null];
    data[key] = 'valid' in change ? structuredClone(seen[change.valid % seen.length]) : change.value;
  }
  if (m.drop !== null) delete data[keys[m.drop % keys.length] as string];
  if (m.extra !== null) Object.defineProperty(data, m.extra[0], { value: m.extra[1], enumerable: true, configurable: true, writable: true });
  return data;
};

describe('the fast event check', () => {
  it('knows every event type, with exactly the fields of its schema', () => {
    expect(Object.keys(EVENT_FIELDS).sort()).toEqual([...LEDGER_EVENT_TYPES].sort());
    for (const type of LEDGER_EVENT_TYPES) {
      expect(Object.keys(EVENT_FIELDS[type]).sort(), type).toEqual(Object.keys(LEDGER_EVENT_SCHEMAS[type].shape).sort());
    }
  });

  it('accepts every event the decider writes, as the schema parses it', () => {
    expect(new Set(valid.map((event) => event.type))).toEqual(new Set(LEDGER_EVENT_TYPES));
    for (const event of valid) {
      expect(fastAccepts(event.type, event.data), `${event.type} ${JSON.stringify(event.data)}`).toBe(true);
      expect(parseLedgerEventFast(event.type, event.data)).toEqual(parseLedgerEvent(event.type, event.data));
    }
  });

  it('never accepts what the schema rejects, and answers everything exactly as parseLedgerEvent does', () => {
    let accepted = 0;
    let deferred = 0;
    fc.assert(
      fc.property(typeArb, mutation, (type, m) => {
        const data = mutate(type, m);
        const schema = schemaVerdict(type, data);
        if (fastAccepts(type, data)) {
          accepted += 1;
          // The schema accepts it too, and returns an equal copy (same fields, same values).
          expect(schema.error).toBeUndefined();
          expect(schema.event?.data).toStrictEqual({ ...data });
        } else {
          deferred += 1;
        }
        expect(fastVerdict(type, data)).toEqual(schema);
      }),
      { numRuns: 20_000 },
    );
    // Both ways were exercised, many times.
    expect(accepted).toBeGreaterThan(1000);
    expect(deferred).toBeGreaterThan(1000);
  });

  it('defers unknown types and non-objects to the schema (same error)', () => {
    for (const [type, data] of [
      ['NotAnEvent', {}],
      ['toString', {}],
      ['__proto__', {}],
      ['CreditsGranted', null],
      ['CreditsGranted', []],
      ['CreditsGranted', 'x'],
    ] as const) {
      expect(fastAccepts(type, data)).toBe(false);
      expect(fastVerdict(type, data)).toEqual(schemaVerdict(type, data));
    }
  });
});
