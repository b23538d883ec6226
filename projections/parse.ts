import { type ActivityEvent, tryParseActivityEvent } from '../src/activity/events.js';
import type { RecordedEvent } from '../src/core/event-store.js';
import { type LedgerEvent, tryParseLedgerEvent } from '../src/ledger/events.js';
import { readingEvent } from './definition.js';

/**
 * Typed views of recorded events, parsed (schema-checked) once per event object: the projections
 * share one subscription, so the same object reaches all of them. A parse failure is remembered too
 * and thrown again as the projection's PoisonEventError.
 */
class ParseFailure {
  constructor(readonly error: unknown) {}
}

const ledgerCache = new WeakMap<RecordedEvent, LedgerEvent | null | ParseFailure>();
const activityCache = new WeakMap<RecordedEvent, ActivityEvent | null | ParseFailure>();

const memo = <T>(cache: WeakMap<RecordedEvent, T | null | ParseFailure>, recorded: RecordedEvent, parse: () => T | null): T | null => {
  let entry = cache.get(recorded);
  if (entry === undefined) {
    try {
      entry = parse();
    } catch (error) {
      entry = new ParseFailure(error);
    }
    cache.set(recorded, entry);
  }
  if (entry instanceof ParseFailure) {
    const { error } = entry;
    return readingEvent(recorded, () => {
      throw error;
    });
  }
  return entry;
};

/** The ledger event, null for a type that is not one; throws PoisonEventError on bad data. */
export const ledgerEventOf = (recorded: RecordedEvent): LedgerEvent | null =>
  memo(ledgerCache, recorded, () => tryParseLedgerEvent(recorded.type, recorded.data));

/** The activity event, null for a type that is not one; throws PoisonEventError on bad data. */
export const activityEventOf = (recorded: RecordedEvent): ActivityEvent | null =>
  memo(activityCache, recorded, () => tryParseActivityEvent(recorded.type, recorded.data));
