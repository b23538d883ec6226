import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPostgresEventStore } from '../../src/adapters/postgres-event-store/event-store.js';
import { type Accounts, createAccounts } from '../../src/core/accounts.js';
import { systemClock } from '../../src/core/clock.js';
import { ConcurrencyConflictError } from '../../src/core/command-handler.js';
import type { EventStore, NewEvent } from '../../src/core/event-store.js';
import { chainEvents, GENESIS_HASH } from '../../src/core/hash-chain.js';
import {
  accountStreamId,
  DEFAULT_TIER_TABLE,
  decide,
  evolve,
  initialState,
  type LedgerCommand,
  ledgerEventMetadata,
  replay,
} from '../../src/ledger/index.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

/**
 * The command path on real Postgres: cached state, per-stream rounds (several commands, one append),
 * stale caches across processes, conflicts, unknown outcomes.
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

/** The store, counting reads and optionally failing appends. */
function instrumented(inner: EventStore) {
  const counts = { readStreamCalls: 0, eventsRead: 0, appends: 0 };
  let failNext: 'before' | 'after' | null = null;
  let delays: number[] = [];
  const wrapped: EventStore = {
    ...inner,
    name: inner.name,
    async appendToStream(streamId, events, options) {
      const mode = failNext;
      failNext = null;
      const delay = delays.shift();
      if (delay) await new Promise((resolve) => setTimeout(resolve, delay));
      if (mode === 'before') throw new Error('connection reset (before the append)');
      const result = await inner.appendToStream(streamId, events, options);
      counts.appends += 1;
      if (mode === 'after') throw new Error('connection reset (after the commit)');
      return result;
    },
    readStream(streamId, options) {
      counts.readStreamCalls += 1;
      const source = inner.readStream(streamId, options);
      return (async function* () {
        for await (const event of source) {
          counts.eventsRead += 1;
          yield event;
        }
      })();
    },
  };
  return {
    store: wrapped,
    counts,
    failNextAppend: (mode: 'before' | 'after') => (failNext = mode),
    /** Holds the next appends for these many ms each (so later commands queue into one round). */
    delayAppends: (...ms: number[]) => (delays = ms),
  };
}

const accountsOn = (eventStore: EventStore, metrics?: import('prom-client').Registry) =>
  createAccounts({ eventStore, clock: systemClock, tiers: DEFAULT_TIER_TABLE, ...(metrics ? { metrics } : {}) });

const grant = (amount: number): LedgerCommand => ({ type: 'Grant', lot_id: randomUUID(), kind: 'bonus', amount, reason: 'test' });
const spend = (amount: number, key?: string, hash = 'h'): LedgerCommand => ({
  type: 'Spend',
  spend_id: randomUUID(),
  amount,
  counts_api_call: false,
  ...(key ? { idempotency: { key, request_hash: hash } } : {}),
});

/** Appends a valid history of `count` events straight to the store (as another writer would). */
async function appendHistory(userId: string, count: number): Promise<void> {
  const streamId = accountStreamId(userId);
  let state = initialState();
  let lastHash = GENESIS_HASH;
  let revision = -1n;
  let batch: (NewEvent & { metadata: Record<string, never> })[] = [];
  const ctx = { now: new Date(), tiers: DEFAULT_TIER_TABLE };
  const flush = async () => {
    const { events, lastHash: hash } = chainEvents(batch, lastHash);
    const result = await store.appendToStream(streamId, events, { expectedRevision: revision < 0n ? 'no_stream' : revision });
    revision = result.nextExpectedRevision;
    lastHash = hash;
    batch = [];
  };
  for (let i = 0; i < count; i++) {
    const command = i === 0 ? grant(1_000_000) : spend(1);
    const decision = decide(command, state, ctx);
    if (decision.kind !== 'applied') throw new Error('history: not applied');
    for (const event of decision.events) {
      state = evolve(state, event);
      batch.push({ id: randomUUID(), type: event.type, data: event.data, metadata: ledgerEventMetadata(command) as Record<string, never> });
    }
    if (batch.length >= 2000) await flush();
  }
  if (batch.length > 0) await flush();
}

const storedEvents = async (userId: string) => {
  const events = [];
  for await (const event of store.readStream(accountStreamId(userId))) events.push(event);
  return events;
};

describe('cached decided state', () => {
  it('a spend on an account with 20,000 events reads nothing once the state is cached', async () => {
    const userId = randomUUID();
    await appendHistory(userId, 20_000);
    const { store: counted, counts } = instrumented(store);
    const accounts = accountsOn(counted);

    const first = await accounts.execute(userId, spend(1));
    expect(first.decision.kind).toBe('applied');
    expect(counts.eventsRead).toBe(20_000); // the first command loads the stream once

    const before = { ...counts };
    for (let i = 0; i < 20; i++) expect((await accounts.execute(userId, spend(1))).decision.kind).toBe('applied');
    // Served from the cache: no reads at all, one append each. (What that costs in time against a fresh
    // account is measured by `npm run bench` as long_stream_latency_ratio, not asserted here.)
    expect(counts.readStreamCalls).toBe(before.readStreamCalls);
    expect(counts.eventsRead).toBe(before.eventsRead);
    expect(counts.appends - before.appends).toBe(20);

    const { state } = await accountsOn(store).load(userId);
    expect(state.balance).toBe(1_000_000 - (20_000 - 1) - 21);
  });
});

describe('rounds: commands queued on one stream share one append', () => {
  it('50 concurrent spends: fewer appends than commands, every answer its own, the store agrees', async () => {
    const { Registry } = await import('prom-client');
    const metrics = new Registry();
    const { store: counted, counts } = instrumented(store);
    const accounts = accountsOn(counted, metrics);
    const userId = randomUUID();
    await accounts.execute(userId, grant(30));
    const before = counts.appends;

    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => accounts.execute(userId, spend(1, `key-${i}`))));
    const applied = results.filter((r) => r.decision.kind === 'applied');
    const rejected = results.filter((r) => r.decision.kind === 'rejected');
    expect(applied).toHaveLength(30);
    expect(rejected).toHaveLength(20);
    expect(counts.appends - before).toBeLessThan(30);

    const events = await storedEvents(userId);
    const spends = events.filter((e) => e.type === 'CreditsSpent');
    expect(spends).toHaveLength(30);
    // Each applied answer names exactly its own recorded event (id, revision, position).
    for (const result of applied) {
      expect(result.appended).toHaveLength(1);
      const recorded = events.find((e) => e.id === result.appended[0]?.id);
      expect(recorded?.revision).toBe(result.revision);
      expect(result.position).toEqual(recorded?.position);
    }
    // Idempotency records carry the position of their own event, so a replay answers like the first time.
    for (let i = 0; i < 50; i++) {
      const again = await accounts.execute(userId, spend(1, `key-${i}`));
      const first = results[i];
      if (first?.decision.kind === 'applied') {
        expect(again.decision).toMatchObject({ kind: 'already_applied', already_applied: { reason: 'idempotent_replay' } });
        const record = again.decision.kind === 'already_applied' && again.decision.already_applied.reason === 'idempotent_replay' ? again.decision.already_applied.result : null;
        expect(record?.last_position).toEqual(first.position);
      }
    }
    const replayed = replay(events.map((e) => ({ ...(e as never as { type: 'CreditsSpent'; data: never }), metadata: e.metadata, revision: e.revision, position: e.position })));
    expect(replayed.balance).toBe(0);
    expect(await metrics.getSingleMetricAsString('ledger_appended_commands_total')).toMatch(/ 31$/m);
  });

  it('a failed round answers every command with the error and leaves no speculative state behind', async () => {
    const flaky = instrumented(store);
    const accounts = accountsOn(flaky.store);
    const userId = randomUUID();
    await accounts.execute(userId, grant(10));
    // Round 1 (spend 1) is held in flight while three more queue up; their round 2 fails to append.
    flaky.delayAppends(100);
    const first = accounts.execute(userId, spend(1));
    await new Promise((resolve) => setTimeout(resolve, 20));
    const queued = [accounts.execute(userId, spend(2)), accounts.execute(userId, spend(3)), accounts.execute(userId, spend(4))];
    flaky.failNextAppend('before');
    expect((await first).decision.kind).toBe('applied');
    const outcomes = await Promise.allSettled(queued);
    expect(outcomes.map((o) => o.status)).toEqual(['rejected', 'rejected', 'rejected']);
    // Round 2 had evolved the cached state by 9 credits before its append failed: that state is gone.
    const after = await accounts.execute(userId, spend(1));
    expect(after.decision.kind).toBe('applied');
    expect(after.state.balance).toBe(10 - 1 - 1);
    const { state } = await accountsOn(store).load(userId);
    expect(state.balance).toBe(8);
    expect((await storedEvents(userId)).filter((e) => e.type === 'CreditsSpent')).toHaveLength(2);
  });
});

describe('several processes on one store', () => {
  it('a rejection is re-decided on fresh state: a grant made by another process turns a 402 into a spend', async () => {
    const server = accountsOn(store);
    const cli = accountsOn(store);
    const userId = randomUUID();
    const first = await server.execute(userId, spend(5));
    expect(first.decision).toMatchObject({ kind: 'rejected', error: { code: 'insufficient_credits' } });
    await cli.execute(userId, grant(10)); // the server's cached state does not know
    const second = await server.execute(userId, spend(5));
    expect(second.decision.kind).toBe('applied');
    expect(second.state.balance).toBe(5);
  });

  it('concurrent spends from two processes: conflicts are retried, nothing is spent twice or lost', async () => {
    const a = accountsOn(store);
    const b = accountsOn(store);
    const userId = randomUUID();
    await a.execute(userId, grant(40));
    await b.load(userId);
    const results = await Promise.all(
      Array.from({ length: 60 }, (_, i) => (i % 2 === 0 ? a : b).execute(userId, spend(1)).catch((error: unknown) => error as Error)),
    );
    const applied = results.filter((r) => !(r instanceof Error) && r.decision.kind === 'applied').length;
    const conflicts = results.filter((r) => r instanceof ConcurrencyConflictError).length;
    const spends = (await storedEvents(userId)).filter((e) => e.type === 'CreditsSpent').length;
    expect(spends).toBe(applied);
    expect(applied + conflicts).toBeLessThanOrEqual(60);
    expect(applied).toBeLessThanOrEqual(40);
    const { state } = await accountsOn(store).load(userId);
    expect(state.balance).toBe(40 - applied);
  });

  it('one idempotency key sent to two processes at once takes effect once', async () => {
    const a = accountsOn(store);
    const b = accountsOn(store);
    const userId = randomUUID();
    await a.execute(userId, grant(100));
    await b.load(userId);
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? a : b).execute(userId, spend(7, 'same-key'))));
    expect(results.filter((r) => r.decision.kind === 'applied')).toHaveLength(1);
    expect(results.filter((r) => r.decision.kind === 'already_applied')).toHaveLength(19);
    expect((await storedEvents(userId)).filter((e) => e.type === 'CreditsSpent')).toHaveLength(1);
  });
});

describe('unknown outcomes', () => {
  it('an append that committed but was not confirmed: the retry with the same key replays, one event', async () => {
    const { store: flaky, failNextAppend } = instrumented(store);
    const accounts: Accounts = accountsOn(flaky);
    const userId = randomUUID();
    await accounts.execute(userId, grant(10));
    failNextAppend('after');
    await expect(accounts.execute(userId, spend(4, 'k1'))).rejects.toThrow(/after the commit/);
    const retry = await accounts.execute(userId, spend(4, 'k1'));
    expect(retry.decision).toMatchObject({ kind: 'already_applied', already_applied: { reason: 'idempotent_replay' } });
    expect(retry.state.balance).toBe(6);
    expect((await storedEvents(userId)).filter((e) => e.type === 'CreditsSpent')).toHaveLength(1);
  });

  it('an append that did not happen: the retry applies it, once', async () => {
    const { store: flaky, failNextAppend } = instrumented(store);
    const accounts = accountsOn(flaky);
    const userId = randomUUID();
    await accounts.execute(userId, grant(10));
    failNextAppend('before');
    await expect(accounts.execute(userId, spend(4, 'k2'))).rejects.toThrow(/before the append/);
    const retry = await accounts.execute(userId, spend(4, 'k2'));
    expect(retry.decision.kind).toBe('applied');
    expect((await storedEvents(userId)).filter((e) => e.type === 'CreditsSpent')).toHaveLength(1);
  });
});
