/**
 * Catch-up over large events (launcher log batches of a few hundred KB) with small byte budgets: the
 * Postgres store hands out size hints, batches stop at their byte budget (one event when it alone is
 * over), the shared feed and the workers' buffers stay bounded, and every event is projected exactly
 * once by every projection.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { z } from 'zod';
import { createLogBatches } from '../../src/activity/log-batches.js';
import { sql } from '../../src/adapters/postgres/pool.js';
import { createPostgresEventStore } from '../../src/adapters/postgres-event-store/event-store.js';
import { systemClock } from '../../src/core/clock.js';
import { type EventStore, eventBytes, type RecordedEvent } from '../../src/core/event-store.js';
import { ProjectorRunner } from '../../projections/runner.js';
import { loadActiveCheckpoints } from '../../projections/store.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { LedgerDriver, readAllEvents, silentLogger, waitForProjections } from './projections.harness.js';

let db: TestDatabase;
let store: EventStore;

beforeAll(async () => {
  db = await createTestDatabase();
  store = createPostgresEventStore({ pool: db.pool, pollIntervalMs: 50 });
});

afterAll(async () => {
  await store?.close();
  await db?.drop();
});

const BATCH_BYTES = 256 * 1024;

it('large events: size hints from Postgres, batches within their byte budget, every event projected exactly once', async () => {
  const driver = new LedgerDriver(store);
  const logBatches = createLogBatches({ pool: db.pool, eventStore: store, clock: systemClock });
  const users = [randomUUID(), randomUUID()];
  const entriesPerBatch = 150;
  let logEvents = 0;
  for (const [u, userId] of users.entries()) {
    await driver.run(userId, { type: 'Grant', lot_id: `lot-${userId}`, kind: 'bonus', amount: 1000, reason: 'r' });
    for (let b = 0; b < 12; b++) {
      // ~150 KB of JSON: compresses well in TOAST, which the hint must not be fooled by.
      const entries = Array.from({ length: entriesPerBatch }, (_, i) => ({
        action: 'launch',
        resource_type: 'game',
        resource_id: `g-${u}-${b}-${i}`,
        metadata: { note: `entry ${i} `.repeat(100) },
      }));
      await logBatches.record({ userId, batchId: `b-${b}`, entries, ip: null, userAgent: null });
      logEvents++;
      await driver.run(userId, { type: 'Spend', spend_id: `s-${userId}-${b}`, amount: 1, counts_api_call: true });
    }
  }

  // readAll serves the log below the oldest open transaction of the whole server (other test files
  // share it): on a busy machine the newest events can take a moment to show, so read until all do.
  const written = await db.pool.oneFirst(sql.type(z.object({ n: z.number() }))`select count(*)::int as n from events`);
  let all = await readAllEvents(store);
  for (let attempt = 0; attempt < 100 && all.length < written; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    all = await readAllEvents(store);
  }
  expect(all).toHaveLength(written);
  const large = all.filter((event) => event.type === 'LauncherLogsRecorded');
  expect(large).toHaveLength(logEvents);
  for (const event of all) {
    // The hint is the JSON text Postgres sent (jsonb's text form: a space after ':' and ',').
    const compact = JSON.stringify(event.data).length + JSON.stringify(event.metadata).length;
    expect(event.sizeHint).toBeGreaterThanOrEqual(compact);
    expect(event.sizeHint).toBeLessThan(compact * 1.2 + 20);
  }
  expect(Math.min(...large.map(eventBytes))).toBeGreaterThan(BATCH_BYTES / 2);

  const committed = new Map<string, string[]>();
  const batches: { name: string; events: readonly RecordedEvent[] }[] = [];
  const runner = new ProjectorRunner({
    pool: db.pool,
    eventStore: store,
    logger: silentLogger,
    lockRetryMs: 100,
    heartbeatMs: 200,
    batchBytes: BATCH_BYTES,
    feedLimits: { bytes: 4 * BATCH_BYTES },
    onCommit: (batch) => {
      batches.push({ name: batch.name, events: batch.events });
      const ids = committed.get(batch.name) ?? [];
      for (const event of batch.events) ids.push(event.id);
      committed.set(batch.name, ids);
    },
  });
  await runner.start();
  try {
    await waitForProjections(db.pool, store, { target: driver.lastPosition });
    const head = await store.headPosition();
    await waitForProjections(db.pool, store, { target: head });
  } finally {
    await runner.stop();
  }

  // Batches: within the byte budget, or a single event over it.
  for (const batch of batches) {
    const bytes = batch.events.reduce((sum, event) => sum + eventBytes(event), 0);
    expect(batch.events.length === 1 || bytes <= BATCH_BYTES).toBe(true);
  }
  expect(batches.some((batch) => batch.events.length > 1)).toBe(true);

  // Every projection saw every event once, in order.
  const allIds = all.map((event) => event.id);
  for (const checkpoint of await loadActiveCheckpoints(db.pool)) {
    expect(committed.get(checkpoint.name)).toEqual(allIds);
    expect(checkpoint.eventsProcessed).toBe(all.length);
  }
  const rows = await db.pool.oneFirst(sql.type(z.object({ n: z.number() }))`
    select count(*)::int as n from activity_logs where action = 'launch'`);
  expect(rows).toBe(logEvents * entriesPerBatch);
});
