import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createAccounts } from '../../src/core/accounts.js';
import type { EventStore, NewEvent } from '../../src/core/event-store.js';
import { chainEvents, GENESIS_HASH } from '../../src/core/hash-chain.js';
import { accountStreamId, DEFAULT_TIER_TABLE, decide, evolve, initialState, type LedgerCommand, ledgerEventMetadata } from '../../src/ledger/index.js';
import { createTestApp, type TestApp } from '../support/app.js';
import { command } from '../support/ledger-http.js';

/**
 * A spend on an account with a long history is served from the cached decided state: after the first
 * command loads the stream once, spends read nothing from the store.
 */

const reads = { calls: 0, events: 0 };
let t: TestApp;

const counting = (inner: EventStore): EventStore => ({
  ...inner,
  name: inner.name,
  appendToStream: (streamId, events, options) => inner.appendToStream(streamId, events, options),
  readStream(streamId, options) {
    reads.calls += 1;
    const source = inner.readStream(streamId, options);
    return (async function* () {
      for await (const event of source) {
        reads.events += 1;
        yield event;
      }
    })();
  },
});

beforeAll(async () => {
  t = await createTestApp({
    overrideDeps: (deps) => ({ ledger: createAccounts({ eventStore: counting(deps.eventStore), clock: deps.clock, tiers: DEFAULT_TIER_TABLE }) }),
  });
});
afterAll(async () => {
  await t?.close();
});

async function appendHistory(userId: string, count: number) {
  const streamId = accountStreamId(userId);
  const ctx = { now: new Date(), tiers: DEFAULT_TIER_TABLE };
  let state = initialState();
  let lastHash = GENESIS_HASH;
  let revision = -1n;
  let batch: (NewEvent & { metadata: Record<string, never> })[] = [];
  const flush = async () => {
    const { events, lastHash: hash } = chainEvents(batch, lastHash);
    revision = (await t.eventStore.appendToStream(streamId, events, { expectedRevision: revision < 0n ? 'no_stream' : revision })).nextExpectedRevision;
    lastHash = hash;
    batch = [];
  };
  for (let i = 0; i < count; i++) {
    const next: LedgerCommand =
      i === 0
        ? { type: 'ChangeTier', tier: 'enterprise', reason: 'history' }
        : i === 1
          ? { type: 'Grant', lot_id: randomUUID(), kind: 'bonus', amount: 1_000_000, reason: 'history' }
          : { type: 'Spend', spend_id: randomUUID(), amount: 1, counts_api_call: false };
    const decision = decide(next, state, ctx);
    if (decision.kind !== 'applied') throw new Error('history: not applied');
    for (const event of decision.events) {
      state = evolve(state, event);
      batch.push({ id: randomUUID(), type: event.type, data: event.data, metadata: ledgerEventMetadata(next) as Record<string, never> });
    }
    if (batch.length >= 2000) await flush();
  }
  if (batch.length > 0) await flush();
}

it('20,000 events appended directly: the first spend loads them once, later spends read nothing', async () => {
  const caller = await t.signIn();
  await appendHistory(caller.userId, 20_000);

  const first = await command(t, '/credits/spend', caller, { amount: 1 });
  expect(first.statusCode).toBe(201);
  expect(first.json().balance_remaining).toBe(1_000_000 - 19_998 - 1);
  expect(reads.events).toBeGreaterThanOrEqual(20_000);

  const before = { ...reads };
  for (let i = 0; i < 25; i++) {
    const response = await command(t, '/credits/spend', caller, { amount: 1 });
    expect(response.statusCode).toBe(201);
  }
  expect(reads).toEqual(before);
  const last = await command(t, '/credits/spend', caller, { amount: 1 });
  expect(last.json().balance_remaining).toBe(1_000_000 - 19_998 - 27);
});
