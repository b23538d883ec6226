import type { TierName } from '../ledger/tiers.js';

/**
 * Seams between membership and the ledger, so either side can change its implementation without the
 * other noticing.
 */

export interface AccountTier {
  /** The tier in force at `now` (falls back to `free` once `expires_at` has passed). */
  readonly tier: TierName;
  /** When the tier in force ends; null for free or a tier without expiry. */
  readonly expires_at: Date | null;
}

/**
 * The current tier of an account, from the ledger (never from a possibly stale token claim).
 * Today: replayed from the account stream (src/membership/account-tiers.ts); the ledger may swap in
 * its cached account state.
 */
export interface AccountTiers {
  effectiveTier(userId: string, now: Date): Promise<AccountTier>;
}

export interface AiGenerationInput {
  readonly userId: string;
  readonly model: string;
  readonly prompt: string;
  readonly idempotencyKey?: string | undefined;
  /** For the events' metadata. */
  readonly requestId?: string | undefined;
  /** The route the Idempotency-Key belongs to (part of the request hash). */
  readonly route?: string | undefined;
}

export interface AiGenerationResult {
  readonly response: string;
  readonly model: string;
  readonly provider: string;
  readonly credits_used: number;
  readonly balance_remaining: number;
  readonly position: string;
  /** True when an Idempotency-Key replay returned the first result without charging again. */
  readonly replayed?: boolean;
}

/**
 * A charged AI generation, exactly as `POST /ai/generate` does it (API §7): reserve the model's price,
 * call the provider, settle on success, release on failure; counts one API call against the quota.
 * Failures are thrown as `ApiError`s (`unknown_model`, `insufficient_credits`, `quota_exceeded`,
 * `upstream_failed`, `idempotency_key_reused`) and pass through unchanged.
 */
export interface AiGeneration {
  generate(input: AiGenerationInput): Promise<AiGenerationResult>;
}
