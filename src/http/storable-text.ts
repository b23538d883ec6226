/**
 * Text Postgres cannot store: U+0000 (neither `text` nor `jsonb` holds it) and lone UTF-16 surrogates
 * (no UTF-8 form; `jsonb` refuses their escapes). Such text in a request would fail the append or the
 * write after validation, a 5xx for a bad request, so the API refuses every JSON body, query string and
 * path parameter that carries it (`400 validation_failed`), whatever the route (src/app.ts). In JSON text either can only be written as a `\u`
 * escape (a raw surrogate has no UTF-8 form, and a raw U+0000 is not valid JSON), so a body without such
 * an escape needs no further look; a surrogate pair written as escapes is ordinary text.
 */

const MAY_HOLD = /\\u(?:0000|[dD][89a-fA-F])/;

/** Whether JSON text may carry unstorable text (false: it certainly does not). */
export const mayHoldUnstorableText = (json: string): boolean => MAY_HOLD.test(json);

export const isStorableText = (text: string): boolean => !text.includes('\u0000') && text.isWellFormed();

/**
 * Text from outside that is not a request (an AI provider's answer) made storable: U+0000 and lone
 * surrogates become U+FFFD. Refusing it is not an option once it has been paid for.
 */
export const toStorableText = (text: string): string => (isStorableText(text) ? text : text.replaceAll('\u0000', '\uFFFD').toWellFormed());

/** Whether a parsed JSON value has unstorable text in a string or an object key. */
export function hasUnstorableText(value: unknown): boolean {
  if (typeof value === 'string') return !isStorableText(value);
  if (Array.isArray(value)) return value.some(hasUnstorableText);
  if (value !== null && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) if (!isStorableText(key) || hasUnstorableText(item)) return true;
  }
  return false;
}
