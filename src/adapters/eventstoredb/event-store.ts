/**
 * The event-store port on EventStoreDB (gRPC, `@eventstore/db-client` 6.x).
 *
 * - Appends state their expected revision; a conflict is the port's WrongExpectedRevisionError.
 *   `throwOnAppendFailure` must stay on: the client's non-throwing BatchAppend path reports a wrong
 *   `nextExpectedRevision` (notes/event-sourcing.md §1).
 * - `$all` reads, the head position and subscriptions leave out the server's own events (types
 *   starting with `$`); subscriptions filter on the server with `excludeSystemEvents()`.
 * - Positions are `(commit, prepare)` = `(major, minor)`; a `fromPosition` is exclusive. The server
 *   reads `$all` forwards *including* the start position, so the adapter skips it.
 */
import {
  type AllStreamResolvedEvent,
  BACKWARDS,
  END,
  EventStoreDBClient,
  excludeSystemEvents,
  FORWARDS,
  START,
  type StreamingRead,
  StreamNotFoundError,
  WrongExpectedVersionError,
} from '@eventstore/db-client';
import {
  type AppendResult,
  comparePositions,
  type EventStore,
  type ExpectedRevision,
  type NewEvent,
  type Position,
  type ReadAllOptions,
  type ReadStreamOptions,
  type RecordedEvent,
  type SubscribeOptions,
  WrongExpectedRevisionError,
} from '../../core/event-store.js';
import {
  fromClientPosition,
  isSystemEventType,
  toClientExpectedRevision,
  toClientPosition,
  toEventData,
  toRecordedEvent,
  UnreadableEventError,
} from './mapping.js';

export { UnreadableEventError };

/** The part of a pino logger the adapter uses. */
export interface EventStoreDbLogger {
  debug(details: object, message: string): void;
  warn(details: object, message: string): void;
}

export interface EventStoreDbEventStoreOptions {
  /** e.g. `esdb://localhost:2113?tls=false` */
  readonly connectionString: string;
  readonly logger?: EventStoreDbLogger;
  /** Bound on ping(): the client gives reads no deadline of their own. Default 2000 ms. */
  readonly pingTimeoutMs?: number;
  /** Bound on close() waiting for the client's calls to finish. Default 5000 ms. */
  readonly closeTimeoutMs?: number;
}

/** A subscription ended without being asked to: by the server, the network, or an error. */
export class SubscriptionDroppedError extends Error {
  readonly code = 'subscription_dropped' as const;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SubscriptionDroppedError';
  }
}

/** A user stream, so that reading it needs no admin rights; it normally does not exist. */
const PING_STREAM = 'ledger-readiness-probe';
const DEFAULT_PING_TIMEOUT_MS = 2000;
const DEFAULT_CLOSE_TIMEOUT_MS = 5000;

const assertThrowOnAppendFailure = (connectionString: string) => {
  const query = connectionString.split('?')[1] ?? '';
  for (const [key, value] of new URLSearchParams(query)) {
    if (key.toLowerCase() === 'throwonappendfailure' && value.toLowerCase() === 'false') {
      throw new Error('EventStoreDB connection string: throwOnAppendFailure=false is not supported by this adapter');
    }
  }
};

const assertMaxCount = (maxCount: number | undefined) => {
  if (maxCount !== undefined && !(Number.isSafeInteger(maxCount) && maxCount >= 0)) {
    throw new RangeError(`maxCount must be a non-negative integer, got ${maxCount}`);
  }
};

/** Iterates a client read without destroying it when the consumer stops early: see `abandon`. */
const iterate = <T>(reading: StreamingRead<T>): AsyncIterable<T> => ({
  [Symbol.asyncIterator]: () => reading.iterator({ destroyOnReturn: false }) as AsyncIterator<T>,
});

/**
 * Lets go of a read nobody consumes any more. Destroying the client's stream object would unpipe the
 * gRPC call behind it and leave that call paused with data in its buffer; a call the server had
 * already completed then never finishes, and `client.dispose()` waits for it forever. So the rest is
 * drained instead, and the call cancelled so that the server stops sending.
 */
const abandon = (reading: { cancel(): Promise<void>; resume(): unknown }) => {
  reading.resume();
  void reading.cancel().catch(() => undefined);
};

export function createEventStoreDbEventStore(options: EventStoreDbEventStoreOptions): EventStore {
  assertThrowOnAppendFailure(options.connectionString);
  const client = EventStoreDBClient.connectionString(options.connectionString);
  const logger = options.logger;
  const pingTimeoutMs = options.pingTimeoutMs ?? DEFAULT_PING_TIMEOUT_MS;
  const closeTimeoutMs = options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
  /** Set by close(). The client would go on serving calls after dispose(), so the adapter refuses them. */
  let closed = false;
  const assertOpen = () => {
    if (closed) throw new Error('the event store is closed');
  };

  async function appendToStream(
    streamId: string,
    events: readonly NewEvent[],
    { expectedRevision }: { expectedRevision: ExpectedRevision },
  ): Promise<AppendResult> {
    assertOpen();
    if (events.length === 0) {
      // The server would answer with the position of an empty record that no reader ever sees.
      throw new RangeError('appendToStream needs at least one event');
    }
    try {
      const result = await client.appendToStream(streamId, events.map(toEventData), {
        expectedRevision: toClientExpectedRevision(expectedRevision),
      });
      if (!result.position) throw new Error(`EventStoreDB returned no position for an append to ${streamId}`);
      return { nextExpectedRevision: result.nextExpectedRevision, position: fromClientPosition(result.position) };
    } catch (error) {
      if (error instanceof WrongExpectedVersionError) {
        throw new WrongExpectedRevisionError(streamId, expectedRevision, error.actualVersion);
      }
      throw error;
    }
  }

  async function* readStream(streamId: string, readOptions: ReadStreamOptions = {}): AsyncGenerator<RecordedEvent> {
    assertOpen();
    assertMaxCount(readOptions.maxCount);
    if (readOptions.fromRevision !== undefined && readOptions.fromRevision < 0n) {
      throw new RangeError(`fromRevision must be ≥ 0, got ${readOptions.fromRevision}`);
    }
    if (readOptions.maxCount === 0) return;
    const backwards = readOptions.direction === 'backwards';
    const reading = client.readStream(streamId, {
      direction: backwards ? BACKWARDS : FORWARDS,
      fromRevision: readOptions.fromRevision ?? (backwards ? END : START),
      ...(readOptions.maxCount === undefined ? {} : { maxCount: readOptions.maxCount }),
    });
    let drained = false;
    try {
      for await (const resolved of iterate(reading)) yield toRecordedEvent(resolved);
      drained = true;
    } catch (error) {
      if (error instanceof StreamNotFoundError) {
        drained = true;
        return;
      }
      throw error;
    } finally {
      if (!drained) abandon(reading);
    }
  }

  /** `$all` without the server's own events, honouring the port's exclusive `fromPosition`. */
  async function* scanAll(from: Position | undefined, backwards: boolean) {
    const reading: StreamingRead<AllStreamResolvedEvent> = client.readAll({
      direction: backwards ? BACKWARDS : FORWARDS,
      fromPosition: from ? toClientPosition(from) : backwards ? END : START,
    });
    let drained = false;
    try {
      for await (const resolved of iterate(reading)) {
        const event = resolved.event;
        if (!event || isSystemEventType(event.type)) continue;
        if (from) {
          const order = comparePositions(fromClientPosition(event.position), from);
          if (backwards ? order >= 0 : order <= 0) continue;
        }
        yield resolved;
      }
      drained = true;
    } finally {
      if (!drained) abandon(reading);
    }
  }

  async function* readAll(readOptions: ReadAllOptions = {}): AsyncGenerator<RecordedEvent> {
    assertOpen();
    assertMaxCount(readOptions.maxCount);
    const limit = readOptions.maxCount ?? Number.POSITIVE_INFINITY;
    if (limit === 0) return;
    let count = 0;
    // The server's count would include the system events skipped here, so the limit is applied locally.
    for await (const resolved of scanAll(readOptions.fromPosition, readOptions.direction === 'backwards')) {
      yield toRecordedEvent(resolved);
      count += 1;
      if (count >= limit) return;
    }
  }

  /** Open subscriptions, ended by close(): the client's dispose() cancels their calls but leaves them hanging. */
  const openSubscriptions = new Set<() => void>();

  async function* subscribeToAll(subscribeOptions: SubscribeOptions = {}): AsyncGenerator<RecordedEvent> {
    const { signal, fromPosition } = subscribeOptions;
    if (signal?.aborted || closed) return;
    const subscription = client.subscribeToAll({
      fromPosition: fromPosition ? toClientPosition(fromPosition) : START,
      filter: excludeSystemEvents(),
    });
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      openSubscriptions.delete(end);
      signal?.removeEventListener('abort', end);
      // Cancelling the call does not end the client's stream object, so it is destroyed as well.
      void subscription.unsubscribe().catch(() => undefined);
      subscription.destroy();
    };
    signal?.addEventListener('abort', end, { once: true });
    openSubscriptions.add(end);
    try {
      for await (const resolved of subscription) {
        if (ended) return;
        yield toRecordedEvent(resolved);
      }
      if (ended) return;
    } catch (error) {
      if (ended) return; // end() destroyed the stream, which ends the iteration with a premature close
      if (error instanceof UnreadableEventError) throw error;
      logger?.warn({ err: error }, 'EventStoreDB subscription to $all dropped');
      throw new SubscriptionDroppedError('EventStoreDB subscription to $all dropped', { cause: error });
    } finally {
      end();
    }
    // Reached only when the server completed the call, which it never does for a healthy subscription.
    logger?.warn({}, 'EventStoreDB subscription to $all ended by the server');
    throw new SubscriptionDroppedError('EventStoreDB subscription to $all ended by the server');
  }

  async function headPosition(): Promise<Position | null> {
    assertOpen();
    for await (const resolved of scanAll(undefined, true)) {
      if (resolved.event) return fromClientPosition(resolved.event.position);
    }
    return null;
  }

  async function ping(): Promise<void> {
    const reading = client.readStream(PING_STREAM, { maxCount: 1 });
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`EventStoreDB did not answer within ${pingTimeoutMs} ms`)),
        pingTimeoutMs,
      );
    });
    // An existing probe stream is as good an answer as a missing one.
    const answered = (async () => {
      for await (const _event of iterate(reading)) return;
    })();
    try {
      await Promise.race([answered, timedOut]);
    } catch (error) {
      if (!(error instanceof StreamNotFoundError)) throw error;
    } finally {
      clearTimeout(timer);
      answered.catch(() => undefined);
      abandon(reading);
    }
  }

  /**
   * Ends open subscriptions as if their signals had aborted, then disposes of the client. Bounded:
   * dispose() waits for every call the client still tracks to finish, and a shutdown must not hang
   * on one that never does.
   */
  async function close(): Promise<void> {
    closed = true;
    logger?.debug({ openSubscriptions: openSubscriptions.size }, 'closing the EventStoreDB client');
    for (const end of [...openSubscriptions]) end();
    let timer: NodeJS.Timeout | undefined;
    const gaveUp = new Promise<'gave up'>((resolve) => {
      timer = setTimeout(() => resolve('gave up'), closeTimeoutMs);
    });
    const outcome = await Promise.race([client.dispose().then(() => 'disposed' as const), gaveUp]);
    clearTimeout(timer);
    if (outcome === 'gave up') logger?.warn({ closeTimeoutMs }, 'EventStoreDB client calls still open after close()');
  }

  return {
    name: 'eventstoredb',
    appendToStream,
    readStream,
    readAll,
    subscribeToAll,
    headPosition,
    ping,
    close,
  };
}
