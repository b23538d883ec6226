import { hash } from 'node:crypto';
import type { JsonObject } from '../core/event-store.js';

/**
 * The audit's hot path for the hash recipe of src/core/hash-chain.ts. Same recipe, same bytes —
 * `canonicalJson` and `eventHash` there remain the definition, and test/unit/audit/canonical.test.ts
 * proves for arbitrary JSON that these functions agree with them. This copy exists only because the
 * verifier recomputes a million hashes per run: string concatenation instead of map/join, strings that
 * need no escaping written without JSON.stringify, memoised key orders and quoted keys (events of one
 * type share their key sets), and the one-shot `crypto.hash`. About 2-3x faster.
 */

// What JSON.stringify escapes: the quote, the backslash, control characters and (well-formed
// JSON.stringify) lone surrogates. Strings containing any surrogate at all take the slow, exact path.
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point (they must be escaped)
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

const quote = (text: string): string => (NEEDS_ESCAPE.test(text) ? JSON.stringify(text) : `"${text}"`);

// Memos of two pure functions, bounded (keys inside client metadata are arbitrary): a hit requires the
// very same key list, compared element by element, so they never change an answer.
const MAX_SHAPES = 2000;
const MAX_KEYS = 20_000;
const shapes = new Map<string, { readonly keys: readonly string[]; readonly sorted: readonly string[] }>();
const quotedKeys = new Map<string, string>();

const quoteKey = (key: string): string => {
  let quoted = quotedKeys.get(key);
  if (quoted === undefined) {
    quoted = quote(key);
    if (quotedKeys.size < MAX_KEYS) quotedKeys.set(key, quoted);
  }
  return quoted;
};

/** The object's keys in canonical order: default sort, i.e. UTF-16 code units, exactly as canonicalJson sorts. */
const sortedKeys = (object: object): readonly string[] => {
  const keys = Object.keys(object);
  const n = keys.length;
  if (n < 2) return keys;
  const id = `${keys[0]}\u0000${keys[n - 1]}\u0000${n}`;
  const known = shapes.get(id);
  if (known) {
    let same = true;
    for (let i = 0; i < n; i++) {
      if (known.keys[i] !== keys[i]) {
        same = false;
        break;
      }
    }
    if (same) return known.sorted;
  }
  const sorted = [...keys].sort();
  if (!known && shapes.size < MAX_SHAPES) shapes.set(id, { keys, sorted });
  return sorted;
};

function write(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return quote(value);
    case 'number':
      // Same text as JSON.stringify for every number JSON can carry (and -0 → "0").
      return Number.isFinite(value) ? String(value) : 'null';
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object': {
      if (value === null) return 'null';
      if (Array.isArray(value)) {
        let out = '[';
        for (let i = 0; i < value.length; i++) {
          if (i > 0) out += ',';
          const item = value[i];
          // JSON.stringify writes undefined array slots as null.
          out += item === undefined ? 'null' : write(item);
        }
        return `${out}]`;
      }
      return writeObject(value as Record<string, unknown>, null);
    }
    default:
      return JSON.stringify(value) ?? 'null';
  }
}

/** An object with sorted keys, leaving out undefined members and the member named `skip`. */
function writeObject(object: Record<string, unknown>, skip: string | null): string {
  const keys = sortedKeys(object);
  let out = '{';
  let first = true;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i] as string;
    if (key === skip) continue;
    const member = object[key];
    if (member === undefined) continue;
    if (!first) out += ',';
    first = false;
    out += `${quoteKey(key)}:${write(member)}`;
  }
  return `${out}}`;
}

/** `canonicalJson` of src/core/hash-chain.ts, faster. */
export const canonicalJsonFast = (value: unknown): string => write(value);

/**
 * The canonical text an event's hash is taken over: canonical_json({ id, type, data, metadata without
 * "hash" }). The four top-level keys in sorted order are data, id, metadata, type.
 */
export const hashedText = (id: string, type: string, data: JsonObject, metadata: JsonObject): string =>
  `{"data":${writeObject(data, null)},"id":${quote(id)},"metadata":${writeObject(metadata, 'hash')},"type":${quote(type)}}`;

/** `eventHash` of src/core/hash-chain.ts, faster: sha256_hex(canonical_json({ id, type, data, metadata without hash })). */
export const eventHashFast = (id: string, type: string, data: JsonObject, metadata: JsonObject): string =>
  hash('sha256', hashedText(id, type, data, metadata), 'hex');
