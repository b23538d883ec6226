import type { CommonQueryMethods, FragmentSqlToken } from 'slonik';
import { z } from 'zod';
import { sql } from '../src/adapters/postgres/pool.js';
import type { Position, RecordedEvent } from '../src/core/event-store.js';
import { formatPosition } from '../src/core/event-store.js';

/**
 * A read model: how a batch of events (in position order) changes its tables, as SQL the runner
 * runs in ONE statement together with the compare-and-set of the projection's checkpoint — so a
 * batch and its checkpoint commit together or not at all, in a single round trip.
 *
 * Rules every projection follows:
 * - a pure function of the events: ids and timestamps come from the events (event id, `data.at`),
 *   never from the clock or a sequence, so a rebuild yields identical rows;
 * - idempotent: rows keyed by event id (`on conflict do nothing`), aggregates guarded by the
 *   position of the last event they include, so a batch applied twice changes nothing;
 * - events it does not know are skipped; an event it knows but cannot read is a `PoisonEventError`.
 */
export interface ProjectionDefinition {
  /** `credits`, `activity`, `tiers`: lower-case, also the schema prefix `proj_<name>_g<generation>`. */
  readonly name: string;
  /** The tables of one generation, also the names of the public views. */
  readonly tables: readonly string[];
  /** What the batch writes into the generation's schema; null when it writes nothing. */
  plan(schema: string, events: readonly RecordedEvent[]): ProjectionWrite | null;
}

/** One batch's writes: entries of a WITH list, and conditions under which the statement must fail. */
export interface ProjectionWrite {
  /** `name as (...)`. Data-modifying entries run whether the main query reads them or not. */
  readonly ctes: readonly FragmentSqlToken[];
  /** Integrity checks: when `when` is true the whole statement fails with `message` (nothing commits). */
  readonly failures?: readonly { readonly when: FragmentSqlToken; readonly message: string }[];
}

/** SQLSTATEs raised by `projection_fail_if` (migrations/020_projections.sql). */
export const FENCED_SQLSTATE = 'PF001';
export const INTEGRITY_SQLSTATE = 'PF002';

/** The select list that fails the statement when a check holds (a boolean `true` otherwise). */
export const failureChecks = (write: ProjectionWrite | null): FragmentSqlToken[] =>
  (write?.failures ?? []).map(
    (failure) => sql.fragment`projection_fail_if(${failure.when}, ${INTEGRITY_SQLSTATE}, ${failure.message.slice(0, 500)})`,
  );

const okRow = z.object({ ok: z.boolean() });

/** Runs a batch's writes as one statement on `db` (a transaction of the caller, or the pool). */
export async function applyEvents(
  db: CommonQueryMethods,
  definition: ProjectionDefinition,
  schema: string,
  events: readonly RecordedEvent[],
): Promise<void> {
  const write = definition.plan(schema, events);
  if (write === null || write.ctes.length === 0) return;
  const checks = failureChecks(write);
  await db.query(sql.type(okRow)`
    with ${sql.join(write.ctes, sql.fragment`, `)}
    select ${checks.length > 0 ? sql.join(checks, sql.fragment` and `) : sql.fragment`true`} as ok`);
}

/** An event a projection cannot process, whatever the retries: the projection stops (status `failed`). */
export class PoisonEventError extends Error {
  override readonly name = 'PoisonEventError';
  constructor(
    readonly event: Pick<RecordedEvent, 'id' | 'type' | 'streamId' | 'position'>,
    readonly reason: string,
  ) {
    super(`event ${event.id} (${event.type} on ${event.streamId} at ${formatPosition(event.position)}): ${reason}`);
  }
}

/** Wraps what a projection throws while reading one event, so the failure names the event. */
export const readingEvent = <T>(event: RecordedEvent, read: () => T): T => {
  try {
    return read();
  } catch (error) {
    if (error instanceof PoisonEventError) throw error;
    throw new PoisonEventError(event, error instanceof Error ? error.message : String(error));
  }
};

export const schemaOf = (name: string, generation: number): string => `proj_${name}_g${generation}`;

/** Numeric(20,0) text of each half, for SQL parameters (positions are uint64: never JS numbers). */
export const positionParts = (position: Position): [string, string] => [position.major.toString(), position.minor.toString()];
