import { type EventStore, formatPosition, type Position } from '../core/event-store.js';
import { accountStreamId, evolve, initialState, isLedgerEventType, type LedgerState, parseLedgerEvent } from '../ledger/index.js';

/**
 * `GET /audit/accounts/:user_id/balance?at=T`: the account as it stood at instant T, by replaying its
 * stream (zod-parsed events through the service's `evolve`) up to T.
 *
 * "Up to T" is the stream's prefix whose events were decided at or before T (each event's `data.at`,
 * the decision time). All events of one decision share their `at`, so a decision is in or out as a
 * whole. The prefix stops at the first event decided after T, so should clocks ever disagree between
 * two writers, the answer is still a state the account actually went through.
 */

export interface BalanceAt {
  readonly user_id: string;
  readonly at: string;
  readonly balance: number;
  readonly reserved: number;
  readonly available: number;
  /** Revision of the last event included (null: the account had no events yet). */
  readonly revision: number | null;
  readonly position: string | null;
  /** Events replayed. */
  readonly events: number;
}

const READ_BATCH = 1000;

export async function balanceAt(eventStore: EventStore, userId: string, at: Date): Promise<BalanceAt> {
  const limit = at.getTime();
  let state: LedgerState = initialState();
  let events = 0;
  let revision: bigint | null = null;
  let position: Position | null = null;
  let from = 0n;
  read: for (;;) {
    let count = 0;
    for await (const event of eventStore.readStream(accountStreamId(userId), { fromRevision: from, maxCount: READ_BATCH })) {
      count += 1;
      from = event.revision + 1n;
      const decidedAt = typeof event.data.at === 'string' ? Date.parse(event.data.at) : Number.NaN;
      if (!(decidedAt <= limit)) break read;
      // As the service folds a stream (src/core/accounts.ts): an event type it does not know is counted
      // and otherwise skipped by evolve, not an error.
      const parsed = isLedgerEventType(event.type) ? parseLedgerEvent(event.type, event.data) : ({ type: event.type, data: event.data } as never);
      state = evolve(state, { ...parsed, metadata: event.metadata, revision: event.revision, position: event.position });
      events += 1;
      revision = event.revision;
      position = event.position;
    }
    if (count < READ_BATCH) break;
  }
  return {
    user_id: userId,
    at: at.toISOString(),
    balance: state.balance,
    reserved: state.reserved,
    available: state.balance - state.reserved,
    revision: revision === null ? null : Number(revision),
    position: position === null ? null : formatPosition(position),
    events,
  };
}
