import { z } from 'zod';
import type { JsonObject, Position, RecordedEvent } from '../../core/event-store.js';
import { sql } from '../postgres/pool.js';

/** Largest `bigint` column value; revisions and minors beyond it cannot exist, so bounds are clamped to it. */
export const INT8_MAX = (1n << 63n) - 1n;
/** Largest xid8: the exclusive upper bound of a backwards read of the whole log. */
export const XID8_MAX = (1n << 64n) - 1n;

export const clampToInt8 = (value: bigint): bigint => (value > INT8_MAX ? INT8_MAX : value);

/** xid8 travels as text (it is unsigned 64-bit); `coerce` also accepts a pool without slonik's int8 parser. */
const xid8 = z.string().regex(/^\d+$/).transform((text) => BigInt(text));

export const positionRow = z.object({
  transaction_id: xid8,
  global_position: z.coerce.bigint(),
});

export const eventRow = positionRow.extend({
  event_id: z.string(),
  type: z.string(),
  stream_id: z.string(),
  stream_revision: z.coerce.bigint(),
  data: z.string(),
  metadata: z.string(),
  recorded_at: z.coerce.date(),
});

export type EventRow = z.output<typeof eventRow>;

/**
 * The columns of `events e`. The text alias shadows the xid8 column by name, so queries must order by
 * `e.transaction_id`: a bare `transaction_id` in ORDER BY means the output column, sorting '1000' before '999'.
 *
 * `data` and `metadata` come as text and are parsed here rather than by the driver's jsonb parser: the
 * same single jsonb-to-text conversion in Postgres (sending a jsonb column converts it anyway) and the
 * same JSON.parse in Node, but the text's length gives the event's `sizeHint` for free, and exactly.
 * `pg_column_size` would be as cheap but counts the stored, possibly TOAST-compressed form: a log batch
 * of repetitive JSON compresses several-fold and would be undercounted as much; `octet_length(e.data::text)`
 * would be exact but convert every event to text a second time.
 */
export const eventColumns = sql.fragment`
  e.event_id, e.type, e.stream_id, e.stream_revision, e.transaction_id::text as transaction_id, e.global_position,
  e.data::text as data, e.metadata::text as metadata, e.recorded_at`;

export const toPosition = (row: z.output<typeof positionRow>): Position => ({
  major: row.transaction_id,
  minor: row.global_position,
});

// Checked cheaply: Postgres already guarantees (check constraint) that these columns hold JSON objects.
const parseObject = (text: string, column: string, eventId: string): JsonObject => {
  const value: unknown = JSON.parse(text);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new TypeError(`event ${eventId}: ${column} is not a JSON object`);
  return value as JsonObject;
};

export const toRecordedEvent = (row: EventRow): RecordedEvent => ({
  id: row.event_id,
  type: row.type,
  streamId: row.stream_id,
  revision: row.stream_revision,
  position: toPosition(row),
  data: parseObject(row.data, 'data', row.event_id),
  metadata: parseObject(row.metadata, 'metadata', row.event_id),
  recordedAt: row.recorded_at,
  sizeHint: row.data.length + row.metadata.length,
});
