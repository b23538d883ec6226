import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../support/app.js';
import { type Caller, command, fund, POSITION, problemOf, storedBalance, streamEvents } from '../support/ledger-http.js';

/** Admin credit and tier commands (API §8). */

let t: TestApp;
let admin: Caller;

beforeAll(async () => {
  t = await createTestApp();
  admin = await t.signIn({ role: 'admin' });
});
afterAll(async () => {
  await t?.close();
});

const grants = (userId: string) => `/admin/users/${userId}/credits/grants`;
const adjustments = (userId: string) => `/admin/users/${userId}/credits/adjustments`;
const refunds = (userId: string) => `/admin/users/${userId}/credits/refunds`;
const tierUrl = (userId: string) => `/admin/users/${userId}/tier`;

describe('grants', () => {
  it('201 with the new lot, the balance and the position; the admin is recorded as actor', async () => {
    const target = await t.signIn();
    const expires = new Date(Date.now() + 7 * 86400_000);
    const response = await command(t, grants(target.userId), admin, {
      amount: 250,
      kind: 'promotional',
      reason: 'launch week',
      expires_at: expires.toISOString().replace('Z', '+00:00'),
      priority: 5,
    });
    expect(response.statusCode).toBe(201);
    expect(response.json()).toEqual({ lot_id: expect.any(String), balance: 250, position: expect.stringMatching(POSITION) });
    const event = (await streamEvents(t, target.userId)).at(-1);
    expect(event).toMatchObject({
      type: 'CreditsGranted',
      data: { lot_id: response.json().lot_id, kind: 'promotional', amount: 250, expires_at: expires.toISOString(), priority: 5, actor_id: admin.userId },
      metadata: { actor_id: admin.userId, command: 'Grant' },
    });
  });

  it('an admin retry with the same key replays; another admin with the same key is a different request', async () => {
    const target = await t.signIn();
    const key = randomUUID();
    const first = await command(t, grants(target.userId), admin, { amount: 10, kind: 'bonus', reason: 'r' }, key);
    const again = await command(t, grants(target.userId), admin, { amount: 10, kind: 'bonus', reason: 'r' }, key);
    expect(again.body).toBe(first.body);
    expect(again.headers['idempotent-replayed']).toBe('true');
    const otherAdmin = await t.signIn({ role: 'admin' });
    const other = await command(t, grants(target.userId), otherAdmin, { amount: 10, kind: 'bonus', reason: 'r' }, key);
    expect(other.statusCode).toBe(201);
    expect(other.json().balance).toBe(20);
    // The user's own key space is separate from the admins' on their account.
    await command(t, '/credits/spend', target, { amount: 1 }, key).then((r) => expect(r.statusCode).toBe(201));
  });

  it('a non-admin → 403 forbidden, nothing appended', async () => {
    const target = await t.signIn();
    const response = await command(t, grants(target.userId), target, { amount: 10, kind: 'bonus', reason: 'self-service' });
    expect(response.statusCode).toBe(403);
    expect(problemOf(response).code).toBe('forbidden');
    expect(await streamEvents(t, target.userId)).toHaveLength(0);
  });

  it('an unknown user id → 404, nothing appended', async () => {
    const ghost = randomUUID();
    const response = await command(t, grants(ghost), admin, { amount: 10, kind: 'bonus', reason: 'r' });
    expect(response.statusCode).toBe(404);
    expect(problemOf(response).code).toBe('not_found');
    expect(await streamEvents(t, ghost)).toHaveLength(0);
  });

  it.each([
    ['amount 0', { amount: 0, kind: 'bonus', reason: 'r' }],
    ['a fractional amount', { amount: 2.5, kind: 'bonus', reason: 'r' }],
    ['an absurd amount', { amount: 1_000_000_001, kind: 'bonus', reason: 'r' }],
    ['a string amount', { amount: '10', kind: 'bonus', reason: 'r' }],
    ['an unknown kind', { amount: 10, kind: 'gift', reason: 'r' }],
    ['an empty reason', { amount: 10, kind: 'bonus', reason: '  ' }],
    ['expires_at in the past', { amount: 10, kind: 'bonus', reason: 'r', expires_at: '2020-01-01T00:00:00Z' }],
    ['expires_at not a date', { amount: 10, kind: 'bonus', reason: 'r', expires_at: 'tomorrow' }],
    ['priority out of range', { amount: 10, kind: 'bonus', reason: 'r', priority: 10_000_000 }],
    ['an unknown property', { amount: 10, kind: 'bonus', reason: 'r', lot_id: 'mine' }],
  ])('%s → 400 validation_failed, nothing appended', async (_name, payload) => {
    const target = await t.signIn();
    const response = await command(t, grants(target.userId), admin, payload);
    expect(response.statusCode).toBe(400);
    expect(problemOf(response).code).toBe('validation_failed');
    expect(await streamEvents(t, target.userId)).toHaveLength(0);
  });

  it('missing Idempotency-Key → 400 idempotency_key_missing; a user id that is not a uuid → 400', async () => {
    const target = await t.signIn();
    const missing = await command(t, grants(target.userId), admin, { amount: 10, kind: 'bonus', reason: 'r' }, null);
    expect(problemOf(missing).code).toBe('idempotency_key_missing');
    const notUuid = await command(t, grants('not-a-uuid'), admin, { amount: 10, kind: 'bonus', reason: 'r' });
    expect(notUuid.statusCode).toBe(400);
    expect(await streamEvents(t, target.userId)).toHaveLength(0);
  });
});

describe('adjustments', () => {
  it('positive and negative corrections', async () => {
    const target = await t.signIn();
    const up = await command(t, adjustments(target.userId), admin, { amount: 40, reason: 'migration' });
    expect(up.statusCode).toBe(201);
    expect(up.json()).toEqual({ balance: 40, position: expect.stringMatching(POSITION) });
    const down = await command(t, adjustments(target.userId), admin, { amount: -15, reason: 'double credit' });
    expect(down.json().balance).toBe(25);
    expect(await storedBalance(t, target.userId)).toEqual({ balance: 25, reserved: 0 });
  });

  it('may not drive the balance below zero → 402, nothing appended; 0 → 400', async () => {
    const target = await t.signIn();
    await fund(t, target.userId, 5);
    const before = (await streamEvents(t, target.userId)).length;
    const below = await command(t, adjustments(target.userId), admin, { amount: -6, reason: 'too much' });
    expect(below.statusCode).toBe(402);
    expect(problemOf(below)).toMatchObject({ code: 'insufficient_credits', balance: 5, required: 6 });
    const zero = await command(t, adjustments(target.userId), admin, { amount: 0, reason: 'nothing' });
    expect(zero.statusCode).toBe(400);
    const absurd = await command(t, adjustments(target.userId), admin, { amount: -1_000_000_001, reason: 'x' });
    expect(absurd.statusCode).toBe(400);
    expect((await streamEvents(t, target.userId)).length).toBe(before);
  });
});

describe('refunds of spends', () => {
  it('refunds part, then the rest by default; more than that → 409 refund_exceeds_spend, nothing appended', async () => {
    const target = await t.signIn();
    await fund(t, target.userId, 100);
    const { spend_id } = (await command(t, '/credits/spend', target, { amount: 30 })).json();
    const part = await command(t, refunds(target.userId), admin, { spend_id, amount: 10, reason: 'partial outage' });
    expect(part.statusCode).toBe(201);
    expect(part.json()).toEqual({ refunded: 10, balance: 80, position: expect.stringMatching(POSITION) });
    const rest = await command(t, refunds(target.userId), admin, { spend_id, reason: 'outage' });
    expect(rest.json()).toMatchObject({ refunded: 20, balance: 100 });
    const before = (await streamEvents(t, target.userId)).length;
    const over = await command(t, refunds(target.userId), admin, { spend_id, amount: 1, reason: 'again' });
    expect(over.statusCode).toBe(409);
    expect(problemOf(over)).toMatchObject({ code: 'refund_exceeds_spend', refundable: 0, requested: 1 });
    expect((await streamEvents(t, target.userId)).length).toBe(before);
  });

  it('a refund above the spend → 409; an unknown spend → 404; nothing appended', async () => {
    const target = await t.signIn();
    await fund(t, target.userId, 100);
    const { spend_id } = (await command(t, '/credits/spend', target, { amount: 30 })).json();
    const before = (await streamEvents(t, target.userId)).length;
    const over = await command(t, refunds(target.userId), admin, { spend_id, amount: 31, reason: 'r' });
    expect(over.statusCode).toBe(409);
    expect(problemOf(over).code).toBe('refund_exceeds_spend');
    const unknown = await command(t, refunds(target.userId), admin, { spend_id: randomUUID(), reason: 'r' });
    expect(unknown.statusCode).toBe(404);
    expect(problemOf(unknown)).toMatchObject({ code: 'not_found', resource: 'spend' });
    // another user's spend id is unknown on this account
    const other = await t.signIn();
    const elsewhere = await command(t, refunds(other.userId), admin, { spend_id, reason: 'r' });
    expect(elsewhere.statusCode).toBe(404);
    expect((await streamEvents(t, target.userId)).length).toBe(before);
  });
});

describe('tier', () => {
  it('PUT sets the tier (and its end); the quota follows at once', async () => {
    const target = await t.signIn();
    await fund(t, target.userId, 1000);
    const until = new Date(Date.now() + 30 * 86400_000).toISOString();
    const response = await command(t, tierUrl(target.userId), admin, { tier: 'pro', expires_at: until, reason: 'trial' }, null, 'PUT');
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ tier: 'pro', tier_expires_at: until, position: expect.stringMatching(POSITION) });
    // free allows 100 calls a day; pro 10,000
    const spends = await Promise.all(Array.from({ length: 101 }, () => command(t, '/credits/spend', target, { amount: 1 })));
    expect(spends.every((r) => r.statusCode === 201)).toBe(true);
  });

  it('bad tier input → 400; unknown user → 404; non-admin → 403; nothing appended', async () => {
    const target = await t.signIn();
    for (const payload of [{ tier: 'gold', reason: 'r' }, { tier: 'pro' }, { tier: 'pro', reason: 'r', expires_at: '2000-01-01T00:00:00Z' }]) {
      const response = await command(t, tierUrl(target.userId), admin, payload, null, 'PUT');
      expect(response.statusCode).toBe(400);
    }
    const ghost = await command(t, tierUrl(randomUUID()), admin, { tier: 'pro', reason: 'r' }, null, 'PUT');
    expect(ghost.statusCode).toBe(404);
    const self = await command(t, tierUrl(target.userId), target, { tier: 'enterprise', reason: 'r' }, null, 'PUT');
    expect(self.statusCode).toBe(403);
    expect(await streamEvents(t, target.userId)).toHaveLength(0);
  });
});
