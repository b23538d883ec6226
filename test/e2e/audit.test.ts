/**
 * The audit routes (API §8) through HTTP: the stream as recorded, verify, balance at an instant, the
 * export, and who may call what.
 */
import { randomUUID } from 'node:crypto';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventHashFast } from '../../src/core/canonical.js';
import { CSV_COLUMNS } from '../../src/audit/export.js';
import { CREDITS_PROJECTION } from '../../src/audit/projection-wait.js';
import { createAuditDeps, verifyAccount } from '../../src/audit/verify.js';
import { ManualClock } from '../../src/core/clock.js';
import { GENESIS_HASH } from '../../src/core/hash-chain.js';
import { createTestApp, type TestApp } from '../support/app.js';
import { parseCsv } from '../unit/audit/support.js';

let t: TestApp;
const clock = new ManualClock('2026-11-25T10:00:00.000Z');
let auditor: { userId: string; token: string };
let admin: { userId: string; token: string };
let alice: { userId: string; token: string };
let bob: { userId: string; token: string };
/** Balance right after each step, with the step's instant. */
const timeline: { at: string; balance: number }[] = [];

const get = (url: string, caller: { token: string } | null) =>
  t.app.inject({ method: 'GET', url, headers: caller ? { authorization: `Bearer ${caller.token}` } : {} });

const problem = (response: LightMyRequestResponse) => {
  expect(String(response.headers['content-type'])).toMatch(/^application\/problem\+json/);
  return response.json() as { code: string; status: number; errors?: { path: string }[] };
};

const step = async (userId: string, command: Parameters<TestApp['deps']['ledger']['execute']>[1]) => {
  clock.advance(60_000);
  const result = await t.deps.ledger.execute(userId, command);
  expect(result.decision.kind).toBe('applied');
  return result;
};

beforeAll(async () => {
  t = await createTestApp({ clock });
  auditor = await t.signIn({ role: 'auditor' });
  admin = await t.signIn({ role: 'admin' });
  alice = await t.signIn();
  bob = await t.signIn();
  const lot = randomUUID();
  const record = (result: Awaited<ReturnType<typeof step>>) => timeline.push({ at: clock.now().toISOString(), balance: result.state.balance });
  record(await step(alice.userId, { type: 'Grant', lot_id: lot, kind: 'bonus', amount: 100, reason: 'welcome' }));
  record(await step(alice.userId, { type: 'Spend', spend_id: randomUUID(), amount: 30, description: 'gpt-4' }));
  const reservation = randomUUID();
  record(await step(alice.userId, { type: 'Reserve', reservation_id: reservation, amount: 20 }));
  record(await step(alice.userId, { type: 'Settle', reservation_id: reservation, spend_id: randomUUID(), amount: 5 }));
  record(await step(alice.userId, { type: 'Adjust', adjustment_id: randomUUID(), amount: 7, reason: 'goodwill' }));
  await step(bob.userId, { type: 'Grant', lot_id: randomUUID(), kind: 'promotional', amount: 50, reason: 'promo' });
});

afterAll(async () => {
  await t?.close();
});

describe('GET /audit/accounts/:user_id/events', () => {
  it('shows the stream as recorded: revisions from 0, positions, and a hash chain from genesis', async () => {
    const response = await get(`/audit/accounts/${alice.userId}/events`, auditor);
    expect(response.statusCode).toBe(200);
    const body = response.json();
    expect(body.user_id).toBe(alice.userId);
    expect(body.next_from_revision).toBeNull();
    const items = body.items as {
      revision: number;
      position: string;
      id: string;
      type: string;
      data: Record<string, never>;
      metadata: Record<string, never>;
      recorded_at: string;
      prev_hash: string;
      hash: string;
    }[];
    expect(items.map((item) => item.type)).toEqual(['CreditsGranted', 'CreditsSpent', 'CreditsReserved', 'CreditsSpent', 'ReservationSettled', 'CreditsAdjusted']);
    let prev = GENESIS_HASH;
    items.forEach((item, index) => {
      expect(item.revision).toBe(index);
      expect(item.position).toMatch(/^\d+-\d+$/);
      expect(item.prev_hash).toBe(prev);
      expect(item.metadata.prev_hash).toBe(item.prev_hash);
      expect(item.metadata.hash).toBe(item.hash);
      expect(eventHashFast(item.id, item.type, item.data, item.metadata)).toBe(item.hash);
      expect(Number.isNaN(Date.parse(item.recorded_at))).toBe(false);
      prev = item.hash;
    });
  });

  it('pages with from_revision and limit', async () => {
    const first = (await get(`/audit/accounts/${alice.userId}/events?limit=4`, auditor)).json();
    expect(first.items.map((i: { revision: number }) => i.revision)).toEqual([0, 1, 2, 3]);
    expect(first.next_from_revision).toBe(4);
    const second = (await get(`/audit/accounts/${alice.userId}/events?limit=4&from_revision=${first.next_from_revision}`, auditor)).json();
    expect(second.items.map((i: { revision: number }) => i.revision)).toEqual([4, 5]);
    expect(second.next_from_revision).toBeNull();
  });

  it('answers an existing account without events with an empty list, an unknown one with 404', async () => {
    const carol = await t.signIn();
    const empty = await get(`/audit/accounts/${carol.userId}/events`, auditor);
    expect(empty.statusCode).toBe(200);
    expect(empty.json()).toEqual({ user_id: carol.userId, items: [], next_from_revision: null });
    const unknown = await get(`/audit/accounts/${randomUUID()}/events`, auditor);
    expect(unknown.statusCode).toBe(404);
    expect(problem(unknown).code).toBe('not_found');
  });

  it('validates the query strictly', async () => {
    for (const query of ['limit=0', 'limit=201', 'limit=abc', 'from_revision=-1', 'nope=1']) {
      const response = await get(`/audit/accounts/${alice.userId}/events?${query}`, auditor);
      expect(response.statusCode, query).toBe(400);
      expect(problem(response).code).toBe('validation_failed');
    }
    const badId = await get('/audit/accounts/not-a-uuid/events', auditor);
    expect(badId.statusCode).toBe(400);
  });
});

describe('GET /audit/accounts/:user_id/verify', () => {
  it('replays the stream, checks the chain and finds the read models equal to the replay', async () => {
    const response = await get(`/audit/accounts/${alice.userId}/verify`, auditor);
    expect(response.statusCode).toBe(200);
    const body = response.json();
    expect(body).toMatchObject({ user_id: alice.userId, events: 6, revision: 5, hash_chain_ok: true, matches: true, first_mismatch: null });
    expect(body.replayed).toMatchObject({ balance: 72, reserved: 0, available: 72, total_bonus: 100, total_used: 35, total_adjusted: 7 });
    expect(body.replayed.transactions).toMatchObject({ count: 4, sum: 72, last_balance_after: 72 });
    expect(body.replayed.lots).toEqual({ count: 2, remaining: 72, held: 0 });
    expect(body.projected).toEqual(body.replayed);
    expect(body.last_hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('accepts ?min_position= like every GET that serves a read model (API §1)', async () => {
    const dave = await t.signIn();
    const granted = await t.app.inject({
      method: 'POST',
      url: `/admin/users/${dave.userId}/credits/grants`,
      headers: { authorization: `Bearer ${admin.token}`, 'idempotency-key': randomUUID() },
      payload: { amount: 12, kind: 'bonus', reason: 'welcome' },
    });
    expect(granted.statusCode).toBe(201);
    const response = await get(`/audit/accounts/${dave.userId}/verify?min_position=${granted.json().position}`, dave);
    expect(response.statusCode, response.body).toBe(200);
    expect(response.json()).toMatchObject({ events: 1, matches: true, projected: { balance: 12 } });

    const lagging = await get(`/audit/accounts/${dave.userId}/verify?min_position=18446744073709551615-1`, dave);
    expect(lagging.statusCode).toBe(503);
    expect(lagging.headers['retry-after']).toBe('1');
    expect(problem(lagging).code).toBe('projection_lagging');

    const bad = await get(`/audit/accounts/${dave.userId}/verify?min_position=abc`, dave);
    expect(bad.statusCode).toBe(400);
    expect(problem(bad).code).toBe('validation_failed');
  });

  it('verifies an account without events as empty and consistent', async () => {
    const carol = await t.signIn();
    const body = (await get(`/audit/accounts/${carol.userId}/verify`, auditor)).json();
    expect(body).toMatchObject({ events: 0, revision: -1, hash_chain_ok: true, matches: true, projected: null, last_hash: GENESIS_HASH });
    expect(body.replayed.balance).toBe(0);
  });
});

describe('verify while the account moves', () => {
  it('reads on when the read models move past the replayed stream, and still matches', async () => {
    const carol = await t.signIn();
    await t.deps.ledger.execute(carol.userId, { type: 'Grant', lot_id: randomUUID(), kind: 'bonus', amount: 10, reason: 'r' });
    let moved = false;
    const deps = createAuditDeps(t.eventStore, t.db.pool, async (target, timeoutMs) => {
      if (!moved) {
        // Between reading the stream and reading the read models, another spend lands and is projected.
        moved = true;
        const spend = await t.deps.ledger.execute(carol.userId, { type: 'Spend', spend_id: randomUUID(), amount: 4 });
        expect(await t.deps.projections.waitFor([CREDITS_PROJECTION], spend.position as NonNullable<typeof spend.position>, 5000)).toBe(true);
      }
      return t.deps.projections.waitFor([CREDITS_PROJECTION], target, timeoutMs);
    });
    const result = await verifyAccount(deps, carol.userId);
    expect(moved).toBe(true);
    expect(result).toMatchObject({ events: 2, revision: 1, hash_chain_ok: true, matches: true, first_mismatch: null });
    expect(result.replayed.balance).toBe(6);
  });
});

describe('GET /audit/accounts/:user_id/balance', () => {
  it('gives the balance at each step, before the first event and after the last', async () => {
    for (const { at, balance } of timeline) {
      const body = (await get(`/audit/accounts/${alice.userId}/balance?at=${encodeURIComponent(at)}`, auditor)).json();
      expect(body, at).toMatchObject({ user_id: alice.userId, at, balance });
    }
    const before = (await get(`/audit/accounts/${alice.userId}/balance?at=2026-11-25T09:00:00Z`, auditor)).json();
    expect(before).toMatchObject({ balance: 0, revision: null, events: 0, at: '2026-11-25T09:00:00.000Z' });
    const later = (await get(`/audit/accounts/${alice.userId}/balance?at=2030-01-01T00:00:00%2B02:00`, auditor)).json();
    expect(later).toMatchObject({ balance: 72, revision: 5, events: 6, at: '2029-12-31T22:00:00.000Z' });
  });

  it('includes a whole decision at its instant and holds reserved credits apart', async () => {
    // The reservation step: balance unchanged, 20 reserved.
    const reserveAt = timeline[2]?.at as string;
    const body = (await get(`/audit/accounts/${alice.userId}/balance?at=${reserveAt}`, auditor)).json();
    expect(body).toMatchObject({ balance: 70, reserved: 20, available: 50, revision: 2 });
    // Settle appended two events (spent + settled) at one instant: both are in.
    const settleAt = timeline[3]?.at as string;
    expect((await get(`/audit/accounts/${alice.userId}/balance?at=${settleAt}`, auditor)).json()).toMatchObject({ balance: 65, reserved: 0, revision: 4 });
  });

  it('requires a valid instant', async () => {
    for (const query of ['', '?at=yesterday', '?at=2026-11-25', '?at=2026-11-25T10:00:00Z&x=1']) {
      const response = await get(`/audit/accounts/${alice.userId}/balance${query}`, auditor);
      expect(response.statusCode, query).toBe(400);
    }
  });
});

describe('GET /audit/export', () => {
  it('streams every ledger event as NDJSON, in position order, resumable from a position', async () => {
    const response = await get('/audit/export', auditor);
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toMatch(/^application\/x-ndjson/);
    const lines = response.body.trimEnd().split('\n').map((line) => JSON.parse(line));
    expect(lines.filter((l) => l.user_id === alice.userId)).toHaveLength(6);
    expect(lines.filter((l) => l.user_id === bob.userId)).toHaveLength(1);
    for (const line of lines) {
      expect(Object.keys(line)).toEqual(['position', 'stream_id', 'user_id', 'revision', 'id', 'type', 'data', 'metadata', 'recorded_at', 'prev_hash', 'hash']);
      expect(line.stream_id).toBe(`account-${line.user_id}`);
      expect(eventHashFast(line.id, line.type, line.data, line.metadata)).toBe(line.hash);
    }
    const rest = await get(`/audit/export?from_position=${lines[2].position}`, auditor);
    const restLines = rest.body.trimEnd().split('\n').map((line) => JSON.parse(line));
    expect(restLines.map((l) => l.id)).toEqual(lines.slice(3).map((l) => l.id));
  });

  it('streams CSV with a header and RFC 4180 quoting that round-trips the JSON columns', async () => {
    const response = await get('/audit/export?format=csv', admin);
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toMatch(/^text\/csv/);
    const rows = parseCsv(response.body);
    expect(rows[0]).toEqual([...CSV_COLUMNS]);
    const records = rows.slice(1).map((row) => Object.fromEntries(CSV_COLUMNS.map((column, i) => [column, row[i] as string])));
    expect(records.filter((r) => r.user_id === alice.userId)).toHaveLength(6);
    expect(records.filter((r) => r.user_id === bob.userId)).toHaveLength(1);
    for (const record of records) {
      const data = JSON.parse(record.data as string);
      const metadata = JSON.parse(record.metadata as string);
      expect(eventHashFast(record.id as string, record.type as string, data, metadata)).toBe(record.hash);
    }
  });

  it('refuses a bad format or position', async () => {
    expect((await get('/audit/export?format=xml', auditor)).statusCode).toBe(400);
    expect((await get('/audit/export?from_position=12', auditor)).statusCode).toBe(400);
  });
});

describe('who may audit', () => {
  const accountRoutes = (userId: string) => [
    `/audit/accounts/${userId}/events`,
    `/audit/accounts/${userId}/verify`,
    `/audit/accounts/${userId}/balance?at=2030-01-01T00:00:00Z`,
  ];

  it('lets auditors and admins read every account', async () => {
    for (const caller of [auditor, admin]) {
      for (const url of [...accountRoutes(alice.userId), ...accountRoutes(bob.userId)]) {
        expect((await get(url, caller)).statusCode, url).toBe(200);
      }
    }
  });

  it('lets a user audit their own account, and only theirs', async () => {
    for (const url of accountRoutes(alice.userId)) expect((await get(url, alice)).statusCode, url).toBe(200);
    for (const url of accountRoutes(bob.userId)) {
      const response = await get(url, alice);
      expect(response.statusCode, url).toBe(403);
      expect(problem(response).code).toBe('forbidden');
    }
  });

  it('keeps the export for auditors and admins', async () => {
    const response = await get('/audit/export', alice);
    expect(response.statusCode).toBe(403);
    expect(problem(response).code).toBe('forbidden');
  });

  it('requires a token', async () => {
    for (const url of [...accountRoutes(alice.userId), '/audit/export']) {
      const response = await get(url, null);
      expect(response.statusCode).toBe(401);
      expect(problem(response).code).toBe('missing_token');
    }
  });
});

describe('a projector that does not keep up', () => {
  it('verify answers 503 projection_lagging (never a mismatch) with Retry-After', async () => {
    const stalled = await createTestApp({ projector: false });
    try {
      const who = await stalled.signIn({ role: 'auditor' });
      const { userId } = await stalled.signIn();
      await stalled.deps.ledger.execute(userId, { type: 'Grant', lot_id: randomUUID(), kind: 'bonus', amount: 10, reason: 'r' });
      const response = await stalled.app.inject({ method: 'GET', url: `/audit/accounts/${userId}/verify`, headers: { authorization: `Bearer ${who.token}` } });
      expect(response.statusCode).toBe(503);
      expect(response.headers['retry-after']).toBe('1');
      expect(problem(response).code).toBe('projection_lagging');
      // The events alone can still be read and queried.
      const balance = await stalled.app.inject({ method: 'GET', url: `/audit/accounts/${userId}/balance?at=2100-01-01T00:00:00Z`, headers: { authorization: `Bearer ${who.token}` } });
      expect(balance.json()).toMatchObject({ balance: 10, revision: 0 });
    } finally {
      await stalled.close();
    }
  });
});
