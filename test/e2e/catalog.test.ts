import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../support/app.js';

/** The public catalog (API §2). */

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => {
  await t?.close();
});

describe('catalog', () => {
  it('GET /tiers: the four tiers with the seed values, -1 for unlimited, enterprise prices null', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/tiers' });
    expect(response.statusCode).toBe(200);
    const tiers = response.json();
    expect(tiers.map((tier: { tier: string }) => tier.tier)).toEqual(['free', 'basic', 'pro', 'enterprise']);
    expect(tiers[0]).toEqual({
      tier: 'free',
      display_name: 'Free',
      max_projects: 3,
      max_components: 10,
      max_api_calls_day: 100,
      max_api_calls_month: 1000,
      max_storage_mb: 500,
      features: { ai_assistant: false },
      price_monthly: 0,
      price_yearly: 0,
    });
    expect(tiers[2]).toMatchObject({ tier: 'pro', max_projects: -1, max_api_calls_day: 10000, price_monthly: 29.99 });
    expect(tiers[3]).toMatchObject({ tier: 'enterprise', max_api_calls_day: -1, max_api_calls_month: -1, price_monthly: null, price_yearly: null });
  });

  it('GET /credit-packages', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/credit-packages' });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual([
      { id: 'starter', name: 'Starter', credits: 100, price_cents: 500, currency: 'usd' },
      { id: 'basic', name: 'Basic', credits: 500, price_cents: 2000, currency: 'usd' },
      { id: 'pro', name: 'Pro', credits: 2000, price_cents: 6000, currency: 'usd' },
      { id: 'enterprise', name: 'Enterprise', credits: 10000, price_cents: 20000, currency: 'usd' },
    ]);
  });

  it('GET /models: the price table', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/models' });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual([
      { model: 'gpt-4', credits_per_request: 10 },
      { model: 'gpt-4-turbo', credits_per_request: 5 },
      { model: 'gpt-3.5-turbo', credits_per_request: 1 },
      { model: 'claude-3-opus', credits_per_request: 15 },
      { model: 'claude-3-sonnet', credits_per_request: 3 },
    ]);
  });

  it('the model price table is configuration (MODEL_PRICES), and /ai/generate charges by it', async () => {
    const custom = await createTestApp({ env: { MODEL_PRICES: '{"house-model":2}' } });
    try {
      expect((await custom.app.inject({ method: 'GET', url: '/models' })).json()).toEqual([{ model: 'house-model', credits_per_request: 2 }]);
      const caller = await custom.signIn();
      await custom.deps.ledger.execute(caller.userId, { type: 'Grant', lot_id: crypto.randomUUID(), kind: 'bonus', amount: 5, reason: 't' });
      const generate = (model: string) =>
        custom.app.inject({
          method: 'POST',
          url: '/ai/generate',
          headers: { authorization: `Bearer ${caller.token}`, 'content-type': 'application/json' },
          payload: { model, prompt: 'x' },
        });
      expect((await generate('house-model')).json()).toMatchObject({ credits_used: 2, balance_remaining: 3 });
      const gone = await generate('gpt-4');
      expect(gone.statusCode).toBe(400);
      expect(gone.json().code).toBe('unknown_model');
    } finally {
      await custom.close();
    }
  });

  it('is public and listed in the OpenAPI document', async () => {
    const document = (await t.app.inject({ method: 'GET', url: '/openapi.json' })).json();
    expect(Object.keys(document.paths)).toEqual(
      expect.arrayContaining(['/tiers', '/credit-packages', '/models', '/credits/spend', '/credits/reservations', '/ai/generate', '/webhooks/stripe']),
    );
  });
});
