import { type TierDefinition, type TierName, UNLIMITED } from '../ledger/tiers.js';

/** Tier gates and plan limits as values (API §6); the HTTP layer turns them into 403 problems. */

export interface UpgradeRequired {
  readonly current_tier: TierName;
  readonly required_tiers: readonly TierName[];
}

/** The seed's message, word for word: `Upgrade required. Current: free, Required: ['pro', 'enterprise']`. */
export const upgradeRequiredMessage = ({ current_tier, required_tiers }: UpgradeRequired): string =>
  `Upgrade required. Current: ${current_tier}, Required: [${required_tiers.map((tier) => `'${tier}'`).join(', ')}]`;

/** Null when `current` is one of `allowed`. */
export const checkTier = (current: TierName, allowed: readonly TierName[]): UpgradeRequired | null =>
  allowed.includes(current) ? null : { current_tier: current, required_tiers: [...allowed] };

export type PlanResource = 'projects' | 'components' | 'storage_mb';

export interface PlanLimitReached {
  readonly resource: PlanResource;
  /** The tier's limit, in the resource's unit (MB for storage). */
  readonly limit: number;
  /** What is in use now, same unit. */
  readonly used: number;
}

export const BYTES_PER_MB = 1024 * 1024;

/** Storage in MB as reported to clients: two decimals, rounded up so a non-empty store never reads 0. */
export const megabytes = (bytes: number): number => Math.ceil((bytes / BYTES_PER_MB) * 100) / 100;

/** Creating one more item: refused when the count has reached the limit. */
export const checkCount = (resource: 'projects' | 'components', limit: number, used: number): PlanLimitReached | null =>
  limit !== UNLIMITED && used >= limit ? { resource, limit, used } : null;

/**
 * Storing `deltaBytes` more on top of `usedBytes`. Shrinking or keeping a size is always allowed,
 * so a user over the limit after a downgrade can still edit within what they have.
 */
export const checkStorage = (limitMb: number, usedBytes: number, deltaBytes: number): PlanLimitReached | null => {
  if (limitMb === UNLIMITED || deltaBytes <= 0) return null;
  return usedBytes + deltaBytes > limitMb * BYTES_PER_MB ? { resource: 'storage_mb', limit: limitMb, used: megabytes(usedBytes) } : null;
};

export type PlanLimits = Pick<TierDefinition, 'max_projects' | 'max_components' | 'max_storage_mb'>;
