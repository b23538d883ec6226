import { createHash } from 'node:crypto';
import type { AppendResult, EventStore, NewEvent } from '../core/event-store.js';
import { activityStreamId } from './events.js';

/**
 * Appends activity events (sign-ups, sign-ins, …) to the user's activity stream. Activity has no
 * invariants to protect, so any revision will do; a retry with the same event ids is deduplicated by
 * the event store where it can (see `recordLogBatch` for the strict once-only case).
 */
export async function recordActivity(
  eventStore: EventStore,
  userId: string,
  events: NewEvent | readonly NewEvent[],
): Promise<AppendResult> {
  const list = Array.isArray(events) ? (events as readonly NewEvent[]) : [events as NewEvent];
  return eventStore.appendToStream(activityStreamId(userId), list, { expectedRevision: 'any' });
}

const hexToBytes = (hex: string): Buffer => Buffer.from(hex.replace(/-/g, ''), 'hex');

/** RFC 9562 UUIDv5 (SHA-1, name-based): the same name in the same namespace is always the same id. */
export const uuidV5 = (name: string, namespace: string): string => {
  const hash = createHash('sha1').update(hexToBytes(namespace)).update(name, 'utf8').digest();
  const bytes = hash.subarray(0, 16);
  bytes[6] = ((bytes[6] as number) & 0x0f) | 0x50;
  bytes[8] = ((bytes[8] as number) & 0x3f) | 0x80;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
};

/** Namespace of launcher log batch event ids (uuidV5 of `<userId>:<batch_id>`). */
export const LOG_BATCH_NAMESPACE = '5b0f3c1e-8f4e-4d6a-9a57-3c2f0d7e61a4';
/** Namespace of activity_logs row ids derived from an event id and an entry index. */
export const ACTIVITY_ROW_NAMESPACE = 'c7d4b0a2-61e3-4f0b-8d5c-2a9e4f3b7c18';
