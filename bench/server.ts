/**
 * The service as the benchmark runs it: a child process with the real app (same plugins, same
 * command path) listening on loopback, so the load generator does not share its event loop.
 * Environment: DATABASE_URL, JWT_ACCESS_SECRET, JWT_REFRESH_SECRET. Tells the parent its port.
 */
import { pino } from 'pino';
import { createDatabasePool } from '../src/adapters/postgres/pool.js';
import { createPostgresEventStore } from '../src/adapters/postgres-event-store/event-store.js';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { buildDeps } from '../src/services.js';

const config = loadConfig({ ...process.env, NODE_ENV: 'test', LOG_LEVEL: 'silent' });
if (!config.databaseUrl) throw new Error('bench server: DATABASE_URL is required');
const logger = pino({ level: 'silent' });
const pool = await createDatabasePool(config.databaseUrl, { maxPoolSize: Number(process.env.BENCH_POOL_SIZE ?? 40) });
const eventStore = createPostgresEventStore({ pool, notifyUrl: false });
const secrets = { access: config.jwtAccessSecret as string, refresh: config.jwtRefreshSecret as string };
const deps = buildDeps({ config, logger, pool, eventStore, secrets });
const app = await buildApp(deps);
await app.listen({ port: 0, host: '127.0.0.1' });
const address = app.server.address();
const port = typeof address === 'object' && address ? address.port : 0;
process.send?.({ type: 'ready', port });

process.on('message', async (message: { type?: string }) => {
  if (message?.type !== 'stop') return;
  await app.close();
  await eventStore.close();
  await pool.end();
  process.exit(0);
});
process.on('disconnect', () => process.exit(0));
