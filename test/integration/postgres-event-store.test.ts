import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { appendInTransaction, createPostgresEventStore } from '../../src/adapters/postgres-event-store/event-store.js';
import { type DatabasePool, sql } from '../../src/adapters/postgres/pool.js';
import {
  comparePositions,
  type EventStore,
  type NewEvent,
  type Position,
  type RecordedEvent,
  WrongExpectedRevisionError,
} from '../../src/core/event-store.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

/** Behaviour specific to the Postgres adapter; the shared semantics live in test/contract. */

let db: TestDatabase;
const stores: EventStore[] = [];

beforeAll(async () => {
  db = await createTestDatabase({ maxPoolSize: 20 });
});

afterEach(async () => {
  await Promise.all(stores.splice(0).map((store) => store.close()));
  await db.pool.query(sql.unsafe`truncate events, streams`);
});

afterAll(async () => {
  await db?.drop();
});

const open = (options: Omit<Parameters<typeof createPostgresEventStore>[0], 'pool'> & { pool?: DatabasePool } = {}) => {
  const store = createPostgresEventStore({ pool: db.pool, ...options });
  stores.push(store);
  return store;
};

const newEvent = (data: Record<string, number> = {}): NewEvent => ({ id: randomUUID(), type: 'Tested', data });
const stream = () => `pg-${randomUUID()}`;

const collect = async <T>(iterable: AsyncIterable<T>): Promise<T[]> => {
  const items: T[] = [];
  for await (const item of iterable) items.push(item);
  return items;
};

/** The first `count` events of a subscription, or whatever arrived within `timeoutMs`. */
const firstEvents = async (subscription: AsyncIterable<RecordedEvent>, count: number, controller: AbortController, timeoutMs = 5_000) => {
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  const events: RecordedEvent[] = [];
  try {
    for await (const event of subscription) {
      events.push(event);
      if (events.length >= count) break;
    }
  } finally {
    clearTimeout(timer);
  }
  return events;
};

/** Until the global log shows `position`: other transactions in the cluster (other test files) may hold it back. */
const settled = async (store: EventStore, position: Position) => {
  await expect
    .poll(async () => {
      const head = await store.headPosition();
      return head !== null && comparePositions(head, position) >= 0;
    })
    .toBe(true);
};

const conflict = async (attempt: Promise<unknown>) => {
  const error = await attempt.then(
    () => null,
    (error: unknown) => error,
  );
  expect(error).toBeInstanceOf(WrongExpectedRevisionError);
  return error as WrongExpectedRevisionError;
};

describe('postgres event store: appends', () => {
  it('treats ids already in the stream, in order, as a retry for any and stream_exists', async () => {
    const store = open();
    const streamId = stream();
    await store.appendToStream(streamId, [newEvent()], { expectedRevision: 'no_stream' });
    const events = [newEvent(), newEvent()];
    const original = await store.appendToStream(streamId, events, { expectedRevision: 'any' });
    await store.appendToStream(streamId, [newEvent()], { expectedRevision: 'any' });
    expect(await store.appendToStream(streamId, events, { expectedRevision: 'any' })).toEqual(original);
    expect(await store.appendToStream(streamId, events, { expectedRevision: 'stream_exists' })).toEqual(original);
    const partial = await conflict(store.appendToStream(streamId, [events[0] as NewEvent, newEvent()], { expectedRevision: 'any' }));
    expect(partial.actual).toBe(3n);
    const reordered = await conflict(store.appendToStream(streamId, [...events].reverse(), { expectedRevision: 'any' }));
    expect(reordered.actual).toBe(3n);
    expect(await collect(store.readStream(streamId))).toHaveLength(4);
  });

  it('never stores an event id twice in one stream: a re-append at the head is a conflict', async () => {
    // EventStoreDB would store it again (kurrent-io/KurrentDB#1898); a ledger must not count a retry twice.
    const store = open();
    const streamId = stream();
    const event = newEvent();
    await store.appendToStream(streamId, [event], { expectedRevision: 'no_stream' });
    const error = await conflict(store.appendToStream(streamId, [event], { expectedRevision: 0n }));
    expect([error.expected, error.actual]).toEqual([0n, 0n]);
    // Another stream may hold the same id.
    await store.appendToStream(stream(), [event], { expectedRevision: 'no_stream' });
  });

  it('refuses an empty append and a negative expected revision before touching the database', async () => {
    const store = open();
    await expect(store.appendToStream(stream(), [], { expectedRevision: 'any' })).rejects.toThrow(RangeError);
    await expect(store.appendToStream(stream(), [newEvent()], { expectedRevision: -1n })).rejects.toThrow(RangeError);
  });

  it('reports an expected revision beyond any bigint as an ordinary conflict', async () => {
    const store = open();
    const streamId = stream();
    await store.appendToStream(streamId, [newEvent()], { expectedRevision: 'no_stream' });
    const huge = (1n << 64n) + 5n;
    const error = await conflict(store.appendToStream(streamId, [newEvent()], { expectedRevision: huge }));
    expect([error.expected, error.actual]).toEqual([huge, 0n]);
  });

  it('appends inside a caller transaction, and nothing of it survives a rollback', async () => {
    const store = open();
    const streamId = stream();
    await expect(
      db.pool.transaction(async (transaction) => {
        await appendInTransaction(transaction, streamId, [newEvent()], 'no_stream');
        throw new Error('rolled back on purpose');
      }),
    ).rejects.toThrow('rolled back on purpose');
    expect(await collect(store.readStream(streamId))).toEqual([]);
    const result = await db.pool.transaction((transaction) => appendInTransaction(transaction, streamId, [newEvent()], 'no_stream'));
    expect(result.nextExpectedRevision).toBe(0n);
  });
});

describe('postgres event store: the global log never runs ahead of a transaction in flight', () => {
  it('holds back later commits until an earlier transaction commits, then delivers it first', async () => {
    const store = open();
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    let appended!: () => void;
    const inFlight = new Promise<void>((resolve) => {
      appended = resolve;
    });
    const early = stream();
    const late = stream();
    const slow = db.pool.transaction(async (transaction) => {
      await appendInTransaction(transaction, early, [newEvent()], 'no_stream');
      appended();
      await released;
    });
    await inFlight;
    const lateAppend = await store.appendToStream(late, [newEvent()], { expectedRevision: 'no_stream' });
    // Committed, and visible in its stream, but not yet in the global log or its head.
    expect(await collect(store.readStream(late))).toHaveLength(1);
    expect(await collect(store.readAll())).toEqual([]);
    expect(await store.headPosition()).toBeNull();
    release();
    await slow;
    await settled(store, lateAppend.position);
    const all = await collect(store.readAll());
    expect(all.map((event) => event.streamId)).toEqual([early, late]);
    expect(comparePositions((all[0] as RecordedEvent).position, (all[1] as RecordedEvent).position)).toBeLessThan(0);
    expect(await store.headPosition()).toEqual((all[1] as RecordedEvent).position);
  });

  it('lets the log move on once a transaction in flight rolls back', async () => {
    const store = open({ pollIntervalMs: 50 });
    const controller = new AbortController();
    const subscription = store.subscribeToAll({ signal: controller.signal });
    const received = firstEvents(subscription, 1, controller);
    const committed = stream();
    let rollBack!: () => void;
    const rollingBack = new Promise<void>((resolve) => {
      rollBack = resolve;
    });
    let appended!: () => void;
    const inFlight = new Promise<void>((resolve) => {
      appended = resolve;
    });
    // Slonik refuses pool queries inside a transaction's callback, so the test talks to the store out here.
    const doomed = db.pool.transaction(async (transaction) => {
      await appendInTransaction(transaction, stream(), [newEvent()], 'no_stream');
      appended();
      await rollingBack;
      throw new Error('rolled back on purpose');
    });
    await inFlight;
    await store.appendToStream(committed, [newEvent()], { expectedRevision: 'no_stream' });
    await sleep(150);
    expect(await collect(store.readAll())).toEqual([]);
    rollBack();
    await expect(doomed).rejects.toThrow('rolled back on purpose');
    const [event] = await received;
    expect(event?.streamId).toBe(committed);
    expect((await collect(store.readAll())).map((e) => e.streamId)).toEqual([committed]);
  });
});

/** Uses up transaction ids (one per subtransaction that writes) until the next one has one digit more. */
const burnTransactionIdsToNextPowerOfTen = () =>
  db.pool.query(sql.unsafe`
    do $$
    declare
      next_xid bigint := pg_snapshot_xmax(pg_current_snapshot())::text::bigint;
      target bigint := (10::numeric ^ length(next_xid::text))::bigint;
    begin
      create temp table xid_burner (n bigint);
      for i in 1 .. target - next_xid + 10 loop
        begin
          insert into xid_burner values (i);
        exception when others then null;
        end;
      end loop;
      drop table xid_burner;
    end $$`);

describe('postgres event store: reads', () => {
  it('orders by transaction id as a number, also where its digit count grows', async () => {
    const store = open();
    const [first, second] = [stream(), stream()];
    await store.appendToStream(first, [newEvent()], { expectedRevision: 'no_stream' });
    await burnTransactionIdsToNextPowerOfTen();
    await settled(store, (await store.appendToStream(second, [newEvent()], { expectedRevision: 'no_stream' })).position);

    const all = await collect(store.readAll());
    expect(all.map((event) => event.streamId)).toEqual([first, second]);
    const [early, late] = all as [RecordedEvent, RecordedEvent];
    expect(String(early.position.major).length).toBeLessThan(String(late.position.major).length);
    expect((await collect(store.readAll({ direction: 'backwards' }))).map((event) => event.streamId)).toEqual([second, first]);
    expect(await store.headPosition()).toEqual(late.position);
    expect((await collect(store.readAll({ fromPosition: early.position }))).map((event) => event.streamId)).toEqual([second]);
    const controller = new AbortController();
    const subscribed = await firstEvents(store.subscribeToAll({ signal: controller.signal }), 2, controller);
    expect(subscribed.map((event) => event.streamId)).toEqual([first, second]);
  });

  it('reads in batches, querying no further than the consumer reads', async () => {
    let queries = 0;
    const counting = new Proxy(db.pool, {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver) as unknown;
        if (property !== 'any' || typeof value !== 'function') return value;
        return (...args: unknown[]) => {
          queries++;
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    const store = open({ pool: counting, batchSize: 10 });
    const streamId = stream();
    const appended = await store.appendToStream(streamId, Array.from({ length: 95 }, (_, index) => newEvent({ index })), {
      expectedRevision: 'no_stream',
    });
    await settled(store, appended.position);

    queries = 0;
    for await (const event of store.readStream(streamId)) {
      expect(event.revision).toBe(0n);
      break;
    }
    expect(queries).toBe(1);

    queries = 0;
    const all = await collect(store.readStream(streamId));
    expect(all.map((event) => event.revision)).toEqual(Array.from({ length: 95 }, (_, index) => BigInt(index)));
    expect(queries).toBe(10);

    queries = 0;
    expect(await collect(store.readAll({ direction: 'backwards', maxCount: 25 }))).toHaveLength(25);
    expect(queries).toBe(3);
  });
});

describe('postgres event store: live subscriptions', () => {
  const activeListeners = async () =>
    db.pool.oneFirst(sql.type(z.object({ count: z.number() }))`
      select count(*)::int as count from pg_stat_activity
      where datname = current_database() and application_name = 'event-store-listener'`);

  it("is woken by another store's appends through LISTEN/NOTIFY, without waiting for its poll", async () => {
    const subscriber = open({ pollIntervalMs: 60_000 });
    const writer = open({ notifyUrl: false });
    const controller = new AbortController();
    const subscription = subscriber.subscribeToAll({ signal: controller.signal });
    const received = firstEvents(subscription, 2, controller);
    await sleep(200); // caught up and waiting
    const started = Date.now();
    const streamId = stream();
    await writer.appendToStream(streamId, [newEvent()], { expectedRevision: 'no_stream' });
    await sleep(50);
    await writer.appendToStream(streamId, [newEvent()], { expectedRevision: 0n });
    const events = await received;
    expect(events.map((event) => event.revision)).toEqual([0n, 1n]);
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it("is woken by its own store's appends without a listener", async () => {
    const store = open({ notifyUrl: false, pollIntervalMs: 60_000 });
    const controller = new AbortController();
    const received = firstEvents(store.subscribeToAll({ signal: controller.signal }), 1, controller);
    await sleep(200);
    const started = Date.now();
    await store.appendToStream(stream(), [newEvent()], { expectedRevision: 'no_stream' });
    expect(await received).toHaveLength(1);
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(await activeListeners()).toBe(0);
  });

  it('throws from the iterator when its listener connection fails', async () => {
    const store = open({ pollIntervalMs: 60_000 });
    const controller = new AbortController();
    const reading = collect(store.subscribeToAll({ signal: controller.signal }));
    // It may reject while the test is still awaiting the termination below: handle it from the start.
    const failure = reading.then(
      () => null,
      (error: unknown) => error,
    );
    await sleep(200);
    expect(await activeListeners()).toBe(1);
    await db.pool.query(sql.unsafe`
      select pg_terminate_backend(pid) from pg_stat_activity
      where datname = current_database() and application_name = 'event-store-listener'`);
    expect(String(await failure)).toMatch(/listener connection/);
    controller.abort();
    // A new subscription opens a new listener.
    const again = new AbortController();
    const received = firstEvents(store.subscribeToAll({ signal: again.signal }), 1, again);
    await sleep(200);
    await store.appendToStream(stream(), [newEvent()], { expectedRevision: 'no_stream' });
    expect(await received).toHaveLength(1);
  });

  it('shares one listener connection, closes it after the last subscription, and close() ends subscriptions but not the pool', async () => {
    const store = open({ pollIntervalMs: 60_000 });
    const first = new AbortController();
    const one = collect(store.subscribeToAll({ signal: first.signal }));
    const two = collect(store.subscribeToAll());
    await sleep(200);
    expect(await activeListeners()).toBe(1);
    first.abort();
    await one;
    expect(await activeListeners()).toBe(1);
    await store.close();
    await expect(two).resolves.toEqual([]);
    await expect.poll(activeListeners).toBe(0);
    await store.close();
    expect(await db.pool.oneFirst(sql.type(z.object({ one: z.number() }))`select 1 as one`)).toBe(1);
    await expect(collect(store.readAll())).rejects.toThrow(/closed/);
  });

  it('answers ping while the database is reachable', async () => {
    await expect(open().ping()).resolves.toBeUndefined();
  });
});
