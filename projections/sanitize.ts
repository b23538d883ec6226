import type { JsonValue } from '../src/core/event-store.js';

/**
 * Postgres text and jsonb cannot hold U+0000, and jsonb refuses a lone UTF-16 surrogate (JSON text
 * `"\ud800"`: invalid input syntax for type json). An event store other than Postgres may still carry
 * either in user-supplied text; left alone it would fail the batch forever (a poison event made of a
 * typo), so projections drop U+0000 and replace a lone surrogate with U+FFFD — what a text column
 * stores for it anyway (the driver encodes strings as UTF-8, which has no surrogates).
 */
const NUL = new RegExp(String.fromCharCode(0), 'g');

const storable = (text: string): string => text.replace(NUL, '').toWellFormed();

const clean = (value: unknown): unknown => {
  if (typeof value === 'string') return storable(value);
  if (Array.isArray(value)) return value.map(clean);
  // fromEntries defines own properties: a key "__proto__" stays a key (assignment would set the prototype).
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([key, item]) => [storable(key), clean(item)]));
  return value;
};

export const cleanJson = (value: JsonValue): JsonValue => clean(value) as JsonValue;

/** In JSON.stringify's output: `\u0000`, or a lone surrogate (well-formed JSON.stringify escapes those, as `\udXXX`). */
const UNSTORABLE_ESCAPE = /\\u(0000|d[89a-f])/;

/**
 * The JSON text of a batch document (a jsonb column of `rowsOf`, ./columns.ts). The escapes of U+0000
 * and of lone surrogates are searched in the text once; only a document that has one pays for the deep
 * clean (an escaped backslash followed by such letters is a false alarm: the clean then changes nothing).
 */
export const batchDocument = (document: unknown): string => {
  const text = JSON.stringify(document);
  return UNSTORABLE_ESCAPE.test(text) ? JSON.stringify(clean(document)) : text;
};

/** A double quote, a backslash or U+0000 (built like NUL above). */
const NEEDS_ESCAPE = new RegExp(`["\\\\${String.fromCharCode(0)}]`);
const QUOTED = /["\\]/g;

const quoted = (text: string): string => {
  if (!NEEDS_ESCAPE.test(text)) return `"${text}"`;
  return `"${text.replace(NUL, '').replace(QUOTED, '\\$&')}"`;
};

/**
 * One column of a batch as a Postgres array literal (`{"a",NULL,"3"}`), for `unnest($1::uuid[], …)`:
 * the rows travel column by column, one text parameter each. Postgres reads that far cheaper than
 * a JSON document of row objects (json_to_recordset looks up every key of every row, and its cost
 * per row grows with the document), and it is about half the bytes. U+0000 is dropped as above.
 */
export const arrayLiteral = (values: readonly (string | number | boolean | null)[]): string => {
  let text = '{';
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    if (i > 0) text += ',';
    text += value === null || value === undefined ? 'NULL' : typeof value === 'string' ? quoted(value) : String(value);
  }
  return `${text}}`;
};
