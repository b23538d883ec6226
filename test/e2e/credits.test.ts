import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.js';
import { createTestApp, type TestApp } from '../support/app.js';
import { type Caller, command, fund, POSITION, post, problemOf, storedBalance, streamEvents } from '../support/ledger-http.js';

/** POST /credits/spend and reservations (API §1 idempotency, §5, §6) through HTTP on real Postgres. */

let t: TestApp;
const clock = new ManualClock(new Date());

beforeAll(async () => {
  t = await createTestApp({ clock });
});
afterAll(async () => {
  await t?.close();
});

const user = async (credits = 0, tier?: 'free' | 'basic' | 'pro' | 'enterprise'): Promise<Caller> => {
  const caller = await t.signIn();
  await fund(t, caller.userId, credits, tier ? { tier } : {});
  return caller;
};

describe('POST /credits/spend', () => {
  it('spends and answers with the authoritative balance and the position', async () => {
    const caller = await user(100);
    const response = await command(t, '/credits/spend', caller, { amount: 30, description: 'export', metadata: { job: 'j-1', pages: 3 } });
    expect(response.statusCode).toBe(201);
    const body = response.json();
    expect(body).toEqual({ spend_id: expect.any(String), credits_used: 30, balance_remaining: 70, position: expect.stringMatching(POSITION) });
    expect(response.headers['idempotent-replayed']).toBeUndefined();
    const events = await streamEvents(t, caller.userId);
    const spent = events.at(-1);
    expect(spent).toMatchObject({ type: 'CreditsSpent', data: { spend_id: body.spend_id, amount: 30, description: 'export', metadata: { job: 'j-1', pages: 3 } } });
    expect(`${spent?.position.major}-${spent?.position.minor}`).toBe(body.position);
  });

  it('the same key and body again: the first answer, Idempotent-Replayed: true, nothing appended', async () => {
    const caller = await user(100);
    const key = `replay-${randomUUID()}`;
    const first = await command(t, '/credits/spend', caller, { amount: 10, metadata: { a: 1, b: [1, 2] } }, key);
    expect(first.statusCode).toBe(201);
    const before = (await streamEvents(t, caller.userId)).length;
    // Property order and whitespace do not make another request.
    const again = await command(t, '/credits/spend', caller, '{ "metadata": {"b":[1,2],"a":1}, "amount": 10 }', key);
    expect(again.statusCode).toBe(201);
    expect(again.body).toBe(first.body);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect((await streamEvents(t, caller.userId)).length).toBe(before);
  });

  it('the same key with another body → 422 idempotency_key_reused, nothing appended', async () => {
    const caller = await user(100);
    const key = randomUUID();
    expect((await command(t, '/credits/spend', caller, { amount: 10 }, key)).statusCode).toBe(201);
    const before = (await streamEvents(t, caller.userId)).length;
    const response = await command(t, '/credits/spend', caller, { amount: 11 }, key);
    expect(response.statusCode).toBe(422);
    expect(problemOf(response).code).toBe('idempotency_key_reused');
    // … and on another endpoint too
    const reserve = await command(t, '/credits/reservations', caller, { amount: 10 }, key);
    expect(reserve.statusCode).toBe(422);
    expect((await streamEvents(t, caller.userId)).length).toBe(before);
  });

  it("keys belong to a user: another user's same key is a new request", async () => {
    const a = await user(50);
    const b = await user(50);
    const key = randomUUID();
    const first = await command(t, '/credits/spend', a, { amount: 5 }, key);
    const second = await command(t, '/credits/spend', b, { amount: 5 }, key);
    expect(second.statusCode).toBe(201);
    expect(second.headers['idempotent-replayed']).toBeUndefined();
    expect(second.json().spend_id).not.toBe(first.json().spend_id);
  });

  it('a key is kept 24 h: after that it may be reused', async () => {
    const signedIn = await t.signIn();
    await fund(t, signedIn.userId, 100);
    const key = randomUUID();
    await command(t, '/credits/spend', signedIn, { amount: 1 }, key);
    clock.advance(24 * 3600_000 + 1000);
    try {
      // A new access token (the first one expired meanwhile), same user and session.
      const token = await t.deps.accessTokens.sign({ userId: signedIn.userId, email: 'later@example.com', tier: 'free', role: 'user', sessionId: signedIn.sessionId });
      const later = await command(t, '/credits/spend', { userId: signedIn.userId, token }, { amount: 2 }, key);
      expect(later.statusCode).toBe(201);
      expect(later.json().credits_used).toBe(2);
    } finally {
      clock.set(new Date());
    }
  });

  it('402 insufficient_credits with balance (available) and required; not recorded, so a retry after a top-up succeeds', async () => {
    const caller = await user(5);
    const key = randomUUID();
    const before = (await streamEvents(t, caller.userId)).length;
    const response = await command(t, '/credits/spend', caller, { amount: 8 }, key);
    expect(response.statusCode).toBe(402);
    expect(problemOf(response)).toMatchObject({ code: 'insufficient_credits', balance: 5, required: 8 });
    expect((await streamEvents(t, caller.userId)).length).toBe(before);
    await fund(t, caller.userId, 10);
    const retry = await command(t, '/credits/spend', caller, { amount: 8 }, key);
    expect(retry.statusCode).toBe(201);
    expect(retry.json().balance_remaining).toBe(7);
  });

  it('402 counts held credits: available, not balance', async () => {
    const caller = await user(10);
    expect((await command(t, '/credits/reservations', caller, { amount: 8 })).statusCode).toBe(201);
    const response = await command(t, '/credits/spend', caller, { amount: 3 });
    expect(response.statusCode).toBe(402);
    expect(problemOf(response)).toMatchObject({ balance: 2, required: 3 });
  });

  describe('bad input: a clear 4xx and nothing appended', () => {
    const cases: [string, string, string][] = [
      ['a fraction', '{"amount":1.5}', 'validation_failed'],
      ['zero', '{"amount":0}', 'validation_failed'],
      ['a negative amount', '{"amount":-10}', 'validation_failed'],
      ['an absurd amount', '{"amount":1000000001}', 'validation_failed'],
      ['an unsafe integer', '{"amount":9007199254740993}', 'validation_failed'],
      ['a string for a number', '{"amount":"10"}', 'validation_failed'],
      ['a boolean for a number', '{"amount":true}', 'validation_failed'],
      ['null', '{"amount":null}', 'validation_failed'],
      ['no amount', '{}', 'validation_failed'],
      ['an unknown property', '{"amount":1,"user_id":"00000000-0000-0000-0000-000000000000"}', 'validation_failed'],
      ['metadata that is not an object', '{"amount":1,"metadata":"x"}', 'validation_failed'],
      ['metadata over 4 KiB', JSON.stringify({ amount: 1, metadata: { blob: 'x'.repeat(5000) } }), 'validation_failed'],
      ['a description over 500 characters', JSON.stringify({ amount: 1, description: 'd'.repeat(501) }), 'validation_failed'],
      ['not JSON', '{"amount":', 'validation_failed'],
    ];
    it.each(cases)('%s → 400', async (_name, payload, code) => {
      const caller = await user(100);
      const before = await streamEvents(t, caller.userId);
      const response = await command(t, '/credits/spend', caller, payload);
      expect(response.statusCode).toBe(400);
      expect(problemOf(response).code).toBe(code);
      expect(await streamEvents(t, caller.userId)).toHaveLength(before.length);
    });

    it('a missing Idempotency-Key → 400 idempotency_key_missing', async () => {
      const caller = await user(100);
      const before = (await streamEvents(t, caller.userId)).length;
      const response = await command(t, '/credits/spend', caller, { amount: 1 }, null);
      expect(response.statusCode).toBe(400);
      expect(problemOf(response).code).toBe('idempotency_key_missing');
      expect((await streamEvents(t, caller.userId)).length).toBe(before);
    });

    it.each([
      ['a space', 'has space'],
      ['256 characters', 'k'.repeat(256)],
      ['an empty key', ''],
    ])('an Idempotency-Key with %s → 400 validation_failed', async (_name, key) => {
      const caller = await user(100);
      const before = (await streamEvents(t, caller.userId)).length;
      const response = await command(t, '/credits/spend', caller, { amount: 1 }, key);
      expect(response.statusCode).toBe(400);
      expect(problemOf(response).code).toBe('validation_failed');
      expect((await streamEvents(t, caller.userId)).length).toBe(before);
    });

    it('a key of 255 visible ASCII characters is fine', async () => {
      const caller = await user(100);
      const response = await command(t, '/credits/spend', caller, { amount: 1 }, `${'~!'.repeat(127)}z`);
      expect(response.statusCode).toBe(201);
    });

    it('no token → 401, nothing appended', async () => {
      const response = await post(t, '/credits/spend', null, { amount: 1 }, { 'idempotency-key': 'k' });
      expect(response.statusCode).toBe(401);
      expect(problemOf(response).code).toBe('missing_token');
    });
  });

  it('quota (API §6): the free tier allows 100 counted calls a day → 429 with limit, used, window and Retry-After', async () => {
    const caller = await user(1000);
    const results = await Promise.all(Array.from({ length: 100 }, () => command(t, '/credits/spend', caller, { amount: 1 })));
    expect(results.every((r) => r.statusCode === 201)).toBe(true);
    const before = (await streamEvents(t, caller.userId)).length;
    const refused = await command(t, '/credits/spend', caller, { amount: 1 });
    expect(refused.statusCode).toBe(429);
    expect(problemOf(refused)).toMatchObject({ code: 'quota_exceeded', limit: 100, used: 100, window: 'day' });
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    expect((await streamEvents(t, caller.userId)).length).toBe(before);
    expect((await storedBalance(t, caller.userId)).balance).toBe(900);
  });
});

describe('reservations', () => {
  it('hold → settle part → the rest released; balance and available follow', async () => {
    const caller = await user(100);
    const reserved = await command(t, '/credits/reservations', caller, { amount: 40, ttl_seconds: 600, description: 'render' });
    expect(reserved.statusCode).toBe(201);
    const hold = reserved.json();
    expect(hold).toEqual({
      reservation_id: expect.any(String),
      amount: 40,
      expires_at: new Date(clock.now().getTime() + 600_000).toISOString(),
      available: 60,
      position: expect.stringMatching(POSITION),
    });
    const settled = await command(t, `/credits/reservations/${hold.reservation_id}/settle`, caller, { amount: 25 });
    expect(settled.statusCode).toBe(200);
    expect(settled.json()).toEqual({ spend_id: expect.any(String), credits_used: 25, released: 15, balance_remaining: 75, position: expect.stringMatching(POSITION) });
    expect(await storedBalance(t, caller.userId)).toEqual({ balance: 75, reserved: 0 });
  });

  it('settle 0 releases everything and still counts as settled', async () => {
    const caller = await user(10);
    const { reservation_id } = (await command(t, '/credits/reservations', caller, { amount: 10 })).json();
    const settled = await command(t, `/credits/reservations/${reservation_id}/settle`, caller, { amount: 0 });
    expect(settled.statusCode).toBe(200);
    expect(settled.json()).toMatchObject({ credits_used: 0, released: 10, balance_remaining: 10 });
  });

  it('settle above the reserved amount → 400, nothing appended', async () => {
    const caller = await user(100);
    const { reservation_id } = (await command(t, '/credits/reservations', caller, { amount: 10 })).json();
    const before = (await streamEvents(t, caller.userId)).length;
    const response = await command(t, `/credits/reservations/${reservation_id}/settle`, caller, { amount: 11 });
    expect(response.statusCode).toBe(400);
    expect(problemOf(response)).toMatchObject({ code: 'validation_failed', errors: [{ path: 'amount', message: expect.stringContaining('10') }] });
    expect((await streamEvents(t, caller.userId)).length).toBe(before);
  });

  it("another user's reservation → 404 not_found for settle and release, nothing appended", async () => {
    const owner = await user(100);
    const other = await user(100);
    const { reservation_id } = (await command(t, '/credits/reservations', owner, { amount: 10 })).json();
    const before = [(await streamEvents(t, owner.userId)).length, (await streamEvents(t, other.userId)).length];
    const settle = await command(t, `/credits/reservations/${reservation_id}/settle`, other, { amount: 5 });
    expect(settle.statusCode).toBe(404);
    expect(problemOf(settle).code).toBe('not_found');
    const release = await command(t, `/credits/reservations/${reservation_id}/release`, other, {});
    expect(release.statusCode).toBe(404);
    expect([(await streamEvents(t, owner.userId)).length, (await streamEvents(t, other.userId)).length]).toEqual(before);
  });

  it('release → 200 with released; a second release or settle → 409 reservation_closed', async () => {
    const caller = await user(30);
    const { reservation_id } = (await command(t, '/credits/reservations', caller, { amount: 20 })).json();
    const released = await post(t, `/credits/reservations/${reservation_id}/release`, caller, undefined);
    expect(released.statusCode).toBe(200);
    expect(released.json()).toEqual({ released: 20, position: expect.stringMatching(POSITION) });
    const again = await post(t, `/credits/reservations/${reservation_id}/release`, caller, undefined);
    expect(again.statusCode).toBe(409);
    expect(problemOf(again)).toMatchObject({ code: 'reservation_closed', status: 409 });
    const settle = await command(t, `/credits/reservations/${reservation_id}/settle`, caller, { amount: 1 });
    expect(problemOf(settle).code).toBe('reservation_closed');
  });

  it('release takes no body: a non-empty one is a 400', async () => {
    const caller = await user(30);
    const { reservation_id } = (await command(t, '/credits/reservations', caller, { amount: 20 })).json();
    const response = await post(t, `/credits/reservations/${reservation_id}/release`, caller, { amount: 5 });
    expect(response.statusCode).toBe(400);
    expect(problemOf(response).code).toBe('validation_failed');
  });

  it('bad reservation input → 400: ttl over 3600, ttl 0, not a uuid, missing key', async () => {
    const caller = await user(30);
    const before = (await streamEvents(t, caller.userId)).length;
    for (const payload of [{ amount: 5, ttl_seconds: 3601 }, { amount: 5, ttl_seconds: 0 }, { amount: 0 }, { amount: '5' }]) {
      const response = await command(t, '/credits/reservations', caller, payload);
      expect(response.statusCode).toBe(400);
      expect(problemOf(response).code).toBe('validation_failed');
    }
    const notUuid = await command(t, '/credits/reservations/nope/settle', caller, { amount: 1 });
    expect(notUuid.statusCode).toBe(400);
    const missingKey = await command(t, '/credits/reservations', caller, { amount: 5 }, null);
    expect(problemOf(missingKey).code).toBe('idempotency_key_missing');
    expect((await streamEvents(t, caller.userId)).length).toBe(before);
  });

  it('a reservation past expires_at is released by the sweeper; settling it then → 409 reservation_expired', async () => {
    const caller = await user(50);
    const { reservation_id } = (await command(t, '/credits/reservations', caller, { amount: 20, ttl_seconds: 60 })).json();
    clock.advance(61_000);
    try {
      const report = await t.deps.sweeper.runOnce({ readModels: false });
      expect(report.swept).toBeGreaterThanOrEqual(1);
      const events = await streamEvents(t, caller.userId);
      expect(events.at(-1)).toMatchObject({ type: 'ReservationExpired', data: { reservation_id, released: 20, balance_after: 50, reserved_after: 0 } });
      const count = events.length;
      const settle = await command(t, `/credits/reservations/${reservation_id}/settle`, caller, { amount: 5 });
      expect(settle.statusCode).toBe(409);
      expect(problemOf(settle)).toMatchObject({ code: 'reservation_expired', reservation_id });
      expect(await streamEvents(t, caller.userId)).toHaveLength(count);
      // A second pass has nothing to do.
      expect((await t.deps.sweeper.runOnce({ readModels: false })).events).toBe(0);
    } finally {
      clock.set(new Date());
    }
  });
});

describe('lot expiry', () => {
  it('credits of a lot past its expires_at leave the balance through the sweeper (CreditsExpired); spends never take them', async () => {
    const caller = await user(10);
    const expiresAt = new Date(clock.now().getTime() + 120_000).toISOString();
    await t.deps.ledger.execute(caller.userId, { type: 'Grant', lot_id: randomUUID(), kind: 'promotional', amount: 50, reason: 'promo', expires_at: expiresAt });
    // Promotional credits burn first (soonest expiry): 5 of the 50 go now.
    expect((await command(t, '/credits/spend', caller, { amount: 5 })).json().balance_remaining).toBe(55);
    clock.advance(121_000);
    try {
      const report = await t.deps.sweeper.runOnce({ readModels: true });
      expect(report.failed).toBe(0);
      const expired = (await streamEvents(t, caller.userId)).filter((e) => e.type === 'CreditsExpired');
      expect(expired).toHaveLength(1);
      expect(expired[0]?.data).toMatchObject({ amount: 45, expires_at: expiresAt, balance_after: 10 });
      const tooMuch = await command(t, '/credits/spend', caller, { amount: 11 });
      expect(problemOf(tooMuch)).toMatchObject({ code: 'insufficient_credits', balance: 10 });
    } finally {
      clock.set(new Date());
    }
  });
});

describe('concurrency through HTTP (real sockets, real Postgres)', () => {
  let base: string;
  beforeAll(async () => {
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    const address = t.app.server.address();
    base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  });

  const spend = (caller: Caller, key: string, amount = 1) =>
    fetch(`${base}/credits/spend`, {
      method: 'POST',
      headers: { authorization: `Bearer ${caller.token}`, 'content-type': 'application/json', 'idempotency-key': key },
      body: JSON.stringify({ amount }),
    }).then(async (response) => ({ status: response.status, body: await response.text(), replayed: response.headers.get('idempotent-replayed') }));

  it('200 concurrent spends of 1 on an account holding 100 → exactly 100 × 201 and 100 × 402, 100 spend events, balance 0', async () => {
    const caller = await user(100, 'enterprise');
    const results = await Promise.all(Array.from({ length: 200 }, () => spend(caller, randomUUID())));
    const statuses = results.map((r) => r.status);
    expect(statuses.filter((s) => s === 201)).toHaveLength(100);
    expect(statuses.filter((s) => s === 402)).toHaveLength(100);
    const spends = (await streamEvents(t, caller.userId)).filter((e) => e.type === 'CreditsSpent');
    expect(spends).toHaveLength(100);
    expect(new Set(spends.map((e) => e.data.spend_id)).size).toBe(100);
    expect(await storedBalance(t, caller.userId)).toEqual({ balance: 0, reserved: 0 });
    // Every 201 names a distinct recorded spend and the balances it reports are all different.
    const bodies = results.filter((r) => r.status === 201).map((r) => JSON.parse(r.body) as { spend_id: string; balance_remaining: number });
    expect(new Set(bodies.map((b) => b.spend_id))).toEqual(new Set(spends.map((e) => e.data.spend_id)));
    expect(new Set(bodies.map((b) => b.balance_remaining)).size).toBe(100);
  });

  it('50 concurrent requests with one Idempotency-Key → one event, 50 identical answers', async () => {
    const caller = await user(100, 'enterprise');
    const key = randomUUID();
    const before = (await streamEvents(t, caller.userId)).length;
    const results = await Promise.all(Array.from({ length: 50 }, () => spend(caller, key, 7)));
    expect(new Set(results.map((r) => r.status))).toEqual(new Set([201]));
    expect(new Set(results.map((r) => r.body)).size).toBe(1);
    expect(results.filter((r) => r.replayed === 'true')).toHaveLength(49);
    const events = await streamEvents(t, caller.userId);
    expect(events.length - before).toBe(1);
    expect(events.at(-1)).toMatchObject({ type: 'CreditsSpent', data: { amount: 7 } });
    expect((await storedBalance(t, caller.userId)).balance).toBe(93);
  });
});
