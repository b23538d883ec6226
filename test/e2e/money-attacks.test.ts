import { createHash, randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPostgresEventStore } from '../../src/adapters/postgres-event-store/event-store.js';
import { buildApp } from '../../src/app.js';
import { ManualClock } from '../../src/core/clock.js';
import type { EventStore } from '../../src/core/event-store.js';
import { buildDeps } from '../../src/services.js';
import { createTestApp, type TestApp } from '../support/app.js';
import { type Caller, command, fund, problemOf, storedBalance, streamEvents } from '../support/ledger-http.js';

/**
 * Attacks on the money invariants through HTTP on real Postgres: a credit is never created, lost or
 * spent twice — across endpoints sharing a key, concurrent closes of one reservation, concurrent
 * refunds, expiry racing spends and refunds, a second app instance on the same database (stale
 * cached state), and an append that committed but whose response was lost.
 */

let t: TestApp;
const clock = new ManualClock(new Date());

beforeAll(async () => {
  t = await createTestApp({ clock });
});
afterAll(async () => {
  await t?.close();
});

const user = async (credits = 0, tier: 'free' | 'basic' | 'pro' | 'enterprise' = 'enterprise'): Promise<Caller> => {
  const caller = await t.signIn();
  await fund(t, caller.userId, credits, { tier });
  return caller;
};

/** Another process of the service on the same database: its own app, command handler and state cache. */
async function secondInstance(eventStore: EventStore = createPostgresEventStore({ pool: t.db.pool })): Promise<{ app: FastifyInstance; close(): Promise<void> }> {
  const deps = buildDeps({ config: t.deps.config, logger: pino({ level: 'silent' }), pool: t.db.pool, eventStore, clock, secrets: t.secrets });
  const app = await buildApp(deps);
  await app.ready();
  return {
    app,
    async close() {
      await app.close();
      await eventStore.close();
    },
  };
}

const on = (app: FastifyInstance, url: string, caller: Caller, payload: unknown, key: string | null = randomUUID()) =>
  app.inject({
    method: 'POST',
    url,
    payload: JSON.stringify(payload),
    headers: { 'content-type': 'application/json', authorization: `Bearer ${caller.token}`, ...(key === null ? {} : { 'idempotency-key': key }) },
  });

/** Balance rebuilt from the store must equal the sum of the account's movements (no credit made or lost). */
async function expectConsistent(userId: string) {
  const events = await streamEvents(t, userId);
  let sum = 0;
  for (const event of events) {
    const d = event.data as Record<string, unknown>;
    switch (event.type) {
      case 'CreditsGranted':
      case 'CreditsRefunded':
        sum += d.amount as number;
        break;
      case 'CreditsPurchased':
        sum += d.credits as number;
        break;
      case 'CreditsAdjusted':
        sum += d.amount as number;
        break;
      case 'CreditsSpent':
      case 'CreditsExpired':
      case 'PurchaseRefunded':
        sum -= d.amount as number;
        break;
      default:
        break;
    }
  }
  const stored = await storedBalance(t, userId);
  expect(stored.balance).toBe(sum);
  expect(stored.balance).toBeGreaterThanOrEqual(stored.reserved);
  expect(stored.reserved).toBeGreaterThanOrEqual(0);
  return { ...stored, events };
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

describe('one Idempotency-Key on several endpoints', () => {
  it('a key used for a spend is refused (422) by reservations, settle and release with the same body; nothing appended', async () => {
    const caller = await user(100);
    const key = randomUUID();
    expect((await command(t, '/credits/spend', caller, { amount: 5 }, key)).statusCode).toBe(201);
    const { reservation_id } = (await command(t, '/credits/reservations', caller, { amount: 5 })).json();
    const before = (await streamEvents(t, caller.userId)).length;
    for (const [url, body] of [
      ['/credits/reservations', { amount: 5 }],
      [`/credits/reservations/${reservation_id}/settle`, { amount: 5 }],
      [`/credits/reservations/${reservation_id}/release`, {}],
    ] as const) {
      const response = await command(t, url, caller, body, key);
      expect(response.statusCode, url).toBe(422);
      expect(problemOf(response).code).toBe('idempotency_key_reused');
      expect(response.headers['idempotent-replayed']).toBeUndefined();
    }
    expect(await streamEvents(t, caller.userId)).toHaveLength(before);
    expect((await expectConsistent(caller.userId)).balance).toBe(95);
  });

  it('a key that settled one reservation is refused for another reservation (the path is part of the request)', async () => {
    const caller = await user(100);
    const first = (await command(t, '/credits/reservations', caller, { amount: 10 })).json().reservation_id;
    const second = (await command(t, '/credits/reservations', caller, { amount: 10 })).json().reservation_id;
    const key = randomUUID();
    expect((await command(t, `/credits/reservations/${first}/settle`, caller, { amount: 4 }, key)).statusCode).toBe(200);
    const other = await command(t, `/credits/reservations/${second}/settle`, caller, { amount: 4 }, key);
    expect(problemOf(other).code).toBe('idempotency_key_reused');
    // The second reservation is still open and whole.
    expect((await command(t, `/credits/reservations/${second}/release`, caller, {})).json().released).toBe(10);
    expect(await expectConsistent(caller.userId)).toMatchObject({ balance: 96, reserved: 0 });
  });

  it("a user who forges the admin key namespace (adm:<admin>:<sha256>) neither replays nor blocks into a free grant", async () => {
    const admin = await t.signIn({ role: 'admin' });
    const caller = await user(10);
    const adminKey = randomUUID();
    const forged = `adm:${admin.userId}:${sha256(adminKey)}`;
    // The admin grants first; the user's forged key must not be answered with the grant, nor spend anything.
    const grant = await command(t, `/admin/users/${caller.userId}/credits/grants`, admin, { amount: 40, kind: 'bonus', reason: 'sorry' }, adminKey);
    expect(grant.statusCode).toBe(201);
    const spend = await command(t, '/credits/spend', caller, { amount: 40 }, forged);
    expect(spend.statusCode).toBe(422);
    expect(problemOf(spend).code).toBe('idempotency_key_reused');
    // The other way round: the user's forged key is recorded first; the admin's grant is refused, not falsely replayed.
    const victim = await user(10);
    const otherKey = randomUUID();
    expect((await command(t, '/credits/spend', victim, { amount: 1 }, `adm:${admin.userId}:${sha256(otherKey)}`)).statusCode).toBe(201);
    const blocked = await command(t, `/admin/users/${victim.userId}/credits/grants`, admin, { amount: 40, kind: 'bonus', reason: 'x' }, otherKey);
    expect(blocked.statusCode).not.toBe(201);
    expect(blocked.statusCode).toBeLessThan(500);
    expect((await expectConsistent(caller.userId)).balance).toBe(50);
    expect((await expectConsistent(victim.userId)).balance).toBe(9);
  });
});

describe('closing one reservation several ways at once', () => {
  it('concurrent settles, releases and a sweep at its expiry: exactly one close, credits conserved', async () => {
    for (let round = 0; round < 5; round++) {
      const caller = await user(100);
      const { reservation_id } = (await command(t, '/credits/reservations', caller, { amount: 30, ttl_seconds: 60 })).json();
      if (round % 2 === 1) clock.advance(60_000); // exactly at expires_at: the sweep must win over settle
      try {
        const results = await Promise.all([
          command(t, `/credits/reservations/${reservation_id}/settle`, caller, { amount: 20 }),
          command(t, `/credits/reservations/${reservation_id}/release`, caller, {}),
          t.deps.sweeper.runOnce({ readModels: false }),
          command(t, `/credits/reservations/${reservation_id}/settle`, caller, { amount: 30 }),
          command(t, `/credits/reservations/${reservation_id}/release`, caller, {}),
        ]);
        const responses = results.filter((r): r is Awaited<ReturnType<typeof command>> => 'statusCode' in r);
        const ok = responses.filter((r) => r.statusCode === 200);
        for (const r of responses) expect([200, 409]).toContain(r.statusCode);
        const { events, balance, reserved } = await expectConsistent(caller.userId);
        const closes = events.filter(
          (e) => ['ReservationSettled', 'ReservationReleased', 'ReservationExpired'].includes(e.type) && e.data.reservation_id === reservation_id,
        );
        expect(closes).toHaveLength(1);
        expect(reserved).toBe(0);
        if (round % 2 === 1) {
          expect(ok).toHaveLength(0);
          expect(closes[0]?.type).toBe('ReservationExpired');
          expect(balance).toBe(100);
        } else {
          expect(ok).toHaveLength(1);
          const spent = events.filter((e) => e.type === 'CreditsSpent' && e.data.reservation_id === reservation_id);
          expect(balance).toBe(100 - spent.reduce((s, e) => s + (e.data.amount as number), 0));
          expect(spent.length).toBeLessThanOrEqual(1);
        }
      } finally {
        clock.set(new Date());
      }
    }
  });
});

describe('refunds of one spend', () => {
  it('twelve concurrent refunds of 3 on a spend of 20: six go through, the rest 409, never more than the spend', async () => {
    const admin = await t.signIn({ role: 'admin' });
    const caller = await user(50);
    const { spend_id } = (await command(t, '/credits/spend', caller, { amount: 20 })).json();
    const results = await Promise.all(
      Array.from({ length: 12 }, () => command(t, `/admin/users/${caller.userId}/credits/refunds`, admin, { spend_id, amount: 3, reason: 'r' })),
    );
    expect(results.filter((r) => r.statusCode === 201)).toHaveLength(6);
    for (const r of results.filter((x) => x.statusCode !== 201)) expect(problemOf(r)).toMatchObject({ code: 'refund_exceeds_spend', refundable: 2 });
    // The default (everything left) takes the last 2; then nothing is left.
    const rest = await command(t, `/admin/users/${caller.userId}/credits/refunds`, admin, { spend_id, reason: 'rest' });
    expect(rest.json()).toMatchObject({ refunded: 2, balance: 50 });
    const none = await command(t, `/admin/users/${caller.userId}/credits/refunds`, admin, { spend_id, reason: 'again' });
    expect(problemOf(none).code).toBe('refund_exceeds_spend');
    const { events, balance } = await expectConsistent(caller.userId);
    expect(balance).toBe(50);
    expect(events.filter((e) => e.type === 'CreditsRefunded').reduce((s, e) => s + (e.data.amount as number), 0)).toBe(20);
  });

  it('a refund into a lot that has expired since: the credits come back and leave again at once (expired, not spendable)', async () => {
    const admin = await t.signIn({ role: 'admin' });
    const caller = await user(10);
    const expiresAt = new Date(clock.now().getTime() + 60_000).toISOString();
    await t.deps.ledger.execute(caller.userId, { type: 'Grant', lot_id: randomUUID(), kind: 'promotional', amount: 40, reason: 'promo', expires_at: expiresAt });
    // The expiring lot burns first: 30 of the 40.
    const { spend_id } = (await command(t, '/credits/spend', caller, { amount: 30 })).json();
    clock.advance(61_000);
    try {
      const refund = await command(t, `/admin/users/${caller.userId}/credits/refunds`, admin, { spend_id, reason: 'late' });
      expect(refund.statusCode).toBe(201);
      expect(refund.json()).toMatchObject({ refunded: 30, balance: 10 });
      const { events, balance } = await expectConsistent(caller.userId);
      expect(balance).toBe(10);
      const expired = events.filter((e) => e.type === 'CreditsExpired');
      expect(expired.reduce((s, e) => s + (e.data.amount as number), 0)).toBe(40);
      const tooMuch = await command(t, '/credits/spend', caller, { amount: 11 });
      expect(problemOf(tooMuch)).toMatchObject({ code: 'insufficient_credits', balance: 10 });
    } finally {
      clock.set(new Date());
    }
  });
});

describe('spends racing the expiry sweeper', () => {
  it('after the expiry instant no spend takes expired credits, whatever the order with the sweeper', async () => {
    const caller = await user(25);
    const expiresAt = new Date(clock.now().getTime() + 30_000).toISOString();
    await t.deps.ledger.execute(caller.userId, { type: 'Grant', lot_id: randomUUID(), kind: 'promotional', amount: 100, reason: 'p', expires_at: expiresAt });
    clock.advance(30_000);
    try {
      const results = await Promise.all([
        ...Array.from({ length: 20 }, () => command(t, '/credits/spend', caller, { amount: 5 })),
        t.deps.sweeper.runOnce({ readModels: true }),
        t.deps.sweeper.runOnce({ readModels: false }),
      ]);
      const spends = results.filter((r): r is Awaited<ReturnType<typeof command>> => 'statusCode' in r);
      expect(spends.filter((r) => r.statusCode === 201)).toHaveLength(5);
      expect(spends.filter((r) => r.statusCode === 402)).toHaveLength(15);
      const { events, balance } = await expectConsistent(caller.userId);
      expect(balance).toBe(0);
      expect(events.filter((e) => e.type === 'CreditsExpired')).toHaveLength(1);
      expect(events.find((e) => e.type === 'CreditsExpired')?.data.amount).toBe(100);
    } finally {
      clock.set(new Date());
    }
  });
});

describe('a second instance of the service on the same database', () => {
  it('its cached state goes stale under the other one: no overspend, and a key sent to both takes effect once', async () => {
    const other = await secondInstance();
    try {
      const caller = await user(100);
      // Both instances cache the account.
      expect((await on(t.app, '/credits/spend', caller, { amount: 10 })).statusCode).toBe(201);
      expect((await on(other.app, '/credits/spend', caller, { amount: 10 })).statusCode).toBe(201);
      // The first instance spends what is left; the second, stale, must not spend it again.
      expect((await on(t.app, '/credits/spend', caller, { amount: 80 })).statusCode).toBe(201);
      const stale = await on(other.app, '/credits/spend', caller, { amount: 1 });
      expect(stale.statusCode).toBe(402);
      expect(problemOf(stale)).toMatchObject({ balance: 0, required: 1 });
      // Top up; a key answered by one instance is a replay on the other (whose cache does not know it).
      await fund(t, caller.userId, 50);
      const key = randomUUID();
      const first = await on(t.app, '/credits/spend', caller, { amount: 7 }, key);
      const again = await on(other.app, '/credits/spend', caller, { amount: 7 }, key);
      expect(again.statusCode).toBe(201);
      expect(again.body).toBe(first.body);
      expect(again.headers['idempotent-replayed']).toBe('true');
      const concurrent = await Promise.all(
        Array.from({ length: 10 }, (_, i) => on(i % 2 === 0 ? t.app : other.app, '/credits/spend', caller, { amount: 3 }, `${key}-c`)),
      );
      expect(new Set(concurrent.map((r) => r.statusCode))).toEqual(new Set([201]));
      expect(new Set(concurrent.map((r) => r.json().spend_id)).size).toBe(1);
      expect((await expectConsistent(caller.userId)).balance).toBe(40);
    } finally {
      await other.close();
    }
  });

  it('settle on one instance and release on the other at once: one of them closes the reservation', async () => {
    const other = await secondInstance();
    try {
      for (let round = 0; round < 4; round++) {
        const caller = await user(60);
        const { reservation_id } = (await on(t.app, '/credits/reservations', caller, { amount: 50 })).json();
        await on(other.app, `/credits/reservations/${randomUUID()}/release`, caller, {}); // warm the other cache
        const [settle, release] = await Promise.all([
          on(t.app, `/credits/reservations/${reservation_id}/settle`, caller, { amount: 50 }),
          on(other.app, `/credits/reservations/${reservation_id}/release`, caller, {}),
        ]);
        expect([settle.statusCode, release.statusCode].sort()).toEqual([200, 409]);
        const { balance, reserved } = await expectConsistent(caller.userId);
        expect(reserved).toBe(0);
        expect(balance).toBe(settle.statusCode === 200 ? 10 : 60);
      }
    } finally {
      await other.close();
    }
  });
});

describe('an append that committed, but the answer was lost', () => {
  it('the retry with the same key — on either instance — answers what the first would have, and nothing is applied twice', async () => {
    const real = createPostgresEventStore({ pool: t.db.pool });
    let crashNext = false;
    // Without announceCommit it is not taken for the Postgres store, so the instance appends through
    // it (no group commit around it).
    const { announceCommit, ...plain } = real;
    expect(announceCommit).toBeTypeOf('function');
    const flaky: EventStore = {
      ...plain,
      async appendToStream(streamId, events, options) {
        const result = await real.appendToStream(streamId, events, options);
        if (crashNext) {
          crashNext = false;
          throw new Error('connection reset after commit');
        }
        return result;
      },
    };
    const other = await secondInstance(flaky);
    try {
      const caller = await user(100);
      const { reservation_id } = (await on(other.app, '/credits/reservations', caller, { amount: 40 })).json();
      const key = randomUUID();
      crashNext = true;
      const lost = await on(other.app, `/credits/reservations/${reservation_id}/settle`, caller, { amount: 25 }, key);
      expect(lost.statusCode).toBe(503);
      expect(problemOf(lost).code).toBe('unavailable');
      const count = (await streamEvents(t, caller.userId)).length;
      const retry = await on(other.app, `/credits/reservations/${reservation_id}/settle`, caller, { amount: 25 }, key);
      expect(retry.statusCode).toBe(200);
      expect(retry.headers['idempotent-replayed']).toBe('true');
      expect(retry.json()).toMatchObject({ credits_used: 25, released: 15, balance_remaining: 75 });
      const elsewhere = await on(t.app, `/credits/reservations/${reservation_id}/settle`, caller, { amount: 25 }, key);
      expect(elsewhere.body).toBe(retry.body);
      expect(await streamEvents(t, caller.userId)).toHaveLength(count);
      // A crash on a spend: the retry replays too.
      crashNext = true;
      const spendKey = randomUUID();
      expect((await on(other.app, '/credits/spend', caller, { amount: 5 }, spendKey)).statusCode).toBe(503);
      const spendRetry = await on(other.app, '/credits/spend', caller, { amount: 5 }, spendKey);
      expect(spendRetry.statusCode).toBe(201);
      expect(spendRetry.headers['idempotent-replayed']).toBe('true');
      const { events, balance } = await expectConsistent(caller.userId);
      expect(balance).toBe(70);
      expect(events.filter((e) => e.type === 'CreditsSpent')).toHaveLength(2);
    } finally {
      await other.close();
    }
  });
});

describe('hostile amounts on every credit command: 400, nothing appended', () => {
  const huge = '9007199254740993';
  const cases: [string, (ids: { reservation: string; user: string; spend: string }) => string, string][] = [
    ['reservation: amount beyond 2^53', () => '/credits/reservations', `{"amount":${huge}}`],
    ['reservation: fractional ttl', () => '/credits/reservations', '{"amount":1,"ttl_seconds":1.5}'],
    ['reservation: string amount', () => '/credits/reservations', '{"amount":"5"}'],
    ['settle: negative', (i) => `/credits/reservations/${i.reservation}/settle`, '{"amount":-1}'],
    ['settle: beyond 2^53', (i) => `/credits/reservations/${i.reservation}/settle`, `{"amount":${huge}}`],
    ['settle: 1e400 (Infinity)', (i) => `/credits/reservations/${i.reservation}/settle`, '{"amount":1e400}'],
    ['settle: fractional', (i) => `/credits/reservations/${i.reservation}/settle`, '{"amount":0.5}'],
    ['grant: beyond 2^53', (i) => `/admin/users/${i.user}/credits/grants`, `{"amount":${huge},"kind":"bonus","reason":"r"}`],
    ['grant: negative', (i) => `/admin/users/${i.user}/credits/grants`, '{"amount":-5,"kind":"bonus","reason":"r"}'],
    ['grant: expiry in the past', (i) => `/admin/users/${i.user}/credits/grants`, '{"amount":5,"kind":"bonus","reason":"r","expires_at":"2000-01-01T00:00:00Z"}'],
    ['adjustment: below -2^53', (i) => `/admin/users/${i.user}/credits/adjustments`, `{"amount":-${huge},"reason":"r"}`],
    ['adjustment: fractional', (i) => `/admin/users/${i.user}/credits/adjustments`, '{"amount":-0.5,"reason":"r"}'],
    ['refund: string amount', (i) => `/admin/users/${i.user}/credits/refunds`, `{"spend_id":"${'SPEND'}","amount":"5","reason":"r"}`],
    ['refund: beyond 2^53', (i) => `/admin/users/${i.user}/credits/refunds`, `{"spend_id":"${'SPEND'}","amount":${huge},"reason":"r"}`],
  ];
  it.each(cases)('%s', async (_name, url, body) => {
    const admin = await t.signIn({ role: 'admin' });
    const caller = await user(50);
    const reservation = (await command(t, '/credits/reservations', caller, { amount: 10 })).json().reservation_id as string;
    const spend = (await command(t, '/credits/spend', caller, { amount: 5 })).json().spend_id as string;
    const before = (await streamEvents(t, caller.userId)).length;
    const path = url({ reservation, user: caller.userId, spend });
    const response = await command(t, path, path.startsWith('/admin') ? admin : caller, body.replace('SPEND', spend));
    expect(response.statusCode).toBe(400);
    expect(problemOf(response).code).toBe('validation_failed');
    expect(await streamEvents(t, caller.userId)).toHaveLength(before);
    expect(await storedBalance(t, caller.userId)).toEqual({ balance: 45, reserved: 10 });
  });
});

describe('text Postgres cannot store (U+0000, lone UTF-16 surrogates) in any JSON body: 400, nothing appended', () => {
  const cases: [string, string, string][] = [
    ['spend: lone high surrogate in the description', '/credits/spend', '{"amount":1,"description":"a\\ud800b"}'],
    ['spend: lone low surrogate in a metadata value', '/credits/spend', '{"amount":1,"metadata":{"k":"\\udc00"}}'],
    ['spend: U+0000 in the description', '/credits/spend', '{"amount":1,"description":"nul\\u0000"}'],
    ['spend: U+0000 in a metadata value', '/credits/spend', '{"amount":1,"metadata":{"k":["x","\\u0000"]}}'],
    ['reservation: lone surrogate in the description', '/credits/reservations', '{"amount":1,"description":"\\uDBFF"}'],
  ];
  it.each(cases)('%s', async (_name, path, body) => {
    const caller = await user(50);
    const before = (await streamEvents(t, caller.userId)).length;
    const response = await command(t, path, caller, body);
    expect(response.statusCode, response.body).toBe(400);
    expect(problemOf(response).code).toBe('validation_failed');
    expect(await streamEvents(t, caller.userId)).toHaveLength(before);
    expect(await storedBalance(t, caller.userId)).toEqual({ balance: 50, reserved: 0 });
  });

  it('a surrogate pair written as escapes is ordinary text: accepted and stored as written', async () => {
    const caller = await user(50);
    const response = await command(t, '/credits/spend', caller, '{"amount":1,"description":"ok \\ud83d\\ude00"}');
    expect(response.statusCode, response.body).toBe(201);
    const spent = (await streamEvents(t, caller.userId)).find((event) => event.type === 'CreditsSpent');
    expect((spent?.data as { description?: string } | undefined)?.description).toBe('ok 😀');
  });
});

describe('JSON nested deeper than 1,024 levels in any body: 400, nothing appended (it overflowed the stack: a 500)', () => {
  const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;
  it.each([
    ['spend metadata, 5,000 deep', '/credits/spend', `{"amount":1,"metadata":{"x":${nested(5000)}}}`],
    ['spend metadata, just past the limit', '/credits/spend', `{"amount":1,"metadata":{"x":${nested(1023)}}}`],
    ['log batch metadata, 5,000 deep', '/logs/batch', `{"logs":[{"action":"a","metadata":{"x":${nested(5000)}}}]}`],
    ['spend metadata 30,000 deep around a U+0000 escape', '/credits/spend', `{"amount":1,"metadata":{"x":${'['.repeat(30_000)}"\\u0000"${']'.repeat(30_000)}}}`],
  ])('%s', async (_name, path, body) => {
    const caller = await user(50);
    const before = (await streamEvents(t, caller.userId)).length;
    const response = await command(t, path, caller, body);
    expect(response.statusCode, response.body.slice(0, 300)).toBe(400);
    expect(problemOf(response).code).toBe('validation_failed');
    expect(problemOf(response).errors?.[0]?.path).toBe(path === '/logs/batch' ? 'logs' : 'metadata');
    expect(await streamEvents(t, caller.userId)).toHaveLength(before);
    expect(await storedBalance(t, caller.userId)).toEqual({ balance: 50, reserved: 0 });
  });

  it('metadata nested 900 deep is ordinary input: charged and stored as sent', async () => {
    const caller = await user(50);
    const response = await command(t, '/credits/spend', caller, `{"amount":1,"metadata":{"x":${nested(900)}}}`);
    expect(response.statusCode, response.body.slice(0, 300)).toBe(201);
    expect(await storedBalance(t, caller.userId)).toEqual({ balance: 49, reserved: 0 });
    // The read models take it too: the projections reach its position and serve the balance.
    const credits = await t.app.inject({ method: 'GET', url: `/credits?min_position=${response.json().position}`, headers: { authorization: `Bearer ${caller.token}` } });
    expect(credits.statusCode, credits.body.slice(0, 300)).toBe(200);
    expect(credits.json().balance).toBe(49);
    const activity = await t.app.inject({ method: 'GET', url: `/activity?min_position=${response.json().position}`, headers: { authorization: `Bearer ${caller.token}` } });
    expect(activity.statusCode, activity.body.slice(0, 300)).toBe(200);
  });
});
