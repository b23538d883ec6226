import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  type AppendResult,
  comparePositions,
  type EventStore,
  type ExpectedRevision,
  formatPosition,
  type JsonObject,
  type NewEvent,
  parsePosition,
  type Position,
  type RecordedEvent,
  WrongExpectedRevisionError,
} from '../../src/core/event-store.js';

/**
 * The semantics every event-store adapter shares (src/core/event-store.ts), as one suite each adapter's
 * test file runs: `describeEventStoreContract('postgres', factory)`.
 *
 * Every test makes its own streams (random names), reads the global log only from the head it found
 * when it started, and filters it to its own streams, so the suite can also run against a shared server
 * other tests write to. Pass `{ isolated: false }` there: that skips the checks that only hold when a
 * fresh store starts empty and nobody else writes to it.
 *
 * The global log (readAll, headPosition) shows only events no earlier one can still join, so it may
 * trail an append that has returned (Postgres: while any transaction that could commit before it is in
 * flight, in any database of the cluster). Tests wait for headPosition to reach an append before they
 * read the log; readStream shows an append as soon as it returns.
 */

export interface EventStoreContractOptions {
  /** Each factory call gives a store that starts empty and that only the test writes to. Default true. */
  readonly isolated?: boolean;
}

export type EventStoreFactory = () => Promise<{ store: EventStore; cleanup: () => Promise<void> }>;

const LIVE_TIMEOUT_MS = 10_000;

const streamName = (label: string) => `contract_${label}-${randomUUID()}`;

const newEvent = (data: JsonObject = {}, type = 'ContractTested', metadata?: JsonObject): NewEvent =>
  metadata === undefined ? { id: randomUUID(), type, data } : { id: randomUUID(), type, data, metadata };

const newEvents = (count: number, type = 'ContractTested'): NewEvent[] =>
  Array.from({ length: count }, (_, index) => newEvent({ index }, type));

const collect = async <T>(iterable: AsyncIterable<T>): Promise<T[]> => {
  const items: T[] = [];
  for await (const item of iterable) items.push(item);
  return items;
};

const conflictOf = async (attempt: Promise<unknown>): Promise<WrongExpectedRevisionError> => {
  const error = await attempt.then(
    () => {
      throw new Error('expected a WrongExpectedRevisionError, but the append succeeded');
    },
    (error: unknown) => error,
  );
  expect(error).toBeInstanceOf(WrongExpectedRevisionError);
  return error as WrongExpectedRevisionError;
};

const expectStrictlyIncreasing = (positions: readonly Position[]) => {
  for (let i = 1; i < positions.length; i++) {
    const order = comparePositions(positions[i - 1] as Position, positions[i] as Position);
    if (order >= 0) {
      throw new Error(
        `positions not strictly increasing at ${i}: ${formatPosition(positions[i - 1] as Position)} then ${formatPosition(positions[i] as Position)}`,
      );
    }
  }
};

/**
 * Reads a subscription until `done` says so or `timeoutMs` passes (then returns what it has, for the
 * test's assertions to report), and always ends it through its signal.
 */
const subscribeUntil = async (
  store: EventStore,
  options: { fromPosition?: Position | null; streams?: ReadonlySet<string> },
  done: (events: readonly RecordedEvent[]) => boolean,
  whileSubscribed?: () => Promise<void>,
  timeoutMs = LIVE_TIMEOUT_MS,
): Promise<RecordedEvent[]> => {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  const events: RecordedEvent[] = [];
  const subscription = store.subscribeToAll({
    ...(options.fromPosition ? { fromPosition: options.fromPosition } : {}),
    signal: controller.signal,
  });
  const reading = (async () => {
    if (done(events)) return;
    for await (const event of subscription) {
      if (options.streams && !options.streams.has(event.streamId)) continue;
      events.push(event);
      if (done(events)) break;
    }
  })();
  try {
    await whileSubscribed?.();
    await reading;
  } finally {
    clearTimeout(timer);
    controller.abort();
    await reading.catch(() => {});
  }
  return events;
};

export function describeEventStoreContract(
  adapterName: string,
  factory: EventStoreFactory,
  options: EventStoreContractOptions = {},
): void {
  const isolated = options.isolated ?? true;

  describe(`event store contract: ${adapterName}`, () => {
    let store: EventStore;
    let cleanup: (() => Promise<void>) | undefined;

    beforeEach(async () => {
      ({ store, cleanup } = await factory());
    });

    afterEach(async () => {
      await cleanup?.();
      cleanup = undefined;
    });

    const append = (streamId: string, events: readonly NewEvent[], expectedRevision: ExpectedRevision) =>
      store.appendToStream(streamId, events, { expectedRevision });

    /** Until the global log shows everything up to `position`. */
    const settled = async (position: Position) => {
      const deadline = Date.now() + LIVE_TIMEOUT_MS;
      for (;;) {
        const head = await store.headPosition();
        if (head && comparePositions(head, position) >= 0) return;
        if (Date.now() > deadline) throw new Error(`the global log did not reach ${formatPosition(position)}`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    };

    /** Our streams' events in the global log after `from`, in log order. */
    const readOurs = async (from: Position | null, streams: ReadonlySet<string>) =>
      (await collect(store.readAll(from ? { fromPosition: from } : {}))).filter((event) => streams.has(event.streamId));

    describe('appendToStream', () => {
      it('creates a stream with no_stream, numbering revisions from 0', async () => {
        const streamId = streamName('no_stream');
        const events = newEvents(3);
        const result = await append(streamId, events, 'no_stream');
        expect(result.nextExpectedRevision).toBe(2n);
        const read = await collect(store.readStream(streamId));
        expect(read.map((event) => [event.revision, event.id, event.type, event.streamId])).toEqual(
          events.map((event, index) => [BigInt(index), event.id, event.type, streamId]),
        );
      });

      it('creates a stream with any', async () => {
        const streamId = streamName('any');
        expect((await append(streamId, [newEvent()], 'any')).nextExpectedRevision).toBe(0n);
        expect((await append(streamId, newEvents(2), 'any')).nextExpectedRevision).toBe(2n);
      });

      it('returns the revision of the last event written, for every kind of expected revision', async () => {
        const streamId = streamName('numbering');
        expect((await append(streamId, newEvents(3), 'no_stream')).nextExpectedRevision).toBe(2n);
        expect((await append(streamId, newEvents(2), 2n)).nextExpectedRevision).toBe(4n);
        expect((await append(streamId, [newEvent()], 'any')).nextExpectedRevision).toBe(5n);
        expect((await append(streamId, newEvents(4), 'stream_exists')).nextExpectedRevision).toBe(9n);
        expect((await append(streamId, [newEvent()], 9n)).nextExpectedRevision).toBe(10n);
        const revisions = (await collect(store.readStream(streamId))).map((event) => event.revision);
        expect(revisions).toEqual(Array.from({ length: 11 }, (_, index) => BigInt(index)));
      });

      it('refuses stream_exists on a missing stream, with actual no_stream, and writes nothing', async () => {
        const streamId = streamName('stream_exists');
        const error = await conflictOf(append(streamId, [newEvent()], 'stream_exists'));
        expect(error.code).toBe('wrong_expected_revision');
        expect(error.streamId).toBe(streamId);
        expect(error.expected).toBe('stream_exists');
        expect(error.actual).toBe('no_stream');
        expect(await collect(store.readStream(streamId))).toEqual([]);
      });

      it('refuses an exact revision on a missing stream, with actual no_stream', async () => {
        const streamId = streamName('exact_missing');
        const error = await conflictOf(append(streamId, [newEvent()], 0n));
        expect([error.expected, error.actual]).toEqual([0n, 'no_stream']);
        expect(await collect(store.readStream(streamId))).toEqual([]);
      });

      it('refuses no_stream on an existing stream, with the actual revision', async () => {
        const streamId = streamName('exists');
        await append(streamId, newEvents(2), 'no_stream');
        const error = await conflictOf(append(streamId, [newEvent()], 'no_stream'));
        expect([error.streamId, error.expected, error.actual]).toEqual([streamId, 'no_stream', 1n]);
        expect(await collect(store.readStream(streamId))).toHaveLength(2);
      });

      it('refuses a wrong exact revision, ahead or behind, with expected and actual', async () => {
        const streamId = streamName('exact');
        await append(streamId, newEvents(3), 'no_stream');
        const ahead = await conflictOf(append(streamId, [newEvent()], 5n));
        expect([ahead.expected, ahead.actual]).toEqual([5n, 2n]);
        const behind = await conflictOf(append(streamId, [newEvent()], 1n));
        expect([behind.expected, behind.actual]).toEqual([1n, 2n]);
        expect(await collect(store.readStream(streamId))).toHaveLength(3);
      });

      it('treats the same ids re-appended with no_stream as the original append', async () => {
        const streamId = streamName('idempotent_no_stream');
        const events = newEvents(2);
        const original = await append(streamId, events, 'no_stream');
        expect(await append(streamId, events, 'no_stream')).toEqual(original);
        expect((await collect(store.readStream(streamId))).map((event) => event.id)).toEqual(events.map((e) => e.id));
      });

      it('treats the same ids re-appended with the same revision as the original append, even after the stream moved on', async () => {
        const streamId = streamName('idempotent_exact');
        await append(streamId, [newEvent()], 'no_stream');
        const events = newEvents(2);
        const original = await append(streamId, events, 0n);
        expect(original.nextExpectedRevision).toBe(2n);
        expect(await append(streamId, events, 0n)).toEqual(original);
        await append(streamId, [newEvent()], 2n);
        expect(await append(streamId, events, 0n)).toEqual(original);
        expect(await collect(store.readStream(streamId))).toHaveLength(4);
      });

      it('refuses a different event at a revision already written', async () => {
        const streamId = streamName('different');
        await append(streamId, newEvents(2), 'no_stream');
        const error = await conflictOf(append(streamId, [newEvent()], 0n));
        expect([error.expected, error.actual]).toEqual([0n, 1n]);
        const fresh = await conflictOf(append(streamId, [newEvent()], 'no_stream'));
        expect([fresh.expected, fresh.actual]).toEqual(['no_stream', 1n]);
        expect(await collect(store.readStream(streamId))).toHaveLength(2);
      });

      it('refuses a re-append that only partly matches what was written', async () => {
        const streamId = streamName('partial');
        const [first, second] = newEvents(2) as [NewEvent, NewEvent];
        await append(streamId, [first, second], 'no_stream');
        const changed = await conflictOf(append(streamId, [first, newEvent()], 'no_stream'));
        expect([changed.expected, changed.actual]).toEqual(['no_stream', 1n]);
        const longer = await conflictOf(append(streamId, [first, second, newEvent()], 'no_stream'));
        expect([longer.expected, longer.actual]).toEqual(['no_stream', 1n]);
        expect(await collect(store.readStream(streamId))).toHaveLength(2);
      });

      it('lets exactly one of several concurrent appends with the same expected revision win', async () => {
        const streamId = streamName('race');
        await append(streamId, [newEvent()], 'no_stream');
        const attempts = await Promise.allSettled(Array.from({ length: 8 }, () => append(streamId, newEvents(2), 0n)));
        const won = attempts.filter((attempt) => attempt.status === 'fulfilled');
        const lost = attempts.flatMap((attempt) => (attempt.status === 'rejected' ? [attempt.reason as unknown] : []));
        expect(won).toHaveLength(1);
        expect((won[0] as PromiseFulfilledResult<AppendResult>).value.nextExpectedRevision).toBe(2n);
        expect(lost).toHaveLength(7);
        for (const error of lost) {
          expect(error).toBeInstanceOf(WrongExpectedRevisionError);
          expect([(error as WrongExpectedRevisionError).expected, (error as WrongExpectedRevisionError).actual]).toEqual([0n, 2n]);
        }
        expect(await collect(store.readStream(streamId))).toHaveLength(3);
      });

      it('lets exactly one of several concurrent creators of a stream win', async () => {
        const streamId = streamName('create_race');
        const attempts = await Promise.allSettled(Array.from({ length: 8 }, () => append(streamId, [newEvent()], 'no_stream')));
        expect(attempts.filter((attempt) => attempt.status === 'fulfilled')).toHaveLength(1);
        for (const attempt of attempts) {
          if (attempt.status === 'fulfilled') continue;
          expect(attempt.reason).toBeInstanceOf(WrongExpectedRevisionError);
          expect((attempt.reason as WrongExpectedRevisionError).actual).toBe(0n);
        }
        expect(await collect(store.readStream(streamId))).toHaveLength(1);
      });

      it('writes a large append whole: consecutive revisions, increasing positions, the last one returned, idempotent on retry', async () => {
        const streamId = streamName('large');
        const events = newEvents(2000);
        const result = await append(streamId, events, 'no_stream');
        expect(result.nextExpectedRevision).toBe(1999n);
        const read = await collect(store.readStream(streamId));
        expect(read.map((event) => event.id)).toEqual(events.map((event) => event.id));
        expect(read.map((event) => event.revision)).toEqual(events.map((_, index) => BigInt(index)));
        expectStrictlyIncreasing(read.map((event) => event.position));
        expect(read.at(-1)?.position).toEqual(result.position);
        const { positions: _positions, ...original } = result;
        const { positions: _retried, ...retried } = await append(streamId, events, 'no_stream');
        expect(retried).toEqual(original);
        expect(await collect(store.readStream(streamId, { fromRevision: 1999n }))).toHaveLength(1);
      });

      it("returns a position at or after each of the append's events and before the next append's", async () => {
        const streamId = streamName('append_position');
        const first = await append(streamId, newEvents(3), 'no_stream');
        const second = await append(streamId, newEvents(2), 2n);
        const events = await collect(store.readStream(streamId));
        for (const event of events.slice(0, 3)) expect(comparePositions(event.position, first.position)).toBeLessThanOrEqual(0);
        for (const event of events.slice(3)) {
          expect(comparePositions(event.position, first.position)).toBeGreaterThan(0);
          expect(comparePositions(event.position, second.position)).toBeLessThanOrEqual(0);
        }
      });
    });

    describe('readStream', () => {
      const streamOf = async (count: number) => {
        const streamId = streamName('read');
        const events = newEvents(count);
        await append(streamId, events, 'no_stream');
        return { streamId, ids: events.map((event) => event.id) };
      };
      const ids = (events: readonly RecordedEvent[]) => events.map((event) => event.id);

      it('reads forwards from the start by default', async () => {
        const { streamId, ids: written } = await streamOf(5);
        expect(ids(await collect(store.readStream(streamId)))).toEqual(written);
      });

      it('reads backwards from the last event', async () => {
        const { streamId, ids: written } = await streamOf(5);
        const read = await collect(store.readStream(streamId, { direction: 'backwards' }));
        expect(ids(read)).toEqual([...written].reverse());
        expect(read.map((event) => event.revision)).toEqual([4n, 3n, 2n, 1n, 0n]);
      });

      it('starts at fromRevision, inclusive, in either direction', async () => {
        const { streamId, ids: written } = await streamOf(6);
        expect(ids(await collect(store.readStream(streamId, { fromRevision: 2n })))).toEqual(written.slice(2));
        expect(ids(await collect(store.readStream(streamId, { fromRevision: 2n, direction: 'backwards' })))).toEqual(
          written.slice(0, 3).reverse(),
        );
        expect(await collect(store.readStream(streamId, { fromRevision: 6n }))).toEqual([]);
        expect(ids(await collect(store.readStream(streamId, { fromRevision: 60n, direction: 'backwards' })))).toEqual(
          [...written].reverse(),
        );
      });

      it('stops after maxCount', async () => {
        const { streamId, ids: written } = await streamOf(6);
        expect(ids(await collect(store.readStream(streamId, { maxCount: 2 })))).toEqual(written.slice(0, 2));
        expect(ids(await collect(store.readStream(streamId, { maxCount: 2, direction: 'backwards' })))).toEqual([
          written[5],
          written[4],
        ]);
        expect(ids(await collect(store.readStream(streamId, { fromRevision: 3n, maxCount: 2 })))).toEqual(written.slice(3, 5));
        expect(ids(await collect(store.readStream(streamId, { fromRevision: 3n, maxCount: 10, direction: 'backwards' })))).toEqual(
          written.slice(0, 4).reverse(),
        );
        expect(ids(await collect(store.readStream(streamId, { maxCount: 100 })))).toEqual(written);
      });

      it('reads a missing stream as empty', async () => {
        const streamId = streamName('missing');
        expect(await collect(store.readStream(streamId))).toEqual([]);
        expect(await collect(store.readStream(streamId, { direction: 'backwards' }))).toEqual([]);
        expect(await collect(store.readStream(streamId, { fromRevision: 3n, maxCount: 2 }))).toEqual([]);
      });

      it('reads a long stream written by many appends completely and in order', async () => {
        const streamId = streamName('long');
        const written: string[] = [];
        for (let batch = 0; batch < 5; batch++) {
          const events = newEvents(50);
          await append(streamId, events, batch === 0 ? 'no_stream' : BigInt(batch * 50 - 1));
          written.push(...events.map((event) => event.id));
        }
        const read = await collect(store.readStream(streamId));
        expect(ids(read)).toEqual(written);
        expect(read.map((event) => event.revision)).toEqual(written.map((_, index) => BigInt(index)));
        expectStrictlyIncreasing(read.map((event) => event.position));
        expect(ids(await collect(store.readStream(streamId, { direction: 'backwards' })))).toEqual([...written].reverse());
      });
    });

    describe('event data', () => {
      const data: JsonObject = {
        text: 'Grüße, 日本語, עברית, emoji 💳🧾, zwj 👩‍💻, combining é, escapes "quoted" \\ back\\slash\n\ttabbed',
        empty: '',
        numbers: {
          zero: 0,
          negative: -42,
          fraction: 0.1,
          tiny: 1e-7,
          large: 1e21,
          maxSafe: Number.MAX_SAFE_INTEGER,
          minSafe: Number.MIN_SAFE_INTEGER,
          decimal: 123456.789,
        },
        flags: [true, false, null],
        nested: { deeper: { deepest: [1, [2, [3, { four: 4 }]], {}] }, emptyList: [] },
        'key with spaces & ünïcödé': 'ok',
      };
      const metadata: JsonObject = { correlationId: randomUUID(), causation: { command: 'Spend', amount: 12.5 }, tags: ['a', 'ü'] };

      it('round-trips data and metadata through readStream, readAll and subscribeToAll', async () => {
        const streamId = streamName('data');
        const start = await store.headPosition();
        const event = newEvent(data, 'CreditsPurchased', metadata);
        await settled((await append(streamId, [event], 'no_stream')).position);
        const check = (read: RecordedEvent | undefined) => {
          expect(read?.id).toBe(event.id);
          expect(read?.type).toBe('CreditsPurchased');
          expect(read?.data).toEqual(data);
          expect(read?.metadata).toEqual(metadata);
        };
        check((await collect(store.readStream(streamId)))[0]);
        check((await readOurs(start, new Set([streamId])))[0]);
        check((await subscribeUntil(store, { fromPosition: start, streams: new Set([streamId]) }, (events) => events.length >= 1))[0]);
      });

      it('reads missing metadata as an empty object', async () => {
        const streamId = streamName('no_metadata');
        await append(streamId, [newEvent({ a: 1 })], 'no_stream');
        const [read] = await collect(store.readStream(streamId));
        expect(read?.metadata).toEqual({});
        expect(read?.data).toEqual({ a: 1 });
      });

      it('records when each event was written, as a Date', async () => {
        const streamId = streamName('recorded_at');
        const before = Date.now();
        await append(streamId, newEvents(2), 'no_stream');
        for (const event of await collect(store.readStream(streamId))) {
          expect(event.recordedAt).toBeInstanceOf(Date);
          // Generous: the server's clock need not be ours.
          expect(Math.abs(event.recordedAt.getTime() - before)).toBeLessThan(5 * 60_000);
        }
      });
    });

    describe('readAll', () => {
      /** Appends, one after another, to three streams in turn; returns what it wrote, in order. */
      const interleaved = async () => {
        const streams = [streamName('all_a'), streamName('all_b'), streamName('all_c')];
        const start = await store.headPosition();
        const written: string[] = [];
        let last: AppendResult | undefined;
        for (let round = 0; round < 3; round++) {
          for (const streamId of streams) {
            const events = newEvents(round + 1);
            last = await append(streamId, events, 'any');
            written.push(...events.map((event) => event.id));
          }
        }
        await settled((last as AppendResult).position);
        return { start, streams: new Set(streams), written };
      };

      it.runIf(isolated)('reads an empty store as empty, with no head position', async () => {
        expect(await collect(store.readAll())).toEqual([]);
        expect(await collect(store.readAll({ direction: 'backwards' }))).toEqual([]);
        expect(await store.headPosition()).toBeNull();
      });

      it('reads events in append order, with strictly increasing positions', async () => {
        const { start, streams, written } = await interleaved();
        const all = await collect(store.readAll(start ? { fromPosition: start } : {}));
        expectStrictlyIncreasing(all.map((event) => event.position));
        const ours = all.filter((event) => streams.has(event.streamId));
        expect(ours.map((event) => event.id)).toEqual(written);
        if (isolated) expect(all).toHaveLength(written.length);
        for (const event of ours) {
          const [inStream] = await collect(store.readStream(event.streamId, { fromRevision: event.revision, maxCount: 1 }));
          expect(inStream?.position).toEqual(event.position);
        }
      });

      it('starts after fromPosition, exclusive', async () => {
        const { start, streams, written } = await interleaved();
        const ours = await readOurs(start, streams);
        const pivot = ours[3] as RecordedEvent;
        const after = await readOurs(pivot.position, streams);
        expect(after.map((event) => event.id)).toEqual(written.slice(4));
      });

      it('stops after maxCount', async () => {
        const { start, streams, written } = await interleaved();
        const two = await collect(store.readAll({ ...(start ? { fromPosition: start } : {}), maxCount: 2 }));
        expect(two).toHaveLength(2);
        expectStrictlyIncreasing(two.map((event) => event.position));
        if (isolated) expect(two.map((event) => event.id)).toEqual(written.slice(0, 2));
        const ours = await readOurs(start, streams);
        const rest = await collect(store.readAll({ fromPosition: (ours[5] as RecordedEvent).position, maxCount: 3 }));
        expect(rest).toHaveLength(3);
        if (isolated) expect(rest.map((event) => event.id)).toEqual(written.slice(6, 9));
        expect(await collect(store.readAll({ maxCount: 0 }))).toEqual([]);
      });

      it('reads backwards from the end, or from before fromPosition', async () => {
        const { start, streams, written } = await interleaved();
        const fromEnd = await collect(store.readAll({ direction: 'backwards', maxCount: 4 }));
        expect(fromEnd).toHaveLength(4);
        expectStrictlyIncreasing(fromEnd.map((event) => event.position).reverse());
        if (isolated) expect(fromEnd.map((event) => event.id)).toEqual(written.slice(-4).reverse());
        const ours = await readOurs(start, streams);
        const pivot = ours[5] as RecordedEvent;
        const before = (await collect(store.readAll({ direction: 'backwards', fromPosition: pivot.position, maxCount: isolated ? undefined : 200 })))
          .filter((event) => streams.has(event.streamId));
        expect(before.map((event) => event.id)).toEqual(written.slice(0, 5).reverse());
        if (isolated) {
          const everything = await collect(store.readAll({ direction: 'backwards' }));
          expect(everything.map((event) => event.id)).toEqual([...written].reverse());
        }
      });

      it('formats and parses positions without loss, and the parsed position reads the same', async () => {
        const { start, streams } = await interleaved();
        const ours = await readOurs(start, streams);
        for (const event of ours) {
          const text = formatPosition(event.position);
          expect(parsePosition(text)).toEqual(event.position);
        }
        const pivot = ours[2] as RecordedEvent;
        const parsed = parsePosition(formatPosition(pivot.position)) as Position;
        expect((await readOurs(parsed, streams)).map((event) => event.id)).toEqual(ours.slice(3).map((event) => event.id));
      });
    });

    describe('headPosition', () => {
      it('is null on an empty store, then the position of the last event', async () => {
        const before = await store.headPosition();
        const [last] = await collect(store.readAll({ direction: 'backwards', maxCount: 1 }));
        expect(before).toEqual(last?.position ?? null);
        if (isolated) expect(before).toBeNull();

        const streamId = streamName('head');
        const result = await append(streamId, newEvents(3), 'no_stream');
        await settled(result.position);
        const head = await store.headPosition();
        expect(head).not.toBeNull();
        expect(comparePositions(head as Position, result.position)).toBeGreaterThanOrEqual(0);
        if (isolated) {
          const [newest] = await collect(store.readAll({ direction: 'backwards', maxCount: 1 }));
          const [lastWritten] = await collect(store.readStream(streamId, { direction: 'backwards', maxCount: 1 }));
          expect(newest?.id).toBe(lastWritten?.id);
          expect(head).toEqual(newest?.position);
        }
      });
    });

    describe('subscribeToAll', () => {
      it('catches up, then receives live events, in position order', async () => {
        const streamId = streamName('subscribe');
        const start = await store.headPosition();
        const early = newEvents(3);
        const late = newEvents(2);
        await append(streamId, early, 'no_stream');
        const received = await subscribeUntil(
          store,
          { fromPosition: start, streams: new Set([streamId]) },
          (events) => events.length >= 5,
          async () => {
            // Give the subscription time to catch up and go live before appending.
            await new Promise((resolve) => setTimeout(resolve, 200));
            await append(streamId, late.slice(0, 1), 2n);
            await append(streamId, late.slice(1), 3n);
          },
        );
        expect(received.map((event) => event.id)).toEqual([...early, ...late].map((event) => event.id));
        expect(received.map((event) => event.revision)).toEqual([0n, 1n, 2n, 3n, 4n]);
        expectStrictlyIncreasing(received.map((event) => event.position));
      });

      it('starts after fromPosition, exclusive', async () => {
        const streamId = streamName('subscribe_from');
        const events = newEvents(4);
        await append(streamId, events, 'no_stream');
        const [, second] = await collect(store.readStream(streamId));
        const received = await subscribeUntil(
          store,
          { fromPosition: (second as RecordedEvent).position, streams: new Set([streamId]) },
          (seen) => seen.length >= 2,
        );
        expect(received.map((event) => event.id)).toEqual(events.slice(2).map((event) => event.id));
      });

      it('receives every event of concurrent writers once, in position order', async () => {
        const streams = Array.from({ length: 5 }, (_, index) => streamName(`concurrent_${index}`));
        const start = await store.headPosition();
        const perStream = 8;
        const received = await subscribeUntil(
          store,
          { fromPosition: start, streams: new Set(streams) },
          (events) => events.length >= streams.length * perStream,
          async () => {
            await Promise.all(
              streams.map(async (streamId) => {
                for (let revision = 0; revision < perStream; revision++) {
                  await append(streamId, [newEvent({ revision })], revision === 0 ? 'no_stream' : BigInt(revision - 1));
                }
              }),
            );
          },
        );
        expect(received).toHaveLength(streams.length * perStream);
        expect(new Set(received.map((event) => event.id)).size).toBe(received.length);
        expectStrictlyIncreasing(received.map((event) => event.position));
        for (const streamId of streams) {
          const revisions = received.filter((event) => event.streamId === streamId).map((event) => event.revision);
          expect(revisions).toEqual(Array.from({ length: perStream }, (_, index) => BigInt(index)));
        }
      });

      it('ends, without an error, when its signal aborts while it waits for live events', async () => {
        const streamId = streamName('abort_live');
        const start = await store.headPosition();
        await append(streamId, [newEvent()], 'no_stream');
        const controller = new AbortController();
        const received: RecordedEvent[] = [];
        const subscription = store.subscribeToAll({ ...(start ? { fromPosition: start } : {}), signal: controller.signal });
        const reading = (async () => {
          for await (const event of subscription) {
            if (event.streamId !== streamId) continue;
            received.push(event);
            setTimeout(() => controller.abort(), 100);
          }
        })();
        const ended = await Promise.race([
          reading.then(() => 'ended'),
          new Promise((resolve) => setTimeout(() => resolve('still running'), LIVE_TIMEOUT_MS)),
        ]);
        controller.abort();
        expect(ended).toBe('ended');
        expect(received).toHaveLength(1);
      });

      it('ends when its signal aborts while the consumer is handling an event', async () => {
        const streamId = streamName('abort_consumer');
        const start = await store.headPosition();
        await append(streamId, newEvents(5), 'no_stream');
        const controller = new AbortController();
        const received: RecordedEvent[] = [];
        for await (const event of store.subscribeToAll({ ...(start ? { fromPosition: start } : {}), signal: controller.signal })) {
          if (event.streamId !== streamId) continue;
          received.push(event);
          if (received.length === 2) controller.abort();
        }
        expect(received).toHaveLength(2);
      });

      it('yields nothing when its signal has already aborted', async () => {
        await append(streamName('pre_aborted'), [newEvent()], 'no_stream');
        expect(await collect(store.subscribeToAll({ signal: AbortSignal.abort() }))).toEqual([]);
      });
    });

    describe('close', () => {
      it('refuses appends and reads once closed, so that nothing is written after a shutdown', async () => {
        const streamId = streamName('closed');
        await append(streamId, [newEvent()], 'no_stream');
        await store.close();
        await expect(append(streamId, [newEvent()], 0n)).rejects.toThrow(/closed/);
        await expect(append(streamName('closed_new'), [newEvent()], 'any')).rejects.toThrow(/closed/);
        await expect(collect(store.readStream(streamId))).rejects.toThrow(/closed/);
        await expect(collect(store.readAll())).rejects.toThrow(/closed/);
        await expect(store.headPosition()).rejects.toThrow(/closed/);
        await expect(store.close()).resolves.toBeUndefined();
      });
    });
  });
}
