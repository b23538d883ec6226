import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hasEscapedKey } from '../../../src/http/json-keys.js';

/** A key needs escaping in JSON exactly when JSON.stringify writes it other than as itself in quotes. */
const needsEscape = (key: string) => JSON.stringify(key) !== `"${key}"`;
const anyKeyNeedsEscape = (value: unknown): boolean => {
  if (Array.isArray(value)) return value.some(anyKeyNeedsEscape);
  if (value && typeof value === 'object') return Object.entries(value).some(([key, member]) => needsEscape(key) || anyKeyNeedsEscape(member));
  return false;
};

describe('hasEscapedKey', () => {
  it('finds escaped keys at any depth, and only keys', () => {
    expect(hasEscapedKey('{"amount":1}')).toBe(false);
    expect(hasEscapedKey('{"a":"x\\"y\\": z"}')).toBe(false); // escapes in a value that looks like a key
    expect(hasEscapedKey('["a\\n", {"b": "\\\\"}]')).toBe(false);
    expect(hasEscapedKey('{"metadata":{"\\n":1}}')).toBe(true);
    expect(hasEscapedKey('{"metadata":{"a\\"b" : 1}}')).toBe(true);
    expect(hasEscapedKey('{"\\u0061mount":1}')).toBe(true);
    expect(hasEscapedKey('[{"x":[{"\\\\":2}]}]')).toBe(true);
  });

  it('agrees with JSON.stringify on arbitrary JSON, with and without whitespace', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), fc.constantFrom(undefined, 2), (value, indent) => {
        expect(hasEscapedKey(JSON.stringify(value, null, indent))).toBe(anyKeyNeedsEscape(value));
      }),
      { numRuns: 2000 },
    );
  });
});
