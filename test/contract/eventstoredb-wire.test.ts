/**
 * Wire-level specification of the EventStoreDB adapter: the real client talks gRPC to the in-process
 * double, so option, position and error mapping are exercised exactly as against a server.
 * Both append paths run: BatchAppend (advertised by GetSupportedMethods, servers ≥ 21.10) and the
 * legacy Append (ServerFeatures UNIMPLEMENTED, as 20.x).
 */
import { randomUUID } from 'node:crypto';
import { type AddressInfo, createServer, type Socket } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  createEventStoreDbEventStore,
  SubscriptionDroppedError,
  UnreadableEventError,
} from '../../src/adapters/eventstoredb/event-store.js';
import {
  type EventStore,
  type NewEvent,
  type Position,
  type RecordedEvent,
  WrongExpectedRevisionError,
} from '../../src/core/event-store.js';
import { EXPECTED_ANY } from '../support/esdb-double/log.js';
import { startEsdbDoubleInChildProcess } from '../support/esdb-double/child-process.js';
import { type EsdbDouble, type EsdbDoubleOptions, startEsdbDouble } from '../support/esdb-double/index.js';

// 2023-11-14T22:13:20.123Z in .NET ticks since the Unix epoch, plus 4567 ticks below the millisecond.
const CREATED_TICKS = 17_000_000_001_234_567n;
const CREATED_AT = new Date(1_700_000_000_123);

const newEvent = (type = 'CreditsPurchased', data: NewEvent['data'] = { amount: 10 }, metadata?: NewEvent['metadata']): NewEvent => ({
  id: randomUUID(),
  type,
  data,
  ...(metadata ? { metadata } : {}),
});

const collect = async <T>(iterable: AsyncIterable<T>): Promise<T[]> => {
  const items: T[] = [];
  for await (const item of iterable) items.push(item);
  return items;
};

/** The position the double's log gave an event, as the port must report it. */
const logPositionOf = (double: EsdbDouble, streamId: string, revision: bigint): Position => {
  const [event] = double.log.readStreamForwards(streamId, revision, 1n);
  if (!event) throw new Error(`no event ${streamId}@${revision} in the double`);
  return { major: event.logPosition, minor: event.logPosition };
};

const setup = (doubleOptions: EsdbDoubleOptions = {}) => {
  const context = {} as { double: EsdbDouble; store: EventStore };
  beforeEach(async () => {
    context.double = await startEsdbDouble({ nowTicks: () => CREATED_TICKS, ...doubleOptions });
    context.store = createEventStoreDbEventStore({ connectionString: context.double.connectionString });
  });
  afterEach(async () => {
    await context.store.close();
    await context.double.stop();
  });
  return context;
};

describe.each([
  { appendPath: 'batch', rpc: 'batchAppend' },
  { appendPath: 'legacy', rpc: 'append' },
] as const)('EventStoreDB adapter appends over $appendPath', ({ appendPath, rpc }) => {
  const t = setup({ appendPath });

  it(`uses Streams/${rpc === 'batchAppend' ? 'BatchAppend' : 'Append'}`, async () => {
    await t.store.appendToStream(`account-${randomUUID()}`, [newEvent()], { expectedRevision: 'no_stream' });
    expect(t.double.calls[rpc]).toBe(1);
    expect(t.double.calls[rpc === 'append' ? 'batchAppend' : 'append']).toBe(0);
  });

  it('maps the result: revision of the last event written, and its (commit, prepare) as (major, minor)', async () => {
    const streamId = `account-${randomUUID()}`;
    const first = await t.store.appendToStream(streamId, [newEvent()], { expectedRevision: 'no_stream' });
    expect(first).toEqual({ nextExpectedRevision: 0n, position: logPositionOf(t.double, streamId, 0n) });

    const second = await t.store.appendToStream(streamId, [newEvent(), newEvent(), newEvent()], { expectedRevision: 0n });
    expect(second).toEqual({ nextExpectedRevision: 3n, position: logPositionOf(t.double, streamId, 3n) });
    expect(second.position.major).toBeGreaterThan(first.position.major);
  });

  it.each([
    { expectedRevision: 'any', exists: false },
    { expectedRevision: 'any', exists: true },
    { expectedRevision: 'no_stream', exists: false },
    { expectedRevision: 'stream_exists', exists: true },
    { expectedRevision: 0n, exists: true },
  ] as const)('accepts expected revision $expectedRevision when the stream exists: $exists', async ({ expectedRevision, exists }) => {
    const streamId = `account-${randomUUID()}`;
    if (exists) await t.store.appendToStream(streamId, [newEvent()], { expectedRevision: 'no_stream' });
    const result = await t.store.appendToStream(streamId, [newEvent()], { expectedRevision });
    expect(result.nextExpectedRevision).toBe(exists ? 1n : 0n);
  });

  it.each([
    { expectedRevision: 'no_stream', existing: 1, actual: 0n },
    { expectedRevision: 'stream_exists', existing: 0, actual: 'no_stream' },
    { expectedRevision: 0n, existing: 0, actual: 'no_stream' },
    { expectedRevision: 0n, existing: 3, actual: 2n },
    { expectedRevision: 5n, existing: 3, actual: 2n },
  ] as const)(
    'maps a conflict at expected $expectedRevision with $existing events to WrongExpectedRevisionError (actual $actual)',
    async ({ expectedRevision, existing, actual }) => {
      const streamId = `account-${randomUUID()}`;
      if (existing > 0) {
        await t.store.appendToStream(streamId, Array.from({ length: existing }, () => newEvent()), {
          expectedRevision: 'no_stream',
        });
      }
      const error = await t.store
        .appendToStream(streamId, [newEvent()], { expectedRevision })
        .then(() => undefined, (thrown: unknown) => thrown);
      expect(error).toBeInstanceOf(WrongExpectedRevisionError);
      expect(error).toMatchObject({ code: 'wrong_expected_revision', streamId, expected: expectedRevision, actual });
      expect(t.double.log.streamVersion(streamId)).toBe(BigInt(existing) - 1n);
    },
  );

  describe('idempotent re-append', () => {
    it('with the same ids at the same expected revision returns the original result and writes nothing', async () => {
      const streamId = `account-${randomUUID()}`;
      const events = [newEvent(), newEvent()];
      const original = await t.store.appendToStream(streamId, events, { expectedRevision: 'no_stream' });
      await t.store.appendToStream(streamId, [newEvent()], { expectedRevision: 1n });

      expect(await t.store.appendToStream(streamId, events, { expectedRevision: 'no_stream' })).toEqual(original);
      expect(t.double.log.streamVersion(streamId)).toBe(2n);

      const later = [newEvent()];
      const third = await t.store.appendToStream(streamId, later, { expectedRevision: 2n });
      await t.store.appendToStream(streamId, [newEvent()], { expectedRevision: 3n });
      expect(await t.store.appendToStream(streamId, later, { expectedRevision: 2n })).toEqual(third);
      expect(t.double.log.streamVersion(streamId)).toBe(4n);
    });

    it("with 'any' finds the ids and returns the original result", async () => {
      const streamId = `account-${randomUUID()}`;
      const events = [newEvent(), newEvent()];
      const original = await t.store.appendToStream(streamId, events, { expectedRevision: 'any' });
      expect(await t.store.appendToStream(streamId, events, { expectedRevision: 'any' })).toEqual(original);
      expect(t.double.log.streamVersion(streamId)).toBe(1n);
    });

    it("with 'any' writes the events again once their ids left the server's committed-events cache", async () => {
      // The server looks `any`/`stream_exists` retries up only in a bounded cache of recent ids
      // (IndexWriter.CheckCommit): only an exact revision or no_stream makes a retry safe.
      const double = await startEsdbDouble({ appendPath, committedEventsCacheBytes: 2_000 });
      const store = createEventStoreDbEventStore({ connectionString: double.connectionString });
      try {
        const streamId = `account-${randomUUID()}`;
        const events = [newEvent(), newEvent()];
        const original = await store.appendToStream(streamId, events, { expectedRevision: 'any' });
        expect(await store.appendToStream(streamId, events, { expectedRevision: 'any' })).toEqual(original);
        for (let n = 0; n < 50; n += 1) {
          await store.appendToStream(`other-${randomUUID()}`, [newEvent()], { expectedRevision: 'no_stream' });
        }
        const again = await store.appendToStream(streamId, events, { expectedRevision: 'any' });
        expect(again.nextExpectedRevision).toBe(3n);
        expect(await store.appendToStream(streamId, events, { expectedRevision: 'no_stream' })).toEqual(original);
      } finally {
        await store.close();
        await double.stop();
      }
    });

    it('is a conflict when only some of the events are already there', async () => {
      const streamId = `account-${randomUUID()}`;
      const first = newEvent();
      await t.store.appendToStream(streamId, [first, newEvent()], { expectedRevision: 'no_stream' });
      await expect(
        t.store.appendToStream(streamId, [first, newEvent()], { expectedRevision: 'no_stream' }),
      ).rejects.toMatchObject({ code: 'wrong_expected_revision', actual: 1n });
    });

    it('does not apply at the current head: the same ids are written again', async () => {
      const streamId = `account-${randomUUID()}`;
      const event = newEvent();
      await t.store.appendToStream(streamId, [event], { expectedRevision: 'no_stream' });
      const again = await t.store.appendToStream(streamId, [event], { expectedRevision: 0n });
      expect(again.nextExpectedRevision).toBe(1n);
      expect((await collect(t.store.readStream(streamId))).map((e) => e.id)).toEqual([event.id, event.id]);
    });
  });

  it('lets exactly one of concurrent appends at the same expected revision win', async () => {
    const streamId = `account-${randomUUID()}`;
    await t.store.appendToStream(streamId, [newEvent()], { expectedRevision: 'no_stream' });
    const outcomes = await Promise.allSettled(
      Array.from({ length: 8 }, () => t.store.appendToStream(streamId, [newEvent()], { expectedRevision: 0n })),
    );
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
    for (const outcome of outcomes.filter((o) => o.status === 'rejected')) {
      expect(outcome.reason).toMatchObject({ code: 'wrong_expected_revision', expected: 0n, actual: 1n });
    }
  });

  it('gives concurrent appends to different streams distinct, increasing positions', async () => {
    const results = await Promise.all(
      Array.from({ length: 10 }, () =>
        t.store.appendToStream(`account-${randomUUID()}`, [newEvent(), newEvent()], { expectedRevision: 'no_stream' }),
      ),
    );
    const positions = results.map((r) => r.position.major);
    expect(new Set(positions).size).toBe(10);
    const all = await collect(t.store.readAll());
    expect(all).toHaveLength(20);
    for (const result of results) expect(all.some((e) => e.position.major === result.position.major)).toBe(true);
  });

  it('surfaces a server-side rejection (append over MaxAppendSize) as an error that is not a conflict', async () => {
    const double = await startEsdbDouble({ appendPath, maxAppendSize: 64 });
    const store = createEventStoreDbEventStore({ connectionString: double.connectionString });
    try {
      const error = await store
        .appendToStream(`account-${randomUUID()}`, [newEvent('Big', { text: 'x'.repeat(100) })], { expectedRevision: 'any' })
        .then(() => undefined, (thrown: unknown) => thrown);
      expect(error).toBeInstanceOf(Error);
      expect(error).not.toBeInstanceOf(WrongExpectedRevisionError);
      expect(error).toMatchObject({ type: 'maximum-append-size-exceeded', maxAppendSize: 64 });
    } finally {
      await store.close();
      await double.stop();
    }
  });
});

describe('EventStoreDB adapter reads', () => {
  const t = setup();

  it('maps every field of a recorded event', async () => {
    const streamId = `account-${randomUUID()}`;
    const event = newEvent('CreditsPurchased', { amount: 12, lots: [{ id: 'a', credits: 3 }] }, { commandId: 'c-1' });
    const { position } = await t.store.appendToStream(streamId, [event], { expectedRevision: 'no_stream' });
    const [read] = await collect(t.store.readStream(streamId));
    expect(read).toEqual<RecordedEvent>({
      id: event.id,
      type: 'CreditsPurchased',
      streamId,
      revision: 0n,
      position,
      data: { amount: 12, lots: [{ id: 'a', credits: 3 }] },
      metadata: { commandId: 'c-1' },
      recordedAt: CREATED_AT,
      sizeHint: expect.any(Number),
    });
    // About the JSON text's length (estimated from the parsed values: the client keeps no byte lengths).
    const compact = JSON.stringify(read?.data).length + JSON.stringify(read?.metadata).length;
    expect(read?.sizeHint).toBeGreaterThanOrEqual(compact);
    expect(read?.sizeHint).toBeLessThanOrEqual(2 * compact);
  });

  it('reads metadata that was not given as an empty object', async () => {
    const streamId = `account-${randomUUID()}`;
    await t.store.appendToStream(streamId, [newEvent()], { expectedRevision: 'no_stream' });
    const [read] = await collect(t.store.readStream(streamId));
    expect(read?.metadata).toEqual({});
    expect(t.double.log.readStreamForwards(streamId, 0n, 1n)[0]?.metadata.byteLength).toBe(0);
  });

  it('reads a stream that does not exist (StreamNotFound in the response) as empty', async () => {
    expect(await collect(t.store.readStream(`account-${randomUUID()}`))).toEqual([]);
    expect(await collect(t.store.readStream(`account-${randomUUID()}`, { direction: 'backwards' }))).toEqual([]);
  });

  it('reads a stream forwards and backwards, from a revision (inclusive), up to maxCount', async () => {
    const streamId = `account-${randomUUID()}`;
    await t.store.appendToStream(streamId, Array.from({ length: 5 }, (_, n) => newEvent('E', { n })), {
      expectedRevision: 'no_stream',
    });
    const revisions = async (options: Parameters<EventStore['readStream']>[1]) =>
      (await collect(t.store.readStream(streamId, options))).map((e) => e.revision);

    expect(await revisions({})).toEqual([0n, 1n, 2n, 3n, 4n]);
    expect(await revisions({ fromRevision: 2n })).toEqual([2n, 3n, 4n]);
    expect(await revisions({ fromRevision: 1n, maxCount: 2 })).toEqual([1n, 2n]);
    expect(await revisions({ direction: 'backwards' })).toEqual([4n, 3n, 2n, 1n, 0n]);
    expect(await revisions({ direction: 'backwards', fromRevision: 2n })).toEqual([2n, 1n, 0n]);
    expect(await revisions({ direction: 'backwards', maxCount: 2 })).toEqual([4n, 3n]);
    expect(await revisions({ fromRevision: 9n })).toEqual([]);
    expect(await revisions({ maxCount: 0 })).toEqual([]);
    await expect(revisions({ fromRevision: -1n })).rejects.toBeInstanceOf(RangeError);
    await expect(revisions({ maxCount: 1.5 })).rejects.toBeInstanceOf(RangeError);
  });

  it('reads again normally after a consumer left a read early', async () => {
    const streamId = `account-${randomUUID()}`;
    await t.store.appendToStream(streamId, Array.from({ length: 50 }, () => newEvent()), { expectedRevision: 'no_stream' });
    for await (const event of t.store.readStream(streamId)) {
      expect(event.revision).toBe(0n);
      break;
    }
    expect((await collect(t.store.readStream(streamId))).length).toBe(50);
  });

  it('refuses an event that is not a JSON object instead of guessing', async () => {
    const streamId = `account-${randomUUID()}`;
    t.double.log.append(streamId, EXPECTED_ANY, [
      { id: randomUUID(), type: 'Binary', isJson: false, data: new Uint8Array([1, 2, 3]), metadata: new Uint8Array() },
    ]);
    await expect(collect(t.store.readStream(streamId))).rejects.toBeInstanceOf(UnreadableEventError);
  });

  describe('$all', () => {
    const seed = async () => {
      const a = `account-${randomUUID()}`;
      const b = `account-${randomUUID()}`;
      await t.store.appendToStream(a, [newEvent('A0'), newEvent('A1')], { expectedRevision: 'no_stream' });
      t.double.writeSystemEvent('$metadata', `$$${a}`);
      await t.store.appendToStream(b, [newEvent('B0')], { expectedRevision: 'no_stream' });
      t.double.writeSystemEvent();
      await t.store.appendToStream(a, [newEvent('A2')], { expectedRevision: 1n });
      return collect(t.store.readAll());
    };

    it('reads every event in position order, without the server’s own ($-typed) events', async () => {
      const all = await seed();
      expect(all.map((e) => e.type)).toEqual(['A0', 'A1', 'B0', 'A2']);
      const positions = all.map((e) => e.position.major);
      expect([...positions].sort((x, y) => (x < y ? -1 : 1))).toEqual(positions);
      expect(new Set(positions).size).toBe(4);
      expect(all.every((e) => e.position.major === e.position.minor)).toBe(true);
    });

    it('starts after fromPosition (exclusive) forwards, and before it backwards', async () => {
      const all = await seed();
      const [, a1, b0] = all;
      if (!a1 || !b0) throw new Error('seed failed');
      expect((await collect(t.store.readAll({ fromPosition: a1.position }))).map((e) => e.type)).toEqual(['B0', 'A2']);
      expect(
        (await collect(t.store.readAll({ fromPosition: b0.position, direction: 'backwards' }))).map((e) => e.type),
      ).toEqual(['A1', 'A0']);
      expect((await collect(t.store.readAll({ direction: 'backwards' }))).map((e) => e.type)).toEqual(['A2', 'B0', 'A1', 'A0']);
    });

    it('counts maxCount in events returned, not in system events skipped', async () => {
      await seed();
      const [a1] = await collect(t.store.readAll({ maxCount: 2 })).then((events) => events.slice(1));
      if (!a1) throw new Error('seed failed');
      expect((await collect(t.store.readAll({ fromPosition: a1.position, maxCount: 2 }))).map((e) => e.type)).toEqual([
        'B0',
        'A2',
      ]);
      expect((await collect(t.store.readAll({ direction: 'backwards', maxCount: 3 }))).map((e) => e.type)).toEqual([
        'A2',
        'B0',
        'A1',
      ]);
    });

    it('reports the head position: the last non-system event, or null', async () => {
      expect(await t.store.headPosition()).toBeNull(); // the double starts with system events only
      const all = await seed();
      t.double.writeSystemEvent();
      expect(await t.store.headPosition()).toEqual(all.at(-1)?.position);
    });
  });
});

describe('EventStoreDB adapter against a double in another process', () => {
  it('closes promptly after reads the consumer left early', { timeout: 60_000 }, async () => {
    // Regression: destroying an abandoned read unpiped its gRPC call; when the server had already
    // completed that call, it stayed paused with data in its buffer forever and dispose() hung.
    // Only a server in another process (answers arriving while the client is busy) showed it.
    const double = await startEsdbDoubleInChildProcess();
    const warn = vi.fn();
    const store = createEventStoreDbEventStore({
      connectionString: double.connectionString,
      closeTimeoutMs: 4000,
      logger: { debug: () => undefined, warn },
    });
    try {
      for (let attempt = 0; attempt < 5; attempt += 1) {
        const start = await store.headPosition();
        const streams = [0, 1, 2].map(() => `account-${randomUUID()}`);
        for (let round = 0; round < 3; round += 1) {
          for (const streamId of streams) {
            await store.appendToStream(streamId, Array.from({ length: round + 1 }, () => newEvent()), {
              expectedRevision: 'any',
            });
          }
        }
        const from = start ? { fromPosition: start } : {};
        expect(await collect(store.readAll({ ...from, maxCount: 2 }))).toHaveLength(2);
        const all = await collect(store.readAll(from));
        expect(await collect(store.readAll({ fromPosition: (all[5] as RecordedEvent).position, maxCount: 3 }))).toHaveLength(3);
        for await (const event of store.readStream(streams[2] as string)) if (event.revision === 1n) break;
      }
      const started = Date.now();
      await store.close();
      expect(Date.now() - started).toBeLessThan(2000);
      expect(warn).not.toHaveBeenCalled();
    } finally {
      await store.close();
      await double.stop();
    }
  });
});

describe('EventStoreDB adapter subscribes to $all', () => {
  const t = setup();

  it('catches up, then follows live appends, without system events, and ends cleanly on abort', async () => {
    const streamId = `account-${randomUUID()}`;
    await t.store.appendToStream(streamId, [newEvent('E0'), newEvent('E1')], { expectedRevision: 'no_stream' });
    t.double.writeSystemEvent();

    const controller = new AbortController();
    const subscription = t.store.subscribeToAll({ signal: controller.signal })[Symbol.asyncIterator]();
    expect((await subscription.next()).value?.type).toBe('E0');
    expect((await subscription.next()).value?.type).toBe('E1');
    expect(t.double.openSubscriptions()).toBe(1);

    const pending = subscription.next();
    t.double.writeSystemEvent();
    const live = await t.store.appendToStream(streamId, [newEvent('E2')], { expectedRevision: 1n });
    const received = await pending;
    expect(received.value).toMatchObject({ type: 'E2', revision: 2n, position: live.position });

    const waiting = subscription.next();
    controller.abort();
    expect(await waiting).toEqual({ done: true, value: undefined });
    await expect.poll(() => t.double.openSubscriptions()).toBe(0);
  });

  it('neither skips nor repeats across the filter’s checkpoints, in catch-up and live', async () => {
    // The server-side filter sends a Checkpoint every 32 events it considers (system ones included).
    const streamId = `account-${randomUUID()}`;
    let revision: bigint | 'no_stream' = 'no_stream';
    const append = async (n: number) => {
      const result = await t.store.appendToStream(streamId, [newEvent('E', { n })], { expectedRevision: revision });
      revision = result.nextExpectedRevision;
      if (n % 3 === 0) t.double.writeSystemEvent();
    };
    for (let n = 0; n < 70; n += 1) await append(n);

    const controller = new AbortController();
    const seen: number[] = [];
    let last: Position | undefined;
    for await (const event of t.store.subscribeToAll({ signal: controller.signal })) {
      if (last) expect(event.position.major).toBeGreaterThan(last.major);
      last = event.position;
      seen.push(event.data.n as number);
      if (seen.length === 70) for (let n = 70; n < 140; n += 1) await append(n);
      if (seen.length === 140) controller.abort();
    }
    expect(seen).toEqual(Array.from({ length: 140 }, (_, n) => n));
  });

  it('starts after fromPosition (exclusive)', async () => {
    const streamId = `account-${randomUUID()}`;
    const first = await t.store.appendToStream(streamId, [newEvent('E0')], { expectedRevision: 'no_stream' });
    await t.store.appendToStream(streamId, [newEvent('E1')], { expectedRevision: 0n });

    const controller = new AbortController();
    const received: string[] = [];
    for await (const event of t.store.subscribeToAll({ fromPosition: first.position, signal: controller.signal })) {
      received.push(event.type);
      controller.abort();
    }
    expect(received).toEqual(['E1']);
  });

  it('ends at once when the signal is already aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    expect(await collect(t.store.subscribeToAll({ signal: controller.signal }))).toEqual([]);
    expect(t.double.openSubscriptions()).toBe(0);
  });

  it('unsubscribes when the consumer breaks out of the loop', async () => {
    const streamId = `account-${randomUUID()}`;
    await t.store.appendToStream(streamId, [newEvent(), newEvent()], { expectedRevision: 'no_stream' });
    for await (const event of t.store.subscribeToAll()) {
      expect(event.revision).toBe(0n);
      break;
    }
    await expect.poll(() => t.double.openSubscriptions()).toBe(0);
  });

  it('throws SubscriptionDroppedError from the iterator when the server drops the subscription', async () => {
    const streamId = `account-${randomUUID()}`;
    await t.store.appendToStream(streamId, [newEvent()], { expectedRevision: 'no_stream' });
    const subscription = t.store.subscribeToAll()[Symbol.asyncIterator]();
    await subscription.next();
    const pending = subscription.next();
    t.double.dropSubscriptions({ code: grpc.status.UNAVAILABLE, details: 'Subscription dropped' });
    const error = await pending.then(() => undefined, (thrown: unknown) => thrown);
    expect(error).toBeInstanceOf(SubscriptionDroppedError);
    expect(error).toMatchObject({ code: 'subscription_dropped', cause: { type: 'unavailable' } });
  });
});

describe('EventStoreDB adapter subscriptions end', () => {
  const t = setup();

  const subscribedTo = async (store: EventStore) => {
    const streamId = `account-${randomUUID()}`;
    await store.appendToStream(streamId, [newEvent()], { expectedRevision: 'no_stream' });
    const subscription = store.subscribeToAll()[Symbol.asyncIterator]();
    expect((await subscription.next()).value?.streamId).toBe(streamId);
    return subscription;
  };

  it('with SubscriptionDroppedError when the server completes the call, which a healthy subscription never sees', async () => {
    const subscription = await subscribedTo(t.store);
    const pending = subscription.next();
    t.double.dropSubscriptions({ code: grpc.status.OK, details: '' });
    await expect(pending).rejects.toThrow(/ended by the server/);
  });

  it('cleanly when the store is closed under them', async () => {
    const subscription = await subscribedTo(t.store);
    const pending = subscription.next();
    await t.store.close();
    expect(await pending).toEqual({ done: true, value: undefined });
    await expect.poll(() => t.double.openSubscriptions()).toBe(0);
    expect(await collect(t.store.subscribeToAll())).toEqual([]);
  });

  it('with the UnreadableEventError itself, not a drop, when an event cannot be mapped', async () => {
    t.double.log.append(`account-${randomUUID()}`, EXPECTED_ANY, [
      { id: randomUUID(), type: 'Binary', isJson: false, data: new Uint8Array([1]), metadata: new Uint8Array() },
    ]);
    await expect(collect(t.store.subscribeToAll())).rejects.toBeInstanceOf(UnreadableEventError);
    await expect.poll(() => t.double.openSubscriptions()).toBe(0);
  });
});

describe('EventStoreDB adapter reachability', () => {
  it('pings a running server and fails once it is gone', async () => {
    const double = await startEsdbDouble();
    const store = createEventStoreDbEventStore({ connectionString: double.connectionString, pingTimeoutMs: 1000 });
    try {
      await expect(store.ping()).resolves.toBeUndefined();
      await double.stop();
      await expect(store.ping()).rejects.toThrow();
    } finally {
      await store.close();
      await double.stop();
    }
  });

  it('fails a ping to a port nobody listens on', async () => {
    const double = await startEsdbDouble();
    const connectionString = double.connectionString;
    await double.stop();
    const store = createEventStoreDbEventStore({ connectionString, pingTimeoutMs: 1000 });
    try {
      await expect(store.ping()).rejects.toThrow();
    } finally {
      await store.close();
    }
  });

  it('fails a ping within its timeout when the server accepts connections but never answers', async () => {
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => sockets.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as AddressInfo;
    const store = createEventStoreDbEventStore({ connectionString: `esdb://127.0.0.1:${port}?tls=false`, pingTimeoutMs: 300 });
    try {
      const started = Date.now();
      await expect(store.ping()).rejects.toThrow(/did not answer within 300 ms/);
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      await store.close();
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('refuses throwOnAppendFailure=false, which would hide conflicts behind a wrong revision', () => {
    expect(() =>
      createEventStoreDbEventStore({ connectionString: 'esdb://127.0.0.1:2113?tls=false&throwOnAppendFailure=false' }),
    ).toThrow(/throwOnAppendFailure/);
  });

  it('refuses an empty append rather than returning a position no reader will see', async () => {
    const double = await startEsdbDouble();
    const store = createEventStoreDbEventStore({ connectionString: double.connectionString });
    try {
      await expect(store.appendToStream(`account-${randomUUID()}`, [], { expectedRevision: 'any' })).rejects.toBeInstanceOf(
        RangeError,
      );
    } finally {
      await store.close();
      await double.stop();
    }
  });
});
