/** `audit verify --all` on an event store other than Postgres: accounts listed by one readAll pass, verified through the port. */
import { describe, expect, it } from 'vitest';
import type { DatabasePool } from '../../../src/adapters/postgres/pool.js';
import { verifyAll } from '../../../src/audit/verify-all.js';
import type { RecordedEvent } from '../../../src/core/event-store.js';
import { alloc, bal, granted, spent } from '../ledger/support/fixtures.js';
import { memoryStore, recordAccount } from './support.js';

const A = '11111111-1111-4111-8111-111111111111';
const B = '22222222-2222-4222-8222-222222222222';

describe('verifyAll through the port', () => {
  it('verifies every account stream and names the broken one', async () => {
    const a = recordAccount(A, [granted({ lot_id: 'a', amount: 10 }, bal(10)), spent({ spend_id: 's', allocation: alloc(['a', 3]) }, bal(7))], 1);
    const b = recordAccount(B, [granted({ lot_id: 'b', amount: 5 }, bal(5)), spent({ spend_id: 't', allocation: alloc(['b', 1]) }, bal(4))], 3);
    b[1] = { ...(b[1] as RecordedEvent), data: { ...(b[1] as RecordedEvent).data, amount: 2 } };
    const other = { ...(a[0] as RecordedEvent), streamId: 'activity-x', position: { major: 1n, minor: 9n } };
    const seen: string[] = [];
    const summary = await verifyAll(
      { eventStore: memoryStore([...a, ...b, other]), pool: undefined as unknown as DatabasePool },
      { compareReadModels: false, onFailure: (failure) => seen.push(failure.user_id) },
    );
    expect(summary).toMatchObject({ mode: 'event-store', workers: 0, accounts: 2, events: 4, ok: 1, failed: 1, lagging: 0 });
    expect(seen).toEqual([B]);
    expect(summary.failures[0]?.result?.first_mismatch).toMatchObject({ revision: 1, field: 'hash_chain', problem: 'hash_mismatch' });
  });
});
