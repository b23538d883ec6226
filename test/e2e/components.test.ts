import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiError } from '../../src/http/problem.js';
import { accountStreamId } from '../../src/ledger/events.js';
import type { TierName } from '../../src/ledger/tiers.js';
import { BUILTIN_COMPONENTS } from '../../src/membership/builtin-components.js';
import type { AiGeneration, AiGenerationInput } from '../../src/membership/ports.js';
import { createTestApp, type TestApp } from '../support/app.js';

const problemOf = (response: { headers: Record<string, unknown>; json: () => unknown }) => {
  expect(String(response.headers['content-type'])).toMatch(/^application\/problem\+json/);
  return response.json() as { code: string; detail: string; [extra: string]: unknown };
};

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

const request = (app: TestApp, token: string, method: 'GET' | 'POST' | 'DELETE', url: string, payload?: object, headers: Record<string, string> = {}) =>
  app.app.inject({ method, url, ...(payload ? { payload } : {}), headers: { authorization: `Bearer ${token}`, ...headers } });

/** A stand-in for the ledger's charged generation: records calls, replays by idempotency key. */
const fakeGeneration = () => {
  const calls: AiGenerationInput[] = [];
  const byKey = new Map<string, { response: string; model: string; provider: string; credits_used: number; balance_remaining: number; position: string }>();
  let balance = 100;
  const generation: AiGeneration = {
    async generate(input) {
      calls.push(input);
      const earlier = input.idempotencyKey ? byKey.get(input.idempotencyKey) : undefined;
      if (earlier) return { ...earlier, replayed: true };
      if (input.prompt.includes('fail upstream')) throw new ApiError('upstream_failed', 'The AI provider failed; nothing was charged.');
      balance -= 1;
      const result = {
        response: JSON.stringify({ kind: 'button', inputs: [], outputs: [{ name: 'clicked', type: 'event' }], config: { label: 'Go' } }),
        model: input.model,
        provider: 'echo',
        credits_used: 1,
        balance_remaining: balance,
        position: `1-${calls.length}`,
      };
      if (input.idempotencyKey) byKey.set(input.idempotencyKey, result);
      return result;
    },
  };
  return { generation, calls };
};

describe('components', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(async () => {
    await t?.close();
  });

  it('GET /components: the built-in catalog plus own components', async () => {
    const { token } = await t.signIn();
    const empty = await request(t, token, 'GET', '/components');
    expect(empty.statusCode).toBe(200);
    expect(empty.json()).toEqual({ builtin: BUILTIN_COMPONENTS, items: [], next_cursor: null });

    const created = await request(t, token, 'POST', '/components', { name: 'Mine', definition: { kind: 'custom', config: { a: 1 } } });
    expect(created.statusCode).toBe(201);
    expect(created.json()).toMatchObject({ name: 'Mine', source: 'user', definition: { kind: 'custom', config: { a: 1 } } });
    const list = (await request(t, token, 'GET', '/components')).json();
    expect(list.builtin).toHaveLength(BUILTIN_COMPONENTS.length);
    expect(list.items).toEqual([created.json()]);
    expect((await request(t, token, 'GET', `/components/${created.json().id}`)).json()).toEqual(created.json());
  });

  it('another user’s component is 404 and never listed', async () => {
    const owner = await t.signIn();
    const other = await t.signIn();
    const { id } = (await request(t, owner.token, 'POST', '/components', { name: 'Secret', definition: {} })).json();
    expect((await request(t, other.token, 'GET', `/components/${id}`)).statusCode).toBe(404);
    expect((await request(t, other.token, 'DELETE', `/components/${id}`)).statusCode).toBe(404);
    expect((await request(t, other.token, 'GET', '/components')).json().items).toEqual([]);
    expect((await request(t, owner.token, 'DELETE', `/components/${id}`)).statusCode).toBe(204);
  });

  it('free allows 10 components; the 11th → 403 plan_limit_reached', async () => {
    const { token } = await t.signIn();
    for (let i = 0; i < 10; i += 1) {
      expect((await request(t, token, 'POST', '/components', { name: `C${i}`, definition: { i } })).statusCode).toBe(201);
    }
    const eleventh = await request(t, token, 'POST', '/components', { name: 'C10', definition: {} });
    expect(eleventh.statusCode).toBe(403);
    expect(problemOf(eleventh)).toMatchObject({ code: 'plan_limit_reached', limit: 10, used: 10, resource: 'components' });
  });

  it('rejects unknown properties → 400', async () => {
    const { token } = await t.signIn();
    const response = await request(t, token, 'POST', '/components', { name: 'x', definition: {}, source: 'ai' });
    expect(response.statusCode).toBe(400);
    expect(problemOf(response).code).toBe('validation_failed');
  });
});

describe('POST /components/ai-generate', () => {
  let t: TestApp;
  const fake = fakeGeneration();
  beforeAll(async () => {
    t = await createTestApp({ overrideDeps: () => ({ aiGeneration: fake.generation }) });
  });
  afterAll(async () => {
    await t?.close();
  });

  it.each([
    ['free', "Upgrade required. Current: free, Required: ['pro', 'enterprise']"],
    ['basic', "Upgrade required. Current: basic, Required: ['pro', 'enterprise']"],
  ] as const)('%s → 403 upgrade_required with the seed’s message', async (tier, detail) => {
    const { token, userId } = await t.signIn();
    if (tier !== 'free') await setTier(t, userId, tier);
    const response = await request(t, token, 'POST', '/components/ai-generate', { prompt: 'a button' });
    expect(response.statusCode).toBe(403);
    expect(problemOf(response)).toMatchObject({
      code: 'upgrade_required',
      detail,
      current_tier: tier,
      required_tiers: ['pro', 'enterprise'],
    });
  });

  it('gates on the ledger’s tier, not the token’s claim: a forged-looking "pro" claim on a free account is refused', async () => {
    const user = await t.deps.users.create({ email: `claim-${randomUUID()}@example.com` });
    const session = await t.deps.sessions.open({ userId: user.id, now: new Date() });
    const token = await t.deps.accessTokens.sign({ userId: user.id, email: user.email, tier: 'pro', role: 'user', sessionId: session.id });
    const response = await request(t, token, 'POST', '/components/ai-generate', { prompt: 'a button' });
    expect(response.statusCode).toBe(403);
    expect(problemOf(response)).toMatchObject({ code: 'upgrade_required', current_tier: 'free' });
  });

  it('an expired pro tier falls back to free → 403', async () => {
    const { token, userId } = await t.signIn();
    await setTier(t, userId, 'pro', new Date(Date.now() - 1000));
    const response = await request(t, token, 'POST', '/components/ai-generate', { prompt: 'a button' });
    expect(response.statusCode).toBe(403);
    expect(problemOf(response)).toMatchObject({ code: 'upgrade_required', current_tier: 'free' });
  });

  it('pro: charges through the ledger and stores the component', async () => {
    const { token, userId } = await t.signIn();
    await setTier(t, userId, 'pro');
    const response = await request(t, token, 'POST', '/components/ai-generate', { prompt: 'a big green button', model: 'gpt-4' });
    expect(response.statusCode).toBe(201);
    const body = response.json();
    expect(body).toMatchObject({
      component: { name: 'a big green button', source: 'ai', definition: { kind: 'ai_generated', prompt: 'a big green button', model: 'gpt-4', spec: { kind: 'button' } } },
      result: { model: 'gpt-4', provider: 'echo' },
      credits_used: 1,
    });
    expect(fake.calls.at(-1)).toMatchObject({ userId, model: 'gpt-4' });
    expect(fake.calls.at(-1)?.prompt).toContain('a big green button');
    const list = (await request(t, token, 'GET', '/components')).json();
    expect(list.items.map((item: { id: string }) => item.id)).toEqual([body.component.id]);
  });

  it('defaults to the cheapest model; an unknown model → 400 unknown_model without a charge', async () => {
    const { token, userId } = await t.signIn();
    await setTier(t, userId, 'enterprise');
    const ok = await request(t, token, 'POST', '/components/ai-generate', { prompt: 'x' });
    expect(ok.statusCode).toBe(201);
    expect(fake.calls.at(-1)?.model).toBe('gpt-3.5-turbo');
    const before = fake.calls.length;
    const unknown = await request(t, token, 'POST', '/components/ai-generate', { prompt: 'x', model: 'gpt-17' });
    expect(unknown.statusCode).toBe(400);
    expect(problemOf(unknown).code).toBe('unknown_model');
    expect(fake.calls.length).toBe(before);
  });

  it('an Idempotency-Key replay returns the same component, stored once', async () => {
    const { token, userId } = await t.signIn();
    await setTier(t, userId, 'pro');
    const headers = { 'idempotency-key': `key-${randomUUID()}` };
    const first = await request(t, token, 'POST', '/components/ai-generate', { prompt: 'a toggle' }, headers);
    const second = await request(t, token, 'POST', '/components/ai-generate', { prompt: 'a toggle' }, headers);
    expect(first.statusCode).toBe(201);
    expect(second.statusCode).toBe(201);
    expect(second.headers['idempotent-replayed']).toBe('true');
    expect(second.json()).toEqual(first.json());
    expect((await request(t, token, 'GET', '/components')).json().items).toHaveLength(1);
    const bad = await request(t, token, 'POST', '/components/ai-generate', { prompt: 'a toggle' }, { 'idempotency-key': 'sp ace' });
    expect(bad.statusCode).toBe(400);
  });

  it('a failed generation stores nothing and passes the ledger’s error through', async () => {
    const { token, userId } = await t.signIn();
    await setTier(t, userId, 'pro');
    const response = await request(t, token, 'POST', '/components/ai-generate', { prompt: 'please fail upstream' });
    expect(response.statusCode).toBe(502);
    expect(problemOf(response).code).toBe('upstream_failed');
    expect((await request(t, token, 'GET', '/components')).json().items).toEqual([]);
  });

  it('strict body: unknown property or empty prompt → 400', async () => {
    const { token, userId } = await t.signIn();
    await setTier(t, userId, 'pro');
    for (const payload of [{ prompt: 'x', max_tokens: 5 }, { prompt: '' }, {}]) {
      const response = await request(t, token, 'POST', '/components/ai-generate', payload);
      expect(response.statusCode).toBe(400);
      expect(problemOf(response).code).toBe('validation_failed');
    }
  });
});

describe('POST /components/ai-generate without the ledger’s generation service', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ overrideDeps: () => ({ aiGeneration: undefined }) });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('pro → 503 unavailable', async () => {
    const { token, userId } = await t.signIn();
    await setTier(t, userId, 'pro');
    const response = await request(t, token, 'POST', '/components/ai-generate', { prompt: 'a button' });
    expect(response.statusCode).toBe(503);
    expect(problemOf(response).code).toBe('unavailable');
  });
});

describe('POST /components/ai-generate through the ledger (real wiring, echo provider)', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(async () => {
    await t?.close();
  });

  it('charges the model price, stores the component; without credits → 402 and nothing stored', async () => {
    const admin = await t.signIn({ role: 'admin' });
    const { token, userId } = await t.signIn();
    const asAdmin = (url: string, method: 'PUT' | 'POST', payload: object) =>
      t.app.inject({ method, url, payload, headers: { authorization: `Bearer ${admin.token}`, 'idempotency-key': randomUUID() } });
    expect((await asAdmin(`/admin/users/${userId}/tier`, 'PUT', { tier: 'pro', reason: 'test' })).statusCode).toBe(200);

    const broke = await request(t, token, 'POST', '/components/ai-generate', { prompt: 'a slider' });
    expect(broke.statusCode).toBe(402);
    expect(problemOf(broke).code).toBe('insufficient_credits');
    expect((await request(t, token, 'GET', '/components')).json().items).toEqual([]);

    expect((await asAdmin(`/admin/users/${userId}/credits/grants`, 'POST', { amount: 50, kind: 'bonus', reason: 'test' })).statusCode).toBe(201);
    const response = await request(t, token, 'POST', '/components/ai-generate', { prompt: 'a slider', model: 'claude-3-sonnet' });
    expect(response.statusCode, response.body).toBe(201);
    expect(response.json()).toMatchObject({
      component: { source: 'ai', name: 'a slider', definition: { kind: 'ai_generated', model: 'claude-3-sonnet' } },
      result: { model: 'claude-3-sonnet' },
      credits_used: 3,
      balance_remaining: 47,
    });
    expect(typeof response.json().position).toBe('string');
    expect((await request(t, token, 'GET', '/components')).json().items).toHaveLength(1);
  });
});
