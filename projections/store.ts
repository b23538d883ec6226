/**
 * The projection bookkeeping tables (migrations/020_projections.sql): the `projections` pointer to the
 * active generation and one `projection_checkpoints` row per generation.
 */
import type { CommonQueryMethods, FragmentSqlToken } from 'slonik';
import { z } from 'zod';
import { prepared, sql } from '../src/adapters/postgres/pool.js';
import { formatPosition, type Position } from '../src/core/event-store.js';
import { FENCED_SQLSTATE, failureChecks, type ProjectionWrite, positionParts } from './definition.js';

export type CheckpointStatus = 'running' | 'rebuilding' | 'failed' | 'retired';

/** NOTIFY channel: `<name>:<generation>:<position>` on every committed batch, `swap:<name>:<generation>` on a switch. */
export const CHECKPOINT_CHANNEL = 'projection_checkpoints';

export interface Checkpoint {
  readonly name: string;
  readonly generation: number;
  readonly position: Position | null;
  readonly eventsProcessed: number;
  readonly status: CheckpointStatus;
  readonly error: string | null;
  readonly failedEventId: string | null;
  readonly failedEventType: string | null;
  readonly failedPosition: string | null;
  readonly failedAt: Date | null;
  readonly updatedAt: Date;
}

const checkpointRow = z.object({
  name: z.string(),
  generation: z.number().int(),
  position_major: z.string().nullable(),
  position_minor: z.string().nullable(),
  events_processed: z.bigint().transform(Number),
  status: z.enum(['running', 'rebuilding', 'failed', 'retired']),
  error: z.string().nullable(),
  failed_event_id: z.string().nullable(),
  failed_event_type: z.string().nullable(),
  failed_position: z.string().nullable(),
  failed_at: z.date().nullable(),
  updated_at: z.date(),
});

const checkpointColumns = sql.fragment`
  c.name, c.generation, c.position_major::text as position_major, c.position_minor::text as position_minor,
  c.events_processed, c.status, c.error, c.failed_event_id, c.failed_event_type, c.failed_position, c.failed_at, c.updated_at`;

const toCheckpoint = (row: z.output<typeof checkpointRow>): Checkpoint => ({
  name: row.name,
  generation: row.generation,
  position:
    row.position_major === null || row.position_minor === null
      ? null
      : { major: BigInt(row.position_major), minor: BigInt(row.position_minor) },
  eventsProcessed: row.events_processed,
  status: row.status,
  error: row.error,
  failedEventId: row.failed_event_id,
  failedEventType: row.failed_event_type,
  failedPosition: row.failed_position,
  failedAt: row.failed_at,
  updatedAt: row.updated_at,
});

export async function loadCheckpoint(db: CommonQueryMethods, name: string, generation: number): Promise<Checkpoint | null> {
  const row = await db.maybeOne(sql.type(checkpointRow)`
    select ${checkpointColumns} from projection_checkpoints c where c.name = ${name} and c.generation = ${generation}`);
  return row ? toCheckpoint(row) : null;
}

/** The checkpoint of each projection's active generation. */
export async function loadActiveCheckpoints(db: CommonQueryMethods): Promise<Checkpoint[]> {
  const rows = await db.any(sql.type(checkpointRow)`
    select ${checkpointColumns}
    from projections p join projection_checkpoints c on c.name = p.name and c.generation = p.active_generation
    order by p.name`);
  return rows.map(toCheckpoint);
}

export async function loadAllCheckpoints(db: CommonQueryMethods): Promise<Checkpoint[]> {
  const rows = await db.any(sql.type(checkpointRow)`
    select ${checkpointColumns} from projection_checkpoints c order by c.name, c.generation`);
  return rows.map(toCheckpoint);
}

export async function activeGeneration(db: CommonQueryMethods, name: string): Promise<number> {
  const generation = await db.maybeOneFirst(sql.type(z.object({ active_generation: z.number().int() }))`
    select active_generation from projections where name = ${name}`);
  if (generation === null) throw new Error(`no projection named ${name} (run the migrations)`);
  return generation;
}

/**
 * The batch statement's compare-and-set of the checkpoint, as the WITH entry `checkpoint_cas`: moves
 * the checkpoint from `from` to `to` if it is still at `from` with status `status`. The main query
 * reads it first (so the row lock is taken before any read-model write), and `batchStatement` fails
 * the whole statement when it moved nothing — the fence: another writer (a second leader, a retired
 * generation's worker) finds the row moved and writes nothing.
 */
export const checkpointCas = (
  checkpoint: { name: string; generation: number; status: CheckpointStatus },
  from: Position | null,
  to: Position,
  events: number,
): FragmentSqlToken => {
  const [toMajor, toMinor] = positionParts(to);
  const [fromMajor, fromMinor] = from === null ? [null, null] : positionParts(from);
  return sql.fragment`checkpoint_cas as (
    update projection_checkpoints
    set position_major = ${toMajor}::numeric, position_minor = ${toMinor}::numeric,
        events_processed = events_processed + ${events}, updated_at = now()
    where name = ${checkpoint.name} and generation = ${checkpoint.generation} and status = ${checkpoint.status}
      and position_major is not distinct from ${fromMajor}::numeric
      and position_minor is not distinct from ${fromMinor}::numeric
    returning 1
  )`;
};

const batchRow = z.object({ ok: z.boolean() });

/**
 * One batch as ONE statement (one round trip, atomic on its own): the checkpoint compare-and-set,
 * the projection's writes, its integrity checks, the NOTIFY that wakes read-your-writes waiters at
 * commit, and `synchronous_commit = off` for this transaction — a read model is derived data, and a
 * batch lost in a server crash is lost together with its checkpoint, so it is simply projected again.
 */
export const batchStatement = (
  checkpoint: { name: string; generation: number; status: CheckpointStatus },
  from: Position | null,
  to: Position,
  events: number,
  write: ProjectionWrite | null,
) => {
  const ctes = [checkpointCas(checkpoint, from, to, events), ...(write?.ctes ?? [])];
  const checks = [
    sql.fragment`projection_fail_if((select count(*) from checkpoint_cas) <> 1, ${FENCED_SQLSTATE}, 'the checkpoint moved')`,
    ...failureChecks(write),
  ];
  const payload = `${checkpoint.name}:${checkpoint.generation}:${formatPosition(to)}`;
  const statement = sql.type(batchRow)`
    with ${sql.join(ctes, sql.fragment`, `)}
    select ${sql.join(checks, sql.fragment` and `)} as ok,
      pg_notify(${CHECKPOINT_CHANNEL}, ${payload})::text as notified,
      set_config('synchronous_commit', 'off', true) as synchronous_commit`;
  // Few texts (one per projection, generation and mix of writes; rows are parameters): prepared once
  // per connection. For small batches (a projector keeping up with live traffic) planning was most of a
  // batch's cost in Postgres.
  return prepared(statement);
};

export interface FailureRecord {
  readonly error: string;
  readonly eventId: string | null;
  readonly eventType: string | null;
  readonly position: Position | null;
}

/** Stops a generation loudly: status `failed` with the reason and the event that caused it. */
export async function markFailed(
  db: CommonQueryMethods,
  name: string,
  generation: number,
  failure: FailureRecord,
): Promise<void> {
  await db.query(sql.unsafe`
    update projection_checkpoints
    set status = 'failed', error = ${failure.error.slice(0, 2000)}, failed_event_id = ${failure.eventId},
        failed_event_type = ${failure.eventType},
        failed_position = ${failure.position === null ? null : formatPosition(failure.position)},
        failed_at = now(), updated_at = now()
    where name = ${name} and generation = ${generation}`);
}

/** Gives a failed generation another chance (a new leader, after a fix was deployed). */
export async function resetFailed(db: CommonQueryMethods, name: string, generation: number, status: CheckpointStatus): Promise<void> {
  await db.query(sql.unsafe`
    update projection_checkpoints
    set status = ${status}, error = null, failed_event_id = null, failed_event_type = null, failed_position = null,
        failed_at = null, updated_at = now()
    where name = ${name} and generation = ${generation} and status = 'failed'`);
}
