import { formatPosition, type JsonObject, type RecordedEvent } from '../core/event-store.js';
import { userIdOfAccountStream } from '../ledger/index.js';

/**
 * An event exactly as recorded, in the audit's JSON shape (GET /audit/accounts/:id/events and the
 * NDJSON export). `revision` is a JSON number: stream revisions are 0-based counts of one account's
 * events and stay far below 2^53; `position` is the API's opaque position string (uint64 pairs do not
 * fit a JSON number). `prev_hash` and `hash` repeat `metadata.prev_hash` / `metadata.hash` (null when
 * absent) for convenience; the hash is computed over `metadata`, so that is what to recompute from.
 */
export interface AuditRecord {
  readonly revision: number;
  readonly position: string;
  readonly id: string;
  readonly type: string;
  readonly data: JsonObject;
  readonly metadata: JsonObject;
  readonly recorded_at: string;
  readonly prev_hash: string | null;
  readonly hash: string | null;
}

/** The export adds which account the event belongs to. */
export interface ExportRecord extends AuditRecord {
  readonly stream_id: string;
  readonly user_id: string;
}

const text = (value: unknown): string | null => (typeof value === 'string' ? value : null);

export const auditRecord = (event: RecordedEvent): AuditRecord => ({
  revision: Number(event.revision),
  position: formatPosition(event.position),
  id: event.id,
  type: event.type,
  data: event.data,
  metadata: event.metadata,
  recorded_at: event.recordedAt.toISOString(),
  prev_hash: text(event.metadata.prev_hash),
  hash: text(event.metadata.hash),
});

/** The export record of an account-stream event, null for events of other streams. */
export const exportRecord = (event: RecordedEvent): ExportRecord | null => {
  const userId = userIdOfAccountStream(event.streamId);
  if (userId === null) return null;
  // Field order: where the event sits first, then the rest of the audit record.
  const { position, ...rest } = auditRecord(event);
  return { position, stream_id: event.streamId, user_id: userId, ...rest };
};
