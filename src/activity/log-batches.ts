import { createHash, randomUUID } from 'node:crypto';
import { z } from 'zod';
import { type DatabasePool, sql } from '../adapters/postgres/pool.js';
import type { Clock } from '../core/clock.js';
import {
  type EventStore,
  type JsonObject,
  type NewEvent,
  type Position,
  parsePosition,
  formatPosition,
  WrongExpectedRevisionError,
} from '../core/event-store.js';
import { activityStreamId, LAUNCHER_LOGS_RECORDED } from './events.js';
import { LOG_BATCH_NAMESPACE, uuidV5 } from './record.js';

/**
 * POST /logs/batch: one `LauncherLogsRecorded` event per batch on the user's activity stream.
 *
 * A batch with a `batch_id` is accepted once, on either event store. Its event id is derived from
 * (user, batch_id), and the revision it is appended at is claimed first in `log_batches`. A retry
 * appends the same id at the same expected revision, which both stores deduplicate durably (they
 * compare the ids that follow that revision); a conflict there proves the event did not land at that
 * revision, so the claim moves (compare-and-set) to the stream's current revision and the append is
 * tried again. Once appended, the row records the position and later repeats answer from it.
 */

export interface LogEntryInput {
  readonly action: string;
  readonly resource_type?: string | null | undefined;
  readonly resource_id?: string | null | undefined;
  readonly metadata?: JsonObject | null | undefined;
  readonly client_ts?: string | null | undefined;
}

export interface LogBatchInput {
  readonly userId: string;
  readonly batchId: string | null;
  readonly entries: readonly LogEntryInput[];
  readonly ip: string | null;
  readonly userAgent: string | null;
}

export interface LogBatchResult {
  readonly accepted: number;
  readonly position: Position;
  /** A batch with this batch_id was accepted before: nothing was appended now. */
  readonly replayed: boolean;
}

export interface LogBatches {
  record(input: LogBatchInput): Promise<LogBatchResult>;
}

const batchRow = z.object({
  event_id: z.string(),
  expected_revision: z.bigint().nullable(),
  accepted: z.number().int(),
  position: z.string().nullable(),
});
type BatchRow = z.infer<typeof batchRow>;

const MAX_ATTEMPTS = 10;
const MAX_USER_AGENT = 512;

/** Canonical JSON (sorted keys) so equal bodies hash equally. */
const canonical = (value: unknown): string => {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
};

export function createLogBatches(deps: { pool: DatabasePool; eventStore: EventStore; clock: Clock }): LogBatches {
  const { pool, eventStore, clock } = deps;

  const buildEvent = (input: LogBatchInput, eventId: string): NewEvent => ({
    id: eventId,
    type: LAUNCHER_LOGS_RECORDED,
    data: {
      at: clock.now().toISOString(),
      batch_id: input.batchId,
      ip: input.ip,
      user_agent: input.userAgent === null ? null : input.userAgent.slice(0, MAX_USER_AGENT),
      entries: input.entries.map((entry) => ({
        action: entry.action,
        resource_type: entry.resource_type ?? null,
        resource_id: entry.resource_id ?? null,
        metadata: entry.metadata ?? null,
        client_ts: entry.client_ts ?? null,
      })),
    },
  });

  /** Revision of the stream's last event, -1 when it has none. */
  const currentRevision = async (streamId: string): Promise<bigint> => {
    for await (const event of eventStore.readStream(streamId, { direction: 'backwards', maxCount: 1 })) return event.revision;
    return -1n;
  };

  const load = (userId: string, batchId: string) =>
    pool.one(sql.type(batchRow)`
      select event_id::text as event_id, expected_revision, accepted, position
      from log_batches where user_id = ${userId} and batch_id = ${batchId}`);

  /** Moves the claimed revision from `from` to the stream's current one; false when another request moved it first. */
  const claim = async (input: LogBatchInput, batchId: string, from: bigint | null): Promise<void> => {
    const current = await currentRevision(activityStreamId(input.userId));
    await pool.query(sql.unsafe`
      update log_batches set expected_revision = ${current}
      where user_id = ${input.userId} and batch_id = ${batchId}
        and expected_revision is not distinct from ${from}::bigint and position is null`);
  };

  const recordOnce = async (input: LogBatchInput, batchId: string): Promise<LogBatchResult> => {
    const eventId = uuidV5(`${input.userId}:${batchId}`, LOG_BATCH_NAMESPACE);
    const hash = createHash('sha256').update(canonical(input.entries)).digest('hex');
    await pool.query(sql.unsafe`
      insert into log_batches (user_id, batch_id, event_id, request_hash, accepted)
      values (${input.userId}, ${batchId}, ${eventId}, ${hash}, ${input.entries.length})
      on conflict (user_id, batch_id) do nothing`);
    const event = buildEvent(input, eventId);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const row: BatchRow = await load(input.userId, batchId);
      if (row.position !== null) {
        const position = parsePosition(row.position);
        if (position) return { accepted: row.accepted, position, replayed: true };
      }
      if (row.expected_revision === null) {
        await claim(input, batchId, null);
        continue;
      }
      const expected = row.expected_revision;
      try {
        const result = await eventStore.appendToStream(activityStreamId(input.userId), [event], {
          expectedRevision: expected < 0n ? 'no_stream' : expected,
        });
        // The first request to finish records the outcome; a concurrent duplicate reads the same one.
        const stored = await pool.maybeOne(sql.type(z.object({ position: z.string(), accepted: z.number().int() }))`
          update log_batches set position = coalesce(position, ${formatPosition(result.position)}), completed_at = coalesce(completed_at, now())
          where user_id = ${input.userId} and batch_id = ${batchId}
          returning position, accepted`);
        const position = stored ? parsePosition(stored.position) : null;
        return { accepted: stored?.accepted ?? row.accepted, position: position ?? result.position, replayed: false };
      } catch (error) {
        if (!(error instanceof WrongExpectedRevisionError)) throw error;
        // Our event is not at expected + 1: nothing of this batch landed there. Claim the current revision.
        await claim(input, batchId, expected);
      }
    }
    throw new Error(`log batch ${batchId}: the activity stream kept moving; gave up after ${MAX_ATTEMPTS} attempts`);
  };

  return {
    async record(input) {
      if (input.batchId === null) {
        const result = await eventStore.appendToStream(activityStreamId(input.userId), [buildEvent(input, randomUUID())], {
          expectedRevision: 'any',
        });
        return { accepted: input.entries.length, position: result.position, replayed: false };
      }
      return recordOnce(input, input.batchId);
    },
  };
}
