import type { FragmentSqlToken, ListSqlToken } from 'slonik';
import { sql } from '../adapters/postgres/pool.js';
import { ApiError } from './problem.js';

/**
 * Keyset pages of a read model, newest first, in event-position order: `GET /credits/transactions` by
 * (position_major, position_minor), `GET /activity` by those and the entry's index within its event.
 * The cursor is opaque to clients: base64url of a JSON array of digit strings, one per key column.
 */

export interface KeyColumn {
  readonly column: string;
  /** How a cursor part is compared with the column: numeric (positions) or int. */
  readonly type: 'numeric' | 'int';
}

export interface PositionKeyset {
  /** The cursor's parts (null: the first page). */
  readonly after: readonly string[] | null;
  /** `(k1, k2, …) < (cursor parts)`, or null for the first page. */
  readonly condition: FragmentSqlToken | null;
  /**
   * `k1 desc, k2 desc, …` on the table's own columns, qualified by its alias: a select list that hands
   * the positions out as text must not take their place in ORDER BY (as text, 999 sorts after 1000).
   */
  readonly orderBy: ListSqlToken;
}

const invalidCursor = () =>
  new ApiError('validation_failed', 'The query is not valid.', { errors: [{ path: 'querystring.cursor', message: 'is not a cursor this API issued' }] });

export const encodePositionCursor = (parts: readonly (string | number)[]): string =>
  Buffer.from(JSON.stringify(parts.map(String))).toString('base64url');

/** The cursor's parts; `400 validation_failed` for anything this API did not issue. */
export const decodePositionCursor = (text: string, length: number): string[] => {
  if (!/^[A-Za-z0-9_-]{1,512}$/.test(text)) throw invalidCursor();
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    throw invalidCursor();
  }
  if (!Array.isArray(value) || value.length !== length || !value.every((part) => typeof part === 'string' && /^\d{1,20}$/.test(part))) {
    throw invalidCursor();
  }
  return value as string[];
};

/** The keyset of a query on the table aliased `alias`, after `cursor` (undefined: the first page). */
export const positionKeyset = (alias: string, keys: readonly KeyColumn[], cursor: string | undefined): PositionKeyset => {
  const after = cursor === undefined ? null : decodePositionCursor(cursor, keys.length);
  const columns = keys.map((key) => sql.identifier([alias, key.column]));
  const condition =
    after === null
      ? null
      : sql.fragment`(${sql.join(columns, sql.fragment`, `)}) < (${sql.join(
          keys.map((key, i) => (key.type === 'numeric' ? sql.fragment`${after[i] as string}::numeric` : sql.fragment`${Number(after[i])}::int`)),
          sql.fragment`, `,
        )})`;
  const orderBy = sql.join(
    columns.map((column) => sql.fragment`${column} desc`),
    sql.fragment`, `,
  );
  return { after, condition, orderBy };
};

/** The page of `rows` (a query's first `limit + 1` rows) and the cursor of the next one, keyed by `key`. */
export const pageOf = <R>(rows: readonly R[], limit: number, key: (row: R) => readonly (string | number)[]): { items: R[]; next_cursor: string | null } => {
  const items = rows.slice(0, limit);
  const last = items[items.length - 1];
  return { items, next_cursor: rows.length > limit && last !== undefined ? encodePositionCursor(key(last)) : null };
};
