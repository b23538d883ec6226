import { randomUUID } from 'node:crypto';
import type { Clock } from './clock.js';
import {
  type EventStore,
  type JsonObject,
  type Position,
  type RecordedEvent,
  WrongExpectedRevisionError,
} from './event-store.js';
import { chainEvents, GENESIS_HASH, recordedHash, uuidV5 } from './hash-chain.js';

/**
 * load → decide → append with the expected revision → on conflict catch up and decide again.
 *
 * Decided state is cached per stream with its revision, so a command on a stream of 100,000 events
 * costs what it costs on a fresh one: catching up reads only the events after the cached revision.
 * Commands on one stream are serialised inside this process (no self-inflicted conflicts); across
 * processes the expected revision decides, and the loser catches up and decides again (bounded,
 * jittered retries).
 *
 * `evolve` may update the state in place: the handler evolves only after a successful append and
 * never hands the cached state to anything that keeps it.
 */

export interface StreamDecider<State, Command, Decision> {
  initialState(): State;
  evolve(state: State, event: { type: string; data: JsonObject; metadata: JsonObject; revision: bigint; position: Position }): State;
  decide(command: Command, state: State, now: Date): Decision;
  /** The events a decision appends (none for rejections and replays). */
  eventsOf(decision: Decision): readonly { type: string; data: JsonObject }[];
}

export interface HandleOptions {
  /** Stamped on every appended event (before the hash chain fields). */
  readonly metadata?: JsonObject;
  /** Seeds deterministic event ids (with the stream and expected revision), so a blind retry of the same append is deduplicated by the store. */
  readonly idempotencyKey?: string;
}

export interface HandleResult<State, Decision> {
  readonly decision: Decision;
  /** The events this call appended, as recorded (empty for rejections and replays). */
  readonly appended: readonly RecordedEvent[];
  /** The stream's state after the decision (owned by the cache: read it, do not keep or change it). */
  readonly state: State;
  /** Revision of the stream's last event after the decision (-1n: no stream). */
  readonly revision: bigint;
  /** Position of the last appended event, if any. */
  readonly position: Position | null;
}

export class ConcurrencyConflictError extends Error {
  readonly code = 'concurrency_conflict' as const;
  constructor(readonly streamId: string, readonly attempts: number) {
    super(`gave up on ${streamId} after ${attempts} conflicting attempts`);
    this.name = 'ConcurrencyConflictError';
  }
}

interface Entry<State> {
  state: State;
  revision: bigint;
  lastHash: string;
  lastUsed: number;
}

export interface CommandHandlerOptions<State, Command, Decision> {
  readonly eventStore: EventStore;
  readonly decider: StreamDecider<State, Command, Decision>;
  readonly clock: Clock;
  /** Streams kept in memory (least recently used are dropped). */
  readonly cacheSize?: number;
  readonly maxAttempts?: number;
  /** Hooks for metrics. */
  readonly onAppend?: (streamId: string, events: number) => void;
  readonly onConflict?: (streamId: string) => void;
  /** Namespace UUID for deterministic event ids. */
  readonly idNamespace?: string;
}

const DEFAULT_NAMESPACE = '6f1c9a52-3a8e-4c55-9d0f-4f7e2b0c8a11';
const READ_BATCH = 1000;

export interface CommandHandler<State, Command, Decision> {
  handle(streamId: string, command: Command, options?: HandleOptions): Promise<HandleResult<State, Decision>>;
  /** Current state (caught up with the store), for reads such as tier gates. Do not keep or change it. */
  load(streamId: string): Promise<{ state: State; revision: bigint }>;
  /** Forget a stream (e.g. after an append whose outcome is unknown). */
  invalidate(streamId: string): void;
}

export function createCommandHandler<State, Command, Decision>(
  options: CommandHandlerOptions<State, Command, Decision>,
): CommandHandler<State, Command, Decision> {
  const { eventStore, decider, clock } = options;
  const cacheSize = options.cacheSize ?? 10_000;
  const maxAttempts = options.maxAttempts ?? 8;
  const namespace = options.idNamespace ?? DEFAULT_NAMESPACE;
  const cache = new Map<string, Entry<State>>();
  const queues = new Map<string, Promise<unknown>>();
  let tick = 0;

  /** Runs `work` after every earlier call for the same stream has finished. */
  const serialised = <T>(streamId: string, work: () => Promise<T>): Promise<T> => {
    const previous = queues.get(streamId) ?? Promise.resolve();
    const next = previous.then(work, work);
    const settled = next.then(
      () => undefined,
      () => undefined,
    );
    queues.set(streamId, settled);
    void settled.then(() => {
      if (queues.get(streamId) === settled) queues.delete(streamId);
    });
    return next;
  };

  const evict = () => {
    if (cache.size <= cacheSize) return;
    // Drop the least recently used tenth at once, so eviction is rare and cheap.
    const entries = [...cache.entries()].sort((a, b) => a[1].lastUsed - b[1].lastUsed);
    for (const [streamId] of entries.slice(0, Math.max(1, Math.floor(cacheSize / 10)))) cache.delete(streamId);
  };

  const fold = (entry: Entry<State>, event: RecordedEvent) => {
    entry.state = decider.evolve(entry.state, {
      type: event.type,
      data: event.data,
      metadata: event.metadata,
      revision: event.revision,
      position: event.position,
    });
    entry.revision = event.revision;
    entry.lastHash = recordedHash(event.metadata) ?? entry.lastHash;
  };

  /** The cached entry, caught up with everything the store holds after it. */
  const catchUp = async (streamId: string): Promise<Entry<State>> => {
    let entry = cache.get(streamId);
    if (!entry) {
      entry = { state: decider.initialState(), revision: -1n, lastHash: GENESIS_HASH, lastUsed: 0 };
    }
    try {
      for (;;) {
        let count = 0;
        for await (const event of eventStore.readStream(streamId, { fromRevision: entry.revision + 1n, maxCount: READ_BATCH })) {
          fold(entry, event);
          count += 1;
        }
        if (count < READ_BATCH) break;
      }
    } catch (error) {
      // A half-folded state must not be reused.
      cache.delete(streamId);
      throw error;
    }
    entry.lastUsed = ++tick;
    cache.set(streamId, entry);
    evict();
    return entry;
  };

  const eventIdsFor = (streamId: string, expected: bigint, count: number, key: string | undefined) =>
    Array.from({ length: count }, (_, index) =>
      key === undefined ? randomUUID() : uuidV5(`${streamId}\u0000${key}\u0000${expected}\u0000${index}`, namespace),
    );

  const handleOnce = async (streamId: string, command: Command, handleOptions: HandleOptions) => {
    let entry = cache.get(streamId) ?? (await catchUp(streamId));
    for (let attempt = 1; ; attempt += 1) {
      const decision = decider.decide(command, entry.state, clock.now());
      const newEvents = decider.eventsOf(decision);
      if (newEvents.length === 0) {
        entry.lastUsed = ++tick;
        return { decision, appended: [], state: entry.state, revision: entry.revision, position: null };
      }
      const ids = eventIdsFor(streamId, entry.revision, newEvents.length, handleOptions.idempotencyKey);
      const { events: chained } = chainEvents(
        newEvents.map((event, index) => ({
          id: ids[index] as string,
          type: event.type,
          data: event.data,
          metadata: { ...(handleOptions.metadata ?? {}) },
        })),
        entry.lastHash,
      );
      try {
        const result = await eventStore.appendToStream(streamId, chained, {
          expectedRevision: entry.revision < 0n ? 'no_stream' : entry.revision,
        });
        options.onAppend?.(streamId, chained.length);
        const firstRevision = result.nextExpectedRevision - BigInt(chained.length) + 1n;
        // Positions of the earlier events of a batch are not returned by every store; read them back
        // only when there is more than one (the last one's position is in the append result).
        const recorded: RecordedEvent[] =
          chained.length === 1
            ? [
                {
                  ...(chained[0] as (typeof chained)[number]),
                  streamId,
                  revision: result.nextExpectedRevision,
                  position: result.position,
                  recordedAt: clock.now(),
                },
              ]
            : await collect(eventStore.readStream(streamId, { fromRevision: firstRevision, maxCount: chained.length }));
        for (const event of recorded) fold(entry, event);
        entry.lastUsed = ++tick;
        return { decision, appended: recorded, state: entry.state, revision: entry.revision, position: result.position };
      } catch (error) {
        if (!(error instanceof WrongExpectedRevisionError)) {
          // Unknown outcome: forget the cached state; the next command reloads from the store.
          cache.delete(streamId);
          throw error;
        }
        options.onConflict?.(streamId);
        if (attempt >= maxAttempts) throw new ConcurrencyConflictError(streamId, attempt);
        await sleep(Math.random() * Math.min(50, 2 ** attempt));
        entry = await catchUp(streamId);
      }
    }
  };

  return {
    handle: (streamId, command, handleOptions = {}) => serialised(streamId, () => handleOnce(streamId, command, handleOptions)),
    load: (streamId) =>
      serialised(streamId, async () => {
        const entry = await catchUp(streamId);
        return { state: entry.state, revision: entry.revision };
      }),
    invalidate: (streamId) => {
      cache.delete(streamId);
    },
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of iterable) items.push(item);
  return items;
}
