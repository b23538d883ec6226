/**
 * The projector's memory is bounded by bytes (events' size hints) as well as by counts: the shared
 * feed's window, a worker's buffer and the batches it takes stop growing at their byte budget, always
 * let one event through however large, and resume as the branches consume — never skipping or
 * repeating an event.
 */
import { describe, expect, it } from 'vitest';
import type { EventStore, RecordedEvent, SubscribeOptions } from '../../../src/core/event-store.js';
import { SharedFeed } from '../../../projections/feed.js';
import { EventBuffer } from '../../../projections/worker.js';

const event = (index: number, sizeHint: number | undefined): RecordedEvent => ({
  id: `e-${index}`,
  type: 'LauncherLogsRecorded',
  streamId: 'activity-u',
  revision: BigInt(index),
  position: { major: BigInt(index + 1), minor: 0n },
  data: { index },
  metadata: {},
  recordedAt: new Date(0),
  ...(sizeHint === undefined ? {} : { sizeHint }),
});

/** Events with the given size hints, and how many of them a reader has pulled so far. */
const source = (sizes: readonly (number | undefined)[]) => {
  const events = sizes.map((size, index) => event(index, size));
  const state = { pulled: 0 };
  async function* subscribe(options: SubscribeOptions = {}): AsyncGenerator<RecordedEvent> {
    const after = options.fromPosition;
    for (const e of events) {
      if (after && e.position.major <= after.major) continue;
      state.pulled++;
      yield e;
    }
    // Live: nothing more until aborted.
    await new Promise<void>((resolve) => {
      if (options.signal?.aborted) return resolve();
      options.signal?.addEventListener('abort', () => resolve(), { once: true });
    });
  }
  const store = { name: 'postgres', subscribeToAll: subscribe } as unknown as EventStore;
  return { events, state, store, subscribe };
};

/** Lets every pending pump, wake-up and setImmediate run. */
const settle = async () => {
  for (let i = 0; i < 30; i++) await new Promise((resolve) => setImmediate(resolve));
};

/** Reads a branch in the background, up to `allowance.n` events (raise it to read on). */
const reader = (iterable: AsyncIterable<RecordedEvent>) => {
  const seen: RecordedEvent[] = [];
  const iterator = iterable[Symbol.asyncIterator]();
  return {
    seen,
    async read(n: number) {
      for (let i = 0; i < n; i++) {
        const next = await iterator.next();
        if (next.done) return;
        seen.push(next.value);
      }
    },
  };
};

const ids = (events: readonly RecordedEvent[]) => events.map((e) => e.id);

describe('SharedFeed byte budget', () => {
  it('stops reading ahead at the byte budget, resumes as the slowest branch consumes, delivers every event once', async () => {
    const { events, state, store } = source(Array.from({ length: 60 }, () => 100));
    const feed = new SharedFeed(store, null, { events: 10_000, bytes: 1000 });
    const stop = new AbortController();
    try {
      const fast = reader(feed.branch(null, stop.signal) as AsyncIterable<RecordedEvent>);
      const slow = reader(feed.branch(null, stop.signal) as AsyncIterable<RecordedEvent>);
      const fastDone = fast.read(events.length);
      await settle();
      // 1000 bytes ahead of the slow branch = 10 events of 100: the pump waits there (the count budget is far).
      expect(state.pulled).toBe(10);
      expect(fast.seen).toHaveLength(10);

      // The pump goes on once the slowest branch has taken what the window holds and asks for more:
      // then it reads until the fastest is 1000 bytes ahead of the slowest again.
      await slow.read(10);
      await settle();
      expect(state.pulled).toBe(10);
      await slow.read(1);
      await settle();
      expect(state.pulled).toBe(slow.seen.length + 10);
      expect(fast.seen).toHaveLength(state.pulled);

      await slow.read(events.length - 11);
      await fastDone;
      expect(ids(fast.seen)).toEqual(ids(events));
      expect(ids(slow.seen)).toEqual(ids(events));
    } finally {
      stop.abort();
      feed.close();
    }
  });

  it('lets an event larger than the whole budget through, alone', async () => {
    const sizes = [100, 100, 5000, 100, 100, undefined, 100];
    const { events, state, store } = source(sizes);
    const feed = new SharedFeed(store, null, { events: 10_000, bytes: 1000 });
    const stop = new AbortController();
    try {
      const fast = reader(feed.branch(null, stop.signal) as AsyncIterable<RecordedEvent>);
      const slow = reader(feed.branch(null, stop.signal) as AsyncIterable<RecordedEvent>);
      const fastDone = fast.read(events.length);
      await settle();
      // Up to and including the huge one, then no further while the slow branch has not taken them.
      expect(state.pulled).toBe(3);
      await slow.read(3);
      await settle();
      expect(state.pulled).toBe(3);
      await slow.read(1);
      await settle();
      // Past the huge event: 100 + 1024 (no hint: the default) bytes ahead of the slowest, then it waits.
      expect(state.pulled).toBe(6);
      await slow.read(events.length - 4);
      await fastDone;
      expect(ids(fast.seen)).toEqual(ids(events));
      expect(ids(slow.seen)).toEqual(ids(events));
    } finally {
      stop.abort();
      feed.close();
    }
  });

  it('keeps the count budget as before', async () => {
    const { state, store } = source(Array.from({ length: 50 }, () => 10));
    const feed = new SharedFeed(store, null, { events: 7 });
    const stop = new AbortController();
    try {
      const fast = reader(feed.branch(null, stop.signal) as AsyncIterable<RecordedEvent>);
      feed.branch(null, stop.signal);
      void fast.read(50);
      await settle();
      expect(state.pulled).toBe(7);
    } finally {
      stop.abort();
      feed.close();
    }
  });
});

describe('EventBuffer byte budget', () => {
  it('buffers up to its byte budget, takes batches within theirs (at least one event), never skips', async () => {
    const sizes = [100, 100, 100, 100, 100, 100, 2000, 100, 100, undefined, 100, 100];
    const { events, state, subscribe } = source(sizes);
    const stop = new AbortController();
    const buffer = new EventBuffer(subscribe({ signal: stop.signal }), 1000, 500);
    try {
      await settle();
      expect(state.pulled).toBe(5);

      const taken: RecordedEvent[][] = [];
      taken.push(await buffer.take(100, 10, 250));
      expect(ids(taken[0] as RecordedEvent[])).toEqual(['e-0', 'e-1']);
      await settle();
      // 300 bytes left buffered: it read on to 500 again (the 2000-byte event overshoots, alone).
      expect(state.pulled).toBe(7);

      for (;;) {
        await settle();
        const batch = await buffer.take(100, 10, 250);
        if (batch.length === 0) break;
        taken.push(batch);
      }
      expect(taken.map((batch) => batch.length)).toEqual([2, 2, 2, 1, 2, 1, 2]);
      expect(ids(taken.flat())).toEqual(ids(events));
    } finally {
      stop.abort();
      buffer.close();
    }
  });

  it('still takes up to `max` events when they are small', async () => {
    const { subscribe } = source(Array.from({ length: 30 }, () => 10));
    const stop = new AbortController();
    const buffer = new EventBuffer(subscribe({ signal: stop.signal }), 100, 1_000_000);
    try {
      await settle();
      expect((await buffer.take(25, 10, 1_000_000)).length).toBe(25);
      expect((await buffer.take(25, 10, 1_000_000)).length).toBe(5);
    } finally {
      stop.abort();
      buffer.close();
    }
  });
});
