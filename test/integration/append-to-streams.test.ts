import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

/**
 * append_to_streams (migrations/034) against its definition: a batch must give exactly the outcomes,
 * and leave exactly the streams, that the same appends made one by one through append_to_stream
 * (migrations/001) would. Random batches mix the set-based common case with everything that must
 * take the careful path: conflicts, idempotent retries, partial retries, ids from another stream, one
 * stream twice in a batch, and expectations of every kind.
 */

let db: TestDatabase;
let client: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase();
  client = new pg.Client({ connectionString: db.url });
  await client.connect();
});
afterAll(async () => {
  await client?.end();
  await db?.drop();
});

type Kind = 'exact' | 'no_stream' | 'stream_exists' | 'any';
interface Append {
  readonly stream: number;
  readonly kind: Kind;
  /** For 'exact': the stream's revision plus this (0 = right). */
  readonly offset: number;
  readonly count: number;
  /** 'fresh' ids, the last ids appended to this stream again (a retry), or ids of another stream. */
  readonly ids: 'fresh' | 'retry' | 'retry-partial' | 'foreign';
}

const appendArb: fc.Arbitrary<Append> = fc.record({
  stream: fc.integer({ min: 0, max: 3 }),
  kind: fc.constantFrom<Kind>('exact', 'exact', 'exact', 'no_stream', 'stream_exists', 'any'),
  offset: fc.constantFrom(0, 0, 0, 0, -1, 1, -2),
  count: fc.integer({ min: 1, max: 3 }),
  ids: fc.constantFrom<Append['ids']>('fresh', 'fresh', 'fresh', 'retry', 'retry-partial', 'foreign'),
});

interface Outcome {
  readonly outcome: string;
  readonly revision: string | null;
}

async function streamContents(streamId: string) {
  const { rows } = await client.query('select stream_revision::text as revision, event_id, type, data from events where stream_id = $1 order by stream_revision', [streamId]);
  return rows;
}

async function revisionOf(streamId: string): Promise<number | null> {
  const { rows } = await client.query('select revision::int as revision from streams where stream_id = $1', [streamId]);
  return rows[0]?.revision ?? null;
}

describe('append_to_streams equals append_to_stream one by one', () => {
  it('for random batches over a few streams', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.array(appendArb, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 8 }), async (batches) => {
        const run = randomUUID().slice(0, 8);
        const batched = (s: number) => `batched-${run}-${s}`;
        const single = (s: number) => `single-${run}-${s}`;
        const lastIds = new Map<number, string[]>();
        for (const batch of batches) {
          const plan = [];
          for (const append of batch) {
            // Both sides see the same state (asserted below), so expectations can be read from one.
            const current = await revisionOf(batched(append.stream));
            let ids: string[] = Array.from({ length: append.count }, () => randomUUID());
            const last = lastIds.get(append.stream);
            if (append.ids === 'retry' && last) ids = last;
            if (append.ids === 'retry-partial' && last) ids = [last[0] as string, ...ids.slice(1)];
            const foreign = lastIds.get((append.stream + 1) % 4);
            if (append.ids === 'foreign' && foreign) ids = foreign;
            const expected = append.kind === 'exact' ? (current ?? -1) + append.offset : null;
            // 'exact' with a negative revision is an error by definition; keep batches valid.
            const kind = append.kind === 'exact' && (expected ?? -1) < 0 ? 'no_stream' : append.kind;
            plan.push({ append, ids, kind, expected: kind === 'exact' ? expected : null, types: ids.map((_, i) => `T${i}`), data: ids.map((id) => ({ id })) });
          }
          const { rows: got } = await client.query<Outcome>(
            `select outcome, revision::text from append_to_streams($1::text[], $2::text[], $3::bigint[], $4::int[], $5::uuid[], $6::text[], $7::jsonb[], $8::jsonb[]) order by idx`,
            [
              plan.map((p) => batched(p.append.stream)),
              plan.map((p) => p.kind),
              plan.map((p) => p.expected),
              plan.map((p) => p.ids.length),
              plan.flatMap((p) => p.ids),
              plan.flatMap((p) => p.types),
              plan.flatMap((p) => p.data),
              plan.flatMap((p) => p.ids.map(() => ({}))),
            ],
          );
          const want: Outcome[] = [];
          await client.query('begin');
          for (const p of plan) {
            const { rows } = await client.query<Outcome>(
              `select outcome, revision::text from append_to_stream($1, $2, $3, $4::uuid[], $5::text[], $6::jsonb[], $7::jsonb[])`,
              [single(p.append.stream), p.kind, p.expected, p.ids, p.types, p.data, p.ids.map(() => ({}))],
            );
            want.push(rows[0] as Outcome);
          }
          await client.query('commit');
          expect(got).toEqual(want);
          for (const [i, p] of plan.entries()) if (got[i]?.outcome === 'appended') lastIds.set(p.append.stream, p.ids);
          for (let s = 0; s < 4; s++) {
            expect(await streamContents(batched(s))).toEqual(await streamContents(single(s)));
            expect(await revisionOf(batched(s))).toBe(await revisionOf(single(s)));
          }
        }
      }),
      { numRuns: 40 },
    );
  });

  it('a clean batch comes back with each stream’s own last position, in stream order within the log', async () => {
    const streams = Array.from({ length: 5 }, (_, i) => `positions-${randomUUID()}-${i}`);
    const counts = [1, 3, 2, 1, 2];
    const ids = counts.flatMap((c) => Array.from({ length: c }, () => randomUUID()));
    const { rows } = await client.query(
      `select idx, outcome, revision::int, global_position::text, positions::text[] from append_to_streams($1::text[], $2::text[], $3::bigint[], $4::int[], $5::uuid[], $6::text[], $7::jsonb[], $8::jsonb[]) order by idx`,
      [streams, streams.map(() => 'no_stream'), streams.map(() => null), counts, ids, ids.map(() => 'T'), ids.map(() => ({})), ids.map(() => ({}))],
    );
    expect(rows.map((r) => [r.outcome, r.revision])).toEqual(counts.map((c) => ['appended', c - 1]));
    for (const [i, streamId] of streams.entries()) {
      const { rows: stored } = await client.query('select stream_revision::int as revision, global_position::text as position from events where stream_id = $1 order by stream_revision', [streamId]);
      expect(stored.map((r) => r.revision)).toEqual(Array.from({ length: counts[i] as number }, (_, k) => k));
      const positions = stored.map((r) => BigInt(r.position));
      expect(positions).toEqual([...positions].sort((a, b) => (a < b ? -1 : 1)));
      expect(rows[i]?.global_position).toBe(String(positions.at(-1)));
      // Every event's position comes back with the append, in revision order.
      expect(rows[i]?.positions).toEqual(positions.map(String));
    }
  });
});
