/**
 * Proof that the audit notices edited history: each test edits the Postgres tables directly (as someone
 * with database access would) and checks what verify reports — through HTTP, `verifyAll` (the worker
 * scan) and the CLI command.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProjectionReader } from '../../projections/reader.js';
import { sql } from '../../src/adapters/postgres/pool.js';
import { eventHashFast } from '../../src/core/canonical.js';
import { createAuditDeps } from '../../src/audit/verify.js';
import { verifyAll } from '../../src/audit/verify-all.js';
import { auditVerifyCommand, EXIT_MISMATCH } from '../../src/cli/commands/audit.js';
import type { CliContext } from '../../src/cli/context.js';
import type { JsonObject } from '../../src/core/event-store.js';
import { accountStreamId, type LedgerCommand } from '../../src/ledger/index.js';
import { createTestApp, type TestApp } from '../support/app.js';

let t: TestApp;
let auditor: { token: string };

/** Revisions: 0 grant 100 (lot A), 1 spend 10, 2 spend 20, 3 grant 50 (lot B), 4 spend 5, 5 spend 1 → 114. */
const history = (lotA: string, lotB: string): LedgerCommand[] => [
  { type: 'Grant', lot_id: lotA, kind: 'bonus', amount: 100, reason: 'welcome' },
  { type: 'Spend', spend_id: randomUUID(), amount: 10 },
  { type: 'Spend', spend_id: randomUUID(), amount: 20 },
  { type: 'Grant', lot_id: lotB, kind: 'promotional', amount: 50, reason: 'promo' },
  { type: 'Spend', spend_id: randomUUID(), amount: 5 },
  { type: 'Spend', spend_id: randomUUID(), amount: 1 },
];

/** A fresh account with the history above, projected. */
async function account(): Promise<{ userId: string; lotA: string; lotB: string }> {
  const { userId } = await t.signIn();
  const lotA = randomUUID();
  const lotB = randomUUID();
  for (const command of history(lotA, lotB)) await t.deps.ledger.execute(userId, command);
  const clean = await verify(userId);
  expect(clean).toMatchObject({ hash_chain_ok: true, matches: true, first_mismatch: null });
  expect(clean.replayed.balance).toBe(114);
  return { userId, lotA, lotB };
}

const verify = async (userId: string) => {
  const ask = () => t.app.inject({ method: 'GET', url: `/audit/accounts/${userId}/verify`, headers: { authorization: `Bearer ${auditor.token}` } });
  let response = await ask();
  // 503 projection_lagging means "ask again" (the projector was behind for the route's 2 s wait, which
  // happens on a loaded machine); anything else is the answer.
  for (let attempt = 0; response.statusCode === 503 && attempt < 10; attempt++) response = await ask();
  expect(response.statusCode).toBe(200);
  return response.json();
};

const q = (query: ReturnType<typeof sql.unsafe>) => t.db.pool.query(query);

const eventAt = async (userId: string, revision: number) =>
  t.db.pool.one(sql.unsafe`select event_id, type, data, metadata from events where stream_id = ${accountStreamId(userId)} and stream_revision = ${revision}`) as Promise<{
    event_id: string;
    type: string;
    data: JsonObject;
    metadata: JsonObject;
  }>;

const tampered: { userId: string; revision: number | null; field: RegExp }[] = [];

beforeAll(async () => {
  t = await createTestApp();
  auditor = await t.signIn({ role: 'auditor' });
});

afterAll(async () => {
  await t?.close();
});

describe('edited events', () => {
  it('an event whose data was changed breaks the chain at that revision', async () => {
    const { userId } = await account();
    await q(sql.unsafe`update events set data = jsonb_set(data, '{amount}', '2') where stream_id = ${accountStreamId(userId)} and stream_revision = 2`);
    const result = await verify(userId);
    expect(result.hash_chain_ok).toBe(false);
    expect(result.matches).toBe(false);
    expect(result.first_mismatch).toMatchObject({ revision: 2, field: 'hash_chain', problem: 'hash_mismatch' });
    tampered.push({ userId, revision: 2, field: /^hash_chain$/ });
  });

  it('an edited event whose own hash was recomputed breaks the link of the next one', async () => {
    const { userId } = await account();
    const event = await eventAt(userId, 1);
    const data = { ...event.data, description: 'nothing to see' };
    const hash = eventHashFast(event.event_id, event.type, data, event.metadata);
    const metadata = { ...event.metadata, hash };
    await q(sql.unsafe`update events set data = ${sql.jsonb(data)}, metadata = ${sql.jsonb(metadata)} where stream_id = ${accountStreamId(userId)} and stream_revision = 1`);
    const result = await verify(userId);
    expect(result.hash_chain_ok).toBe(false);
    expect(result.first_mismatch).toMatchObject({ revision: 2, field: 'hash_chain', problem: 'prev_hash_mismatch' });
    tampered.push({ userId, revision: 2, field: /^hash_chain$/ });
  });

  it('a rewritten chain (every hash recomputed) is still caught: the entries no longer add up', async () => {
    const { userId } = await account();
    // Make the spend at revision 2 smaller and re-chain everything after it.
    const stream = accountStreamId(userId);
    let prev: string | null = null;
    for (let revision = 0; revision < 6; revision++) {
      const event = await eventAt(userId, revision);
      const data = revision === 2 ? { ...event.data, amount: 2, allocation: [{ lot_id: (event.data.allocation as { lot_id: string }[])[0]?.lot_id, amount: 2 }] } : event.data;
      const metadata: JsonObject = { ...event.metadata, prev_hash: prev ?? (event.metadata.prev_hash as string) };
      metadata.hash = eventHashFast(event.event_id, event.type, data as JsonObject, metadata);
      prev = metadata.hash;
      await q(sql.unsafe`update events set data = ${sql.jsonb(data)}, metadata = ${sql.jsonb(metadata)} where stream_id = ${stream} and stream_revision = ${revision}`);
    }
    const result = await verify(userId);
    expect(result.hash_chain_ok).toBe(true);
    expect(result.matches).toBe(false);
    expect(result.first_mismatch).toMatchObject({ revision: 2, field: 'data.balance_after', problem: 'entry_mismatch', expected: 88, actual: 70 });
    // ... and the last hash differs from the one recorded before: an auditor who noted it sees the rewrite.
    tampered.push({ userId, revision: 2, field: /^data\.balance_after$/ });
  });
});

describe('copied events', () => {
  it("another account's whole chain copied into an empty account is caught: each event names its stream", async () => {
    const { userId: source } = await account();
    const { userId: target } = await t.signIn();
    const from = accountStreamId(source);
    const to = accountStreamId(target);
    await q(sql.unsafe`
      insert into events (stream_id, stream_revision, event_id, type, data, metadata)
      select ${to}, stream_revision, event_id, type, data, metadata from events where stream_id = ${from} order by stream_revision`);
    await q(sql.unsafe`insert into streams (stream_id, revision) select ${to}, revision from streams where stream_id = ${from}`);
    // Wait until the projector has seen the copy, so verify compares like with like.
    let result = await t.app.inject({ method: 'GET', url: `/audit/accounts/${target}/verify`, headers: { authorization: `Bearer ${auditor.token}` } });
    for (let tries = 0; tries < 50 && result.statusCode === 503; tries++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      result = await t.app.inject({ method: 'GET', url: `/audit/accounts/${target}/verify`, headers: { authorization: `Bearer ${auditor.token}` } });
    }
    expect(result.statusCode).toBe(200);
    const body = result.json();
    expect(body.hash_chain_ok).toBe(false);
    expect(body.first_mismatch).toMatchObject({ revision: 0, field: 'hash_chain', problem: 'wrong_stream', expected: to, actual: from });
    tampered.push({ userId: target, revision: 0, field: /^hash_chain$/ });
  });
});

describe('deleted events', () => {
  it('an event deleted in the middle is a gap at its revision', async () => {
    const { userId } = await account();
    await q(sql.unsafe`delete from events where stream_id = ${accountStreamId(userId)} and stream_revision = 3`);
    const result = await verify(userId);
    expect(result.hash_chain_ok).toBe(false);
    expect(result.events).toBe(5);
    expect(result.first_mismatch).toMatchObject({ revision: 3, field: 'hash_chain', problem: 'revision_gap' });
    tampered.push({ userId, revision: 3, field: /^hash_chain$/ });
  });

  it('a deleted event renumbered away is caught by the links', async () => {
    const { userId } = await account();
    const stream = accountStreamId(userId);
    await q(sql.unsafe`delete from events where stream_id = ${stream} and stream_revision = 1`);
    await q(sql.unsafe`update events set stream_revision = stream_revision - 1 where stream_id = ${stream} and stream_revision > 1`);
    const result = await verify(userId);
    expect(result.hash_chain_ok).toBe(false);
    expect(result.first_mismatch).toMatchObject({ revision: 1, field: 'hash_chain', problem: 'prev_hash_mismatch' });
    tampered.push({ userId, revision: 1, field: /^hash_chain$/ });
  });

  it('a deleted last event disagrees with the read models (and with the store\'s stream head)', async () => {
    const { userId } = await account();
    await q(sql.unsafe`delete from events where stream_id = ${accountStreamId(userId)} and stream_revision = 5`);
    const result = await verify(userId);
    // Nothing links to a last event, but the store's stream head (read apart from the events) still says 5,
    // and the read models disagree too.
    expect(result.hash_chain_ok).toBe(false);
    expect(result.matches).toBe(false);
    expect(result.first_mismatch).toMatchObject({ revision: 5, field: 'hash_chain', problem: 'missing_tail' });
    tampered.push({ userId, revision: 5, field: /^hash_chain$/ });
  });
});

describe('edited read models', () => {
  it('a changed user_credits balance is a mismatch naming the field', async () => {
    const { userId } = await account();
    await q(sql.unsafe`update user_credits set balance = balance + 1000 where user_id = ${userId}`);
    const result = await verify(userId);
    expect(result.hash_chain_ok).toBe(true);
    expect(result.matches).toBe(false);
    expect(result.first_mismatch).toMatchObject({ revision: null, field: 'user_credits.balance', expected: 114, actual: 1114 });
    expect(result.projected.balance).toBe(1114);
    tampered.push({ userId, revision: null, field: /^user_credits\.balance$/ });
  });

  it('a changed statement row is named by its revision and column', async () => {
    const { userId } = await account();
    await q(sql.unsafe`update credit_transactions set balance_after = balance_after + 1 where user_id = ${userId} and stream_revision = 2`);
    const result = await verify(userId);
    expect(result.matches).toBe(false);
    expect(result.first_mismatch).toMatchObject({ revision: 2, field: 'credit_transactions[revision=2].balance_after', expected: 70, actual: 71 });
    tampered.push({ userId, revision: 2, field: /^credit_transactions\[revision=2\]\.balance_after$/ });
  });

  it('a deleted statement row is named too', async () => {
    const { userId } = await account();
    await q(sql.unsafe`delete from credit_transactions where user_id = ${userId} and stream_revision = 4`);
    const result = await verify(userId);
    expect(result.matches).toBe(false);
    expect(result.first_mismatch).toMatchObject({ revision: 4, field: 'credit_transactions[revision=4]', expected: 'a row', actual: null });
  });

  it('a changed lot is named by its id and column', async () => {
    const { userId, lotB } = await account();
    await q(sql.unsafe`update credit_lots set remaining = remaining - 1 where user_id = ${userId} and lot_id = ${lotB}`);
    const result = await verify(userId);
    expect(result.matches).toBe(false);
    expect(result.first_mismatch).toMatchObject({ field: `credit_lots[${lotB}].remaining`, expected: 50, actual: 49 });
    tampered.push({ userId, revision: null, field: new RegExp(`^credit_lots\\[${lotB}\\]\\.remaining$`) });
  });
});

describe('audit verify --all over the tampered ledger', () => {
  it('names every tampered account with its first bad revision, and only those', async () => {
    const clean = await account();
    for (const workers of [0, 2]) {
      const summary = await verifyAll(createAuditDeps(t.eventStore, t.db.pool), { workers, chunkEvents: 10 });
      expect(summary.mode).toBe('postgres-scan');
      expect(summary.lagging).toBe(0);
      const failed = new Map(summary.failures.map((f) => [f.user_id, f]));
      expect(failed.has(clean.userId)).toBe(false);
      for (const { userId, revision, field } of tampered) {
        const failure = failed.get(userId);
        expect(failure, userId).toBeDefined();
        expect(failure?.result?.first_mismatch?.revision ?? null).toBe(revision);
        expect(failure?.result?.first_mismatch?.field).toMatch(field);
      }
      expect(summary.failed).toBe(tampered.length + 1); // + the deleted statement row
    }
  });

  it('the CLI prints the failures and exits non-zero', async () => {
    const lines: string[] = [];
    const context = {
      config: t.deps.config,
      logger: t.deps.logger,
      database: { url: t.db.url, pool: t.db.pool, embedded: null, close: async () => {} },
      eventStore: t.eventStore,
      deps: { ...t.deps, projections: new ProjectionReader({ pool: t.db.pool, eventStore: t.eventStore, clock: t.deps.clock }) },
      print: (line: string) => lines.push(line),
    } as unknown as CliContext;
    const code = await auditVerifyCommand.run(context, { all: true, workers: '0' }, []);
    expect(code).toBe(EXIT_MISMATCH);
    const output = lines.join('\n');
    expect(output).toMatch(/audit verify --all: \d+ accounts/);
    for (const { userId, revision } of tampered) {
      const row = lines.find((line) => line.startsWith(userId));
      expect(row, userId).toBeDefined();
      if (revision !== null) expect(row).toContain(` ${revision} `);
    }
    const one = tampered[0]?.userId as string;
    lines.length = 0;
    const single = await auditVerifyCommand.run(context, { user: one }, []);
    expect(single).toBe(EXIT_MISMATCH);
    expect(lines.join('\n')).toMatch(/first mismatch at revision 2: hash_chain \(hash_mismatch\)/);
  });
});
