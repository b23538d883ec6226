import { createHash, randomUUID } from 'node:crypto';
import type { Clock } from './clock.js';
import {
  type EventStore,
  type JsonObject,
  type NewEvent,
  type Position,
  type RecordedEvent,
  WrongExpectedRevisionError,
} from './event-store.js';
import { canonicalJsonFast } from './canonical.js';
import { chainEvents, GENESIS_HASH, recordedHash } from './hash-chain.js';
import { uuidV5 } from './ids.js';

/**
 * load → decide → append with the expected revision → on conflict catch up and decide again.
 *
 * - Decided state is cached per stream with its revision, so a command on a stream of 100,000 events
 *   costs what it costs on a fresh one: catching up reads only the events after the cached revision.
 * - Commands on one stream are queued inside this process (no self-inflicted conflicts). While an
 *   append is in flight, the commands that arrive queue up; the next round decides all of them in
 *   order, each on the state its predecessors left, and appends their events in ONE append (one
 *   commit): a hot stream's throughput grows with its load instead of being one commit per command.
 *   Every command of a round is answered only after that append succeeded (or failed).
 * - Across processes the expected revision decides; the loser catches up and decides again (bounded,
 *   jittered retries).
 * - A decision that appends nothing (a rejection, an idempotent replay) is never checked by an expected
 *   revision, so it is re-decided on a caught-up state when the cache might be stale.
 *
 * `evolve` updates the state in place. A round evolves the cached state speculatively while it decides,
 * so when its append fails (conflict or unknown outcome) the cached state is thrown away and reloaded
 * from the store; nothing speculative is ever answered.
 */

export interface EvolveInput {
  readonly type: string;
  readonly data: JsonObject;
  readonly metadata: JsonObject;
  readonly revision: bigint;
  /** Unknown while a round is being decided; `recorded` supplies it after the append. */
  readonly position?: Position | undefined;
}

export interface StreamDecider<State, Command, Decision> {
  initialState(): State;
  evolve(state: State, event: EvolveInput): State;
  decide(command: Command, state: State, now: Date): Decision;
  /** The events a decision appends (none for rejections and replays). */
  eventsOf(decision: Decision): readonly { type: string; data: JsonObject }[];
  /** After an append: the events as recorded (with positions), already evolved without them. */
  recorded?(state: State, events: readonly RecordedEvent[]): void;
}

export interface HandleOptions {
  /** Stamped on every appended event (before the hash chain fields). */
  readonly metadata?: JsonObject;
  /** Seeds deterministic event ids (with the stream and expected revision), so a blind retry of the same append is deduplicated by the store. */
  readonly idempotencyKey?: string | undefined;
}

export interface HandleResult<State, Decision> {
  readonly decision: Decision;
  /** The events this command appended, as recorded (empty for rejections and replays). */
  readonly appended: readonly RecordedEvent[];
  /** The stream's state after the round (owned by the cache: read it at once, do not keep or change it). */
  readonly state: State;
  /** Revision of this command's last event, or of the stream when it appended nothing (-1n: no stream). */
  readonly revision: bigint;
  /** Position of this command's last appended event, if any. */
  readonly position: Position | null;
}

export class ConcurrencyConflictError extends Error {
  readonly code = 'concurrency_conflict' as const;
  constructor(
    readonly streamId: string,
    readonly attempts: number,
  ) {
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
  readonly cacheSize?: number | undefined;
  readonly maxAttempts?: number;
  /** Most commands decided and appended together in one round. Default 100. */
  readonly maxBatch?: number;
  /** Hooks for metrics. */
  readonly onAppend?: (streamId: string, events: number, commands: number) => void;
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

type Job<State, Command, Decision> =
  | {
      readonly kind: 'command';
      readonly command: Command;
      readonly options: HandleOptions;
      readonly resolve: (result: HandleResult<State, Decision>) => void;
      readonly reject: (error: unknown) => void;
    }
  | {
      readonly kind: 'load';
      readonly resolve: (result: { state: State; revision: bigint }) => void;
      readonly reject: (error: unknown) => void;
    };

type CommandJob<State, Command, Decision> = Extract<Job<State, Command, Decision>, { kind: 'command' }>;

/** One command's part of a round. */
interface Decided<State, Command, Decision> {
  readonly job: CommandJob<State, Command, Decision>;
  readonly decision: Decision;
  /** Index of its first event in the round's append, and how many. */
  readonly first: number;
  readonly count: number;
  /** Stream revision after its events (or when it was decided, if it has none). */
  readonly revision: bigint;
}

export function createCommandHandler<State, Command, Decision>(
  options: CommandHandlerOptions<State, Command, Decision>,
): CommandHandler<State, Command, Decision> {
  const { eventStore, decider, clock } = options;
  const cacheSize = options.cacheSize ?? 10_000;
  const maxAttempts = options.maxAttempts ?? 8;
  const maxBatch = options.maxBatch ?? 100;
  const namespace = options.idNamespace ?? DEFAULT_NAMESPACE;
  const cache = new Map<string, Entry<State>>();
  const queues = new Map<string, Job<State, Command, Decision>[]>();
  let tick = 0;

  const evict = () => {
    if (cache.size <= cacheSize) return;
    // Drop the least recently used tenth at once, so eviction is rare and cheap. Streams with queued
    // work are in use and stay.
    const entries = [...cache.entries()].filter(([streamId]) => !queues.has(streamId)).sort((a, b) => a[1].lastUsed - b[1].lastUsed);
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

  /**
   * Deterministic ids for keyed commands: stream + key + expected revision + position in the batch +
   * the event's content. A blind re-append of the very same events is deduplicated by the store; a
   * *different* decision under the same key (another process deciding the same request concurrently)
   * gets other ids, so it conflicts, catches up and is answered from the first one's record instead of
   * being mistaken for it.
   */
  const eventIdsFor = (streamId: string, expected: bigint, events: readonly { type: string; data: JsonObject }[], key: string | undefined) =>
    events.map((event, index) =>
      key === undefined
        ? randomUUID()
        : uuidV5(
            `${streamId}\u0000${key}\u0000${expected}\u0000${index}\u0000${createHash('sha256').update(`${event.type}\u0000${canonicalJsonFast(event.data)}`).digest('hex')}`,
            namespace,
          ),
    );

  /**
   * Decides the jobs in order on the cached state (evolving it speculatively) and appends all their
   * events at once. Answers every job, or throws (then no job was answered).
   */
  const runRound = async (streamId: string, jobs: CommandJob<State, Command, Decision>[]): Promise<void> => {
    const cached = cache.get(streamId);
    let entry = cached ?? (await catchUp(streamId));
    let fresh = cached === undefined;
    for (let attempt = 1; ; attempt += 1) {
      const baseRevision = entry.revision;
      const baseHash = entry.lastHash;
      const decided: Decided<State, Command, Decision>[] = [];
      const pending: (NewEvent & { metadata: JsonObject })[] = [];
      let revision = baseRevision;
      let speculative = false;
      let restart = false;
      for (const job of jobs) {
        const decision = decider.decide(job.command, entry.state, clock.now());
        const events = decider.eventsOf(decision);
        if (events.length === 0 && !fresh && !speculative) {
          // Nothing appended means nothing checks the revision: make sure the cache is current.
          const before = entry.revision;
          entry = await catchUp(streamId);
          fresh = true;
          if (entry.revision !== before) {
            restart = true;
            break;
          }
        }
        const ids = eventIdsFor(streamId, revision, events, job.options.idempotencyKey);
        events.forEach((event, index) => {
          const revisionOfEvent = revision + 1n + BigInt(index);
          const newEvent = { id: ids[index] as string, type: event.type, data: event.data, metadata: { ...(job.options.metadata ?? {}), stream_id: streamId } };
          pending.push(newEvent);
          // Evolve now so the next job of the round decides on the state this one leaves.
          entry.state = decider.evolve(entry.state, { type: event.type, data: event.data, metadata: newEvent.metadata, revision: revisionOfEvent });
          speculative = true;
        });
        revision += BigInt(events.length);
        decided.push({ job, decision, first: pending.length - events.length, count: events.length, revision });
      }
      if (restart) continue;

      if (pending.length === 0) {
        entry.lastUsed = ++tick;
        for (const d of decided) d.job.resolve({ decision: d.decision, appended: [], state: entry.state, revision: d.revision, position: null });
        return;
      }

      const { events: chained, lastHash } = chainEvents(pending, baseHash);
      let recorded: RecordedEvent[];
      try {
        const result = await eventStore.appendToStream(streamId, chained, {
          expectedRevision: baseRevision < 0n ? 'no_stream' : baseRevision,
        });
        options.onAppend?.(streamId, chained.length, decided.filter((d) => d.count > 0).length);
        // Each event's position: from the append when the store says (always for one event, and the
        // Postgres batch append names them all); otherwise read the batch back.
        const positions = chained.length === 1 ? [result.position] : result.positions;
        recorded =
          positions?.length === chained.length
            ? chained.map((event, index) => ({
                ...event,
                streamId,
                revision: baseRevision + 1n + BigInt(index),
                position: positions[index] as Position,
                recordedAt: clock.now(),
              }))
            : await collect(eventStore.readStream(streamId, { fromRevision: baseRevision + 1n, maxCount: chained.length }));
        if (
          recorded.length !== chained.length ||
          recorded[recorded.length - 1]?.revision !== result.nextExpectedRevision ||
          recorded.some((event, index) => event.id !== chained[index]?.id)
        ) {
          throw new Error(`${streamId}: the store holds other events than the ones appended`);
        }
      } catch (error) {
        // The speculative state is not the store's: forget it either way.
        cache.delete(streamId);
        if (!(error instanceof WrongExpectedRevisionError)) throw error; // unknown outcome
        options.onConflict?.(streamId);
        if (attempt >= maxAttempts) throw new ConcurrencyConflictError(streamId, attempt);
        await sleep(Math.random() * Math.min(50, 2 ** attempt));
        entry = await catchUp(streamId);
        fresh = true;
        continue;
      }

      decider.recorded?.(entry.state, recorded);
      entry.revision = revision;
      entry.lastHash = lastHash;
      entry.lastUsed = ++tick;
      for (const d of decided) {
        const appended = recorded.slice(d.first, d.first + d.count);
        d.job.resolve({
          decision: d.decision,
          appended,
          state: entry.state,
          revision: d.revision,
          position: appended.length > 0 ? (appended[appended.length - 1] as RecordedEvent).position : null,
        });
      }
      return;
    }
  };

  /** Works through a stream's queue: loads one at a time, commands in rounds of up to maxBatch. */
  const drain = async (streamId: string): Promise<void> => {
    const queue = queues.get(streamId);
    if (!queue) return;
    while (queue.length > 0) {
      const head = queue[0] as Job<State, Command, Decision>;
      if (head.kind === 'load') {
        queue.shift();
        try {
          const entry = await catchUp(streamId);
          head.resolve({ state: entry.state, revision: entry.revision });
        } catch (error) {
          head.reject(error);
        }
        continue;
      }
      let take = 0;
      while (take < queue.length && take < maxBatch && queue[take]?.kind === 'command') take += 1;
      const jobs = queue.splice(0, take) as CommandJob<State, Command, Decision>[];
      try {
        await runRound(streamId, jobs);
      } catch (error) {
        // The round may have evolved the cached state speculatively: never reuse it.
        cache.delete(streamId);
        for (const job of jobs) job.reject(error);
      }
    }
    queues.delete(streamId);
  };

  const enqueue = (streamId: string, job: Job<State, Command, Decision>) => {
    const queue = queues.get(streamId);
    if (queue) {
      queue.push(job);
      return;
    }
    queues.set(streamId, [job]);
    void drain(streamId);
  };

  return {
    handle: (streamId, command, handleOptions = {}) =>
      new Promise((resolve, reject) => enqueue(streamId, { kind: 'command', command, options: handleOptions, resolve, reject })),
    load: (streamId) => new Promise((resolve, reject) => enqueue(streamId, { kind: 'load', resolve, reject })),
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
