import pg from 'pg';
import type { JsonObject } from '../core/event-store.js';
import { userIdOfAccountStream } from '../ledger/index.js';
import type { VerifyResult } from './verify.js';
import { type StreamReport, StreamVerifier } from './verifier.js';

/**
 * `audit verify --all` on the Postgres event store, the part that runs in each worker: a chunk of
 * account streams — a range of stream ids, (after, upTo] in the `events` primary-key order — read
 * straight from the table in stream order (so exactly one account's state is in memory at a time) and
 * verified. The comparison with the read models, one batch per chunk, is ./judge.ts, on the thread that
 * hands out the chunks: this module imports neither slonik nor the pool, so a worker thread loads in a
 * fraction of the time (slonik alone took about half a second of CPU per worker).
 *
 * Why not the port: `readAll` walks the global log, which interleaves every account, so a single pass
 * would hold every account's state at once. The table's primary key (stream_id, stream_revision) gives
 * stream order for free. Rows come through a plain `pg` client in array mode (measured ~2 µs/row
 * cheaper than the pool's per-row interceptors); every value is then checked by the verifier itself
 * (hashes, schemas, revisions), which is a stronger validation than a row schema.
 */

export interface Chunk {
  readonly id: number;
  /** Exclusive lower bound of stream ids (null: from the first). */
  readonly after: string | null;
  /** Inclusive upper bound (null: to the last). */
  readonly upTo: string | null;
  /** Stream heads recorded by the store (`streams.revision`), read before the chunk's events. */
  readonly heads: readonly (readonly [string, number])[];
}

export interface AccountOutcome {
  readonly user_id: string;
  readonly events: number;
  /** `ok`; `failed` (see result); `recheck`: the projector had not reached the account's last event, or the account moved during the scan. */
  readonly status: 'ok' | 'failed' | 'recheck';
  readonly result: VerifyResult | null;
}

export interface ChunkOutcome {
  readonly id: number;
  readonly events: number;
  readonly accounts: number;
  readonly ok: number;
  /** Only the accounts that are not `ok`. */
  readonly outcomes: readonly AccountOutcome[];
}

/** A chunk's streams, verified from their events alone. */
export interface ScannedChunk {
  readonly id: number;
  readonly events: number;
  readonly reports: readonly StreamReport[];
}

export interface ChunkScanner {
  /** Verifies chunks in order; the next chunk's first page is requested while the current one is processed. */
  run(chunks: AsyncIterable<Chunk>, onChunk: (scanned: ScannedChunk) => void | Promise<void>, onEvents?: (events: number) => void): Promise<void>;
  close(): Promise<void>;
}

const INT8_MAX = '9223372036854775807';

type Row = [string, string, string, string, string, string, JsonObject, JsonObject];

// No casts: an output column named like a table column would take its place in ORDER BY. The driver
// hands uuid, int8 and xid8 over as text.
const COLUMNS = `event_id, type, stream_id, stream_revision, transaction_id, global_position, data, metadata`;
const BOUNDED = `select ${COLUMNS} from events
  where (stream_id, stream_revision) > ($1, $2::bigint) and stream_id <= $3
  order by stream_id, stream_revision limit $4`;
const UNBOUNDED = `select ${COLUMNS} from events
  where (stream_id, stream_revision) > ($1, $2::bigint)
  order by stream_id, stream_revision limit $3`;

export interface ChunkScannerOptions {
  readonly connectionUri: string;
  /** Rows per query. Default 2000. */
  readonly pageSize?: number;
}

export async function createChunkScanner(options: ChunkScannerOptions): Promise<ChunkScanner> {
  const client = new pg.Client({ connectionString: options.connectionUri });
  await client.connect();
  // The whole scan reads committed data only; no transaction is held open, so the scan never holds
  // back the event store's readers (their xmin horizon).
  const pageSize = options.pageSize ?? 2000;

  const page = (chunk: Chunk, afterStream: string, afterRevision: string): Promise<Row[]> =>
    client
      .query<Row>({
        text: chunk.upTo === null ? UNBOUNDED : BOUNDED,
        values: chunk.upTo === null ? [afterStream, afterRevision, pageSize] : [afterStream, afterRevision, chunk.upTo, pageSize],
        rowMode: 'array',
      })
      .then((result) => result.rows);
  const firstPage = (chunk: Chunk) => page(chunk, chunk.after ?? '', chunk.after === null ? '-1' : INT8_MAX);

  async function run(chunks: AsyncIterable<Chunk>, onChunk: (scanned: ScannedChunk) => void | Promise<void>, onEvents?: (events: number) => void) {
    const iterator = chunks[Symbol.asyncIterator]();
    let next = await iterator.next();
    let pending: Promise<Row[]> | null = next.done ? null : firstPage(next.value);
    while (!next.done) {
      const chunk = next.value;
      const reports: StreamReport[] = [];
      const heads = new Map(chunk.heads);
      let verifier: StreamVerifier | null = null;
      let streamId = '';
      let events = 0;
      const finishStream = () => {
        if (!verifier) return;
        const head = heads.get(streamId);
        if (head !== undefined) verifier.expectHead(BigInt(head));
        heads.delete(streamId);
        reports.push(verifier.report());
        verifier = null;
      };
      for (;;) {
        const rows = await (pending as Promise<Row[]>);
        const last = rows[rows.length - 1];
        const full = rows.length === pageSize;
        if (full && last) {
          pending = page(chunk, last[2], last[3]);
        } else {
          next = await iterator.next();
          pending = next.done ? null : firstPage(next.value);
        }
        for (const row of rows) {
          if (row[2] !== streamId) {
            finishStream();
            streamId = row[2];
            const userId = userIdOfAccountStream(streamId);
            verifier = userId === null ? null : new StreamVerifier(userId);
          }
          if (!verifier) continue;
          events += 1;
          (verifier as StreamVerifier).add({
            id: row[0],
            type: row[1],
            revision: BigInt(row[3]),
            position: { major: BigInt(row[4]), minor: BigInt(row[5]) },
            data: row[6],
            metadata: row[7],
          });
        }
        onEvents?.(rows.length);
        if (!full) break;
      }
      finishStream();
      // Streams the store lists but whose events are all gone.
      for (const [missing, head] of heads) {
        const userId = userIdOfAccountStream(missing);
        if (userId === null) continue;
        const empty = new StreamVerifier(userId);
        empty.expectHead(BigInt(head));
        reports.push(empty.report());
      }
      await onChunk({ id: chunk.id, events, reports });
    }
  }

  return {
    run,
    close: () => client.end(),
  };
}
