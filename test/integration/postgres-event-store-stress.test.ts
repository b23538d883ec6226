import { randomInt, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendInTransaction, createPostgresEventStore } from '../../src/adapters/postgres-event-store/event-store.js';
import {
  comparePositions,
  type EventStore,
  formatPosition,
  type NewEvent,
  type Position,
  type RecordedEvent,
} from '../../src/core/event-store.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

/**
 * Out-of-order commits: many writers whose transactions append, then sleep before committing (so
 * transactions commit in a different order from their global_position), some rolling back, one holding
 * its transaction open far longer than the others, while a subscriber follows from the start. It must
 * see every committed event exactly once, in strictly increasing position order, and no rolled-back one.
 */

const WRITERS = 24;
const TRANSACTIONS_PER_WRITER = 25;
const SHARED_STREAMS = 6;
const ROLLBACK_RATE = 0.1;
const DIRECT_APPEND_RATE = 0.15;

let db: TestDatabase;
let store: EventStore;

beforeAll(async () => {
  db = await createTestDatabase({ maxPoolSize: WRITERS + 8 });
  // A short poll: commits that nobody announces (transactions the test commits itself) show up quickly.
  store = createPostgresEventStore({ pool: db.pool, pollIntervalMs: 20, batchSize: 50 });
});

afterAll(async () => {
  await store?.close();
  await db?.drop();
});

class RolledBack extends Error {}

interface Commit {
  readonly ids: readonly string[];
  readonly lastPosition: Position;
}

const eventsFor = (count: number): NewEvent[] =>
  Array.from({ length: count }, (_, index) => ({ id: randomUUID(), type: 'Stressed', data: { index } }));

describe('postgres event store under out-of-order commits', () => {
  it('delivers every committed event exactly once, in position order, and no rolled-back one', async () => {
    const sharedStreams = Array.from({ length: SHARED_STREAMS }, (_, index) => `stress-shared-${index}-${randomUUID()}`);
    const commits: Commit[] = []; // in the order their commits returned
    const rolledBack = new Set<string>();

    const controller = new AbortController();
    const received: RecordedEvent[] = [];
    let expectedTotal = Number.POSITIVE_INFINITY;
    const subscriber = (async () => {
      for await (const event of store.subscribeToAll({ signal: controller.signal })) {
        received.push(event);
        if (received.length >= expectedTotal) break;
      }
    })();

    /** Appends through the adapter's real append, inside a transaction the test keeps open a while. */
    const slowTransaction = async (streamId: string, events: NewEvent[], holdMs: number, rollback: boolean) => {
      try {
        const result = await db.pool.transaction(async (transaction) => {
          const appended = await appendInTransaction(transaction, streamId, events, 'any');
          await sleep(holdMs);
          if (rollback) throw new RolledBack();
          return appended;
        });
        commits.push({ ids: events.map((event) => event.id), lastPosition: result.position });
      } catch (error) {
        if (!(error instanceof RolledBack)) throw error;
        for (const event of events) rolledBack.add(event.id);
      }
    };

    const writer = async (writerIndex: number) => {
      const ownStream = `stress-own-${writerIndex}-${randomUUID()}`;
      for (let i = 0; i < TRANSACTIONS_PER_WRITER; i++) {
        const streamId = Math.random() < 0.5 ? ownStream : (sharedStreams[randomInt(SHARED_STREAMS)] as string);
        const events = eventsFor(randomInt(1, 4));
        const roll = Math.random();
        if (roll < DIRECT_APPEND_RATE) {
          const result = await store.appendToStream(streamId, events, { expectedRevision: 'any' });
          commits.push({ ids: events.map((event) => event.id), lastPosition: result.position });
        } else {
          await slowTransaction(streamId, events, randomInt(0, 8), roll > 1 - ROLLBACK_RATE);
        }
      }
    };

    const started = Date.now();
    await Promise.all([
      ...Array.from({ length: WRITERS }, (_, index) => writer(index)),
      // Long transactions: one commits, one rolls back, long after many later transactions committed.
      slowTransaction(`stress-long-commit-${randomUUID()}`, eventsFor(2), 400, false),
      slowTransaction(`stress-long-rollback-${randomUUID()}`, eventsFor(2), 400, true),
    ]);
    const committedIds = commits.flatMap((commit) => commit.ids);
    expectedTotal = committedIds.length;

    // The subscriber may already have everything, and then waits for a wake-up that never comes.
    const deadline = Date.now() + 10_000;
    while (received.length < expectedTotal && Date.now() < deadline) await sleep(20);
    controller.abort();
    await subscriber;
    const elapsedMs = Date.now() - started;

    // The test means something only if commits really came back out of position order.
    let inversions = 0;
    for (let i = 1; i < commits.length; i++) {
      if (comparePositions((commits[i - 1] as Commit).lastPosition, (commits[i] as Commit).lastPosition) > 0) inversions++;
    }
    expect(inversions).toBeGreaterThan(10);
    expect(rolledBack.size).toBeGreaterThan(0);

    const receivedIds = received.map((event) => event.id);
    expect(new Set(receivedIds).size).toBe(receivedIds.length); // exactly once
    expect(receivedIds.filter((id) => rolledBack.has(id))).toEqual([]);
    expect([...receivedIds].sort()).toEqual([...committedIds].sort());
    for (let i = 1; i < received.length; i++) {
      const [previous, current] = [received[i - 1] as RecordedEvent, received[i] as RecordedEvent];
      if (comparePositions(previous.position, current.position) >= 0) {
        throw new Error(`position ${formatPosition(current.position)} delivered after ${formatPosition(previous.position)}`);
      }
    }
    // Within each stream, revisions arrive contiguous and in order: rollbacks leave no holes.
    const revisions = new Map<string, bigint[]>();
    for (const event of received) revisions.set(event.streamId, [...(revisions.get(event.streamId) ?? []), event.revision]);
    for (const [streamId, seen] of revisions) {
      expect(seen, streamId).toEqual(seen.map((_, index) => BigInt(index)));
    }
    // The subscription and a later read of the whole log agree.
    const all: string[] = [];
    for await (const event of store.readAll()) all.push(event.id);
    expect(all).toEqual(receivedIds);

    expect(elapsedMs).toBeLessThan(20_000);
  });
});
