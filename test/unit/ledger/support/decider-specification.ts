/**
 * given(events).when(command).then(events | errorCode) — in the spirit of Emmett's DeciderSpecification.
 *
 * Besides the expectation written in the test, every `when` also checks what must hold for any decision:
 * decide does not mutate the given state; every event parses with its zod schema; and replaying the
 * decided events onto the given state lands on the `balance_after`/`reserved_after` each event claims.
 */
import { expect } from 'vitest';
import type { LedgerCommand } from '../../../../src/ledger/commands.js';
import { type AlreadyApplied, type Decision, decide } from '../../../../src/ledger/decider.js';
import type { LedgerError, LedgerErrorCode } from '../../../../src/ledger/errors.js';
import { type LedgerEvent, parseLedgerEvent } from '../../../../src/ledger/events.js';
import {
  type EvolveInput,
  evolve,
  initialState,
  type LedgerState,
  liveLots,
  openReservations,
  usageOf,
} from '../../../../src/ledger/state.js';
import { DEFAULT_TIER_TABLE, type TierTable } from '../../../../src/ledger/tiers.js';

export const NOW = '2026-11-25T10:00:00.000Z';

export const stateOf = (events: readonly EvolveInput[]): LedgerState => {
  let state = initialState();
  for (const event of events) state = evolve(state, event);
  return state;
};

/** Everything observable about a state, as plain data (for "did not change" comparisons). */
export const snapshot = (state: LedgerState, now = new Date(NOW)) => ({
  revision: state.revision,
  balance: state.balance,
  reserved: state.reserved,
  lots: liveLots(state),
  allLots: [...state.lots.values()].map((l) => ({ ...l })),
  reservations: [...state.reservations.values()].map((r) => ({ ...r, holds: r.holds.map((h) => ({ ...h })) })),
  open: openReservations(state),
  spends: [...state.spends.values()].map((s) => ({ ...s })),
  purchases: [...state.purchases.values()].map((p) => ({ ...p })),
  usage: usageOf(state, now),
  tier: state.tier,
  totals: { ...state.totals },
  idempotency: [...state.idempotency.keys()],
});

const checkDecidedEvents = (given: LedgerState, events: readonly LedgerEvent[]): void => {
  const state = given;
  for (const event of events) {
    expect(parseLedgerEvent(event.type, JSON.parse(JSON.stringify(event.data)))).toEqual(event);
    evolve(state, event);
    if (event.type !== 'TierChanged') {
      expect({ balance: state.balance, reserved: state.reserved }, `${event.type} balance_after/reserved_after`).toEqual({
        balance: event.data.balance_after,
        reserved: event.data.reserved_after,
      });
      const lotSum = [...state.live.values()].reduce((sum, lot) => sum + lot.remaining, 0);
      expect(lotSum, `${event.type}: balance = sum of live lots`).toBe(state.balance);
    }
  }
};

export interface WhenOptions {
  readonly now?: string;
  readonly tiers?: TierTable;
}

export interface Then {
  readonly decision: Decision;
  /** Expects exactly these events, or a rejection with this error code. */
  then(expected: readonly LedgerEvent[] | LedgerErrorCode): void;
  /** Expects a rejection whose error contains these fields. */
  thenError(expected: Partial<LedgerError> & { code: LedgerErrorCode }): void;
  thenAlreadyApplied(expected: Partial<AlreadyApplied> & { reason: AlreadyApplied['reason'] }): void;
  /** The decided events (fails unless applied). */
  events(): LedgerEvent[];
  /** The state after evolving the decided events onto the given ones. */
  stateAfter(): LedgerState;
}

export const given = (events: readonly EvolveInput[] = []) => ({
  when(command: LedgerCommand, options: WhenOptions = {}): Then {
    const now = new Date(options.now ?? NOW);
    const state = stateOf(events);
    const before = snapshot(state, now);
    const decision = decide(command, state, { now, tiers: options.tiers ?? DEFAULT_TIER_TABLE });
    expect(snapshot(state, now), 'decide must not mutate the state').toEqual(before);
    if (decision.kind === 'applied') checkDecidedEvents(stateOf(events), decision.events);

    const appliedEvents = (): LedgerEvent[] => {
      if (decision.kind !== 'applied') {
        throw new Error(`expected events, got ${JSON.stringify(decision, (_k, v) => (typeof v === 'bigint' ? String(v) : v))}`);
      }
      return decision.events;
    };

    return {
      decision,
      // biome-ignore lint/suspicious/noThenProperty: given/when/then is the spec's vocabulary (Emmett's DeciderSpecification); never awaited
      then(expected) {
        if (typeof expected === 'string') {
          expect(decision.kind === 'rejected' ? decision.error.code : decision).toBe(expected);
        } else {
          expect(appliedEvents()).toEqual(expected);
        }
      },
      thenError(expected) {
        expect(decision.kind).toBe('rejected');
        if (decision.kind === 'rejected') expect(decision.error).toMatchObject(expected);
      },
      thenAlreadyApplied(expected) {
        expect(decision.kind).toBe('already_applied');
        if (decision.kind === 'already_applied') {
          expect(decision.events).toEqual([]);
          expect(decision.already_applied).toMatchObject(expected);
        }
      },
      events: appliedEvents,
      stateAfter() {
        let state = stateOf(events);
        for (const event of appliedEvents()) state = evolve(state, event);
        return state;
      },
    };
  },
});
