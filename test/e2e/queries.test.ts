import { randomUUID } from 'node:crypto';
/**
 * The query API (API §4, §5, §7, §8) over HTTP on the real app: read models, read-your-writes with
 * `min_position`, keyset pagination, roles.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from '../../src/adapters/postgres/pool.js';
import { ManualClock } from '../../src/core/clock.js';
import { createTestApp, type TestApp } from '../support/app.js';

let t: TestApp;
const clock = new ManualClock('2026-11-25T10:00:00.000Z');
interface Who {
  readonly userId: string;
  readonly sessionId: string;
  readonly role: 'user' | 'admin' | 'auditor';
}
let admin: Who;
let auditor: Who;
let user: Who;
let keys = 0;

const signIn = async (input: { email?: string; role?: Who['role'] } = {}): Promise<Who> => {
  const signed = await t.signIn(input);
  return { userId: signed.userId, sessionId: signed.sessionId, role: input.role ?? 'user' };
};

beforeAll(async () => {
  t = await createTestApp({ clock });
  admin = await signIn({ role: 'admin', email: 'root-admin@example.com' });
  auditor = await signIn({ role: 'auditor' });
  user = await signIn({ email: 'reader@example.com' });
});
afterAll(async () => {
  await t?.close();
});

/** A token signed at the (manual) clock's now, so advancing the clock never expires it. */
const auth = async (who: Who, extra: Record<string, string> = {}) => {
  const token = await t.deps.accessTokens.sign({ userId: who.userId, email: 'x@example.com', tier: 'free', role: who.role, sessionId: who.sessionId });
  return { authorization: `Bearer ${token}`, ...extra };
};
const get = async (who: Who, url: string) => t.app.inject({ method: 'GET', url, headers: await auth(who) });
const post = async (who: Who, url: string, payload: unknown) =>
  t.app.inject({ method: 'POST', url, headers: await auth(who, { 'idempotency-key': `key-${++keys}` }), payload: payload as Record<string, unknown> });

async function grant(userId: string, amount: number, extra: Record<string, unknown> = {}): Promise<string> {
  const response = await post(admin, `/admin/users/${userId}/credits/grants`, { amount, kind: 'bonus', reason: 'welcome', ...extra });
  expect(response.statusCode, response.body).toBe(201);
  return response.json().position;
}

async function spend(who: Who, amount: number): Promise<string> {
  const response = await post(who, '/credits/spend', { amount, description: 'gpt-4 call', metadata: { model: 'gpt-4' } });
  expect(response.statusCode, response.body).toBe(201);
  return response.json().position;
}

describe('GET /credits', () => {
  it('reads zeros for an account without history (not 404)', async () => {
    const fresh = await signIn();
    const response = await get(fresh, '/credits');
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({
      user_id: fresh.userId,
      balance: 0,
      available: 0,
      reserved: 0,
      total_purchased: 0,
      total_used: 0,
      total_bonus: 0,
      total_refunded: 0,
      total_expired: 0,
      expiring: [],
      updated_at: null,
      position: null,
    });
  });

  it('serves the balance the commands produced, read-your-writes with min_position', async () => {
    const expiresAt = new Date(clock.now().getTime() + 7 * 24 * 3600_000).toISOString();
    await grant(user.userId, 100, { expires_at: expiresAt });
    await grant(user.userId, 50);
    const position = await spend(user, 30);
    const started = Date.now();
    const response = await get(user, `/credits?min_position=${position}`);
    const waited = Date.now() - started;
    expect(response.statusCode, response.body).toBe(200);
    const body = response.json();
    expect(body).toMatchObject({
      user_id: user.userId,
      balance: 120,
      available: 120,
      reserved: 0,
      total_purchased: 0,
      total_used: 30,
      total_bonus: 150,
      total_refunded: 0,
      total_expired: 0,
      updated_at: clock.now().toISOString(),
      position,
    });
    // The 30 came out of the expiring lot first (soonest expiry burns first).
    expect(body.expiring).toEqual([{ lot_id: expect.any(String), amount: 70, expires_at: expiresAt }]);
    // Woken by the projector's commit, not a poll tick.
    expect(waited).toBeLessThan(1500);
  });

  it('reserved credits leave available, not balance', async () => {
    const response = await post(user, '/credits/reservations', { amount: 20 });
    expect(response.statusCode, response.body).toBe(201);
    const credits = await get(user, `/credits?min_position=${response.json().position}`);
    expect(credits.json()).toMatchObject({ balance: 120, reserved: 20, available: 100 });
    const release = await t.app.inject({
      method: 'POST',
      url: `/credits/reservations/${response.json().reservation_id}/release`,
      headers: await auth(user, { 'idempotency-key': `key-${++keys}` }),
    });
    expect(release.statusCode, release.body).toBe(200);
    const after = await get(user, `/credits?min_position=${release.json().position}`);
    expect(after.json()).toMatchObject({ balance: 120, reserved: 0, available: 120 });
  });

  it('answers 503 projection_lagging with Retry-After: 1 when the projections do not reach min_position within 2 s', async () => {
    const started = Date.now();
    const response = await get(user, '/credits?min_position=18446744073709551615-1');
    expect(Date.now() - started).toBeGreaterThanOrEqual(1900);
    expect(response.statusCode).toBe(503);
    expect(response.headers['retry-after']).toBe('1');
    expect(response.json()).toMatchObject({ code: 'projection_lagging', status: 503 });
  });

  it('refuses a min_position that is not a position, and unknown parameters', async () => {
    for (const url of ['/credits?min_position=abc', '/credits?min_position=1-2-3', '/credits?foo=1']) {
      const response = await get(user, url);
      expect(response.statusCode, url).toBe(400);
      expect(response.json().code).toBe('validation_failed');
    }
  });

  it('needs a token', async () => {
    expect((await t.app.inject({ method: 'GET', url: '/credits' })).statusCode).toBe(401);
  });
});

describe('GET /credits/transactions', () => {
  it('lists the statement newest first with signed amounts, balance before and after; filters by type; pages with a cursor', async () => {
    const last = await spend(user, 5);
    const response = await get(user, `/credits/transactions?min_position=${last}`);
    expect(response.statusCode, response.body).toBe(200);
    const { items, next_cursor } = response.json();
    expect(next_cursor).toBeNull();
    expect(items.map((i: { type: string; amount: number; balance_after: number; balance_before: number }) => [i.type, i.amount, i.balance_before, i.balance_after])).toEqual([
      ['use', -5, 120, 115],
      ['use', -30, 150, 120],
      ['bonus', 50, 100, 150],
      ['bonus', 100, 0, 100],
    ]);
    expect(items[0]).toMatchObject({ description: 'gpt-4 call', metadata: { model: 'gpt-4' }, reference_type: 'spend', position: last });
    expect(items[3]).toMatchObject({ description: 'welcome', reference_type: 'grant', metadata: { kind: 'bonus' } });

    const uses = (await get(user, '/credits/transactions?type=use')).json().items;
    expect(uses.map((i: { amount: number }) => i.amount)).toEqual([-5, -30]);

    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { items: { id: string }[]; next_cursor: string | null } = (
        await get(user, `/credits/transactions?limit=1${cursor ? `&cursor=${cursor}` : ''}`)
      ).json();
      expect(page.items.length).toBeLessThanOrEqual(1);
      seen.push(...page.items.map((i) => i.id));
      cursor = page.next_cursor;
    } while (cursor);
    expect(seen).toEqual(items.map((i: { id: string }) => i.id));
  });

  it('only shows the caller their own account', async () => {
    const other = await signIn();
    expect((await get(other, '/credits/transactions')).json()).toEqual({ items: [], next_cursor: null });
  });

  it('refuses bad parameters', async () => {
    for (const url of ['/credits/transactions?type=gift', '/credits/transactions?limit=0', '/credits/transactions?limit=201', '/credits/transactions?cursor=%%%', '/credits/transactions?cursor=bm9wZQ']) {
      const response = await get(user, url);
      expect(response.statusCode, url).toBe(400);
    }
  });
});

describe('GET /activity', () => {
  it("lists the account's ledger events newest first, filterable by action", async () => {
    const position = await spend(user, 1);
    const response = await get(user, `/activity?min_position=${position}`);
    expect(response.statusCode, response.body).toBe(200);
    const actions = response.json().items.map((i: { action: string }) => i.action);
    expect(actions.slice(0, 3)).toEqual(['credits_spent', 'credits_spent', 'reservation_released']);
    expect(actions).toContain('credits_granted');
    const spent = (await get(user, '/activity?action=credits_spent&limit=2')).json();
    expect(spent.items).toHaveLength(2);
    expect(spent.items[0]).toMatchObject({ action: 'credits_spent', resource_type: 'spend', metadata: { amount: 1, balance_after: 114 } });
    expect(spent.next_cursor).not.toBeNull();
    const more = (await get(user, `/activity?action=credits_spent&limit=2&cursor=${spent.next_cursor}`)).json();
    expect(more.items.map((i: { metadata: { amount: number } }) => i.metadata.amount)).toEqual([30]);
  });
});

describe('newest first means by position, numerically', () => {
  // Read-model rows written directly with positions on both sides of a power of ten: compared as text,
  // 999 would sort above 1000 (which hit these two lists once transaction ids passed 1000).
  it('GET /credits/transactions and GET /activity put 1000-1 before 999-7', async () => {
    const who = await signIn();
    const row = (major: number, minor: number, amount: number, id = randomUUID()) => sql.unsafe`
      insert into credit_transactions (id, user_id, event_id, type, amount, balance_before, balance_after, event_type, stream_revision, created_at, position_major, position_minor)
      values (${id}, ${who.userId}, ${id}, 'bonus', ${amount}, 0, ${amount}, 'CreditsGranted', ${amount}, now(), ${major}, ${minor})`;
    const log = (major: number, minor: number, action: string) => sql.unsafe`
      insert into activity_logs (id, user_id, action, created_at, event_id, event_type, entry_index, position_major, position_minor)
      values (${randomUUID()}, ${who.userId}, ${action}, now(), ${randomUUID()}, 'CreditsGranted', 0, ${major}, ${minor})`;
    for (const query of [row(999, 7, 1), row(1000, 1, 2), row(98, 9, 3), log(999, 7, 'older'), log(1000, 1, 'newer'), log(98, 9, 'oldest')]) {
      await t.db.pool.query(query);
    }
    const statement = (await get(who, '/credits/transactions')).json().items.map((i: { amount: number }) => i.amount);
    expect(statement).toEqual([2, 1, 3]);
    const activity = (await get(who, '/activity')).json().items.map((i: { action: string }) => i.action);
    expect(activity).toEqual(['newer', 'older', 'oldest']);
  });
});

describe('GET /usage and GET /me', () => {
  it('counts API calls in the UTC day and month with the tier limits', async () => {
    const position = await spend(user, 1);
    const response = await get(user, `/usage?min_position=${position}`);
    expect(response.statusCode, response.body).toBe(200);
    expect(response.json()).toEqual({
      tier: 'free',
      api_calls: {
        day: { used: 4, limit: 100, resets_at: '2026-11-26T00:00:00.000Z' },
        month: { used: 4, limit: 1000, resets_at: '2026-12-01T00:00:00.000Z' },
      },
      projects: { used: 0, limit: 3 },
      components: { used: 0, limit: 10 },
      storage_mb: { used: 0, limit: 500 },
    });
    clock.advance(24 * 3600_000);
    const nextDay = (await get(user, '/usage')).json();
    expect(nextDay.api_calls.day).toEqual({ used: 0, limit: 100, resets_at: '2026-11-27T00:00:00.000Z' });
    expect(nextDay.api_calls.month.used).toBe(4);
  });

  it('shows the tier from the ledger, falling back to free once it expires', async () => {
    const expiresAt = new Date(clock.now().getTime() + 3600_000).toISOString();
    const response = await t.app.inject({
      method: 'PUT',
      url: `/admin/users/${user.userId}/tier`,
      headers: await auth(admin, { 'idempotency-key': `key-${++keys}` }),
      payload: { tier: 'pro', expires_at: expiresAt, reason: 'trial' },
    });
    expect(response.statusCode, response.body).toBe(200);
    const position = response.json().position;
    const me = await get(user, `/me?min_position=${position}`);
    expect(me.statusCode, me.body).toBe(200);
    expect(me.json()).toMatchObject({ id: user.userId, tier: 'pro', tier_expires_at: expiresAt, role: 'user' });
    expect((await get(user, '/usage')).json()).toMatchObject({ tier: 'pro', api_calls: { day: { limit: 10000 } }, projects: { limit: -1 } });
    clock.advance(2 * 3600_000);
    expect((await get(user, '/me')).json()).toMatchObject({ tier: 'free', tier_expires_at: null });
    expect((await get(user, '/usage')).json().tier).toBe('free');
  });
});

describe('admin', () => {
  it('GET /admin/users lists users with tier, role, is_active and balance, filtered by email, paged; admins only', async () => {
    const position = await spend(user, 1);
    const response = await get(admin, `/admin/users?email=READER@&min_position=${position}`);
    expect(response.statusCode, response.body).toBe(200);
    expect(response.json()).toEqual({
      items: [
        {
          id: user.userId,
          email: 'reader@example.com',
          name: null,
          role: 'user',
          is_active: true,
          tier: 'free',
          tier_expires_at: null,
          balance: 112,
          available: 112,
          created_at: expect.any(String),
          last_login_at: null,
        },
      ],
      next_cursor: null,
    });
    const all: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { items: { id: string }[]; next_cursor: string | null } = (
        await get(admin, `/admin/users?limit=2${cursor ? `&cursor=${cursor}` : ''}`)
      ).json();
      all.push(...page.items.map((i) => i.id));
      cursor = page.next_cursor;
    } while (cursor);
    expect(new Set(all).size).toBe(all.length);
    expect(all).toEqual(expect.arrayContaining([admin.userId, auditor.userId, user.userId]));
    expect((await get(admin, '/admin/users?email=%25')).json().items).toEqual([]);
    expect((await get(user, '/admin/users')).statusCode).toBe(403);
    expect((await get(auditor, '/admin/users')).statusCode).toBe(403);
  });

  it('GET /admin/projections shows checkpoint, head, lag and status to admins and auditors', async () => {
    const position = await spend(user, 1);
    for (const who of [admin, auditor]) {
      const response = await get(who, `/admin/projections?min_position=${position}`);
      expect(response.statusCode, response.body).toBe(200);
      const statuses = response.json();
      expect(statuses.map((s: { name: string }) => s.name).sort()).toEqual(['activity', 'credits', 'tiers']);
      for (const status of statuses) {
        expect(status).toMatchObject({ status: 'running', error: null, generation: 1, rebuild: null });
        expect(status.checkpoint).toMatch(/^\d+-\d+$/);
        expect(status.head).toMatch(/^\d+-\d+$/);
        expect(status.lag_events).toBeGreaterThanOrEqual(0);
        expect(status.lag_ms).toBeGreaterThanOrEqual(0);
      }
    }
    expect((await get(user, '/admin/projections')).statusCode).toBe(403);
  });

  it('/readyz checks the projector, /metrics exposes projection lag', async () => {
    const ready = await t.app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode, ready.body).toBe(200);
    expect(ready.json().checks).toMatchObject({ projector: 'ok' });
    const metrics = await t.app.inject({ method: 'GET', url: '/metrics' });
    expect(metrics.body).toMatch(/projection_lag_events\{projection="credits"\} \d+/);
    expect(metrics.body).toMatch(/projection_lag_ms\{projection="credits"\} \d+/);
    expect(metrics.body).toContain('projection_event_lag_seconds_bucket');
    expect(metrics.body).toMatch(/projection_leader 1/);
  });
});
