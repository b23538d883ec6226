import { isUuid } from '../core/ids.js';

/**
 * Keyset cursors for lists ordered newest first by (created_at desc, id desc): an opaque base64url
 * of the last item's key. Opaque to clients (API §1), checked on the way in.
 */

export interface KeysetCursor {
  readonly createdAt: Date;
  readonly id: string;
}

export const encodeCursor = (cursor: KeysetCursor): string =>
  Buffer.from(JSON.stringify([cursor.createdAt.toISOString(), cursor.id])).toString('base64url');

/** The cursor, or null when the text is not one this API issued. */
export const decodeCursor = (text: string): KeysetCursor | null => {
  if (!/^[A-Za-z0-9_-]{1,512}$/.test(text)) return null;
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    return null;
  }
  if (!Array.isArray(value) || value.length !== 2) return null;
  const [at, id] = value as unknown[];
  if (typeof at !== 'string' || typeof id !== 'string' || !isUuid(id)) return null;
  const createdAt = new Date(at);
  if (Number.isNaN(createdAt.getTime()) || createdAt.toISOString() !== at) return null;
  // Only years 1–9999 (the plain `YYYY-` form): every issued cursor holds a row's real timestamp, and
  // Postgres refuses year 0 and the extended `±YYYYYY` form that toISOString gives outside that range.
  if (!/^(?!0000)\d{4}-/.test(at)) return null;
  return { createdAt, id };
};

export interface Page<T> {
  readonly items: readonly T[];
  readonly nextCursor: string | null;
}

/** Cuts a `limit + 1` fetch down to `limit` items and a cursor to the next page. */
export const pageOf = <T extends { id: string; created_at: Date }>(rows: readonly T[], limit: number): Page<T> => {
  const items = rows.slice(0, limit);
  const last = items[items.length - 1];
  return {
    items,
    nextCursor: rows.length > limit && last ? encodeCursor({ createdAt: last.created_at, id: last.id }) : null,
  };
};
