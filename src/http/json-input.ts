import { memberNestedBeyond } from '../values.js';
import { hasEscapedKey } from './json-keys.js';
import { hasUnstorableText, mayHoldUnstorableText } from './storable-text.js';

/**
 * The API's policy for JSON from outside, in one place: every request body (src/app.ts) and an AI
 * provider's answer before it becomes a component's spec (routes/components.ts) keep it.
 *
 * - Before parsing: no escaped object keys (V8's JSON.parse can decode them wrongly, ./json-keys.ts).
 * - After parsing: nested at most `maxDepth` objects/arrays deep (deeper input overflowed the stack
 *   where it was hashed or written, a 500 after validation), and no text Postgres cannot store
 *   (./storable-text.ts). Depth is checked first: the text check walks the value recursively.
 */

/** How deep a request body may nest: far beyond any real request, and above the 1,000 levels a flow or component definition may have inside its body (that limit is the route's, named on its field). */
export const MAX_BODY_DEPTH = 1024;

export interface JsonViolation {
  /** The top-level member at fault, or `body`. */
  readonly path: string;
  readonly message: string;
}

const ESCAPED_KEY = 'JSON object keys must be written without escape sequences (no quotes, backslashes, control characters or \\u escapes in keys).';
const UNSTORABLE = 'Text must not contain U+0000 or lone UTF-16 surrogates (they cannot be stored).';

/** The policy's check of JSON text before it is parsed. */
export const textViolation = (text: string): JsonViolation | null => (hasEscapedKey(text) ? { path: 'body', message: ESCAPED_KEY } : null);

/** The policy's checks of the value parsed from `text`. */
export function valueViolation(text: string, value: unknown, maxDepth = MAX_BODY_DEPTH): JsonViolation | null {
  // Nesting needs two characters a level, so only text that long can be too deep.
  const deep = text.length > 2 * maxDepth ? memberNestedBeyond(value, maxDepth) : null;
  if (deep !== null) return { path: deep || 'body', message: `must not nest objects and arrays more than ${maxDepth} deep` };
  if (mayHoldUnstorableText(text) && hasUnstorableText(value)) return { path: 'body', message: UNSTORABLE };
  return null;
}
