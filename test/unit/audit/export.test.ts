/** The export's line formats: NDJSON carries events as hashed, CSV quotes per RFC 4180 and round-trips. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { eventHashFast } from '../../../src/core/canonical.js';
import { CSV_COLUMNS, csvField, csvRow, exportLines } from '../../../src/audit/export.js';
import { alloc, bal, granted, spent } from '../ledger/support/fixtures.js';
import { memoryStore, parseCsv, recordAccount } from './support.js';

const collect = async (lines: AsyncIterable<string>) => {
  let text = '';
  for await (const chunk of lines) text += chunk;
  return text;
};

const A = '11111111-1111-4111-8111-111111111111';
const B = '22222222-2222-4222-8222-222222222222';
const tricky = 'say "hi",\r\nnew line, and a \u2028 and emoji 🎉';
const events = () => {
  const a = recordAccount(A, [granted({ lot_id: 'a', amount: 10 }, bal(10)), spent({ spend_id: 's', allocation: alloc(['a', 3]), metadata: { note: tricky } }, bal(7))], 1);
  const b = recordAccount(B, [granted({ lot_id: 'b', amount: 5 }, bal(5))], 3);
  const other = { ...(b[0] as (typeof b)[number]), streamId: 'activity-x', position: { major: 1n, minor: 4n }, id: 'other' };
  return [...a, ...b, other];
};

describe('csvField', () => {
  it('round-trips any text through a strict RFC 4180 reader', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ unit: 'grapheme' }), { minLength: 1, maxLength: 5 }), (fields) => {
        expect(parseCsv(csvRow(fields))).toEqual([fields]);
      }),
    );
  });

  it('quotes only when needed', () => {
    expect(csvField('plain')).toBe('plain');
    expect(csvField('a,b')).toBe('"a,b"');
    expect(csvField('say "x"')).toBe('"say ""x"""');
    expect(csvField('a\nb')).toBe('"a\nb"');
  });
});

describe('exportLines', () => {
  it('NDJSON: every account-stream event, in order, each line recomputable', async () => {
    const text = await collect(exportLines(memoryStore(events()), { format: 'ndjson' }));
    expect(text.endsWith('\n')).toBe(true);
    const lines = text.trimEnd().split('\n').map((line) => JSON.parse(line));
    expect(lines.map((l) => [l.user_id, l.revision, l.position])).toEqual([
      [A, 0, '1-1'],
      [A, 1, '1-2'],
      [B, 0, '1-3'],
    ]);
    for (const l of lines) expect(eventHashFast(l.id, l.type, l.data, l.metadata)).toBe(l.hash);
    expect(lines[1].data.metadata.note).toBe(tricky);
  });

  it('NDJSON from a position (exclusive)', async () => {
    const text = await collect(exportLines(memoryStore(events()), { format: 'ndjson', fromPosition: { major: 1n, minor: 1n } }));
    expect(text.trimEnd().split('\n').map((line) => JSON.parse(line).position)).toEqual(['1-2', '1-3']);
  });

  it('CSV: a header, CRLF records, JSON columns that parse back to the hashed values', async () => {
    const text = await collect(exportLines(memoryStore(events()), { format: 'csv' }));
    const rows = parseCsv(text);
    expect(rows[0]).toEqual([...CSV_COLUMNS]);
    expect(rows).toHaveLength(4);
    for (const row of rows.slice(1)) {
      const r = Object.fromEntries(CSV_COLUMNS.map((c, i) => [c, row[i] as string]));
      expect(eventHashFast(r.id as string, r.type as string, JSON.parse(r.data as string), JSON.parse(r.metadata as string))).toBe(r.hash);
    }
    expect(JSON.parse(rows[2]?.[9] as string).metadata.note).toBe(tricky);
  });

  it('an empty ledger: NDJSON is empty, CSV is the header', async () => {
    expect(await collect(exportLines(memoryStore([]), { format: 'ndjson' }))).toBe('');
    expect(await collect(exportLines(memoryStore([]), { format: 'csv' }))).toBe(`${CSV_COLUMNS.join(',')}\r\n`);
  });
});
