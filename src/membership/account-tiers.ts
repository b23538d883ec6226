import type { Accounts } from '../core/accounts.js';
import { effectiveTier } from '../ledger/state.js';
import type { AccountTiers } from './ports.js';

/**
 * Tier gates read the account's tier from the ledger: the account state the command path already keeps
 * (cached per stream and caught up with the store on every load, usually a read of nothing new), so a
 * gated request costs no replay, whatever the length of the account's history.
 */
export function createLedgerAccountTiers(ledger: Pick<Accounts, 'load'>): AccountTiers {
  return {
    async effectiveTier(userId, now) {
      const { state } = await ledger.load(userId);
      const tier = effectiveTier(state, now);
      return {
        tier,
        expires_at: tier === 'free' || state.tier_expires_at === null ? null : new Date(state.tier_expires_at),
      };
    },
  };
}
