import { randomUUID } from 'node:crypto';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { sql } from '../../src/adapters/postgres/pool.js';
import type { AiProvider } from '../../src/adapters/ai/index.js';
import { createAiGeneration } from '../../src/http/ai-generation.js';
import { DEFAULT_TIERS, tierTable } from '../../src/ledger/tiers.js';
import { createWorkspace, MAX_DEFINITION_DEPTH, type Workspace } from '../../src/membership/workspace.js';
import { createTestApp, type TestApp } from '../support/app.js';
import { fund, problemOf, storedBalance } from '../support/ledger-http.js';

/**
 * Attacks on the workspace (flows, components, AI components, plan limits, GET /usage): forged
 * cursors, pathological definitions, races at the limits, downgrades, and charged AI generations whose
 * provider answers something awkward. None of them may end in a 5xx or leave a limit exceeded.
 */

type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';
const call = (t: TestApp, token: string, method: Method, url: string, body?: unknown, headers: Record<string, string> = {}) =>
  t.app.inject({
    method,
    url,
    ...(body === undefined ? {} : { payload: typeof body === 'string' ? body : JSON.stringify(body) }),
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
  });

const forgedCursor = (at: string) => Buffer.from(JSON.stringify([at, randomUUID()])).toString('base64url');
const nestedArrays = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;
const expectValidationFailed = (response: LightMyRequestResponse) => {
  expect(response.statusCode, response.body).toBe(400);
  expect(problemOf(response).code).toBe('validation_failed');
};

describe('workspace attacks (default tiers)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(async () => {
    await t?.close();
  });

  it.each(['/flows', '/components'])(
    'GET %s with a well-formed cursor whose time Postgres cannot hold → 400 validation_failed, not 500',
    async (path) => {
      const { token } = await t.signIn();
      for (const at of ['0000-01-01T00:00:00.000Z', '+275760-09-13T00:00:00.000Z', '-000001-01-01T00:00:00.000Z', '-271821-04-20T00:00:00.000Z']) {
        expectValidationFailed(await call(t, token, 'GET', `${path}?cursor=${forgedCursor(at)}`));
      }
      // The edges of the plain form still page normally (nothing is older than year 1 or newer than 9999).
      expect((await call(t, token, 'GET', `${path}?cursor=${forgedCursor('0001-01-01T00:00:00.000Z')}`)).json().items).toEqual([]);
      expect((await call(t, token, 'GET', `${path}?cursor=${forgedCursor('9999-12-31T23:59:59.999Z')}`)).statusCode).toBe(200);
    },
  );

  it('a cursor issued to another user pages only the caller’s own items', async () => {
    const owner = await t.signIn();
    const other = await t.signIn();
    for (let i = 0; i < 3; i += 1) expect((await call(t, owner.token, 'POST', '/flows', { name: `F${i}`, definition: {} })).statusCode).toBe(201);
    const page = (await call(t, owner.token, 'GET', '/flows?limit=1')).json();
    expect(page.next_cursor).toEqual(expect.any(String));
    const stolen = await call(t, other.token, 'GET', `/flows?cursor=${page.next_cursor}`);
    expect(stolen.statusCode).toBe(200);
    expect(stolen.json()).toEqual({ items: [], next_cursor: null });
  });

  it.each([
    ['POST /flows', 'POST', '/flows'],
    ['POST /components', 'POST', '/components'],
  ] as const)('%s: a definition nested deeper than the limit → 400 validation_failed, not 500', async (_label, method, url) => {
    const { token } = await t.signIn();
    for (const depth of [MAX_DEFINITION_DEPTH + 1, 5_000, 30_000]) {
      const response = await call(t, token, method, url, `{"name":"deep","definition":{"a":${nestedArrays(depth - 1)}}}`);
      expectValidationFailed(response);
      expect(problemOf(response).errors?.[0]?.path).toBe('definition');
    }
    const objects = await call(t, token, method, url, `{"name":"deep","definition":${'{"a":'.repeat(6_000)}1${'}'.repeat(6_000)}}`);
    expectValidationFailed(objects);
    // At the limit it is stored and read back as sent.
    const atLimit = await call(t, token, method, url, `{"name":"deep","definition":{"a":${nestedArrays(MAX_DEFINITION_DEPTH - 1)}}}`);
    expect(atLimit.statusCode, atLimit.body).toBe(201);
    expect(atLimit.json().size_bytes).toBe(6 + 2 * (MAX_DEFINITION_DEPTH - 1));
  });

  it('PUT /flows/:id with a too-deep definition → 400 and the flow is unchanged', async () => {
    const { token } = await t.signIn();
    const created = (await call(t, token, 'POST', '/flows', { name: 'Keep', definition: { a: 1 } })).json();
    expectValidationFailed(await call(t, token, 'PUT', `/flows/${created.id}`, `{"name":"deep","definition":{"a":${nestedArrays(20_000)}}}`));
    expect((await call(t, token, 'GET', `/flows/${created.id}`)).json()).toEqual(created);
  });

  it('size_bytes counts UTF-8 bytes of the stored JSON (multi-byte text, escapes, nesting) and GET /usage sums both tables', async () => {
    const { token } = await t.signIn();
    const definitions = [
      { s: 'é😀', nested: { list: [1, 2.5, true, null, { k: '"quoted" \\ back' }] } },
      { 日本: ['語', { '': '' }], tab: '\t', ctl: '\u0001' },
    ];
    const sizes: number[] = [];
    for (const definition of definitions) {
      const flow = await call(t, token, 'POST', '/flows', { name: 'F', definition });
      expect(flow.statusCode).toBe(201);
      expect(flow.json().definition).toEqual(definition);
      sizes.push(flow.json().size_bytes);
      expect(flow.json().size_bytes).toBe(Buffer.byteLength(JSON.stringify(definition)));
    }
    const component = (await call(t, token, 'POST', '/components', { name: 'C', definition: { big: 'ü'.repeat(6000) } })).json();
    expect(component.size_bytes).toBe(Buffer.byteLength(JSON.stringify({ big: 'ü'.repeat(6000) })));
    const total = sizes[0]! + sizes[1]! + component.size_bytes;
    const usage = (await call(t, token, 'GET', '/usage')).json();
    expect(usage).toMatchObject({
      tier: 'free',
      projects: { used: 2, limit: 3 },
      components: { used: 1, limit: 10 },
      storage_mb: { used: Math.ceil((total / (1024 * 1024)) * 100) / 100, limit: 500 },
    });
    // Deleting brings the figures back down; another user's usage is untouched by all of it.
    expect((await call(t, token, 'DELETE', `/components/${component.id}`)).statusCode).toBe(204);
    expect((await call(t, token, 'GET', '/usage')).json()).toMatchObject({ components: { used: 0 } });
    const other = await t.signIn();
    expect((await call(t, other.token, 'GET', '/usage')).json()).toMatchObject({ projects: { used: 0 }, components: { used: 0 }, storage_mb: { used: 0 } });
  });

  it('GET /usage after a tier expiry: free limits, with the user above them (nothing is taken away)', async () => {
    const admin = await t.signIn({ role: 'admin' });
    const { token, userId } = await t.signIn();
    const setTier = (expiresAt: Date | null) =>
      call(t, admin.token, 'PUT', `/admin/users/${userId}/tier`, { tier: 'basic', expires_at: expiresAt?.toISOString() ?? null, reason: 'test' });
    expect((await setTier(null)).statusCode).toBe(200);
    for (let i = 0; i < 5; i += 1) expect((await call(t, token, 'POST', '/flows', { name: `B${i}`, definition: {} })).statusCode).toBe(201);
    const expiring = await setTier(new Date(Date.now() + 1000));
    expect(expiring.statusCode).toBe(200);
    const before = (await call(t, token, 'GET', `/usage?min_position=${expiring.json().position}`)).json();
    expect(before).toMatchObject({ tier: 'basic', projects: { used: 5, limit: 10 } });
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const after = (await call(t, token, 'GET', `/usage?min_position=${expiring.json().position}`)).json();
    expect(after).toMatchObject({ tier: 'free', projects: { used: 5, limit: 3 }, components: { used: 0, limit: 10 }, storage_mb: { limit: 500 } });
    const refused = await call(t, token, 'POST', '/flows', { name: 'one more', definition: {} });
    expect(refused.statusCode).toBe(403);
    expect(problemOf(refused)).toMatchObject({ code: 'plan_limit_reached', resource: 'projects', limit: 3, used: 5 });
  });

  it('concurrent component creates at the limit: exactly one succeeds', async () => {
    const { token } = await t.signIn();
    for (let i = 0; i < 9; i += 1) expect((await call(t, token, 'POST', '/components', { name: `C${i}`, definition: {} })).statusCode).toBe(201);
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => call(t, token, 'POST', '/components', { name: `race ${i}`, definition: {} })));
    expect(results.map((response) => response.statusCode).sort()).toEqual([201, 403, 403, 403, 403, 403]);
    expect((await call(t, token, 'GET', '/usage')).json().components.used).toBe(10);
  });

  it('components of the built-in catalog are not the caller’s: GET/DELETE by their id → 404', async () => {
    const { token } = await t.signIn();
    const builtin = (await call(t, token, 'GET', '/components')).json().builtin[0].id;
    expect((await call(t, token, 'GET', `/components/${builtin}`)).statusCode).toBe(404);
    expect((await call(t, token, 'DELETE', `/components/${builtin}`)).statusCode).toBe(404);
  });
});

describe('storage shared by flows and components under a small plan', () => {
  let t: TestApp;
  beforeAll(async () => {
    // 1 MB of storage, unlimited counts: the storage check is what bites.
    const tiers = tierTable(DEFAULT_TIERS.map((tier) => (tier.tier === 'free' ? { ...tier, max_projects: -1, max_components: -1, max_storage_mb: 1 } : tier)));
    t = await createTestApp({ overrideDeps: (_deps, db) => ({ workspace: createWorkspace(db.pool, { tiers }) }) });
  });
  afterAll(async () => {
    await t?.close();
  });

  const blob = (bytes: number) => ({ b: 'x'.repeat(bytes - 8) }); // {"b":"…"} is 8 bytes of overhead

  it('concurrent flow and component creates and flow growth cannot together pass 1 MB', async () => {
    const { token } = await t.signIn();
    // 16 × 60 000 = 960 000 bytes; 88 576 bytes left.
    const ids: string[] = [];
    for (let i = 0; i < 16; i += 1) {
      const response = await call(t, token, 'POST', i % 2 ? '/components' : '/flows', { name: `S${i}`, definition: blob(60_000) });
      expect(response.statusCode).toBe(201);
      if (i % 2 === 0) ids.push(response.json().id);
    }
    const results = await Promise.all([
      call(t, token, 'POST', '/flows', { name: 'a', definition: blob(50_000) }),
      call(t, token, 'POST', '/components', { name: 'b', definition: blob(50_000) }),
      call(t, token, 'PUT', `/flows/${ids[0]}`, { name: 'grown', definition: blob(60_000 + 50_000) }),
      call(t, token, 'POST', '/flows', { name: 'c', definition: blob(50_000) }),
    ]);
    expect(results.filter((response) => response.statusCode < 300)).toHaveLength(1);
    for (const refused of results.filter((response) => response.statusCode === 403)) {
      expect(problemOf(refused)).toMatchObject({ code: 'plan_limit_reached', resource: 'storage_mb', limit: 1 });
    }
    const stored = await t.db.pool.oneFirst(sql.type(z.object({ bytes: z.number() }))`
      select ((select coalesce(sum(size_bytes), 0) from flows) + (select coalesce(sum(size_bytes), 0) from components))::float8 as bytes`);
    expect(Number(stored)).toBeLessThanOrEqual(1024 * 1024);
  });
});

describe('POST /components/ai-generate when the provider answers something awkward', () => {
  let t: TestApp;
  const answer = { text: '' };
  const provider: AiProvider = { name: 'openai', complete: async () => ({ response: answer.text }) };
  beforeAll(async () => {
    t = await createTestApp({
      overrideDeps: (deps, db) => {
        const aiGeneration = createAiGeneration({
          accounts: deps.ledger,
          provider,
          modelPrices: deps.config.modelPrices,
          pool: db.pool,
          clock: deps.clock,
          logger: deps.logger,
        });
        return { aiGeneration, aiGenerationService: aiGeneration };
      },
    });
  });
  afterAll(async () => {
    await t?.close();
  });

  it.each([
    ['JSON nested far too deep', `{"kind":"x","config":${nestedArrays(20_000)}}`, (definition: Record<string, unknown>) => expect(definition.spec).toBeNull()],
    ['text with U+0000', 'before\u0000after', (definition: Record<string, unknown>) => expect(definition.text).toBe('before\uFFFDafter')],
    ['text with a lone surrogate', 'half \uD83D pair', (definition: Record<string, unknown>) => expect(definition.text).toBe('half \uFFFD pair')],
    ['JSON with U+0000 written as an escape', '{"kind":"x","config":{"label":"a\\u0000b"}}', (definition: Record<string, unknown>) =>
      expect(definition).toMatchObject({ spec: null, text: '{"kind":"x","config":{"label":"a\\u0000b"}}' })],
    ['JSON with an escaped key', '{"kind":"x","config":{"a\\"b":1}}', (definition: Record<string, unknown>) =>
      expect(definition).toMatchObject({ spec: null, text: '{"kind":"x","config":{"a\\"b":1}}' })],
    ['a storable JSON object', '{"kind":"x","config":{"label":"é😀"}}', (definition: Record<string, unknown>) =>
      expect(definition).toMatchObject({ spec: { kind: 'x', config: { label: 'é😀' } }, text: null })],
  ] as const)('%s: charged once, stored, never a 5xx (with and without Idempotency-Key)', async (_label, text, check) => {
    const { token, userId } = await t.signIn();
    await fund(t, userId, 10, { tier: 'pro' });
    answer.text = text;
    const plain = await call(t, token, 'POST', '/components/ai-generate', { prompt: 'a widget' });
    expect(plain.statusCode, plain.body).toBe(201);
    check(plain.json().component.definition);
    expect(plain.json()).toMatchObject({ credits_used: 1, balance_remaining: 9 });

    const headers = { 'idempotency-key': randomUUID() };
    const first = await call(t, token, 'POST', '/components/ai-generate', { prompt: 'a widget' }, headers);
    expect(first.statusCode, first.body).toBe(201);
    const replay = await call(t, token, 'POST', '/components/ai-generate', { prompt: 'a widget' }, headers);
    expect(replay.statusCode, replay.body).toBe(201);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.json()).toEqual(first.json());
    expect(await storedBalance(t, userId)).toEqual({ balance: 8, reserved: 0 });
    const list = (await call(t, token, 'GET', '/components')).json();
    expect(list.items).toHaveLength(2);
    for (const item of list.items) check(item.definition);
  });

  it('POST /ai/generate with an Idempotency-Key and an answer holding U+0000: 200, the same text on replay, charged once', async () => {
    const { token, userId } = await t.signIn();
    await fund(t, userId, 10);
    answer.text = 'a\u0000b \uDC00';
    const headers = { 'idempotency-key': randomUUID() };
    const first = await call(t, token, 'POST', '/ai/generate', { model: 'gpt-3.5-turbo', prompt: 'hi' }, headers);
    expect(first.statusCode, first.body).toBe(200);
    expect(first.json().result.response).toBe('a\uFFFDb \uFFFD');
    const replay = await call(t, token, 'POST', '/ai/generate', { model: 'gpt-3.5-turbo', prompt: 'hi' }, headers);
    expect(replay.statusCode).toBe(200);
    expect(replay.json()).toEqual(first.json());
    expect(await storedBalance(t, userId)).toEqual({ balance: 9, reserved: 0 });
  });
});

describe('POST /components/ai-generate: a replay that overtakes the first request', () => {
  let t: TestApp;
  // Holds the first request between its settle and storing its component, so a replay can overtake it.
  const hold = { armed: false, reached: () => {}, release: () => {} };
  beforeAll(async () => {
    t = await createTestApp({
      overrideDeps: (deps, db) => {
        const inner = createWorkspace(db.pool, { tiers: deps.catalog.tiers });
        const workspace: Workspace = {
          ...inner,
          async createComponent(ownerId, tier, content, now) {
            if (hold.armed && content.freshUseOfKey === true) {
              hold.armed = false;
              hold.reached();
              await new Promise<void>((resolve) => {
                hold.release = resolve;
              });
            }
            return inner.createComponent(ownerId, tier, content, now);
          },
        };
        return { workspace };
      },
    });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('both answer the same component, stored once and charged once', async () => {
    const { token, userId } = await t.signIn();
    await fund(t, userId, 10, { tier: 'pro' });
    const headers = { 'idempotency-key': randomUUID() };
    const atHold = new Promise<void>((resolve) => {
      hold.reached = resolve;
    });
    hold.armed = true;
    const first = call(t, token, 'POST', '/components/ai-generate', { prompt: 'a knob' }, headers);
    await atHold;
    const replay = await call(t, token, 'POST', '/components/ai-generate', { prompt: 'a knob' }, headers);
    hold.release();
    const original = await first;
    expect(original.statusCode, original.body).toBe(201);
    expect(replay.statusCode, replay.body).toBe(201);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.json()).toEqual(original.json());
    const items = (await call(t, token, 'GET', '/components')).json().items;
    expect(items.map((item: { id: string }) => item.id)).toEqual([original.json().component.id]);
    expect(await storedBalance(t, userId)).toEqual({ balance: 9, reserved: 0 });
  });
});
