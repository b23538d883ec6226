/**
 * A batch's rows travel to Postgres column by column as array literals (projections/columns.ts):
 * whatever the text — quotes, backslashes, braces, commas, the word NULL, newlines, U+0000 (dropped) —
 * each row arrives whole and in order, and a JSON null in a jsonb column is SQL NULL.
 *
 * The jsonb column is compared in Postgres (against the expected document sent as a parameter of its
 * own), not read back: V8's JSON.parse can decode an escaped object key such as "\"" or "\n" as "\\"
 * depending on earlier parses (nodejs/node#63785), which made a read-back comparison flaky.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { sql } from '../../src/adapters/postgres/pool.js';
import type { JsonObject } from '../../src/core/event-store.js';
import { type Column, rowsOf } from '../../projections/columns.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase({ migrate: false });
});
afterAll(async () => {
  await db?.drop();
});

interface Row {
  readonly n: number;
  readonly text: string | null;
  readonly other: string;
  readonly amount: number;
  readonly flag: boolean;
  readonly at: string | null;
  readonly position: string;
  readonly doc: JsonObject | null;
}

const COLUMNS: readonly Column<Row>[] = [
  ['n', 'int4', (r) => r.n],
  ['text', 'text', (r) => r.text],
  ['other', 'text', (r) => r.other],
  ['amount', 'int8', (r) => r.amount],
  ['flag', 'boolean', (r) => r.flag],
  ['at', 'timestamptz', (r) => r.at],
  ['position', 'numeric', (r) => r.position],
  ['doc', 'jsonb', (r) => r.doc],
];

const resultRow = z.object({
  n: z.number(),
  text: z.string().nullable(),
  other: z.string(),
  amount: z.bigint(),
  flag: z.boolean(),
  at: z.string().nullable(),
  position: z.string(),
  doc_null: z.boolean(),
  doc_equal: z.boolean().nullable(),
});

const awkward = fc.oneof(
  fc.string({ unit: 'binary-ascii' }),
  fc.string({ unit: 'grapheme' }),
  fc.constantFrom('', 'NULL', 'null', '"', '\\', '\\"', '{', '}', '{a,b}', ',', ' padded ', 'a\u0000b', '\n\t\r', 'é€😀', '\\u0000'),
);

const noNul = (text: string) => text.replaceAll('\u0000', '');
const cleanDoc = (value: unknown): unknown => {
  if (typeof value === 'string') return noNul(value);
  if (Array.isArray(value)) return value.map(cleanDoc);
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [noNul(k), cleanDoc(v)]));
  return value;
};

describe('batch rows as column arrays', () => {
  it('arrive whole, in order, with U+0000 dropped', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            text: fc.option(awkward),
            other: awkward,
            amount: fc.integer({ min: -1_000_000_000, max: 1_000_000_000 }),
            flag: fc.boolean(),
            at: fc.option(fc.constantFrom('2026-11-01T00:00:12.000Z', '2026-11-25T23:59:59.999Z')),
            position: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map(String),
            doc: fc.option(fc.dictionary(awkward, fc.oneof(awkward, fc.integer(), fc.constant(null)), { maxKeys: 3 })),
          }),
          { minLength: 1, maxLength: 30 },
        ),
        async (generated) => {
          const rows: Row[] = generated.map((r, n) => ({ ...r, n }));
          const expectedDocs = rows.map((r) => sql.fragment`(${r.n}::int4, ${r.doc === null ? null : JSON.stringify(cleanDoc(r.doc))}::jsonb)`);
          const result = await db.pool.any(sql.type(resultRow)`
            select x.n, text, other, amount, flag, to_char(at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as at,
              position::text as position, x.doc is null as doc_null, x.doc = e.doc as doc_equal
            from ${rowsOf(rows, COLUMNS)} join (values ${sql.join(expectedDocs, sql.fragment`, `)}) as e(n, doc) on e.n = x.n
            order by x.n`);
          expect(result).toEqual(
            rows.map((r) => ({
              n: r.n,
              text: r.text === null ? null : noNul(r.text),
              other: noNul(r.other),
              amount: BigInt(r.amount),
              flag: r.flag,
              at: r.at,
              position: r.position,
              doc_null: r.doc === null,
              doc_equal: r.doc === null ? null : true,
            })),
          );
        },
      ),
      { numRuns: 200 },
    );
  });
});
