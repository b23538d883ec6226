import type { CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import {
  type AppendResult,
  type ExpectedRevision,
  type NewEvent,
  WrongExpectedRevisionError,
} from '../../core/event-store.js';
import { prepared, sql } from '../postgres/pool.js';
import { clampToInt8 } from './rows.js';

const appendRow = z.discriminatedUnion('outcome', [
  z.object({
    outcome: z.enum(['appended', 'idempotent']),
    revision: z.coerce.bigint(),
    transaction_id: z.string().regex(/^\d+$/).transform((text) => BigInt(text)),
    global_position: z.coerce.bigint(),
  }),
  z.object({
    outcome: z.literal('conflict'),
    revision: z.coerce.bigint().nullable(),
    transaction_id: z.null(),
    global_position: z.null(),
  }),
]);

/** The expected revision as append_to_stream(s) take it: a kind, and a revision for 'exact'. */
export const encodeExpected = (expected: ExpectedRevision): { kind: string; revision: bigint | null } => {
  if (typeof expected === 'bigint') {
    if (expected < 0n) throw new RangeError(`expected revision must be >= 0, got ${expected}`);
    // No stream gets that far, so beyond a bigint it is simply a conflict (reported with the caller's value).
    return { kind: 'exact', revision: clampToInt8(expected) };
  }
  return { kind: expected, revision: null };
};

/**
 * Appends in one statement (the `append_to_stream` function of migrations/001_event_store.sql) on
 * whatever connection it is given: the pool (its own transaction) or a caller's open transaction.
 *
 * Inside a caller's transaction: use READ COMMITTED and append before the transaction writes anything
 * else, so that it gets its xid while holding the stream's lock (otherwise an event can take a global
 * position ahead of the stream's previous revision). The store does not know when that transaction
 * commits, so live subscribers learn of it by their poll (or the next append's notification).
 */
export async function appendInTransaction(
  connection: CommonQueryMethods,
  streamId: string,
  events: readonly NewEvent[],
  expectedRevision: ExpectedRevision,
): Promise<AppendResult> {
  if (events.length === 0) throw new RangeError(`append to ${streamId} has no events`);
  const expected = encodeExpected(expectedRevision);
  const row = await connection.one(
    prepared(sql.type(appendRow)`
    select outcome, revision, transaction_id::text as transaction_id, global_position
    from append_to_stream(
      ${streamId},
      ${expected.kind},
      ${expected.revision}::bigint,
      ${sql.array(
        events.map((event) => event.id),
        'uuid',
      )},
      ${sql.array(
        events.map((event) => event.type),
        'text',
      )},
      ${sql.array(
        events.map((event) => JSON.stringify(event.data)),
        'jsonb',
      )},
      ${sql.array(
        events.map((event) => JSON.stringify(event.metadata ?? {})),
        'jsonb',
      )}
    )`),
  );
  if (row.outcome === 'conflict') {
    throw new WrongExpectedRevisionError(streamId, expectedRevision, row.revision ?? 'no_stream');
  }
  return {
    nextExpectedRevision: row.revision,
    position: { major: row.transaction_id, minor: row.global_position },
  };
}
