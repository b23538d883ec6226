import { hash } from 'node:crypto';
import type { JsonObject } from './event-store.js';

/**
 * The hot path for the hash recipe of src/core/hash-chain.ts, used where hashes are made (every command
 * stamps its events) and checked (the audit recomputes a million per run). Same recipe, same bytes —
 * `canonicalJson` and `eventHash` there remain the definition, and test/unit/audit/canonical.test.ts
 * proves for arbitrary JSON that these functions agree with them. Faster by: string concatenation instead of map/join, strings that
 * need no escaping written without JSON.stringify, memoised key orders with their quoted keys (events
 * of one type share their key sets), and the one-shot `crypto.hash`. About 2-3x faster.
 */

// What JSON.stringify escapes: the quote, the backslash, control characters and (well-formed
// JSON.stringify) lone surrogates. Strings containing any surrogate at all take the slow, exact path.
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point (they must be escaped)
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

const quote = (text: string): string => (NEEDS_ESCAPE.test(text) ? JSON.stringify(text) : `"${text}"`);

// A memo of one pure function, bounded (keys inside client metadata are arbitrary): an object's key
// list → the order its members are written in, each with its quoted key and separator ready. Shapes are
// found by their first key (JSON parsers hand out the same string for a repeated key, so these lookups
// hash nothing), then compared key by key: a hit requires the very same key list, so the memo never
// changes an answer. Events of one type share their key sets, so a run needs a few dozen shapes.
const MAX_SHAPES = 2000;

interface Shape {
  readonly keys: readonly string[];
  /** The keys in canonical order: default sort, i.e. UTF-16 code units, exactly as canonicalJson sorts. */
  readonly sorted: readonly string[];
  /** `"key":` for each sorted key. */
  readonly quoted: readonly string[];
}

const shapesByFirstKey = new Map<string, Shape[]>();
let shapeCount = 0;

const sameKeys = (a: readonly string[], b: readonly string[]): boolean => {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
};

const makeShape = (keys: readonly string[]): Shape => {
  const sorted = [...keys].sort();
  return { keys, sorted, quoted: sorted.map((key) => `${quote(key)}:`) };
};

const shapeOf = (keys: readonly string[]): Shape => {
  const first = keys.length === 0 ? '' : (keys[0] as string);
  let candidates = shapesByFirstKey.get(first);
  if (candidates !== undefined) {
    for (let i = 0; i < candidates.length; i++) {
      const shape = candidates[i] as Shape;
      if (sameKeys(shape.keys, keys)) return shape;
    }
  }
  const shape = makeShape(keys);
  if (shapeCount < MAX_SHAPES) {
    if (candidates === undefined) {
      candidates = [];
      shapesByFirstKey.set(first, candidates);
    }
    candidates.push(shape);
    shapeCount += 1;
  }
  return shape;
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
  const shape = shapeOf(Object.keys(object));
  const keys = shape.sorted;
  const quoted = shape.quoted;
  let out = '{';
  let first = true;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i] as string;
    if (key === skip) continue;
    const member = object[key];
    if (member === undefined) continue;
    if (first) first = false;
    else out += ',';
    out += quoted[i] as string;
    out += write(member);
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
