import { afterAll, beforeAll } from 'vitest';
import { createPostgresEventStore } from '../../src/adapters/postgres-event-store/event-store.js';
import { sql } from '../../src/adapters/postgres/pool.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { describeEventStoreContract } from './event-store.contract.js';

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase({ maxPoolSize: 20 });
});

afterAll(async () => {
  await db?.drop();
});

// A tiny batch size, so that every read and subscription in the suite crosses batch boundaries.
describeEventStoreContract('postgres', async () => {
  await db.pool.query(sql.unsafe`truncate events, streams`);
  const store = createPostgresEventStore({ pool: db.pool, batchSize: 7, pollIntervalMs: 100 });
  return { store, cleanup: () => store.close() };
});
