import type { JsonValue } from '../src/core/event-store.js';

/**
 * Postgres text and jsonb cannot hold U+0000. An event store other than Postgres may still carry one
 * in user-supplied text; left alone it would fail the batch forever (a poison event made of a typo),
 * so projections drop it.
 */
const NUL = new RegExp(String.fromCharCode(0), 'g');

const clean = (value: unknown): unknown => {
  if (typeof value === 'string') return value.replace(NUL, '');
  if (Array.isArray(value)) return value.map(clean);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) out[key.replace(NUL, '')] = clean(item);
    return out;
  }
  return value;
};

export const cleanJson = (value: JsonValue): JsonValue => clean(value) as JsonValue;

/**
 * The JSON text of a batch document for `json_to_recordset`. The escape `\u0000` is searched in the
 * text once; only a document that has one pays for the deep clean.
 */
export const batchDocument = (document: unknown): string => {
  const text = JSON.stringify(document);
  return text.includes('\\u0000') ? JSON.stringify(clean(document)) : text;
};
