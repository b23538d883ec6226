import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodePositionCursor, encodePositionCursor, pageOf, positionKeyset } from '../../../src/http/position-pages.js';
import { ApiError } from '../../../src/http/problem.js';

const digits = fc.stringMatching(/^\d{1,20}$/);
const KEY = [
  { column: 'position_major', type: 'numeric' },
  { column: 'position_minor', type: 'numeric' },
  { column: 'entry_index', type: 'int' },
] as const;

const refused = (run: () => unknown) => {
  try {
    run();
  } catch (error) {
    return error instanceof ApiError && error.code === 'validation_failed';
  }
  return false;
};

describe('position pages', () => {
  it('decodes every cursor it encodes, part for part', () => {
    fc.assert(
      fc.property(fc.array(digits, { minLength: 1, maxLength: 4 }), (parts) => {
        expect(decodePositionCursor(encodePositionCursor(parts), parts.length)).toEqual(parts);
      }),
    );
  });

  it('refuses a cursor of another length, with non-digit parts, or not base64url JSON', () => {
    expect(refused(() => decodePositionCursor(encodePositionCursor(['1', '2']), 3))).toBe(true);
    expect(refused(() => decodePositionCursor(Buffer.from('["1","-2"]').toString('base64url'), 2))).toBe(true);
    expect(refused(() => decodePositionCursor(Buffer.from('[1,2]').toString('base64url'), 2))).toBe(true);
    expect(refused(() => decodePositionCursor(Buffer.from('{"a":1}').toString('base64url'), 1))).toBe(true);
    expect(refused(() => decodePositionCursor('not a cursor!', 1))).toBe(true);
    expect(refused(() => positionKeyset('a', KEY, encodePositionCursor(['1', '2'])))).toBe(true);
  });

  it('orders by the numeric columns of the aliased table and compares them with the cursor as numbers', () => {
    const first = positionKeyset('a', KEY, undefined);
    expect(first.after).toBeNull();
    expect(first.condition).toBeNull();
    expect(first.orderBy.members.map((member) => (member as { sql: string }).sql)).toEqual([
      '"a"."position_major" desc',
      '"a"."position_minor" desc',
      '"a"."entry_index" desc',
    ]);
    const next = positionKeyset('a', KEY, encodePositionCursor(['1000', '7', 3]));
    expect(next.after).toEqual(['1000', '7', '3']);
    expect(next.condition?.sql).toBe('("a"."position_major", "a"."position_minor", "a"."entry_index") < ($slonik_1::numeric, $slonik_2::numeric, $slonik_3::int)');
    expect(next.condition?.values).toEqual(['1000', '7', 3]);
  });

  it('hands out the first `limit` rows and a cursor only when a row is left over', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 12 }), fc.integer({ min: 1, max: 10 }), (count, limit) => {
        const rows = Array.from({ length: Math.min(count, limit + 1) }, (_, i) => ({ major: String(100 - i) }));
        const page = pageOf(rows, limit, (row) => [row.major, '0']);
        expect(page.items).toEqual(rows.slice(0, limit));
        if (rows.length > limit) expect(decodePositionCursor(page.next_cursor as string, 2)).toEqual([String(100 - limit + 1), '0']);
        else expect(page.next_cursor).toBeNull();
      }),
    );
  });
});
