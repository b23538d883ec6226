import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accountStreamId } from '../../src/ledger/events.js';
import { DEFAULT_TIERS, type TierName, tierTable } from '../../src/ledger/tiers.js';
import { createWorkspace } from '../../src/membership/workspace.js';
import { createTestApp, type TestApp } from '../support/app.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => {
  await t?.close();
});

const problemOf = (response: { headers: Record<string, unknown>; json: () => unknown }) => {
  expect(String(response.headers['content-type'])).toMatch(/^application\/problem\+json/);
  return response.json() as { code: string; detail: string; [extra: string]: unknown };
};

/** Records a tier change on the account stream, as the ledger does. */
const setTier = async (app: TestApp, userId: string, tier: TierName, expiresAt: Date | null = null) => {
  await app.eventStore.appendToStream(
    accountStreamId(userId),
    [
      {
        id: randomUUID(),
        type: 'TierChanged',
        data: { at: new Date().toISOString(), tier, previous_tier: 'free', expires_at: expiresAt?.toISOString() ?? null, reason: 'test', actor_id: null },
      },
    ],
    { expectedRevision: 'any' },
  );
};

const as = (app: TestApp, token: string) => ({
  get: (url: string) => app.app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } }),
  post: (url: string, payload: unknown) => app.app.inject({ method: 'POST', url, payload: payload as object, headers: { authorization: `Bearer ${token}` } }),
  put: (url: string, payload: unknown) => app.app.inject({ method: 'PUT', url, payload: payload as object, headers: { authorization: `Bearer ${token}` } }),
  delete: (url: string) => app.app.inject({ method: 'DELETE', url, headers: { authorization: `Bearer ${token}` } }),
});

const flow = (name: string, definition: object = { nodes: [{ id: 'n1', type: 'text_input' }], edges: [] }) => ({ name, definition });

describe('flows CRUD', () => {
  it('creates, reads, lists, updates and deletes own flows', async () => {
    const { token } = await t.signIn();
    const api = as(t, token);
    const created = await api.post('/flows', flow('First'));
    expect(created.statusCode).toBe(201);
    const body = created.json();
    expect(Object.keys(body).sort()).toEqual(['created_at', 'definition', 'id', 'name', 'size_bytes', 'updated_at']);
    expect(body).toMatchObject({ name: 'First', definition: { nodes: [{ id: 'n1', type: 'text_input' }], edges: [] } });
    expect(body.size_bytes).toBe(Buffer.byteLength(JSON.stringify(flow('First').definition)));

    expect((await api.get(`/flows/${body.id}`)).json()).toEqual(body);

    const updated = await api.put(`/flows/${body.id}`, flow('Renamed', { nodes: [] }));
    expect(updated.statusCode).toBe(200);
    expect(updated.json()).toMatchObject({ id: body.id, name: 'Renamed', definition: { nodes: [] }, created_at: body.created_at });

    const list = await api.get('/flows');
    expect(list.statusCode).toBe(200);
    expect(list.json()).toEqual({
      items: [{ id: body.id, name: 'Renamed', size_bytes: updated.json().size_bytes, created_at: body.created_at, updated_at: updated.json().updated_at }],
      next_cursor: null,
    });

    const deleted = await api.delete(`/flows/${body.id}`);
    expect(deleted.statusCode).toBe(204);
    expect(deleted.body).toBe('');
    expect((await api.get(`/flows/${body.id}`)).statusCode).toBe(404);
    expect((await api.delete(`/flows/${body.id}`)).statusCode).toBe(404);
  });

  it('pages newest first with limit and cursor', async () => {
    const { token, userId } = await t.signIn();
    await setTier(t, userId, 'pro');
    const api = as(t, token);
    const ids: string[] = [];
    for (let i = 0; i < 5; i += 1) ids.push((await api.post('/flows', flow(`Flow ${i}`))).json().id);
    const seen: string[] = [];
    let url = '/flows?limit=2';
    for (;;) {
      const page = (await api.get(url)).json();
      expect(page.items.length).toBeLessThanOrEqual(2);
      seen.push(...page.items.map((item: { id: string }) => item.id));
      if (!page.next_cursor) break;
      url = `/flows?limit=2&cursor=${page.next_cursor}`;
    }
    expect(seen).toEqual([...ids].reverse());
  });

  it.each([
    ['an unknown property', { ...flow('x'), owner_id: randomUUID() }],
    ['an array definition', { name: 'x', definition: [1, 2] }],
    ['a string definition', { name: 'x', definition: '{}' }],
    ['an empty name', flow('  ')],
    ['no definition', { name: 'x' }],
  ])('%s → 400 validation_failed', async (_label, payload) => {
    const { token } = await t.signIn();
    const response = await as(t, token).post('/flows', payload);
    expect(response.statusCode).toBe(400);
    expect(problemOf(response).code).toBe('validation_failed');
  });

  it.each(['limit=0', 'limit=abc', 'limit=201', 'cursor=bogus', 'extra=1'])('GET /flows?%s → 400', async (query) => {
    const { token } = await t.signIn();
    const response = await as(t, token).get(`/flows?${query}`);
    expect(response.statusCode).toBe(400);
    expect(problemOf(response).code).toBe('validation_failed');
  });

  it('needs an access token', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/flows' });
    expect(response.statusCode).toBe(401);
    expect(problemOf(response).code).toBe('missing_token');
    const post = await t.app.inject({ method: 'POST', url: '/flows', payload: { bad: true } });
    expect(post.statusCode).toBe(401);
  });
});

describe('owner-only', () => {
  it('another user’s flow is 404 for read, update and delete, and stays unchanged', async () => {
    const owner = await t.signIn();
    const intruder = await t.signIn();
    const { id } = (await as(t, owner.token).post('/flows', flow('Private'))).json();
    const api = as(t, intruder.token);
    for (const response of [await api.get(`/flows/${id}`), await api.put(`/flows/${id}`, flow('Hijacked')), await api.delete(`/flows/${id}`)]) {
      expect(response.statusCode).toBe(404);
      expect(problemOf(response).code).toBe('not_found');
    }
    expect((await api.get('/flows')).json().items).toEqual([]);
    expect((await as(t, owner.token).get(`/flows/${id}`)).json()).toMatchObject({ name: 'Private' });
  });
});

describe('plan limits', () => {
  it('free allows 3 projects; the 4th → 403 plan_limit_reached { limit, used, resource }', async () => {
    const { token } = await t.signIn();
    const api = as(t, token);
    for (let i = 0; i < 3; i += 1) expect((await api.post('/flows', flow(`F${i}`))).statusCode).toBe(201);
    const fourth = await api.post('/flows', flow('F3'));
    expect(fourth.statusCode).toBe(403);
    expect(problemOf(fourth)).toMatchObject({ code: 'plan_limit_reached', limit: 3, used: 3, resource: 'projects' });
  });

  it('reads the tier from the ledger: an upgrade lifts the limit, a downgrade keeps flows but blocks new ones', async () => {
    const { token, userId } = await t.signIn();
    const api = as(t, token);
    await setTier(t, userId, 'basic');
    const ids: string[] = [];
    for (let i = 0; i < 5; i += 1) {
      const response = await api.post('/flows', flow(`B${i}`));
      expect(response.statusCode).toBe(201);
      ids.push(response.json().id);
    }
    // Downgrade by expiry: basic ended a second ago.
    await setTier(t, userId, 'basic', new Date(Date.now() - 1000));
    const blocked = await api.post('/flows', flow('one more'));
    expect(blocked.statusCode).toBe(403);
    expect(problemOf(blocked)).toMatchObject({ code: 'plan_limit_reached', limit: 3, used: 5, resource: 'projects' });
    for (const id of ids) expect((await api.get(`/flows/${id}`)).statusCode).toBe(200);
    expect((await api.put(`/flows/${ids[0]}`, flow('still editable'))).statusCode).toBe(200);
    expect((await api.get('/flows')).json().items).toHaveLength(5);
    expect((await api.delete(`/flows/${ids[1]}`)).statusCode).toBe(204);
  });

  it('two concurrent creates at the limit: exactly one succeeds', async () => {
    const { token } = await t.signIn();
    const api = as(t, token);
    for (let i = 0; i < 2; i += 1) expect((await api.post('/flows', flow(`C${i}`))).statusCode).toBe(201);
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => api.post('/flows', flow(`race ${i}`))));
    expect(results.map((response) => response.statusCode).sort()).toEqual([201, 403, 403, 403, 403, 403]);
    expect((await api.get('/flows')).json().items).toHaveLength(3);
  });
});

describe('storage limit (max_storage_mb)', () => {
  let small: TestApp;
  beforeAll(async () => {
    // A plan with 1 MB of storage and unlimited projects, so the storage check is what bites.
    const tiers = tierTable(DEFAULT_TIERS.map((tier) => (tier.tier === 'free' ? { ...tier, max_projects: -1, max_storage_mb: 1 } : tier)));
    small = await createTestApp({ overrideDeps: (_deps, db) => ({ workspace: createWorkspace(db.pool, { tiers }) }) });
  });
  afterAll(async () => {
    await small?.close();
  });

  it('counts the stored definition sizes; growing past the limit is refused, shrinking is not', async () => {
    const { token } = await small.signIn();
    const api = as(small, token);
    // 17 of these fill 1 MB up to the last 16 bytes.
    const big = (n: number, extra = 0) => flow(`Big ${n}`, { blob: 'x'.repeat(61_669 + extra) });
    const created: string[] = [];
    let refused;
    for (let i = 0; i < 30 && !refused; i += 1) {
      const response = await api.post('/flows', big(i));
      if (response.statusCode === 201) created.push(response.json().id);
      else refused = response;
    }
    expect(refused?.statusCode).toBe(403);
    const problem = problemOf(refused as NonNullable<typeof refused>);
    expect(problem).toMatchObject({ code: 'plan_limit_reached', resource: 'storage_mb', limit: 1 });
    const perFlow = Buffer.byteLength(JSON.stringify(big(0).definition));
    expect(created.length).toBe(Math.floor((1024 * 1024) / perFlow));
    expect(problem.used).toBeCloseTo(Math.ceil(((created.length * perFlow) / (1024 * 1024)) * 100) / 100, 5);

    // Growing an existing flow past the limit → 403; keeping or shrinking it → fine.
    const first = created[0] as string;
    expect(1024 * 1024 - created.length * perFlow).toBe(16);
    const grow = await api.put(`/flows/${first}`, big(0, 100));
    expect(grow.statusCode).toBe(403);
    expect(problemOf(grow).code).toBe('plan_limit_reached');
    expect((await api.put(`/flows/${first}`, flow('Smaller', { blob: 'x' }))).statusCode).toBe(200);
    expect((await api.post('/flows', big(99))).statusCode).toBe(201);
  });
});
