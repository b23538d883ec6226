/**
 * How far a checkpoint is behind the head: in events and in milliseconds. Positions are opaque, so
 * the generic way is to read the log from the checkpoint and count. On the Postgres event store the
 * count is one index-only query on its `events` table (migrations/001_event_store.sql).
 */
import { z } from 'zod';
import { type DatabasePool, sql } from '../src/adapters/postgres/pool.js';
import { comparePositions, type EventStore, type Position } from '../src/core/event-store.js';

/** Above this many events the generic (read-and-count) path stops counting. */
export const GENERIC_COUNT_LIMIT = 100_000;

export interface Lag {
  readonly events: number;
  readonly ms: number;
}

export interface LagMeter {
  /** Events after `from` (exclusive; null = from the start) up to `to` (inclusive). */
  countBetween(from: Position | null, to: Position): Promise<number>;
  /** Lag of a checkpoint behind `head`; `now` - recorded time of the first event not yet processed. */
  lag(checkpoint: Position | null, head: Position | null, now: Date): Promise<Lag>;
}

export function createLagMeter(deps: { eventStore: EventStore; pool: DatabasePool }): LagMeter {
  const { eventStore, pool } = deps;

  const countGeneric = async (from: Position | null, to: Position): Promise<number> => {
    let count = 0;
    for await (const event of eventStore.readAll({ ...(from ? { fromPosition: from } : {}), maxCount: GENERIC_COUNT_LIMIT })) {
      if (comparePositions(event.position, to) > 0) break;
      count++;
    }
    return count;
  };

  const countPostgres = async (from: Position | null, to: Position): Promise<number> => {
    const fromMajor = from?.major.toString() ?? '0';
    const fromMinor = from?.minor.toString() ?? '0';
    return pool.oneFirst(sql.type(z.object({ count: z.number().int() }))`
      select count(*)::int as count from events
      where (transaction_id, global_position) > (${fromMajor}::text::xid8, ${fromMinor}::bigint)
        and (transaction_id, global_position) <= (${to.major.toString()}::text::xid8, ${to.minor.toString()}::bigint)`);
  };

  const countBetween = (from: Position | null, to: Position): Promise<number> => {
    if (from !== null && comparePositions(from, to) >= 0) return Promise.resolve(0);
    return eventStore.name === 'postgres' ? countPostgres(from, to) : countGeneric(from, to);
  };

  return {
    countBetween,
    async lag(checkpoint, head, now) {
      if (head === null || (checkpoint !== null && comparePositions(checkpoint, head) >= 0)) return { events: 0, ms: 0 };
      const events = await countBetween(checkpoint, head);
      if (events === 0) return { events: 0, ms: 0 };
      let ms = 0;
      for await (const next of eventStore.readAll({ ...(checkpoint ? { fromPosition: checkpoint } : {}), maxCount: 1 })) {
        ms = Math.max(0, now.getTime() - next.recordedAt.getTime());
      }
      return { events, ms };
    },
  };
}
