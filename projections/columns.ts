import type { FragmentSqlToken } from 'slonik';
import { sql } from '../src/adapters/postgres/pool.js';
import type { JsonValue } from '../src/core/event-store.js';
import { arrayLiteral, batchDocument } from './sanitize.js';

/** The column types a batch's rows travel in (each a Postgres array type of that element). */
const ARRAY_OF = {
  uuid: sql.fragment`::uuid[]`,
  text: sql.fragment`::text[]`,
  int4: sql.fragment`::int4[]`,
  int8: sql.fragment`::int8[]`,
  numeric: sql.fragment`::numeric[]`,
  timestamptz: sql.fragment`::timestamptz[]`,
  boolean: sql.fragment`::boolean[]`,
} as const;

type ScalarType = keyof typeof ARRAY_OF;

/** One column: its name in the row source, its type, and how to read it from a row. */
export type Column<R> =
  | readonly [name: string, type: ScalarType, value: (row: R) => string | number | boolean | null]
  | readonly [name: string, type: 'jsonb', value: (row: R) => JsonValue | null];

/** The first and last position a changed row carries (major, minor as decimal strings). */
export interface PositionSpan {
  readonly first_position: readonly [string, string];
  readonly last_position: readonly [string, string];
}

/** The four position columns every aggregated row ends with. */
export const positionColumns = <R extends PositionSpan>(): readonly Column<R>[] => [
  ['first_major', 'numeric', (r) => r.first_position[0]],
  ['first_minor', 'numeric', (r) => r.first_position[1]],
  ['last_major', 'numeric', (r) => r.last_position[0]],
  ['last_minor', 'numeric', (r) => r.last_position[1]],
];

const valuesOf = <R, V>(rows: readonly R[], value: (row: R) => V): V[] => {
  const values = new Array<V>(rows.length);
  for (let i = 0; i < rows.length; i++) values[i] = value(rows[i] as R);
  return values;
};

/**
 * `unnest($1::uuid[], $2::text[], …) as x(id, user_id, …)`: a batch's rows as a row source, one array
 * parameter per column (see `arrayLiteral`), for the data-modifying CTEs of a batch statement. A jsonb
 * column travels as one JSON array instead (its values are objects: JSON needs no second escaping),
 * parsed once and taken apart in order; a JSON null becomes SQL NULL, as json_to_recordset made it.
 */
export const rowsOf = <R>(rows: readonly R[], columns: readonly Column<R>[]): FragmentSqlToken => {
  const arrays = columns.map((column) => {
    if (column[1] === 'jsonb') {
      const document = batchDocument(valuesOf(rows, column[2]));
      return sql.fragment`array(
        select nullif(e.value, 'null'::jsonb) from jsonb_array_elements(${document}::jsonb) with ordinality as e(value, n) order by e.n)`;
    }
    return sql.fragment`${arrayLiteral(valuesOf(rows, column[2]))}${ARRAY_OF[column[1]]}`;
  });
  const names = columns.map(([name]) => sql.identifier([name]));
  return sql.fragment`unnest(${sql.join(arrays, sql.fragment`, `)}) as x(${sql.join(names, sql.fragment`, `)})`;
};
