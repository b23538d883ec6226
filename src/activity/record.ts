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

/** RFC 9562 UUIDv5, re-exported for the activity modules. */
export { uuidV5 } from '../core/ids.js';

/** Namespace of launcher log batch event ids (uuidV5 of `<userId>:<batch_id>`). */
export const LOG_BATCH_NAMESPACE = '5b0f3c1e-8f4e-4d6a-9a57-3c2f0d7e61a4';
/** Namespace of activity_logs row ids derived from an event id and an entry index. */
export const ACTIVITY_ROW_NAMESPACE = 'c7d4b0a2-61e3-4f0b-8d5c-2a9e4f3b7c18';
