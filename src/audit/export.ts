import type { EventStore, Position } from '../core/event-store.js';
import { type ExportRecord, exportRecord } from './recorded.js';

/**
 * `GET /audit/export` and `audit export`: every ledger event (account streams) from a position, in
 * global position order, as NDJSON or CSV lines. A generator over `readAll`, which reads the log in
 * batches: memory stays constant whatever the ledger's size, and a slow consumer slows the reads
 * (the HTTP route and the CLI pipe it with backpressure).
 *
 * `fromPosition` is exclusive (like the port): resume an interrupted export from the last line's
 * `position`. Every NDJSON line carries the event exactly as hashed (`id`, `type`, `data`, `metadata`),
 * so docs/audit.md's script recomputes the chains from the file alone.
 */

export type ExportFormat = 'ndjson' | 'csv';

export const EXPORT_CONTENT_TYPES: Record<ExportFormat, string> = {
  ndjson: 'application/x-ndjson; charset=utf-8',
  csv: 'text/csv; charset=utf-8; header=present',
};

export const CSV_COLUMNS = [
  'position',
  'stream_id',
  'user_id',
  'revision',
  'id',
  'type',
  'recorded_at',
  'prev_hash',
  'hash',
  'data',
  'metadata',
] as const;

/**
 * One CSV field (RFC 4180): quoted when it holds a quote, a comma or a line break, quotes doubled.
 * No spreadsheet-formula neutralising: it would change the exported bytes an auditor recomputes
 * hashes from, and the only free text (inside `data`/`metadata`) is in JSON columns starting with `{`.
 */
export const csvField = (value: string): string => (/[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value);

export const csvRow = (fields: readonly string[]): string => `${fields.map(csvField).join(',')}\r\n`;

export const csvHeader = (): string => csvRow(CSV_COLUMNS);

export const csvLine = (record: ExportRecord): string =>
  csvRow([
    record.position,
    record.stream_id,
    record.user_id,
    String(record.revision),
    record.id,
    record.type,
    record.recorded_at,
    record.prev_hash ?? '',
    record.hash ?? '',
    exportJson(record.data),
    exportJson(record.metadata),
  ]);

/**
 * JSON text for one export line. JSON.stringify leaves U+2028, U+2029 and U+0085 raw inside strings,
 * and common line readers end lines there (Node's readline, which docs/audit.md's script uses, splits
 * on U+2028/U+2029; Python's str.splitlines on all three), so one client-written description would cut
 * a line in two. Written as \u escapes instead: the same JSON value, so the same hash when recomputed.
 */
export const exportJson = (value: unknown): string =>
  JSON.stringify(value).replace(/[\u0085\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

export const ndjsonLine = (record: ExportRecord): string => `${exportJson(record)}\n`;

export interface ExportOptions {
  readonly format: ExportFormat;
  /** Exclusive. */
  readonly fromPosition?: Position;
  /** Called per exported event (progress). */
  readonly onEvent?: () => void;
}

/** The export, line by line (CSV: the header first). */
export async function* exportLines(eventStore: EventStore, options: ExportOptions): AsyncGenerator<string> {
  const line = options.format === 'csv' ? csvLine : ndjsonLine;
  if (options.format === 'csv') yield csvHeader();
  // Lines are grouped into chunks of ~64 KiB: one write per chunk rather than per event.
  let buffer = '';
  for await (const event of eventStore.readAll(options.fromPosition ? { fromPosition: options.fromPosition } : {})) {
    const record = exportRecord(event);
    if (record === null) continue;
    buffer += line(record);
    options.onEvent?.();
    if (buffer.length >= 65_536) {
      yield buffer;
      buffer = '';
    }
  }
  if (buffer.length > 0) yield buffer;
}
