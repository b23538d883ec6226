/**
 * Default catalog data (the seed's values, API §2). This is configuration: the composition root may
 * replace any of it; the decider only ever sees the `TierTable` passed in its context, and never looks
 * up a model price (commands carry amounts).
 */
import { TIER_NAMES, type TierName } from './events.js';

export { TIER_NAMES, type TierName };

/** `-1` means unlimited. The shape is exactly the `GET /tiers` item. */
export interface TierDefinition {
  readonly tier: TierName;
  readonly display_name: string;
  readonly max_projects: number;
  readonly max_components: number;
  readonly max_api_calls_day: number;
  readonly max_api_calls_month: number;
  readonly max_storage_mb: number;
  readonly features: Readonly<Record<string, boolean>>;
  /** Decimal currency units as in the seed (9.99); `null` = on request. */
  readonly price_monthly: number | null;
  readonly price_yearly: number | null;
}

export type TierTable = Readonly<Record<TierName, TierDefinition>>;

export const UNLIMITED = -1;

export const DEFAULT_TIERS: readonly TierDefinition[] = Object.freeze<TierDefinition[]>([
  {
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
  },
  {
    tier: 'basic',
    display_name: 'Basic',
    max_projects: 10,
    max_components: 50,
    max_api_calls_day: 1000,
    max_api_calls_month: 10000,
    max_storage_mb: 5000,
    features: { ai_assistant: true },
    price_monthly: 9.99,
    price_yearly: 99,
  },
  {
    tier: 'pro',
    display_name: 'Pro',
    max_projects: -1,
    max_components: -1,
    max_api_calls_day: 10000,
    max_api_calls_month: 100000,
    max_storage_mb: 50000,
    features: { ai_assistant: true, priority_support: true },
    price_monthly: 29.99,
    price_yearly: 299,
  },
  {
    tier: 'enterprise',
    display_name: 'Enterprise',
    max_projects: -1,
    max_components: -1,
    max_api_calls_day: -1,
    max_api_calls_month: -1,
    max_storage_mb: -1,
    features: { ai_assistant: true, priority_support: true, custom_integrations: true },
    price_monthly: null,
    price_yearly: null,
  },
]);

/** Indexes a list of tier definitions by name; throws when one of the four tiers is missing. */
export const tierTable = (definitions: readonly TierDefinition[]): TierTable => {
  const byName = new Map(definitions.map((d) => [d.tier, d] as const));
  const table = {} as Record<TierName, TierDefinition>;
  for (const name of TIER_NAMES) {
    const definition = byName.get(name);
    if (!definition) throw new Error(`tier table is missing tier ${name}`);
    table[name] = definition;
  }
  return Object.freeze(table);
};

export const DEFAULT_TIER_TABLE: TierTable = tierTable(DEFAULT_TIERS);

/** `-1` (unlimited) or a limit that `used` has reached. */
export const isLimitReached = (limit: number, used: number): boolean => limit !== UNLIMITED && used >= limit;

export interface CreditPackage {
  readonly id: string;
  readonly name: string;
  readonly credits: number;
  readonly price_cents: number;
  readonly currency: string;
}

/** The `GET /credit-packages` items. */
export const DEFAULT_CREDIT_PACKAGES: readonly CreditPackage[] = Object.freeze<CreditPackage[]>([
  { id: 'starter', name: 'Starter', credits: 100, price_cents: 500, currency: 'usd' },
  { id: 'basic', name: 'Basic', credits: 500, price_cents: 2000, currency: 'usd' },
  { id: 'pro', name: 'Pro', credits: 2000, price_cents: 6000, currency: 'usd' },
  { id: 'enterprise', name: 'Enterprise', credits: 10000, price_cents: 20000, currency: 'usd' },
]);

/** Default model price table (credits per request), keyed by model id. Configuration, not code. */
export const DEFAULT_MODEL_PRICES: Readonly<Record<string, number>> = Object.freeze({
  'gpt-4': 10,
  'gpt-4-turbo': 5,
  'gpt-3.5-turbo': 1,
  'claude-3-opus': 15,
  'claude-3-sonnet': 3,
});
