import type { EventStore, JsonObject, ReadStreamOptions, RecordedEvent } from '../../../src/core/event-store.js';
import { chainEvents, GENESIS_HASH } from '../../../src/core/hash-chain.js';
import { accountStreamId, type LedgerEvent } from '../../../src/ledger/index.js';

/** A read-only in-memory event store over recorded events (what the audit reads through the port). */
export function memoryStore(events: readonly RecordedEvent[]): EventStore {
  const unsupported = () => {
    throw new Error('not supported by the memory store');
  };
  return {
    name: 'eventstoredb',
    appendToStream: unsupported,
    async *readStream(streamId: string, options: ReadStreamOptions = {}) {
      let left = options.maxCount ?? Number.POSITIVE_INFINITY;
      for (const event of events) {
        if (left <= 0) return;
        if (event.streamId !== streamId || event.revision < (options.fromRevision ?? 0n)) continue;
        left -= 1;
        yield event;
      }
    },
    async *readAll(options = {}) {
      for (const event of events) {
        const from = options.fromPosition;
        if (from && (event.position.minor <= from.minor)) continue;
        yield event;
      }
    },
    subscribeToAll: unsupported,
    headPosition: async () => events.at(-1)?.position ?? null,
    ping: async () => {},
    close: async () => {},
  };
}

/** Records ledger events on one account stream with a correct chain, positions 1, 2, 3, … */
export function recordAccount(userId: string, ledgerEvents: readonly (LedgerEvent & { metadata?: JsonObject })[], firstPosition = 1): RecordedEvent[] {
  const { events } = chainEvents(
    ledgerEvents.map((event, index) => ({
      id: `00000000-0000-4000-8000-${String(firstPosition + index).padStart(12, '0')}`,
      type: event.type,
      data: event.data as unknown as JsonObject,
      metadata: { schema_version: 1, stream_id: accountStreamId(userId), ...(event.metadata ?? {}) },
    })),
    GENESIS_HASH,
  );
  return events.map((event, index) => ({
    ...event,
    streamId: accountStreamId(userId),
    revision: BigInt(index),
    position: { major: 1n, minor: BigInt(firstPosition + index) },
    recordedAt: new Date(Date.parse('2026-11-25T00:00:00.000Z') + index),
  }));
}

/** A strict RFC 4180 reader (CRLF records, quoted fields with doubled quotes). */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"' && field === '') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\r' && text[i + 1] === '\n') {
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
      i++;
    } else {
      if (c === '"' || c === '\n' || c === '\r') throw new Error(`unquoted ${JSON.stringify(c)} at ${i}`);
      field += c;
    }
  }
  if (field !== '' || row.length > 0) throw new Error('unterminated record');
  return rows;
}
