import { pino, type Logger } from 'pino';
import { Registry } from 'prom-client';
import { loadOrCreateDevSecrets } from './adapters/dev-secrets.js';
import { createEventStoreDbEventStore } from './adapters/eventstoredb/event-store.js';
import { type EmbeddedDatabase, startEmbeddedPostgres } from './adapters/postgres/embedded.js';
import { migrate } from './adapters/postgres/migrations.js';
import { createDatabasePool, type DatabasePool, sql } from './adapters/postgres/pool.js';
import { createPostgresEventStore } from './adapters/postgres-event-store/event-store.js';
import type { Config } from './config.js';
import { type Clock, systemClock } from './core/clock.js';
import type { EventStore } from './core/event-store.js';
import type { AppDeps } from './http/deps.js';
import { createAccessTokens } from './membership/access-tokens.js';
import { createSessions } from './membership/sessions.js';
import { createUsers } from './membership/users.js';

/**
 * The composition root's building blocks, shared by the server (src/main.ts), the CLI and the
 * benchmarks: one place decides which adapter serves which port.
 */

export const TOKEN_ISSUER = 'credit-ledger';
export const TOKEN_AUDIENCE = 'credit-ledger-api';
export const ACCESS_TOKEN_TTL_SECONDS = 3600;

export interface Database {
  readonly url: string;
  readonly pool: DatabasePool;
  readonly embedded: EmbeddedDatabase | null;
  close(): Promise<void>;
}

export async function openDatabase(config: Config, logger: Logger, options: { migrate?: boolean } = {}): Promise<Database> {
  let embedded: EmbeddedDatabase | null = null;
  let url = config.databaseUrl;
  if (!url) {
    embedded = await startEmbeddedPostgres({
      dataDir: config.dataDir,
      log: (message) => logger.debug({ component: 'embedded-postgres' }, message.trim()),
    });
    url = embedded.url;
    logger.info({ owned: embedded.owned }, embedded.owned ? 'started embedded Postgres' : 'using the running embedded Postgres');
  }
  if (options.migrate !== false) {
    await migrate(url, { log: (message) => logger.info(message) });
  }
  const pool = await createDatabasePool(url);
  return {
    url,
    pool,
    embedded,
    close: async () => {
      await pool.end();
      await embedded?.stop();
    },
  };
}

export function openEventStore(config: Config, pool: DatabasePool, logger: Logger): EventStore {
  if (config.eventStoreUrl) {
    logger.info('event store: EventStoreDB');
    return createEventStoreDbEventStore({ connectionString: config.eventStoreUrl });
  }
  logger.info('event store: Postgres');
  return createPostgresEventStore({ pool });
}

export async function accessTokenSecrets(config: Config): Promise<{ access: string; refresh: string }> {
  if (config.jwtAccessSecret && config.jwtRefreshSecret) {
    return { access: config.jwtAccessSecret, refresh: config.jwtRefreshSecret };
  }
  const generated = await loadOrCreateDevSecrets(config.dataDir);
  return {
    access: config.jwtAccessSecret ?? generated.jwt_access_secret,
    refresh: config.jwtRefreshSecret ?? generated.jwt_refresh_secret,
  };
}

export const createLogger = (config: Config): Logger =>
  pino({
    level: config.logLevel,
    base: { service: 'credit-ledger' },
    redact: { paths: ['req.headers.authorization', 'req.headers.cookie', 'req.headers["stripe-signature"]'], censor: '[redacted]' },
  });

export interface BuildDepsInput {
  readonly config: Config;
  readonly logger: Logger;
  readonly pool: DatabasePool;
  readonly eventStore: EventStore;
  readonly clock?: Clock;
  readonly secrets: { access: string; refresh: string };
}

export function buildDeps(input: BuildDepsInput): AppDeps {
  const clock = input.clock ?? systemClock;
  const { pool, eventStore } = input;
  return {
    config: input.config,
    clock,
    logger: input.logger,
    metrics: new Registry(),
    pool,
    eventStore,
    users: createUsers(pool),
    sessions: createSessions(pool),
    accessTokens: createAccessTokens({
      secrets: [input.secrets.access],
      issuer: TOKEN_ISSUER,
      audience: TOKEN_AUDIENCE,
      ttlSeconds: ACCESS_TOKEN_TTL_SECONDS,
      clock,
    }),
    readiness: [
      { name: 'postgres', check: async () => void (await pool.query(sql.unsafe`select 1`)) },
      { name: 'event_store', check: () => eventStore.ping() },
    ],
  };
}
