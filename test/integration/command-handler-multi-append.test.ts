import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withMultiStreamAppends } from '../../src/adapters/postgres-multi-append/index.js';
import { createPostgresEventStore } from '../../src/adapters/postgres-event-store/event-store.js';
import { createAccounts } from '../../src/core/accounts.js';
import { systemClock } from '../../src/core/clock.js';
import { comparePositions, type EventStore, formatPosition, type NewEvent, type Position, type RecordedEvent, WrongExpectedRevisionError } from '../../src/core/event-store.js';
import { accountStreamId, DEFAULT_TIER_TABLE } from '../../src/ledger/index.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

/**
 * Group commit across streams (src/adapters/postgres-multi-append): concurrent appends to different
 * streams share one statement, each keeps append_to_stream's semantics, and the global log keeps every
 * stream in revision order.
 */

let db: TestDatabase;
let store: EventStore;

beforeAll(async () => {
  db = await createTestDatabase({ maxPoolSize: 20 });
  store = createPostgresEventStore({ pool: db.pool, notifyUrl: false });
});
afterAll(async () => {
  await store?.close();
  await db?.drop();
});

const event = (n: number): NewEvent => ({ id: randomUUID(), type: 'Tested', data: { n }, metadata: {} });
const read = async (streamId: string) => {
  const events: RecordedEvent[] = [];
  for await (const e of store.readStream(streamId)) events.push(e);
  return events;
};

describe('withMultiStreamAppends', () => {
  it('concurrent appends to 60 streams: fewer statements than appends, each result is its own stream’s', async () => {
    const batches: number[] = [];
    const batched = withMultiStreamAppends(store, db.pool, { onBatch: (n) => batches.push(n) });
    const streams = Array.from({ length: 60 }, () => `multi-${randomUUID()}`);
    const results = await Promise.all(streams.map((s, i) => batched.appendToStream(s, [event(i), event(i + 1000)], { expectedRevision: 'no_stream' })));
    expect(batches.length).toBeLessThan(60);
    expect(batches.reduce((a, b) => a + b, 0)).toBe(60);
    for (const [i, streamId] of streams.entries()) {
      const stored = await read(streamId);
      expect(stored.map((e) => e.data.n)).toEqual([i, i + 1000]);
      expect(results[i]?.nextExpectedRevision).toBe(1n);
      expect(results[i]?.position).toEqual(stored[1]?.position);
    }
  });

  it('a conflict fails only its own append; an exact re-append is idempotent', async () => {
    const batched = withMultiStreamAppends(store, db.pool, { maxInFlight: 1 });
    const a = `multi-a-${randomUUID()}`;
    const b = `multi-b-${randomUUID()}`;
    const c = `multi-c-${randomUUID()}`;
    const first = [event(1)];
    await store.appendToStream(a, first, { expectedRevision: 'no_stream' });
    await store.appendToStream(b, [event(1)], { expectedRevision: 'no_stream' });
    // A blocker in flight so the next three share one statement.
    const blocker = batched.appendToStream(`multi-x-${randomUUID()}`, [event(0)], { expectedRevision: 'no_stream' });
    const outcomes = await Promise.allSettled([
      batched.appendToStream(a, first, { expectedRevision: 'no_stream' }), // same ids, same place: idempotent
      batched.appendToStream(b, [event(2)], { expectedRevision: 'no_stream' }), // stream exists: conflict
      batched.appendToStream(c, [event(3)], { expectedRevision: 'no_stream' }),
    ]);
    await blocker;
    expect(outcomes[0]).toMatchObject({ status: 'fulfilled', value: { nextExpectedRevision: 0n } });
    expect(outcomes[1]?.status).toBe('rejected');
    expect((outcomes[1] as PromiseRejectedResult).reason).toBeInstanceOf(WrongExpectedRevisionError);
    expect((outcomes[1] as PromiseRejectedResult).reason).toMatchObject({ actual: 0n });
    expect(outcomes[2]).toMatchObject({ status: 'fulfilled', value: { nextExpectedRevision: 0n } });
    expect(await read(a)).toHaveLength(1);
    expect(await read(b)).toHaveLength(1);
    expect(await read(c)).toHaveLength(1);
  });

  it('an expected revision beyond any bigint is a conflict of its own append, not a failed batch', async () => {
    const batched = withMultiStreamAppends(store, db.pool, { maxInFlight: 1 });
    const far = `multi-far-${randomUUID()}`;
    const near = `multi-near-${randomUUID()}`;
    await store.appendToStream(far, [event(1)], { expectedRevision: 'no_stream' });
    const blocker = batched.appendToStream(`multi-x-${randomUUID()}`, [event(0)], { expectedRevision: 'no_stream' });
    const outcomes = await Promise.allSettled([
      batched.appendToStream(far, [event(2)], { expectedRevision: 2n ** 64n }),
      batched.appendToStream(near, [event(3)], { expectedRevision: 'no_stream' }),
    ]);
    await blocker;
    expect((outcomes[0] as PromiseRejectedResult).reason).toBeInstanceOf(WrongExpectedRevisionError);
    expect(outcomes[1]).toMatchObject({ status: 'fulfilled', value: { nextExpectedRevision: 0n } });
    expect(await read(near)).toHaveLength(1);
  });

  it('an event the database refuses fails only its own append: the others of its batch are written', async () => {
    const batches: number[] = [];
    const batched = withMultiStreamAppends(store, db.pool, { maxInFlight: 1, onBatch: (n) => batches.push(n) });
    const bad = `multi-bad-${randomUUID()}`;
    const good = [`multi-ok1-${randomUUID()}`, `multi-ok2-${randomUUID()}`];
    const blocker = batched.appendToStream(`multi-x-${randomUUID()}`, [event(0)], { expectedRevision: 'no_stream' });
    // Postgres jsonb refuses a lone UTF-16 surrogate (the HTTP layer refuses it earlier; this is the store's own guard).
    const outcomes = await Promise.allSettled([
      batched.appendToStream(good[0] as string, [event(1), event(2)], { expectedRevision: 'no_stream' }),
      batched.appendToStream(bad, [{ id: randomUUID(), type: 'Tested', data: { text: 'a\ud800b' }, metadata: {} }], { expectedRevision: 'no_stream' }),
      batched.appendToStream(good[1] as string, [event(3)], { expectedRevision: 'no_stream' }),
    ]);
    await blocker;
    expect(batches).toContain(3);
    expect(outcomes[0]).toMatchObject({ status: 'fulfilled', value: { nextExpectedRevision: 1n } });
    expect(outcomes[1]?.status).toBe('rejected');
    expect(outcomes[2]).toMatchObject({ status: 'fulfilled', value: { nextExpectedRevision: 0n } });
    expect((await read(good[0] as string)).map((e) => e.data.n)).toEqual([1, 2]);
    expect(await read(good[1] as string)).toHaveLength(1);
    expect(await read(bad)).toHaveLength(0);
    // The results carry the positions the events got.
    const [first] = await read(good[1] as string);
    expect((outcomes[2] as PromiseFulfilledResult<{ position: Position }>).value.position).toEqual(first?.position);
  });

  it('two writers batching overlapping streams: no deadlock, and the global log has every stream in revision order', async () => {
    const one = withMultiStreamAppends(store, db.pool);
    const two = withMultiStreamAppends(store, db.pool);
    const streams = Array.from({ length: 12 }, () => `multi-o-${randomUUID()}`);
    const revisions = new Map(streams.map((s) => [s, -1n]));
    const append = async (writer: EventStore, streamId: string): Promise<void> => {
      for (let attempt = 0; attempt < 50; attempt++) {
        const expected = revisions.get(streamId) as bigint;
        try {
          const result = await writer.appendToStream(streamId, [event(Number(expected) + 1)], { expectedRevision: expected < 0n ? 'no_stream' : expected });
          revisions.set(streamId, result.nextExpectedRevision);
          return;
        } catch (error) {
          if (!(error instanceof WrongExpectedRevisionError)) throw error;
          revisions.set(streamId, error.actual === 'no_stream' ? -1n : error.actual);
        }
      }
      throw new Error('too many conflicts');
    };
    await Promise.all(Array.from({ length: 240 }, (_, i) => append(i % 2 === 0 ? one : two, streams[i % streams.length] as string)));
    // The global log shows an append once no older transaction is in flight anywhere on the server
    // (other test files share it), so wait for it to show all of them rather than read once.
    let all: RecordedEvent[] = [];
    for (let tries = 0; tries < 100; tries++) {
      all = [];
      for await (const e of store.readAll()) if (streams.includes(e.streamId)) all.push(e);
      if (all.length >= 240) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(all).toHaveLength(240);
    for (let i = 1; i < all.length; i++) expect(comparePositions((all[i - 1] as RecordedEvent).position, (all[i] as RecordedEvent).position)).toBeLessThan(0);
    for (const streamId of streams) {
      const revisionsInLogOrder = all.filter((e) => e.streamId === streamId).map((e) => e.revision);
      expect(revisionsInLogOrder).toEqual([...revisionsInLogOrder].sort((x, y) => (x < y ? -1 : 1)));
      expect(revisionsInLogOrder).toEqual(revisionsInLogOrder.map((_, i) => BigInt(i)));
    }
  });

  it('rounds of several commands on one stream learn each event’s position from the append, and it is the stored one', async () => {
    const streamsRead: string[] = [];
    const batched = withMultiStreamAppends(store, db.pool);
    // Count read-backs: with the positions the append returns, a round needs none.
    const watched: EventStore = {
      ...batched,
      readStream: (streamId, options) => {
        streamsRead.push(streamId);
        return batched.readStream(streamId, options);
      },
    };
    const accounts = createAccounts({ eventStore: watched, clock: systemClock, tiers: DEFAULT_TIER_TABLE, cacheSize: 100 });
    const userId = randomUUID();
    await accounts.execute(userId, { type: 'Grant', lot_id: randomUUID(), kind: 'bonus', amount: 100, reason: 't' });
    streamsRead.length = 0;
    const results = await Promise.all(
      Array.from({ length: 30 }, () => accounts.execute(userId, { type: 'Spend', spend_id: randomUUID(), amount: 1, counts_api_call: false })),
    );
    const stored = await read(accountStreamId(userId));
    for (const result of results) {
      const event = stored.find((e) => e.id === result.appended[0]?.id);
      expect(event).toBeDefined();
      expect(result.position).toEqual(event?.position);
      expect(result.appended[0]?.position).toEqual(event?.position);
    }
    // 30 commands on one stream went out in fewer appends than commands, none of them read back.
    expect(new Set(results.map((r) => formatPosition(r.position as Position))).size).toBe(30);
    expect(streamsRead).toEqual([]);
  });

  it('a batch wakes the store’s own live subscribers at once, without NOTIFY or a poll', async () => {
    // No LISTEN connection and a poll of a minute: only the store's own wake-up can deliver in time.
    const quiet = createPostgresEventStore({ pool: db.pool, notifyUrl: false, pollIntervalMs: 60_000 });
    const batched = withMultiStreamAppends(quiet, db.pool, { maxInFlight: 1 });
    const stop = new AbortController();
    const from = (await quiet.headPosition()) ?? undefined;
    const appended = Array.from({ length: 6 }, (_, i) => event(i));
    const seen = new Set<string>();
    const delivered = (async () => {
      for await (const e of quiet.subscribeToAll({ ...(from ? { fromPosition: from } : {}), signal: stop.signal })) {
        seen.add(e.id);
        if (appended.every((a) => seen.has(a.id))) return true;
      }
      return false;
    })();
    // The first goes out alone; the others wait for it and go together through append_to_streams.
    await Promise.all(appended.map((e) => batched.appendToStream(`wake-${randomUUID()}`, [e], { expectedRevision: 'no_stream' })));
    const timeout = new Promise<false>((resolve) => setTimeout(() => resolve(false), 10_000));
    const outcome = await Promise.race([delivered, timeout]);
    stop.abort();
    await quiet.close();
    expect(outcome).toBe(true);
  });

  it('the ledger on it: 400 concurrent spends over 40 accounts, balances exact, fewer commits than spends', async () => {
    const batches: number[] = [];
    const accounts = createAccounts({ eventStore: withMultiStreamAppends(store, db.pool, { onBatch: (n) => batches.push(n) }), clock: systemClock, tiers: DEFAULT_TIER_TABLE });
    const users = Array.from({ length: 40 }, () => randomUUID());
    await Promise.all(users.map((u) => accounts.execute(u, { type: 'Grant', lot_id: randomUUID(), kind: 'bonus', amount: 7, reason: 't' })));
    batches.length = 0;
    const results = await Promise.all(
      Array.from({ length: 400 }, (_, i) =>
        accounts.execute(users[i % 40] as string, { type: 'Spend', spend_id: randomUUID(), amount: 1, counts_api_call: false }),
      ),
    );
    expect(results.filter((r) => r.decision.kind === 'applied')).toHaveLength(7 * 40);
    expect(batches.length).toBeLessThan(7 * 40);
    for (const userId of users) {
      const events = await read(accountStreamId(userId));
      expect(events.filter((e) => e.type === 'CreditsSpent')).toHaveLength(7);
      expect(events.at(-1)?.data.balance_after).toBe(0);
    }
  });
});
