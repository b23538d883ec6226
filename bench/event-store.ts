/**
 * Append throughput of the Postgres event store under concurrent writers, and what a NOTIFY inside the
 * append transaction would cost (the reason the store notifies after commit instead).
 *
 *   npx tsx bench/event-store.ts [--writers 32] [--seconds 5]
 *
 * Uses BENCH_DATABASE_URL (an admin URL; a scratch database is created and dropped) or else starts an
 * embedded Postgres in a temporary directory.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { z } from 'zod';
import { appendInTransaction, createPostgresEventStore } from '../src/adapters/postgres-event-store/event-store.js';
import { startEmbeddedPostgres } from '../src/adapters/postgres/embedded.js';
import { migrate } from '../src/adapters/postgres/migrations.js';
import { createDatabasePool, type DatabasePool, sql } from '../src/adapters/postgres/pool.js';
import type { NewEvent } from '../src/core/event-store.js';

const { values } = parseArgs({
  options: { writers: { type: 'string', default: '32' }, seconds: { type: 'string', default: '5' } },
});
const writers = Number(values.writers);
const seconds = Number(values.seconds);

const notified = z.object({ sent: z.boolean() });

type Append = (streamId: string, events: NewEvent[]) => Promise<unknown>;

async function measure(label: string, append: Append): Promise<void> {
  const latencies: number[] = [];
  const deadline = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: writers }, async () => {
      const streamId = `bench-${randomUUID()}`;
      while (performance.now() < deadline) {
        const started = performance.now();
        await append(streamId, [{ id: randomUUID(), type: 'Benchmarked', data: { at: started } }]);
        latencies.push(performance.now() - started);
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  const at = (q: number) => (latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0).toFixed(1);
  console.log(
    `${label.padEnd(40)} ${(latencies.length / seconds).toFixed(0).padStart(7)} appends/s   p50 ${at(0.5)} ms   p99 ${at(0.99)} ms`,
  );
}

async function run(pool: DatabasePool): Promise<void> {
  const store = createPostgresEventStore({ pool, notifyUrl: false });
  console.log(`${writers} writers, ${seconds} s each, one event per append, one stream per writer`);
  await measure('store.appendToStream (notify after commit)', (streamId, events) =>
    store.appendToStream(streamId, events, { expectedRevision: 'any' }),
  );
  await measure('transaction: append', (streamId, events) =>
    pool.transaction((transaction) => appendInTransaction(transaction, streamId, events, 'any')),
  );
  await measure('transaction: append + NOTIFY inside', (streamId, events) =>
    pool.transaction(async (transaction) => {
      await appendInTransaction(transaction, streamId, events, 'any');
      await transaction.one(sql.type(notified)`select true as sent from pg_notify('event_store', '')`);
    }),
  );
  await store.close();
}

async function main(): Promise<void> {
  let adminUrl = process.env.BENCH_DATABASE_URL;
  let stop = async () => {};
  if (!adminUrl) {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'ledger-bench-pg-'));
    const embedded = await startEmbeddedPostgres({ dataDir, database: 'postgres' });
    adminUrl = embedded.url;
    stop = async () => {
      await embedded.stop();
      await rm(dataDir, { recursive: true, force: true });
    };
  }
  const name = `bench_${randomBytes(6).toString('hex')}`;
  const admin = async (statement: string) => {
    const client = new pg.Client({ connectionString: adminUrl });
    await client.connect();
    try {
      await client.query(statement);
    } finally {
      await client.end();
    }
  };
  await admin(`create database ${name}`);
  const url = adminUrl.replace(/\/[^/?]*(\?|$)/, `/${name}$1`);
  try {
    await migrate(url);
    const pool = await createDatabasePool(url, { maxPoolSize: writers + 2 });
    try {
      await run(pool);
    } finally {
      await pool.end();
    }
  } finally {
    await admin(`drop database if exists ${name} with (force)`);
    await stop();
  }
}

await main();
