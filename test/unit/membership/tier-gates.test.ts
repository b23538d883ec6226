import { describe, expect, it } from 'vitest';
import { BYTES_PER_MB, checkCount, checkStorage, checkTier, megabytes, upgradeRequiredMessage } from '../../../src/membership/tier-gates.js';

describe('tier gate', () => {
  it('formats the seed’s message exactly', () => {
    expect(upgradeRequiredMessage({ current_tier: 'free', required_tiers: ['pro', 'enterprise'] })).toBe(
      "Upgrade required. Current: free, Required: ['pro', 'enterprise']",
    );
    expect(upgradeRequiredMessage({ current_tier: 'basic', required_tiers: ['enterprise'] })).toBe("Upgrade required. Current: basic, Required: ['enterprise']");
  });

  it('passes an allowed tier and refuses the others', () => {
    expect(checkTier('pro', ['pro', 'enterprise'])).toBeNull();
    expect(checkTier('enterprise', ['pro', 'enterprise'])).toBeNull();
    expect(checkTier('basic', ['pro', 'enterprise'])).toEqual({ current_tier: 'basic', required_tiers: ['pro', 'enterprise'] });
  });
});

describe('plan limits', () => {
  it('counts: refused once the count reaches the limit; -1 is unlimited', () => {
    expect(checkCount('projects', 3, 2)).toBeNull();
    expect(checkCount('projects', 3, 3)).toEqual({ resource: 'projects', limit: 3, used: 3 });
    expect(checkCount('components', 10, 12)).toEqual({ resource: 'components', limit: 10, used: 12 });
    expect(checkCount('projects', -1, 1_000_000)).toBeNull();
  });

  it('storage: refused when the new total exceeds the limit; never for a shrink or unlimited', () => {
    expect(checkStorage(1, BYTES_PER_MB - 10, 10)).toBeNull();
    expect(checkStorage(1, BYTES_PER_MB - 10, 11)).toEqual({ resource: 'storage_mb', limit: 1, used: 1 });
    expect(checkStorage(1, 5 * BYTES_PER_MB, 0)).toBeNull();
    expect(checkStorage(1, 5 * BYTES_PER_MB, -100)).toBeNull();
    expect(checkStorage(-1, 1e12, 1e9)).toBeNull();
  });

  it('reports MB rounded up to two decimals', () => {
    expect(megabytes(0)).toBe(0);
    expect(megabytes(1)).toBe(0.01);
    expect(megabytes(BYTES_PER_MB)).toBe(1);
    expect(megabytes(1.5 * BYTES_PER_MB)).toBe(1.5);
  });
});
