/**
 * Translations between the event-store port and `@eventstore/db-client` 6.x. Together with
 * event-store.ts this is the only code that knows the client package, so moving to
 * `@kurrent/kurrentdb-client` (same values, `streamState` instead of `expectedRevision`) stays here.
 */
import {
  ANY,
  type AllStreamResolvedEvent,
  type AppendExpectedRevision,
  jsonEvent,
  NO_STREAM,
  type Position as ClientPosition,
  type ResolvedEvent,
  STREAM_EXISTS,
} from '@eventstore/db-client';
import type { ExpectedRevision, JsonObject, NewEvent, Position, RecordedEvent } from '../../core/event-store.js';

const UINT64_MAX = (1n << 64n) - 1n;

export const toClientExpectedRevision = (expected: ExpectedRevision): AppendExpectedRevision => {
  switch (expected) {
    case 'any':
      return ANY;
    case 'no_stream':
      return NO_STREAM;
    case 'stream_exists':
      return STREAM_EXISTS;
    default:
      if (expected < 0n) throw new RangeError(`expected revision must be ≥ 0, got ${expected}`);
      return expected;
  }
};

/** EventStoreDB's (commit, prepare) is the port's (major, minor): same order, same exclusivity. */
export const fromClientPosition = (position: ClientPosition): Position => ({
  major: position.commit,
  minor: position.prepare,
});

export const toClientPosition = (position: Position): ClientPosition => ({
  commit: position.major,
  prepare: position.minor,
});

export const toEventData = (event: NewEvent) =>
  jsonEvent({
    id: event.id,
    type: event.type,
    data: event.data,
    ...(event.metadata === undefined ? {} : { metadata: event.metadata }),
  });

/**
 * EventStoreDB's own events ($metadata, $>, $statsCollected…) have a type starting with `$`. Written
 * as the negation of `excludeSystemEvents()`'s `^[^$].*`, so that reads and subscriptions agree
 * (both also leave out an empty type).
 */
export const isSystemEventType = (type: string): boolean => !/^[^$]/.test(type);

const isJsonObject = (value: unknown): value is JsonObject =>
  typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);

export class UnreadableEventError extends Error {
  readonly code = 'unreadable_event' as const;
  constructor(
    readonly streamId: string,
    readonly eventId: string,
    reason: string,
  ) {
    super(`event ${eventId} in ${streamId}: ${reason}`);
    this.name = 'UnreadableEventError';
  }
}

/**
 * About the length of `root` as JSON text, without building that text. The client hands over parsed
 * values only (the byte lengths it decoded are gone), so this walks them once: strings and keys by their
 * length, everything else by a few characters. Iterative: hostile nesting cannot overflow the stack.
 */
export const approximateJsonLength = (root: unknown): number => {
  let total = 0;
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const value = stack.pop();
    if (typeof value === 'string') total += value.length + 3;
    else if (typeof value !== 'object' || value === null) total += 8;
    else if (Array.isArray(value)) {
      total += 2;
      for (const item of value) stack.push(item);
    } else {
      total += 2;
      for (const key in value) {
        total += key.length + 4;
        stack.push((value as Record<string, unknown>)[key]);
      }
    }
  }
  return total;
};

/**
 * A read or subscribed event as the port's RecordedEvent. Everything this service writes is a JSON
 * object with optional JSON-object metadata; anything else came from another writer and is refused
 * rather than guessed at.
 */
export const toRecordedEvent = (resolved: ResolvedEvent | AllStreamResolvedEvent): RecordedEvent => {
  const event = resolved.event;
  if (!event) throw new UnreadableEventError('?', '?', 'a link whose target could not be resolved');
  if (!event.isJson || !isJsonObject(event.data)) {
    throw new UnreadableEventError(event.streamId, event.id, 'data is not a JSON object');
  }
  const metadata = event.metadata ?? {};
  if (!isJsonObject(metadata)) {
    throw new UnreadableEventError(event.streamId, event.id, 'metadata is not a JSON object');
  }
  // Servers up to 22.6 send no event position on stream reads (the client then reports 2^64-1).
  if (!event.position || event.position.commit === UINT64_MAX) {
    throw new UnreadableEventError(event.streamId, event.id, 'the server sent no position (EventStoreDB ≥ 22.10 needed)');
  }
  return {
    id: event.id,
    type: event.type,
    streamId: event.streamId,
    revision: event.revision,
    position: fromClientPosition(event.position),
    data: event.data,
    metadata,
    recordedAt: event.created,
    sizeHint: approximateJsonLength(event.data) + approximateJsonLength(metadata),
  };
};
