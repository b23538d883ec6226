import type { EventStore } from '../core/event-store.js';
import { accountStreamId, tryParseLedgerEvent } from '../ledger/events.js';
import { effectiveTier, evolve, initialState } from '../ledger/state.js';
import type { AccountTiers } from './ports.js';

/**
 * Tier gates read the account's tier from the ledger stream `account-<userId>`.
 *
 * Only `TierChanged` sets the tier, so reading the stream backwards up to the newest `TierChanged`
 * and evolving that one event onto the initial state gives the same tier and expiry as a full replay,
 * in one short read. The ledger's own `evolve` and `effectiveTier` decide what they mean.
 */
export function createStreamAccountTiers(eventStore: EventStore): AccountTiers {
  return {
    async effectiveTier(userId, now) {
      const state = initialState();
      for await (const recorded of eventStore.readStream(accountStreamId(userId), { direction: 'backwards' })) {
        if (recorded.type !== 'TierChanged') continue;
        const event = tryParseLedgerEvent(recorded.type, recorded.data);
        if (event) evolve(state, event);
        break;
      }
      const tier = effectiveTier(state, now);
      return {
        tier,
        expires_at: tier === 'free' || state.tier_expires_at === null ? null : new Date(state.tier_expires_at),
      };
    },
  };
}
