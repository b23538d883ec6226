import { createHash } from 'node:crypto';
import { eventHashFast } from './canonical.js';
import type { JsonObject, JsonValue } from './event-store.js';

/**
 * The per-stream hash chain (audit). Each event's metadata carries `prev_hash` (the previous event's
 * `hash`, or GENESIS_HASH for the first) and `hash`:
 *
 *   hash = sha256_hex( canonical_json({ id, type, data, metadata: metadata without "hash" }) )
 *
 * canonical_json: JSON with object keys sorted at every depth (JavaScript's default sort: UTF-16 code units), no whitespace, strings
 * and numbers as JSON.stringify writes them. Computed when the command is decided, so it is the same
 * on every event-store adapter; an auditor can recompute it from an export with a few lines of code.
 */

export const GENESIS_HASH = '0'.repeat(64);

export function canonicalJson(value: JsonValue): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const keys = Object.keys(value).sort();
  const parts: string[] = [];
  for (const key of keys) {
    const member = value[key];
    if (member === undefined) continue;
    parts.push(`${JSON.stringify(key)}:${canonicalJson(member)}`);
  }
  return `{${parts.join(',')}}`;
}

export function eventHash(event: { id: string; type: string; data: JsonObject; metadata: JsonObject }): string {
  const { hash: _ignored, ...metadata } = event.metadata;
  return createHash('sha256').update(canonicalJson({ id: event.id, type: event.type, data: event.data, metadata })).digest('hex');
}

/** Stamps `prev_hash` and `hash` on a batch of new events that follow `previousHash`. */
export function chainEvents<E extends { id: string; type: string; data: JsonObject; metadata: JsonObject }>(
  events: readonly E[],
  previousHash: string,
): { events: E[]; lastHash: string } {
  let prev = previousHash;
  const chained = events.map((event) => {
    const metadata: JsonObject = { ...event.metadata, prev_hash: prev };
    // eventHash's bytes, written by the faster copy (src/core/canonical.ts, property-tested equal).
    const hash = eventHashFast(event.id, event.type, event.data, metadata);
    metadata.hash = hash;
    prev = hash;
    return { ...event, metadata };
  });
  return { events: chained, lastHash: prev };
}

/** The hash a recorded event carries, or null when it has none. */
export const recordedHash = (metadata: JsonObject): string | null =>
  typeof metadata.hash === 'string' ? metadata.hash : null;
