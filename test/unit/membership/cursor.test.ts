import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeCursor, encodeCursor, pageOf } from '../../../src/membership/cursor.js';

describe('keyset cursors', () => {
  it('round-trip', () => {
    fc.assert(
      fc.property(fc.date({ min: new Date('1970-01-01T00:00:00.000Z'), max: new Date('9999-12-31T23:59:59.999Z'), noInvalidDate: true }), fc.uuid(), (createdAt, id) => {
        expect(decodeCursor(encodeCursor({ createdAt, id }))).toEqual({ createdAt, id });
      }),
    );
  });

  it.each(['', 'not base64!', Buffer.from('{}').toString('base64url'), Buffer.from('["x","y"]').toString('base64url'), Buffer.from(JSON.stringify(['2026-01-01T00:00:00.000Z', 'nope'])).toString('base64url'), Buffer.from(JSON.stringify(['2026-01-01', randomUUID()])).toString('base64url')])(
    'rejects %j',
    (text) => {
      expect(decodeCursor(text)).toBeNull();
    },
  );

  it('pageOf cuts limit + 1 rows into a page and a cursor to the next one', () => {
    const rows = [3, 2, 1].map((n) => ({ id: randomUUID(), created_at: new Date(n * 1000) }));
    const page = pageOf(rows, 2);
    expect(page.items).toEqual(rows.slice(0, 2));
    expect(decodeCursor(page.nextCursor as string)).toEqual({ createdAt: rows[1]?.created_at, id: rows[1]?.id });
    expect(pageOf(rows, 3).nextCursor).toBeNull();
  });
});
