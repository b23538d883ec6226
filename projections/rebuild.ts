/**
 * Rebuild without downtime (blue/green): replay every event from position zero into a fresh
 * generation (its own schema) while the API keeps reading the active one, then switch.
 *
 * The switch is one transaction: it locks the `projections` row and the active generation's
 * checkpoint row (which holds the leader's worker still for that instant), applies to the new
 * generation whatever events the old one had processed beyond it, so the new one is at least as far
 * along — readers never see the balance step back — then points the pointer and the public views at
 * the new generation and retires the old one. The leader's worker of the retired generation is fenced
 * out by its next compare-and-set (or its idle check) and carries on with the new generation from
 * its checkpoint. The old schema stays until the next rebuild drops it.
 */
import { AsyncResource } from 'node:async_hooks';
import pg from 'pg';
import type { Logger } from 'pino';
import type { CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import { type DatabasePool, sql } from '../src/adapters/postgres/pool.js';
import { comparePositions, type EventStore, eventBytes, formatPosition, type Position, type RecordedEvent } from '../src/core/event-store.js';
import { applyEvents, type ProjectionDefinition, positionParts, schemaOf } from './definition.js';
import { createLagMeter } from './lag.js';
import { REBUILD_LOCK_CLASS } from './leader.js';
import { CHECKPOINT_CHANNEL, loadAllCheckpoints } from './store.js';
import { DEFAULT_BATCH_BYTES, ProjectionWorker, type WorkerHooks } from './worker.js';

export interface RebuildProgress {
  readonly name: string;
  readonly generation: number;
  /** Events replayed so far. */
  readonly processed: number;
  /** Events between the replay's checkpoint and the head, when last measured. */
  readonly remaining: number;
  readonly eventsPerSecond: number;
  readonly position: Position | null;
}

export interface RebuildOptions {
  readonly pool: DatabasePool;
  readonly eventStore: EventStore;
  readonly logger: Logger;
  readonly definition: ProjectionDefinition;
  readonly batchSize?: number;
  /** See WorkerOptions.batchBytes; also bounds the chunks the switch applies. */
  readonly batchBytes?: number;
  /** Switch once the replay is this close to the head (the rest is applied inside the switch). */
  readonly switchWithinEvents?: number;
  readonly hooks?: WorkerHooks;
  readonly signal?: AbortSignal;
  onStart?(progress: RebuildProgress): void;
  onProgress?(progress: RebuildProgress): void;
}

export interface RebuildResult {
  readonly name: string;
  readonly generation: number;
  readonly previousGeneration: number;
  readonly events: number;
  /** Of `events`, how many the switch transaction applied to catch up with the served generation. */
  readonly appliedAtSwitch: number;
  readonly ms: number;
  readonly position: Position | null;
}

export class RebuildError extends Error {
  override readonly name = 'RebuildError';
}

const SWITCH_CHECK_MS = 250;
const PROGRESS_MS = 200;

/** Holds `(REBUILD_LOCK_CLASS, hashtext(name))` on a connection of its own for the rebuild's duration. */
async function withRebuildLock<T>(connectionString: string, name: string, run: () => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString, application_name: 'ledger-projection-rebuild' });
  client.on('error', () => {});
  await client.connect();
  try {
    const result = await client.query<{ locked: boolean }>('select pg_try_advisory_lock($1, hashtext($2)) as locked', [REBUILD_LOCK_CLASS, name]);
    if (result.rows[0]?.locked !== true) throw new RebuildError(`a rebuild of ${name} is already running`);
    return await run();
  } finally {
    await client.end().catch(() => {});
  }
}

/** Drops the schemas of generations that are not served (retired, abandoned or failed rebuilds). */
async function dropUnservedGenerations(db: CommonQueryMethods, name: string): Promise<number> {
  const active = await db.oneFirst(sql.type(z.object({ active_generation: z.number().int() }))`
    select active_generation from projections where name = ${name} for update`);
  const checkpoints = (await loadAllCheckpoints(db)).filter((c) => c.name === name);
  for (const checkpoint of checkpoints) {
    if (checkpoint.generation === active) continue;
    await db.query(sql.unsafe`drop schema if exists ${sql.identifier([schemaOf(name, checkpoint.generation)])} cascade`);
    if (checkpoint.status !== 'retired') {
      await db.query(sql.unsafe`
        update projection_checkpoints set status = 'retired', updated_at = now()
        where name = ${name} and generation = ${checkpoint.generation}`);
    }
  }
  // Generation numbers are never reused (caches key positions by name and generation).
  return Math.max(active, ...checkpoints.map((c) => c.generation)) + 1;
}

export async function rebuildProjection(options: RebuildOptions): Promise<RebuildResult> {
  const { pool, eventStore, logger, definition } = options;
  const name = definition.name;
  return withRebuildLock(pool.configuration.connectionUri, name, async () => {
    const started = Date.now();
    const generation = await pool.transaction(async (tx) => {
      const next = await dropUnservedGenerations(tx, name);
      await tx.query(sql.unsafe`select projection_create_generation(${name}, ${next})`);
      await tx.query(sql.unsafe`
        insert into projection_checkpoints (name, generation, status) values (${name}, ${next}, 'rebuilding')`);
      return next;
    });
    logger.info({ projection: name, generation }, 'rebuild: replaying from position zero into a new generation');

    const lag = createLagMeter({ eventStore, pool });
    const batchSize = options.batchSize ?? 2000;
    const batchBytes = options.batchBytes ?? DEFAULT_BATCH_BYTES;
    const switchWithin = options.switchWithinEvents ?? batchSize;
    let processed = 0;
    let remaining = 0;
    let lastProgress = 0;
    let lastSwitchCheck = 0;
    let previousGeneration = 0;
    let switched = false;
    let appliedAtSwitch = 0;
    let finalPosition: Position | null = null;

    const head = await eventStore.headPosition();
    remaining = head ? await lag.countBetween(null, head) : 0;
    const progress = (position: Position | null): RebuildProgress => {
      const seconds = Math.max(0.001, (Date.now() - started) / 1000);
      return { name, generation, processed, remaining, eventsPerSecond: processed / seconds, position };
    };
    options.onStart?.(progress(null));

    const stop = new AbortController();
    const abort = () => stop.abort();
    options.signal?.addEventListener('abort', abort, { once: true });

    const worker = new ProjectionWorker({
      pool,
      eventStore,
      definition,
      generation,
      status: 'rebuilding',
      logger,
      signal: stop.signal,
      batchSize,
      batchBytes,
      ...(options.hooks ? { hooks: options.hooks } : {}),
      idleMs: 100,
      onCommit: (batch) => {
        processed += batch.events.length;
        remaining = Math.max(0, remaining - batch.events.length);
        const now = Date.now();
        if (now - lastProgress >= PROGRESS_MS) {
          lastProgress = now;
          options.onProgress?.(progress(batch.position));
        }
      },
      onProgress: async (position, idle) => {
        const now = Date.now();
        if (!idle && now - lastSwitchCheck < SWITCH_CHECK_MS) return false;
        lastSwitchCheck = now;
        const currentHead = await eventStore.headPosition();
        remaining = currentHead ? await lag.countBetween(position, currentHead) : 0;
        options.onProgress?.(progress(position));
        if (remaining > switchWithin) return false;
        const result = await switchTo(options, generation, position, batchSize, batchBytes);
        previousGeneration = result.previous;
        finalPosition = result.position;
        processed += result.applied;
        appliedAtSwitch = result.applied;
        switched = true;
        return true;
      },
    });
    try {
      const outcome = await worker.run();
      if (outcome.kind === 'failed') throw new RebuildError(`rebuild of ${name} failed: ${outcome.error}`);
      if (!switched) {
        if (outcome.kind === 'fenced') throw new RebuildError(`rebuild of ${name} lost its checkpoint (was it started twice?)`);
        throw new RebuildError(`rebuild of ${name} was stopped before it caught up; the served generation is unchanged`);
      }
    } finally {
      options.signal?.removeEventListener('abort', abort);
    }
    remaining = 0;
    options.onProgress?.(progress(finalPosition));
    const ms = Date.now() - started;
    logger.info({ projection: name, generation, previousGeneration, events: processed, ms }, 'rebuild: switched to the new generation');
    return { name, generation, previousGeneration, events: processed, appliedAtSwitch, ms, position: finalPosition };
  });
}

const lockedCheckpoint = z.object({
  position_major: z.string().nullable(),
  position_minor: z.string().nullable(),
  status: z.string(),
});

const toPosition = (row: z.infer<typeof lockedCheckpoint>): Position | null =>
  row.position_major === null || row.position_minor === null
    ? null
    : { major: BigInt(row.position_major), minor: BigInt(row.position_minor) };

/** Events after `from` up to `upTo` (inclusive). */
async function readUpTo(eventStore: EventStore, from: Position | null, upTo: Position): Promise<RecordedEvent[]> {
  const events: RecordedEvent[] = [];
  for await (const event of eventStore.readAll(from ? { fromPosition: from } : {})) {
    if (comparePositions(event.position, upTo) > 0) break;
    events.push(event);
  }
  return events;
}

/** The switch transaction (see the top of this file). */
async function switchTo(
  options: RebuildOptions,
  generation: number,
  replayed: Position | null,
  batchSize: number,
  batchBytes: number,
): Promise<{ previous: number; position: Position | null; applied: number }> {
  const { pool, eventStore, definition } = options;
  const name = definition.name;
  // slonik refuses other connections inside a transaction's async context; the event store reads
  // through the pool, so its reads run in the context from before the transaction.
  const readOutside = AsyncResource.bind((from: Position | null, upTo: Position) => readUpTo(eventStore, from, upTo));
  return pool.transaction(async (tx) => {
    const previous = await tx.oneFirst(sql.type(z.object({ active_generation: z.number().int() }))`
      select active_generation from projections where name = ${name} for update`);
    const served = toPosition(
      await tx.one(sql.type(lockedCheckpoint)`
        select position_major::text as position_major, position_minor::text as position_minor, status
        from projection_checkpoints where name = ${name} and generation = ${previous} for update`),
    );
    const mine = await tx.one(sql.type(lockedCheckpoint)`
      select position_major::text as position_major, position_minor::text as position_minor, status
      from projection_checkpoints where name = ${name} and generation = ${generation} for update`);
    if (mine.status !== 'rebuilding') throw new RebuildError(`generation ${generation} of ${name} is ${mine.status}`);
    let position = toPosition(mine);
    if (replayed !== null && (position === null || comparePositions(position, replayed) !== 0)) {
      throw new RebuildError(`generation ${generation} of ${name} moved during the switch`);
    }

    // Bring the new generation up to the served one (a few events at most: the switch waits until close).
    let applied = 0;
    if (served !== null && (position === null || comparePositions(position, served) < 0)) {
      const events = await readOutside(position, served);
      for (let start = 0; start < events.length; ) {
        // Chunks as the worker's batches: up to batchSize events and batchBytes, at least one event.
        let end = start + 1;
        let bytes = eventBytes(events[start] as RecordedEvent);
        while (end < events.length && end - start < batchSize && bytes + eventBytes(events[end] as RecordedEvent) <= batchBytes) {
          bytes += eventBytes(events[end] as RecordedEvent);
          end++;
        }
        const chunk = events.slice(start, end);
        start = end;
        await applyEvents(tx, definition, schemaOf(name, generation), chunk);
        applied += chunk.length;
        position = (chunk[chunk.length - 1] as RecordedEvent).position;
      }
    }
    const [major, minor] = position === null ? [null, null] : positionParts(position);
    await tx.query(sql.unsafe`
      update projection_checkpoints
      set status = 'running', position_major = ${major}::numeric, position_minor = ${minor}::numeric,
          events_processed = events_processed + ${applied}, updated_at = now()
      where name = ${name} and generation = ${generation}`);
    await tx.query(sql.unsafe`
      update projection_checkpoints set status = 'retired', updated_at = now()
      where name = ${name} and generation = ${previous}`);
    await tx.query(sql.unsafe`update projections set active_generation = ${generation}, switched_at = now() where name = ${name}`);
    await tx.query(sql.unsafe`select projection_point_views(${name}, ${generation})`);
    await tx.query(sql.unsafe`select pg_notify(${CHECKPOINT_CHANNEL}, ${`swap:${name}:${generation}`})`);
    if (position !== null) {
      await tx.query(sql.unsafe`select pg_notify(${CHECKPOINT_CHANNEL}, ${`${name}:${generation}:${formatPosition(position)}`})`);
    }
    return { previous, position, applied };
  });
}
