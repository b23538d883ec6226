/**
 * More edits of the Postgres tables than test/integration/audit.tamper.test.ts tries, each with what
 * verify must report; then `audit verify --all` over the lot, and the balance-at and export routes on
 * awkward input.
 */
import { execFile } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from '../../src/adapters/postgres/pool.js';
import { createAuditDeps } from '../../src/audit/verify.js';
import { verifyAll } from '../../src/audit/verify-all.js';
import { eventHashFast } from '../../src/core/canonical.js';
import type { JsonObject } from '../../src/core/event-store.js';
import { GENESIS_HASH } from '../../src/core/hash-chain.js';
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

const get = (url: string, token = auditor.token) => t.app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });

const verify = async (userId: string) => {
  let response = await get(`/audit/accounts/${userId}/verify`);
  for (let attempt = 0; response.statusCode === 503 && attempt < 10; attempt++) response = await get(`/audit/accounts/${userId}/verify`);
  expect(response.statusCode).toBe(200);
  return response.json();
};

async function account(): Promise<{ userId: string; lotA: string; lotB: string; stream: string }> {
  const { userId } = await t.signIn();
  const lotA = randomUUID();
  const lotB = randomUUID();
  for (const command of history(lotA, lotB)) await t.deps.ledger.execute(userId, command);
  expect(await verify(userId)).toMatchObject({ hash_chain_ok: true, matches: true, first_mismatch: null });
  return { userId, lotA, lotB, stream: accountStreamId(userId) };
}

const q = (query: ReturnType<typeof sql.unsafe>) => t.db.pool.query(query);

type Row = { event_id: string; type: string; data: JsonObject; metadata: JsonObject };
const eventAt = async (stream: string, revision: number) =>
  t.db.pool.one(sql.unsafe`select event_id, type, data, metadata from events where stream_id = ${stream} and stream_revision = ${revision}`) as Promise<Row>;

/** Rewrites one event's metadata (and optionally other columns) and re-stamps its own hash, as a careful forger would. */
const reHash = (row: Row, metadata: JsonObject): JsonObject => ({ ...metadata, hash: eventHashFast(row.event_id, row.type, row.data, metadata) });

/** Accounts edited below, with the first bad revision and field `audit verify --all` must report. */
const tampered: { userId: string; revision: number | null; field: RegExp }[] = [];

beforeAll(async () => {
  t = await createTestApp();
  auditor = await t.signIn({ role: 'auditor' });
});

afterAll(async () => {
  await t?.close();
});

describe('edited events', () => {
  it('a metadata member added (the only member outside the hash is `hash`) is a hash mismatch', async () => {
    const { userId, stream } = await account();
    await q(sql.unsafe`update events set metadata = metadata || '{"approved_by":"nobody"}' where stream_id = ${stream} and stream_revision = 3`);
    expect((await verify(userId)).first_mismatch).toMatchObject({ revision: 3, field: 'hash_chain', problem: 'hash_mismatch' });
    tampered.push({ userId, revision: 3, field: /^hash_chain$/ });
  });

  it('a changed type is a hash mismatch', async () => {
    const { userId, stream } = await account();
    await q(sql.unsafe`update events set type = 'CreditsRefunded' where stream_id = ${stream} and stream_revision = 1`);
    expect((await verify(userId)).first_mismatch).toMatchObject({ revision: 1, field: 'hash_chain', problem: 'hash_mismatch' });
    tampered.push({ userId, revision: 1, field: /^hash_chain$/ });
  });

  it('a changed event id is a hash mismatch (and the statement row no longer names the event)', async () => {
    const { userId, stream } = await account();
    await q(sql.unsafe`update events set event_id = ${randomUUID()} where stream_id = ${stream} and stream_revision = 4`);
    const result = await verify(userId);
    expect(result.hash_chain_ok).toBe(false);
    expect(result.first_mismatch).toMatchObject({ revision: 4, field: 'hash_chain', problem: 'hash_mismatch' });
    tampered.push({ userId, revision: 4, field: /^hash_chain$/ });
  });

  it('a changed event id of the last event, re-hashed, is still caught by user_credits.last_event_id', async () => {
    const { userId, stream } = await account();
    const row = await eventAt(stream, 5);
    const forged = { ...row, event_id: randomUUID() };
    await q(sql.unsafe`update events set event_id = ${forged.event_id}, metadata = ${sql.jsonb(reHash(forged, row.metadata))} where stream_id = ${stream} and stream_revision = 5`);
    const result = await verify(userId);
    expect(result.hash_chain_ok).toBe(true);
    expect(result.matches).toBe(false);
    expect(result.first_mismatch).toMatchObject({ revision: null, field: 'user_credits.last_event_id', expected: forged.event_id, actual: row.event_id });
    tampered.push({ userId, revision: null, field: /^user_credits\.last_event_id$/ });
  });

  it('two events whose revisions were swapped break the link at the lower revision', async () => {
    const { userId, stream } = await account();
    await q(sql.unsafe`update events set stream_revision = 100 where stream_id = ${stream} and stream_revision = 1`);
    await q(sql.unsafe`update events set stream_revision = 1 where stream_id = ${stream} and stream_revision = 2`);
    await q(sql.unsafe`update events set stream_revision = 2 where stream_id = ${stream} and stream_revision = 100`);
    const result = await verify(userId);
    expect(result.hash_chain_ok).toBe(false);
    expect(result.first_mismatch).toMatchObject({ revision: 1, field: 'hash_chain', problem: 'prev_hash_mismatch' });
    tampered.push({ userId, revision: 1, field: /^hash_chain$/ });
  });

  it('an event appended twice (a copy re-hashed onto the head) breaks the link of the copy', async () => {
    const { userId, stream } = await account();
    const row = await eventAt(stream, 5);
    const copy = { ...row, event_id: randomUUID() };
    await q(sql.unsafe`insert into events (stream_id, stream_revision, event_id, type, data, metadata)
      values (${stream}, 6, ${copy.event_id}, ${copy.type}, ${sql.jsonb(copy.data)}, ${sql.jsonb(reHash(copy, row.metadata))})`);
    await q(sql.unsafe`update streams set revision = 6 where stream_id = ${stream}`);
    const result = await verify(userId);
    expect(result.events).toBe(7);
    expect(result.hash_chain_ok).toBe(false);
    expect(result.first_mismatch).toMatchObject({ revision: 6, field: 'hash_chain', problem: 'prev_hash_mismatch' });
    tampered.push({ userId, revision: 6, field: /^hash_chain$/ });
  });

  it('an event moved to another account: a missing tail in one, a foreign event in the other', async () => {
    const from = await account();
    const to = await account();
    await q(sql.unsafe`update events set stream_id = ${to.stream}, stream_revision = 6 where stream_id = ${from.stream} and stream_revision = 5`);
    await q(sql.unsafe`update streams set revision = 6 where stream_id = ${to.stream}`);
    expect((await verify(from.userId)).first_mismatch).toMatchObject({ revision: 5, field: 'hash_chain', problem: 'missing_tail' });
    const moved = await verify(to.userId);
    expect(moved.first_mismatch).toMatchObject({ revision: 6, field: 'hash_chain', problem: 'wrong_stream', expected: to.stream, actual: from.stream });
    tampered.push({ userId: from.userId, revision: 5, field: /^hash_chain$/ }, { userId: to.userId, revision: 6, field: /^hash_chain$/ });
  });

  it('a foreign event type inserted mid-stream with a forged chain stops the replay there', async () => {
    const { userId, stream } = await account();
    // Renumber 3..5 up by one (descending, so the primary key never collides), then forge revision 3 and re-chain.
    for (const revision of [5, 4, 3]) await q(sql.unsafe`update events set stream_revision = ${revision + 1} where stream_id = ${stream} and stream_revision = ${revision}`);
    const previous = await eventAt(stream, 2);
    const foreign: Row = { event_id: randomUUID(), type: 'BackdoorCredited', data: { at: previous.data.at as string, amount: 1000 }, metadata: { stream_id: stream, prev_hash: previous.metadata.hash as string } };
    await q(sql.unsafe`insert into events (stream_id, stream_revision, event_id, type, data, metadata)
      values (${stream}, 3, ${foreign.event_id}, ${foreign.type}, ${sql.jsonb(foreign.data)}, ${sql.jsonb(reHash(foreign, foreign.metadata))})`);
    let prev = eventHashFast(foreign.event_id, foreign.type, foreign.data, foreign.metadata);
    for (let revision = 4; revision <= 6; revision++) {
      const row = await eventAt(stream, revision);
      const metadata = reHash(row, { ...row.metadata, prev_hash: prev });
      prev = metadata.hash as string;
      await q(sql.unsafe`update events set metadata = ${sql.jsonb(metadata)} where stream_id = ${stream} and stream_revision = ${revision}`);
    }
    await q(sql.unsafe`update streams set revision = 6 where stream_id = ${stream}`);
    const result = await verify(userId);
    expect(result.hash_chain_ok).toBe(true);
    expect(result.matches).toBe(false);
    expect(result.first_mismatch).toMatchObject({ revision: 3, field: 'replay', problem: 'unknown_event_type' });
    tampered.push({ userId, revision: 3, field: /^replay$/ });

    // The balance at an instant after the forged event answers with what the service itself makes of
    // the stream (it skips event types it does not know), not with a 500.
    const response = await get(`/audit/accounts/${userId}/balance?at=2999-01-01T00:00:00.000Z`);
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ balance: 114, revision: 6, events: 7 });
  });

  it('numerically equal rewrites in jsonb (1 → 1.0, 0 → -0, 5 → 5e0) change nothing the audit can see, or needs to', async () => {
    const { userId, stream } = await account();
    await q(sql.unsafe`update events set data = data || '{"amount": 5.0, "reserved_after": -0}'::jsonb where stream_id = ${stream} and stream_revision = 4`);
    expect(await verify(userId)).toMatchObject({ hash_chain_ok: true, matches: true });
    const items = (await get(`/audit/accounts/${userId}/events?from_revision=4&limit=1`)).json().items;
    expect(JSON.stringify(items[0].data)).toContain('"amount":5,');
    expect(JSON.stringify(items[0].data)).toContain('"reserved_after":0');
  });

  it('a string rewritten to a canonically equivalent Unicode form (NFC → NFD) is a hash mismatch', async () => {
    const { userId } = await t.signIn();
    await t.deps.ledger.execute(userId, { type: 'Grant', lot_id: randomUUID(), kind: 'bonus', amount: 10, reason: 'café' });
    const stream = accountStreamId(userId);
    await q(sql.unsafe`update events set data = jsonb_set(data, '{reason}', to_jsonb(${'café'.normalize('NFD')}::text)) where stream_id = ${stream} and stream_revision = 0`);
    expect((await verify(userId)).first_mismatch).toMatchObject({ revision: 0, field: 'hash_chain', problem: 'hash_mismatch' });
    tampered.push({ userId, revision: 0, field: /^hash_chain$/ });
  });
});

describe('edited stream heads and deleted streams', () => {
  it('the last event deleted and the head moved back with it: the read models still disagree', async () => {
    const { userId, stream } = await account();
    await q(sql.unsafe`delete from events where stream_id = ${stream} and stream_revision = 5`);
    await q(sql.unsafe`update streams set revision = 4 where stream_id = ${stream}`);
    const result = await verify(userId);
    expect(result.hash_chain_ok).toBe(true);
    expect(result.matches).toBe(false);
    expect(result.first_mismatch).toMatchObject({ revision: null, field: 'user_credits.balance', expected: 115, actual: 114 });
    tampered.push({ userId, revision: null, field: /^user_credits\.balance$/ });
  });

  it('a head raised past the last event is a missing tail', async () => {
    const { userId, stream } = await account();
    await q(sql.unsafe`update streams set revision = 9 where stream_id = ${stream}`);
    expect((await verify(userId)).first_mismatch).toMatchObject({ revision: 6, field: 'hash_chain', problem: 'missing_tail', expected: 'revision 9' });
    tampered.push({ userId, revision: 6, field: /^hash_chain$/ });
  });

  it('a head lowered below the last event (the next append would collide) is head_behind', async () => {
    const { userId, stream } = await account();
    await q(sql.unsafe`update streams set revision = 3 where stream_id = ${stream}`);
    expect((await verify(userId)).first_mismatch).toMatchObject({
      revision: 4,
      field: 'hash_chain',
      problem: 'head_behind',
      expected: 'revision 5',
      actual: 'revision 3',
    });
    tampered.push({ userId, revision: 4, field: /^hash_chain$/ });
  });

  it('every event deleted but the head kept: a missing tail from revision 0', async () => {
    const { userId, stream } = await account();
    await q(sql.unsafe`delete from events where stream_id = ${stream}`);
    const result = await verify(userId);
    expect(result.events).toBe(0);
    expect(result.first_mismatch).toMatchObject({ revision: 0, field: 'hash_chain', problem: 'missing_tail' });
    tampered.push({ userId, revision: 0, field: /^hash_chain$/ });
  });

  it('a whole stream truncated (events and head): the read models still show the account', async () => {
    const { userId, stream } = await account();
    await q(sql.unsafe`delete from events where stream_id = ${stream}`);
    await q(sql.unsafe`delete from streams where stream_id = ${stream}`);
    const result = await verify(userId);
    expect(result).toMatchObject({ events: 0, hash_chain_ok: true, matches: false });
    expect(result.first_mismatch).toMatchObject({ revision: null, field: 'user_credits', expected: null, actual: 'a row' });
    tampered.push({ userId, revision: null, field: /^user_credits$/ });
  });
});

describe('edited read models', () => {
  it('a deleted lot row is named', async () => {
    const { userId, lotA } = await account();
    await q(sql.unsafe`delete from credit_lots where user_id = ${userId} and lot_id = ${lotA}`);
    expect((await verify(userId)).first_mismatch).toMatchObject({ revision: null, field: `credit_lots[${lotA}]`, expected: 'a row', actual: null });
    tampered.push({ userId, revision: null, field: /^credit_lots\[/ });
  });

  it('an added lot row is named', async () => {
    const { userId } = await account();
    const lot = randomUUID();
    await q(sql.unsafe`insert into credit_lots (user_id, lot_id, kind, original, remaining, held, priority, clawed_back, created_at, updated_at, last_position_major, last_position_minor)
      select user_id, ${lot}, kind, original, remaining, 0, priority, clawed_back, created_at, updated_at, last_position_major, last_position_minor from credit_lots where user_id = ${userId} limit 1`);
    expect((await verify(userId)).first_mismatch).toMatchObject({ revision: null, field: `credit_lots[${lot}]`, expected: null, actual: 'a row' });
    tampered.push({ userId, revision: null, field: /^credit_lots\[/ });
  });

  it('a changed balance_before is named by revision and column', async () => {
    const { userId } = await account();
    await q(sql.unsafe`update credit_transactions set balance_before = balance_before - 1 where user_id = ${userId} and stream_revision = 3`);
    expect((await verify(userId)).first_mismatch).toMatchObject({ revision: 3, field: 'credit_transactions[revision=3].balance_before', expected: 70, actual: 69 });
    tampered.push({ userId, revision: 3, field: /^credit_transactions\[revision=3\]\.balance_before$/ });
  });

  it('an added statement row (a second row for revision 2) is named', async () => {
    const { userId } = await account();
    await q(sql.unsafe`insert into credit_transactions (id, event_id, user_id, type, amount, balance_before, balance_after, description, metadata, reference_type, reference_id, event_type, stream_revision, created_at, position_major, position_minor)
      select x.id, x.id, user_id, type, amount, balance_before, balance_after, description, metadata, reference_type, reference_id, event_type, stream_revision, created_at, position_major, position_minor
      from credit_transactions, (select ${randomUUID()}::uuid as id) x where user_id = ${userId} and stream_revision = 2`);
    const result = await verify(userId);
    expect(result.matches).toBe(false);
    expect(result.first_mismatch?.field).toMatch(/^credit_transactions\[revision=[23]\]/);
    tampered.push({ userId, revision: result.first_mismatch.revision, field: /^credit_transactions\[revision=[23]\]/ });
  });

  it('a moved user_credits.last_position is named', async () => {
    const { userId } = await account();
    await q(sql.unsafe`update user_credits set last_position_minor = last_position_minor + 1 where user_id = ${userId}`);
    const result = await verify(userId);
    expect(result.matches).toBe(false);
    expect(result.first_mismatch).toMatchObject({ revision: null, field: 'user_credits.last_position' });
    tampered.push({ userId, revision: null, field: /^user_credits\.last_position$/ });
  });
});

describe('audit verify --all over these edits', () => {
  it('names every edited account (a truncated one included) with its first bad revision, and only those', async () => {
    const clean = await account();
    for (const workers of [0, 1]) {
      const summary = await verifyAll(createAuditDeps(t.eventStore, t.db.pool), { workers, chunkEvents: 10 });
      expect(summary.lagging).toBe(0);
      const failed = new Map(summary.failures.map((f) => [f.user_id, f]));
      expect(failed.has(clean.userId)).toBe(false);
      for (const { userId, revision, field } of tampered) {
        const failure = failed.get(userId);
        expect(failure, userId).toBeDefined();
        expect(failure?.status).toBe('failed');
        expect(failure?.result?.first_mismatch?.revision ?? null, userId).toBe(revision);
        expect(failure?.result?.first_mismatch?.field, userId).toMatch(field);
      }
      expect(summary.failed).toBe(tampered.length);
    }
  }, 60_000);
});

describe('balance at an instant', () => {
  it('at exactly an event instant includes it, a millisecond before excludes it; offsets and sub-millisecond digits are honoured', async () => {
    const { userId } = await t.signIn();
    await t.deps.ledger.execute(userId, { type: 'Grant', lot_id: randomUUID(), kind: 'bonus', amount: 7, reason: 'r' });
    const at = (await get(`/audit/accounts/${userId}/events`)).json().items[0].data.at as string;
    const ms = Date.parse(at);
    const balance = async (instant: string) => {
      const response = await get(`/audit/accounts/${userId}/balance?at=${encodeURIComponent(instant)}`);
      expect(response.statusCode, instant).toBe(200);
      return response.json();
    };
    expect(await balance(at)).toMatchObject({ balance: 7, revision: 0, at });
    expect(await balance(new Date(ms - 1).toISOString())).toMatchObject({ balance: 0, revision: null, position: null, events: 0 });
    // The same instant written with an offset.
    const shifted = new Date(ms + 2 * 3600_000).toISOString().replace('Z', '+02:00');
    expect(await balance(shifted)).toMatchObject({ balance: 7, revision: 0, at });
    // Sub-millisecond digits just below the event's instant are still before it.
    expect(await balance(new Date(ms - 1).toISOString().replace('Z', '999Z'))).toMatchObject({ balance: 0, revision: null });
    expect(await balance('2999-12-31T23:59:59.999Z')).toMatchObject({ balance: 7, revision: 0 });
    expect(await balance('1970-01-01T00:00:00.000Z')).toMatchObject({ balance: 0, revision: null });
  });

  it('refuses malformed instants with 400 validation_failed', async () => {
    const { userId, token } = await t.signIn();
    for (const bad of ['', 'yesterday', '2026-02-30T00:00:00.000Z', '2026-11-25', '2026-11-25T25:00:00Z', '1732528800000', '2026-11-25T10:00:00.000Z&at=2026-11-26T10:00:00.000Z']) {
      const response = await get(`/audit/accounts/${userId}/balance?at=${bad.includes('&') ? bad : encodeURIComponent(bad)}`, token);
      expect(response.statusCode, bad).toBe(400);
      expect(response.json().code, bad).toBe('validation_failed');
    }
  });
});

describe('export', () => {
  const awkward = 'a,b "quoted"\r\nline two\n\u2028\u2029\u0085 é e\u0301 😀 =SUM(A1)';

  it('CSV: awkward text in data survives a strict RFC 4180 reader, and every hash recomputes from the CSV alone', async () => {
    const { userId } = await t.signIn();
    await t.deps.ledger.execute(userId, { type: 'Grant', lot_id: randomUUID(), kind: 'bonus', amount: 10, reason: awkward });
    await t.deps.ledger.execute(userId, { type: 'Spend', spend_id: randomUUID(), amount: 3, description: awkward, metadata: { [awkward]: [awkward, 1.5, -0, 1e21] } });
    // The log is read below the oldest open transaction (readAll's horizon): on a busy machine new
    // events can take a moment to show, so ask again until they do.
    let mine: string[][] = [];
    let header: string[] = [];
    for (let attempt = 0; attempt < 100 && mine.length < 2; attempt++) {
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 100));
      const response = await get('/audit/export?format=csv');
      expect(response.statusCode).toBe(200);
      const records = parseCsv(response.body);
      header = records[0] as string[];
      mine = records.slice(1).filter((record) => record[header.indexOf('user_id')] === userId);
    }
    const column = (record: string[], name: string) => record[header.indexOf(name)] as string;
    expect(mine).toHaveLength(2);
    let prev = GENESIS_HASH;
    for (const record of mine) {
      const data = JSON.parse(column(record, 'data'));
      const metadata = JSON.parse(column(record, 'metadata'));
      expect(metadata.prev_hash).toBe(prev);
      expect(column(record, 'prev_hash')).toBe(prev);
      expect(eventHashFast(column(record, 'id'), column(record, 'type'), data, metadata)).toBe(column(record, 'hash'));
      prev = column(record, 'hash');
    }
    expect(JSON.parse(column(mine[0] as string[], 'data')).reason).toBe(awkward);
  });

  it('NDJSON from a position in the middle resumes exactly after it; a ten-line independent recomputation matches every hash', async () => {
    const body = (await get('/audit/export?format=ndjson')).body;
    // U+2028/U+2029/U+0085 (in the awkward description above) end lines for Node's readline and Python's
    // splitlines: the export writes them as \u escapes, so every reader sees one event per line.
    expect(body).not.toMatch(/[\u0085\u2028\u2029]/);
    expect(body).toContain('\\u2028');
    const all = body.trimEnd().split('\n').map((line) => JSON.parse(line));
    expect(all.length).toBeGreaterThan(10);
    const middle = all[Math.floor(all.length / 2)];
    const rest = (await get(`/audit/export?format=ndjson&from_position=${middle.position}`)).body.trimEnd().split('\n').map((line) => JSON.parse(line));
    const tail = all.slice(Math.floor(all.length / 2) + 1).map((e) => e.id);
    // (Events that became visible between the two reads may follow: the log only grows at its end.)
    expect(rest.map((e) => e.id).slice(0, tail.length)).toEqual(tail);

    // The recipe of docs/audit.md written afresh (not the service's code): sorted keys, JSON.stringify leaves.
    const canon = (v: unknown): string =>
      v === null || typeof v !== 'object'
        ? JSON.stringify(v)
        : Array.isArray(v)
          ? `[${v.map(canon).join(',')}]`
          : `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canon((v as Record<string, unknown>)[k])}`).join(',')}}`;
    const recompute = (e: { id: string; type: string; data: unknown; metadata: Record<string, unknown> }) => {
      const { hash: _hash, ...metadata } = e.metadata;
      return createHash('sha256').update(canon({ id: e.id, type: e.type, data: e.data, metadata })).digest('hex');
    };
    // Streams left intact above recompute everywhere; edited ones break only where verify said.
    const broken = new Set(tampered.map((entry) => entry.userId));
    for (const e of all) {
      if (broken.has(e.user_id)) continue;
      expect(recompute(e), `${e.stream_id}@${e.revision}`).toBe(e.hash);
      expect(e.metadata.stream_id).toBe(e.stream_id);
    }
  });

  it("docs/audit.md's script flags a chain copied whole into another account (every link and hash is valid there)", async () => {
    const source = await account();
    const { userId: target } = await t.signIn();
    const to = accountStreamId(target);
    await q(sql.unsafe`insert into events (stream_id, stream_revision, event_id, type, data, metadata)
      select ${to}, stream_revision, event_id, type, data, metadata from events where stream_id = ${source.stream} order by stream_revision`);
    await q(sql.unsafe`insert into streams (stream_id, revision) select ${to}, revision from streams where stream_id = ${source.stream}`);
    const script = /```js\n([\s\S]*?)```/.exec(await readFile(new URL('../../docs/audit.md', import.meta.url), 'utf8'))?.[1];
    const dir = await mkdtemp(path.join(tmpdir(), 'audit-copy-'));
    try {
      await writeFile(path.join(dir, 'verify-chain.mjs'), script as string);
      let exported = '';
      for (let attempt = 0; attempt < 100 && !exported.includes(`"stream_id":"${to}","user_id":"${target}","revision":5,`); attempt++) {
        if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 100));
        exported = (await get('/audit/export?format=ndjson')).body;
      }
      await writeFile(path.join(dir, 'ledger.ndjson'), exported);
      const { stdout } = await promisify(execFile)(process.execPath, [path.join(dir, 'verify-chain.mjs'), path.join(dir, 'ledger.ndjson')]);
      expect(stdout).toContain(`BROKEN ${to} at revision 0`);
      expect(stdout).not.toContain(`BROKEN ${source.stream} `);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses users, and a malformed from_position, without streaming anything', async () => {
    const { token } = await t.signIn();
    expect((await get('/audit/export?format=csv', token)).statusCode).toBe(403);
    for (const bad of ['abc', '-1', '1-', '1-2-3', '99999999999999999999999-0']) {
      const response = await get(`/audit/export?from_position=${encodeURIComponent(bad)}`);
      expect(response.statusCode, bad).toBe(400);
    }
  });
});

/** A strict RFC 4180 reader (CRLF records, quoted fields may hold CR, LF, commas and doubled quotes). */
function parseCsv(text: string): string[][] {
  const records: string[][] = [];
  let record: string[] = [];
  let field = '';
  let i = 0;
  while (i < text.length) {
    if (text[i] === '"') {
      i += 1;
      for (;;) {
        if (i >= text.length) throw new Error('unterminated quoted field');
        if (text[i] === '"') {
          if (text[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i += 1;
          break;
        }
        field += text[i];
        i += 1;
      }
    }
    if (text.startsWith('\r\n', i)) {
      record.push(field);
      records.push(record);
      record = [];
      field = '';
      i += 2;
    } else if (text[i] === ',') {
      record.push(field);
      field = '';
      i += 1;
    } else if (i < text.length) {
      if (text[i] === '"' || text[i] === '\r' || text[i] === '\n') throw new Error(`bare ${JSON.stringify(text[i])} at ${i}`);
      field += text[i];
      i += 1;
    }
  }
  if (field !== '' || record.length > 0) throw new Error('last record not terminated by CRLF');
  return records;
}
