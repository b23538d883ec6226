import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEventStoreDbEventStore } from '../../src/adapters/eventstoredb/event-store.js';
import { createAccounts } from '../../src/core/accounts.js';
import { systemClock } from '../../src/core/clock.js';
import type { EventStore } from '../../src/core/event-store.js';
import { accountStreamId } from '../../src/ledger/index.js';
import { createTestApp, type TestApp } from '../support/app.js';
import { type EsdbDouble, startEsdbDouble } from '../support/esdb-double/index.js';

/**
 * The ledger's command path on the EventStoreDB adapter (against the gRPC double): spends, the
 * idempotency record kept in the stream (so it survives a restart: a fresh cache finds it), and
 * concurrent duplicates producing one effect — the same guarantees as on the Postgres store.
 */
let double: EsdbDouble;
let t: TestApp;

beforeAll(async () => {
  double = await startEsdbDouble();
  t = await createTestApp({
    projector: false,
    eventStore: () => createEventStoreDbEventStore({ connectionString: double.connectionString }),
  });
});
afterAll(async () => {
  await t?.close();
  await double?.stop();
});

const eventsOf = async (store: EventStore, userId: string) => {
  const events = [];
  for await (const event of store.readStream(accountStreamId(userId))) events.push(event);
  return events;
};

const fund = async (userId: string, amount: number) => {
  const result = await t.deps.ledger.execute(userId, { type: 'Grant', lot_id: randomUUID(), kind: 'bonus', amount, reason: 'test' });
  expect(result.decision.kind).toBe('applied');
};

const spend = (token: string, key: string, amount: number) =>
  t.app.inject({
    method: 'POST',
    url: '/credits/spend',
    headers: { authorization: `Bearer ${token}`, 'idempotency-key': key, 'content-type': 'application/json' },
    payload: JSON.stringify({ amount }),
  });

describe('the ledger on EventStoreDB (gRPC double)', () => {
  it('spends, replays a repeated key, refuses a reused key with another body, and answers 402 when short', async () => {
    expect(t.eventStore.name).toBe('eventstoredb');
    const { userId, token } = await t.signIn();
    await fund(userId, 10);
    const first = await spend(token, 'k-1', 7);
    expect(first.statusCode).toBe(201);
    expect(first.json()).toMatchObject({ credits_used: 7, balance_remaining: 3 });
    const again = await spend(token, 'k-1', 7);
    expect(again.statusCode).toBe(201);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.json()).toEqual(first.json());
    expect((await spend(token, 'k-1', 8)).json().code).toBe('idempotency_key_reused');
    const short = await spend(token, 'k-2', 4);
    expect(short.statusCode).toBe(402);
    expect(short.json()).toMatchObject({ code: 'insufficient_credits', balance: 3, required: 4 });
    const types = (await eventsOf(t.eventStore, userId)).map((event) => event.type);
    expect(types).toEqual(['CreditsGranted', 'CreditsSpent']);
  });

  it('30 concurrent requests with one key: one event, identical answers', async () => {
    const { userId, token } = await t.signIn();
    await fund(userId, 100);
    const responses = await Promise.all(Array.from({ length: 30 }, () => spend(token, 'same-key', 5)));
    expect(new Set(responses.map((response) => response.statusCode))).toEqual(new Set([201]));
    expect(new Set(responses.map((response) => response.body)).size).toBe(1);
    const spent = (await eventsOf(t.eventStore, userId)).filter((event) => event.type === 'CreditsSpent');
    expect(spent).toHaveLength(1);
  });

  it('the idempotency record lives in the stream: a fresh process (empty cache) replays instead of spending again', async () => {
    const { userId } = await t.signIn();
    await fund(userId, 50);
    const command = { type: 'Spend' as const, spend_id: randomUUID(), amount: 5, idempotency: { key: 'restart-key', request_hash: 'h1' } };
    expect((await t.deps.ledger.execute(userId, command)).decision.kind).toBe('applied');
    // A second "process": its own store connection and its own empty cache.
    const store = createEventStoreDbEventStore({ connectionString: double.connectionString });
    try {
      const restarted = createAccounts({ eventStore: store, clock: systemClock });
      const retried = await restarted.execute(userId, { ...command, spend_id: randomUUID() });
      expect(retried.decision).toMatchObject({ kind: 'already_applied', already_applied: { reason: 'idempotent_replay' } });
      expect((await eventsOf(store, userId)).filter((event) => event.type === 'CreditsSpent')).toHaveLength(1);
      expect(retried.state.balance).toBe(45);
    } finally {
      await store.close();
    }
  });
});
