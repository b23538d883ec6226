import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createEchoProvider } from '../../src/adapters/ai/index.js';
import { createAccounts } from '../../src/core/accounts.js';
import { createTestApp, type TestApp } from '../support/app.js';
import { type FakeOpenAi, startFakeOpenAi } from '../support/fake-openai.js';
import { type Caller, fund, POSITION, post, problemOf, storedBalance, streamEvents } from '../support/ledger-http.js';

/** POST /ai/generate (API §7) against a local OpenAI-compatible server. */

let t: TestApp;
let fake: FakeOpenAi;

beforeAll(async () => {
  fake = await startFakeOpenAi();
  t = await createTestApp({ env: { AI_PROVIDER: 'openai', AI_BASE_URL: fake.baseUrl, AI_API_KEY: 'sk-test-ai', AI_TIMEOUT_MS: '1500' } });
});
afterAll(async () => {
  await t?.close();
  await fake?.close();
});
beforeEach(() => {
  fake.mode = 'ok';
  fake.calls.length = 0;
});

const user = async (credits: number, tier?: 'free' | 'pro' | 'enterprise'): Promise<Caller> => {
  const caller = await t.signIn();
  await fund(t, caller.userId, credits, tier ? { tier } : {});
  return caller;
};
const generate = (caller: Caller, body: unknown, key?: string) => post(t, '/ai/generate', caller, body, { 'idempotency-key': key });
const apiCallsToday = async (userId: string) => (await createAccounts({ eventStore: t.eventStore, clock: t.deps.clock }).load(userId)).state.api_calls.day_count;

describe('POST /ai/generate', () => {
  it("reserves the model's price, calls the provider, settles: 200 with the result, charged once, one API call counted", async () => {
    const caller = await user(50);
    const response = await generate(caller, { model: 'gpt-4', prompt: 'a haiku about ledgers', max_tokens: 64 });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({
      result: { response: 'fake:gpt-4:a haiku about ledgers', model: 'gpt-4', provider: 'openai' },
      credits_used: 10,
      balance_remaining: 40,
      position: expect.stringMatching(POSITION),
    });
    expect(fake.calls).toHaveLength(1);
    expect(fake.calls[0]).toMatchObject({
      path: '/v1/chat/completions',
      authorization: 'Bearer sk-test-ai',
      body: { model: 'gpt-4', max_tokens: 64, messages: [{ role: 'user', content: 'a haiku about ledgers' }] },
    });
    const types = (await streamEvents(t, caller.userId)).slice(1).map((e) => e.type);
    expect(types).toEqual(['CreditsReserved', 'CreditsSpent', 'ReservationSettled']);
    const spent = (await streamEvents(t, caller.userId)).find((e) => e.type === 'CreditsSpent');
    expect(spent?.data).toMatchObject({ amount: 10, counts_api_call: true, reference_type: 'ai_generation', metadata: { model: 'gpt-4', provider: 'openai' } });
    expect(await storedBalance(t, caller.userId)).toEqual({ balance: 40, reserved: 0 });
    expect(await apiCallsToday(caller.userId)).toBe(1);
  });

  it('unknown model → 400 unknown_model; no provider call, nothing appended', async () => {
    const caller = await user(50);
    const response = await generate(caller, { model: 'gpt-17', prompt: 'hi' });
    expect(response.statusCode).toBe(400);
    expect(problemOf(response)).toMatchObject({ code: 'unknown_model', model: 'gpt-17' });
    expect(fake.calls).toHaveLength(0);
    expect(await streamEvents(t, caller.userId)).toHaveLength(1);
  });

  it.each([
    ['fail', 'a 500'],
    ['garbage', 'an answer without choices'],
    ['hang', 'no answer within the timeout'],
  ] as const)('a failing provider (%s: %s) → 502 upstream_failed, nothing charged', async (mode, _what) => {
    fake.mode = mode;
    const caller = await user(50);
    const response = await generate(caller, { model: 'claude-3-opus', prompt: 'hi' });
    expect(response.statusCode).toBe(502);
    const problem = problemOf(response);
    expect(problem.code).toBe('upstream_failed');
    expect(problem.detail).not.toContain('secret');
    expect(await storedBalance(t, caller.userId)).toEqual({ balance: 50, reserved: 0 });
    const types = (await streamEvents(t, caller.userId)).slice(1).map((e) => e.type);
    expect(types).toEqual(['CreditsReserved', 'ReservationReleased']);
    expect(await apiCallsToday(caller.userId)).toBe(0);
  });

  it('not enough credits → 402 before any provider call; bad input → 400', async () => {
    const caller = await user(4);
    const poor = await generate(caller, { model: 'gpt-4', prompt: 'hi' });
    expect(poor.statusCode).toBe(402);
    expect(problemOf(poor)).toMatchObject({ code: 'insufficient_credits', balance: 4, required: 10 });
    for (const body of [{ model: 'gpt-4' }, { model: 'gpt-4', prompt: '' }, { model: 'gpt-4', prompt: 'x', max_tokens: 0 }, { model: 'gpt-4', prompt: 'x', extra: 1 }, { model: 5, prompt: 'x' }]) {
      expect((await generate(caller, body)).statusCode).toBe(400);
    }
    expect(fake.calls).toHaveLength(0);
    expect(await streamEvents(t, caller.userId)).toHaveLength(1);
  });

  it('quota reached → 429 before any provider call', async () => {
    const caller = await user(1000);
    const spends = await Promise.all(
      Array.from({ length: 100 }, () =>
        t.deps.ledger.execute(caller.userId, { type: 'Spend', spend_id: randomUUID(), amount: 1 }),
      ),
    );
    expect(spends.every((r) => r.decision.kind === 'applied')).toBe(true);
    const response = await generate(caller, { model: 'gpt-3.5-turbo', prompt: 'hi' });
    expect(response.statusCode).toBe(429);
    expect(problemOf(response)).toMatchObject({ code: 'quota_exceeded', window: 'day', limit: 100, used: 100 });
    expect(fake.calls).toHaveLength(0);
  });
});

describe('POST /ai/generate with an Idempotency-Key', () => {
  it('a retry returns the first answer without calling the provider again', async () => {
    const caller = await user(50);
    const key = randomUUID();
    const first = await generate(caller, { model: 'gpt-4-turbo', prompt: 'once' }, key);
    expect(first.statusCode).toBe(200);
    const again = await generate(caller, { model: 'gpt-4-turbo', prompt: 'once' }, key);
    expect(again.statusCode).toBe(200);
    expect(again.body).toBe(first.body);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(fake.calls).toHaveLength(1);
    expect((await streamEvents(t, caller.userId)).filter((e) => e.type === 'CreditsSpent')).toHaveLength(1);
    const other = await generate(caller, { model: 'gpt-4-turbo', prompt: 'twice' }, key);
    expect(other.statusCode).toBe(422);
    expect(problemOf(other).code).toBe('idempotency_key_reused');
  });

  it('a failure is the first outcome too: the retry answers 502 again, no second provider call, no charge', async () => {
    fake.mode = 'fail';
    const caller = await user(50);
    const key = randomUUID();
    expect((await generate(caller, { model: 'gpt-4', prompt: 'x' }, key)).statusCode).toBe(502);
    fake.mode = 'ok';
    const retry = await generate(caller, { model: 'gpt-4', prompt: 'x' }, key);
    expect(retry.statusCode).toBe(502);
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(fake.calls).toHaveLength(1);
    expect((await storedBalance(t, caller.userId)).balance).toBe(50);
  });

  it('concurrent duplicates: one provider call, one charge; the others are told it is in progress, then get the answer', async () => {
    fake.mode = 'hang';
    fake.hangMs = 300;
    const caller = await user(50);
    const key = randomUUID();
    const results = await Promise.all(Array.from({ length: 8 }, () => generate(caller, { model: 'gpt-4', prompt: 'slow' }, key)));
    const statuses = results.map((r) => r.statusCode).sort();
    expect(statuses.filter((s) => s === 200)).toHaveLength(1);
    expect(statuses.filter((s) => s === 409)).toHaveLength(7);
    for (const refused of results.filter((r) => r.statusCode === 409)) {
      expect(problemOf(refused).code).toBe('concurrency_conflict');
      expect(refused.headers['retry-after']).toBe('1');
    }
    expect(fake.calls).toHaveLength(1);
    const winner = results.find((r) => r.statusCode === 200);
    const later = await generate(caller, { model: 'gpt-4', prompt: 'slow' }, key);
    expect(later.body).toBe(winner?.body);
    expect(fake.calls).toHaveLength(1);
    expect((await storedBalance(t, caller.userId)).balance).toBe(40);
  });

  it('the charged generation is in AppDeps for other routes (components): same rules', async () => {
    const caller = await user(20);
    const service = t.deps.aiGeneration;
    expect(service).toBeDefined();
    const result = await service?.generate({ userId: caller.userId, model: 'claude-3-sonnet', prompt: 'a button' });
    expect(result).toMatchObject({ response: 'fake:claude-3-sonnet:a button', credits_used: 3, balance_remaining: 17, provider: 'openai' });
    await expect(service?.generate({ userId: caller.userId, model: 'nope', prompt: 'x' })).rejects.toMatchObject({ code: 'unknown_model', status: 400 });
  });
});

describe('echo provider', () => {
  it('is deterministic and honours max_tokens roughly', async () => {
    const echo = createEchoProvider();
    expect(await echo.complete({ model: 'gpt-4', prompt: 'hello' })).toEqual({ response: '[echo:gpt-4] hello' });
    expect(await echo.complete({ model: 'gpt-4', prompt: 'hello' })).toEqual(await echo.complete({ model: 'gpt-4', prompt: 'hello' }));
    expect((await echo.complete({ model: 'gpt-4', prompt: 'x'.repeat(100), maxTokens: 2 })).response).toHaveLength(8);
  });

  it('is the default provider of the app', async () => {
    const app = await createTestApp();
    try {
      const caller = await app.signIn();
      await app.deps.ledger.execute(caller.userId, { type: 'Grant', lot_id: randomUUID(), kind: 'bonus', amount: 5, reason: 't' });
      const response = await app.app.inject({
        method: 'POST',
        url: '/ai/generate',
        headers: { authorization: `Bearer ${caller.token}`, 'content-type': 'application/json' },
        payload: { model: 'gpt-3.5-turbo', prompt: 'ping' },
      });
      expect(response.statusCode).toBe(200);
      expect(response.json()).toMatchObject({ result: { response: '[echo:gpt-3.5-turbo] ping', provider: 'echo' }, credits_used: 1, balance_remaining: 4 });
    } finally {
      await app.close();
    }
  });
});
