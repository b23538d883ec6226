import { createHash, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AiProviderError, type AiProvider } from '../../src/adapters/ai/index.js';
import { ManualClock } from '../../src/core/clock.js';
import { createAiGeneration } from '../../src/http/ai-generation.js';
import { createTestApp, type TestApp } from '../support/app.js';
import { type Caller, fund, post, problemOf, storedBalance, streamEvents } from '../support/ledger-http.js';

/**
 * Attacks on the charged AI generation (API §7): a provider slower than the reservation, a provider
 * that throws something unexpected, keys that collide with the keys derived for the settle, and
 * concurrent generations at the quota limit. Nothing may be charged without a settled generation.
 */

type Mode = 'ok' | 'slow' | 'fail' | 'crash';
let mode: Mode = 'ok';
let calls = 0;
const clock = new ManualClock(new Date());

const provider: AiProvider = {
  name: 'echo',
  async complete(request) {
    calls += 1;
    if (mode === 'slow') clock.advance(10 * 60_000); // longer than any reservation the service makes
    if (mode === 'fail') throw new AiProviderError('the model is down');
    if (mode === 'crash') throw new TypeError("Cannot read properties of undefined (reading 'choices')");
    return { response: `scripted:${request.model}:${request.prompt}` };
  },
};

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp({
    clock,
    overrideDeps: (deps, db) => {
      const service = createAiGeneration({
        accounts: deps.ledger,
        provider,
        modelPrices: deps.config.modelPrices,
        pool: db.pool,
        clock,
        logger: deps.logger,
        providerTimeoutMs: 30_000,
      });
      return { aiGeneration: service, aiGenerationService: service };
    },
  });
});
afterAll(async () => {
  await t?.close();
});
beforeEach(() => {
  mode = 'ok';
  calls = 0;
  clock.set(new Date());
});

const user = async (credits: number, tier: 'free' | 'pro' | 'enterprise' = 'enterprise'): Promise<Caller> => {
  const caller = await t.signIn();
  await fund(t, caller.userId, credits, { tier });
  return caller;
};
const generate = (caller: Caller, body: unknown, key?: string) => post(t, '/ai/generate', caller, body, { 'idempotency-key': key });
const aiSpends = async (userId: string) =>
  (await streamEvents(t, userId)).filter((e) => e.type === 'CreditsSpent' && e.data.reference_type === 'ai_generation');

describe('a provider slower than the reservation', () => {
  it('the hold expires meanwhile: 502, nothing charged, and the retry with the key neither charges nor calls again', async () => {
    const caller = await user(50);
    const key = randomUUID();
    mode = 'slow';
    const response = await generate(caller, { model: 'gpt-4', prompt: 'long' }, key);
    expect(response.statusCode).toBe(502);
    expect(problemOf(response).code).toBe('upstream_failed');
    expect(await aiSpends(caller.userId)).toHaveLength(0);
    // The expired hold is returned by the next decision on the account, here the sweeper's.
    expect((await t.deps.sweeper.runOnce({ readModels: false })).failed).toBe(0);
    expect(await storedBalance(t, caller.userId)).toEqual({ balance: 50, reserved: 0 });
    mode = 'ok';
    const retry = await generate(caller, { model: 'gpt-4', prompt: 'long' }, key);
    expect(retry.statusCode).toBe(502);
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(calls).toBe(1);
    expect(await storedBalance(t, caller.userId)).toEqual({ balance: 50, reserved: 0 });
  });
});

describe('a provider that throws something other than its own error', () => {
  it('is a 502 like any failure, with the hold released at once', async () => {
    const caller = await user(50);
    mode = 'crash';
    const response = await generate(caller, { model: 'gpt-4', prompt: 'x' });
    expect(response.statusCode).toBe(502);
    expect(problemOf(response).detail).not.toMatch(/choices/);
    expect(await storedBalance(t, caller.userId)).toEqual({ balance: 50, reserved: 0 });
  });
});

describe('keys that collide with the derived settle and release keys', () => {
  const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

  it.each(['ai-settle', 'ai-release'])(
    'a spend under %s:<sha256(K)> is never taken for the settle of a generation under K',
    async (purpose) => {
      const caller = await user(100);
      const key = randomUUID();
      expect((await post(t, '/credits/spend', caller, { amount: 7 }, { 'idempotency-key': `${purpose}:${sha256(key)}` })).statusCode).toBe(201);
      const first = await generate(caller, { model: 'gpt-4', prompt: 'collide' }, key);
      expect(first.statusCode).toBeLessThan(500);
      const retry = await generate(caller, { model: 'gpt-4', prompt: 'collide' }, key);
      // The retry is the first outcome again, whatever it was.
      expect(retry.statusCode).toBe(first.statusCode);
      const charged = await aiSpends(caller.userId);
      for (const answer of [first, retry]) {
        if (answer.statusCode === 200) {
          // A 200 must name the generation's own charge, not the user's spend.
          expect(charged).toHaveLength(1);
          expect(answer.json()).toMatchObject({ credits_used: 10, balance_remaining: 83 });
        }
      }
      expect(charged.length).toBeLessThanOrEqual(1);
      expect((await storedBalance(t, caller.userId)).balance).toBe(93 - 10 * charged.length);
      expect((await storedBalance(t, caller.userId)).reserved).toBe(0);
      expect(calls).toBeLessThanOrEqual(1);
    },
  );
});

describe('concurrent generations at the quota limit', () => {
  it('one call left today: one generation is charged, the others are refused and charge nothing', async () => {
    const caller = await user(200, 'free');
    const dayLimit = t.deps.ledger.tiers.free.max_api_calls_day;
    for (let i = 0; i < dayLimit - 1; i++) {
      await t.deps.ledger.execute(caller.userId, { type: 'Spend', spend_id: randomUUID(), amount: 1 });
    }
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => generate(caller, { model: 'gpt-3.5-turbo', prompt: `q${i}` })));
    const statuses = results.map((r) => r.statusCode);
    expect(statuses.filter((s) => s === 200)).toHaveLength(1);
    for (const r of results.filter((x) => x.statusCode !== 200)) expect(problemOf(r).code).toBe('quota_exceeded');
    expect(await aiSpends(caller.userId)).toHaveLength(1);
    expect(await storedBalance(t, caller.userId)).toEqual({ balance: 200 - (dayLimit - 1) - 1, reserved: 0 });
  });
});

describe('/components/ai-generate with a key older than 24 h', () => {
  it('a reused key after the window is a new request: if it is charged again it stores a new component', async () => {
    const caller = await user(100, 'pro');
    const key = randomUUID();
    const first = await post(t, '/components/ai-generate', caller, { prompt: 'a dial' }, { 'idempotency-key': key });
    expect(first.statusCode).toBe(201);
    clock.advance(24 * 3600_000 + 60_000);
    // A fresh access token at the new time (the first one has expired).
    const account = await t.deps.users.findById(caller.userId);
    const session = await t.deps.sessions.open({ userId: caller.userId, now: clock.now() });
    const token = await t.deps.accessTokens.sign({ userId: caller.userId, email: account?.email ?? '', tier: 'pro', role: 'user', sessionId: session.id });
    const later = await post(t, '/components/ai-generate', { userId: caller.userId, token }, { prompt: 'a dial' }, { 'idempotency-key': key });
    expect(later.statusCode).toBe(201);
    const charges = await aiSpends(caller.userId);
    expect(charges).toHaveLength(2);
    expect(later.headers['idempotent-replayed']).toBeUndefined();
    // Charged twice, so two components: never a second charge for the first one.
    expect(later.json().component.id).not.toBe(first.json().component.id);
    expect(later.json()).toMatchObject({ credits_used: 1, balance_remaining: 98 });
  });
});
