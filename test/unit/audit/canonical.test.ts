/**
 * The audit's fast hash path must be byte-for-byte the recipe of src/core/hash-chain.ts: for any JSON
 * (keys with quotes, control characters, lone surrogates, digits, `__proto__`…, nested arbitrarily).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJsonFast, eventHashFast, hashedText } from '../../../src/core/canonical.js';
import type { JsonObject, JsonValue } from '../../../src/core/event-store.js';
import { canonicalJson, eventHash } from '../../../src/core/hash-chain.js';

// JSON as it arrives from a JSON parser: full unicode (lone surrogates included), awkward keys.
const key = fc.oneof(fc.string({ unit: 'binary' }), fc.constantFrom('hash', 'prev_hash', '__proto__', '10', '9', '', 'a"b', 'é', '\u0000'));
const json: fc.Arbitrary<JsonValue> = fc.letrec<{ value: JsonValue }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.string({ unit: 'binary' }),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(key, tie('value'), { maxKeys: 5 }),
  ),
})).value;
const object = fc.dictionary(key, json, { maxKeys: 6 }) as fc.Arbitrary<JsonObject>;
// Parsed back from text, like the verifier's input (no -0, __proto__ as an own key).
const parsed = <T>(value: T): T => JSON.parse(JSON.stringify(value));

describe('canonicalJsonFast', () => {
  it('writes exactly what canonicalJson writes, for any JSON value', () => {
    fc.assert(
      fc.property(json, (value) => {
        const input = parsed(value);
        expect(canonicalJsonFast(input)).toBe(canonicalJson(input));
      }),
      { numRuns: 2000 },
    );
  });

  it('memoised key orders never leak between objects that only look alike', () => {
    const lookalikes = [
      { a: 1, m: 2, z: 3 },
      { a: 1, b: 2, z: 3 },
      { a: 1, z: 3, m: 2 },
      { z: 3, m: 2, a: 1 },
      { a: 1, '\u0000z': 2, z: 3 },
      { a: 1 },
      { a: 1, z: 3 },
      {},
      { '': 1 },
      { '': 1, a: 2 },
    ] as JsonValue[];
    for (let round = 0; round < 3; round++) {
      for (const value of lookalikes) expect(canonicalJsonFast(value)).toBe(canonicalJson(value));
    }
  });

  it('covers the awkward cases explicitly', () => {
    const value = parsed({ b: 1, a: [{ '10': 1, '9': 2 }], 'é': 'x"y\\z\n\u0001', '\ud800': '\udfff', n: -0, big: 1e21, small: 1e-7 }) as JsonValue;
    expect(canonicalJsonFast(value)).toBe(canonicalJson(value));
  });
});

describe('eventHashFast', () => {
  it('is eventHash, ignoring only the top-level metadata.hash', () => {
    fc.assert(
      fc.property(fc.uuid(), fc.string(), object, object, fc.option(fc.string()), (id, type, data, metadata, hash) => {
        const d = parsed(data);
        const m: JsonObject = { ...parsed(metadata) };
        if (hash !== null) m.hash = hash;
        expect(eventHashFast(id, type, d, m)).toBe(eventHash({ id, type, data: d, metadata: m }));
        expect(hashedText(id, type, d, m)).toBe(canonicalJson({ id, type, data: d, metadata: Object.fromEntries(Object.entries(m).filter(([k]) => k !== 'hash')) }));
      }),
      { numRuns: 1000 },
    );
  });

  it('changes with any change to id, type, data or metadata (other than hash)', () => {
    const base = { id: 'e1', type: 'CreditsSpent', data: { amount: 5, nested: { hash: 'kept' } }, metadata: { prev_hash: '0'.repeat(64), hash: 'x' } };
    const h = eventHashFast(base.id, base.type, base.data, base.metadata);
    expect(eventHashFast('e2', base.type, base.data, base.metadata)).not.toBe(h);
    expect(eventHashFast(base.id, 'CreditsGranted', base.data, base.metadata)).not.toBe(h);
    expect(eventHashFast(base.id, base.type, { ...base.data, amount: 6 }, base.metadata)).not.toBe(h);
    expect(eventHashFast(base.id, base.type, { ...base.data, nested: { hash: 'changed' } }, base.metadata)).not.toBe(h);
    expect(eventHashFast(base.id, base.type, base.data, { ...base.metadata, prev_hash: '1'.repeat(64) })).not.toBe(h);
    expect(eventHashFast(base.id, base.type, base.data, { ...base.metadata, hash: 'other' })).toBe(h);
  });
});
