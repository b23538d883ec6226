import { describe, expect, it } from 'vitest';
import {
  DEFAULT_CREDIT_PACKAGES,
  DEFAULT_MODEL_PRICES,
  DEFAULT_TIER_TABLE,
  DEFAULT_TIERS,
  isLimitReached,
  tierTable,
} from '../../../src/ledger/tiers.js';

describe('catalog defaults (API §2, the seed)', () => {
  it('has the four tiers with the seed values', () => {
    expect(DEFAULT_TIERS).toEqual([
      { tier: 'free', display_name: 'Free', max_projects: 3, max_components: 10, max_api_calls_day: 100, max_api_calls_month: 1000, max_storage_mb: 500, features: { ai_assistant: false }, price_monthly: 0, price_yearly: 0 },
      { tier: 'basic', display_name: 'Basic', max_projects: 10, max_components: 50, max_api_calls_day: 1000, max_api_calls_month: 10000, max_storage_mb: 5000, features: { ai_assistant: true }, price_monthly: 9.99, price_yearly: 99 },
      { tier: 'pro', display_name: 'Pro', max_projects: -1, max_components: -1, max_api_calls_day: 10000, max_api_calls_month: 100000, max_storage_mb: 50000, features: { ai_assistant: true, priority_support: true }, price_monthly: 29.99, price_yearly: 299 },
      { tier: 'enterprise', display_name: 'Enterprise', max_projects: -1, max_components: -1, max_api_calls_day: -1, max_api_calls_month: -1, max_storage_mb: -1, features: { ai_assistant: true, priority_support: true, custom_integrations: true }, price_monthly: null, price_yearly: null },
    ]);
    expect(DEFAULT_TIER_TABLE.pro.max_api_calls_day).toBe(10000);
  });

  it('has the credit packages', () => {
    expect(DEFAULT_CREDIT_PACKAGES).toEqual([
      { id: 'starter', name: 'Starter', credits: 100, price_cents: 500, currency: 'usd' },
      { id: 'basic', name: 'Basic', credits: 500, price_cents: 2000, currency: 'usd' },
      { id: 'pro', name: 'Pro', credits: 2000, price_cents: 6000, currency: 'usd' },
      { id: 'enterprise', name: 'Enterprise', credits: 10000, price_cents: 20000, currency: 'usd' },
    ]);
  });

  it('has the model prices', () => {
    expect(DEFAULT_MODEL_PRICES).toEqual({ 'gpt-4': 10, 'gpt-4-turbo': 5, 'gpt-3.5-turbo': 1, 'claude-3-opus': 15, 'claude-3-sonnet': 3 });
  });

  it('a tier table needs all four tiers', () => {
    expect(() => tierTable(DEFAULT_TIERS.slice(0, 3))).toThrow(/enterprise/);
  });

  it('-1 is unlimited', () => {
    expect(isLimitReached(-1, 1e9)).toBe(false);
    expect(isLimitReached(100, 99)).toBe(false);
    expect(isLimitReached(100, 100)).toBe(true);
    expect(isLimitReached(0, 0)).toBe(true);
  });
});
