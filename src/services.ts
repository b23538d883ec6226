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
import { createLedgerAccountTiers } from './membership/account-tiers.js';
import { createAccounts } from './membership/accounts.js';
import { createAuthSessions } from './membership/auth-sessions.js';
import { createGoogleVerifier } from './membership/google.js';
import { createSessions } from './membership/sessions.js';
import { createUsers } from './membership/users.js';
import { createWorkspace } from './membership/workspace.js';
import { createAiProvider } from './adapters/ai/index.js';
import { createPayments } from './adapters/stripe/index.js';
import { withMultiStreamAppends } from './adapters/postgres-multi-append/index.js';
import { createAccounts as createLedgerAccounts } from './core/accounts.js';
import { createSweeper, ExpiryTracker } from './core/sweeper.js';
import { createSweeperQueries } from './adapters/postgres/sweeper-queries.js';
import { createAiGeneration } from './http/ai-generation.js';
import { DEFAULT_CREDIT_PACKAGES, DEFAULT_TIER_TABLE } from './ledger/index.js';
import { createLogBatches } from './activity/log-batches.js';
import { leaderAlive } from '../projections/leader.js';
import { ProjectionReader } from '../projections/reader.js';
import { type ProjectorOptions, ProjectorRunner } from '../projections/runner.js';

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
      // A terminal Ctrl-C reaches the service, which finishes in-flight requests, then stops the server.
      detached: true,
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
      // The last process out stops the embedded server; one still used by another process (a service
      // or CLI on the same DATA_DIR) is left running for it, whichever process started it.
      await embedded?.stop({ onlyIfUnused: true, log: (message) => logger.info({ component: 'embedded-postgres' }, message) });
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
  const metrics = new Registry();
  // The ledger: account streams (cached decided state), expiry tracking, charged AI, payments.
  const expiryTracker = new ExpiryTracker();
  const ledger = createLedgerAccounts({
    // Concurrent commands on different accounts share one append statement and commit (Postgres store).
    eventStore: withMultiStreamAppends(eventStore, pool),
    clock,
    metrics,
    tiers: DEFAULT_TIER_TABLE,
    observe: (userId, state) => expiryTracker.note(userId, state),
  });
  const aiGeneration = createAiGeneration({
    accounts: ledger,
    provider: createAiProvider(input.config),
    modelPrices: input.config.modelPrices,
    pool,
    clock,
    logger: input.logger,
    providerTimeoutMs: input.config.ai.timeoutMs,
  });
  return {
    config: input.config,
    clock,
    logger: input.logger,
    metrics,
    pool,
    eventStore,
    users: createUsers(pool),
    sessions: createSessions(pool),
    accessTokens: createAccessTokens({
      secrets: [input.secrets.access, ...input.config.jwtAccessSecretsPrevious],
      issuer: TOKEN_ISSUER,
      audience: TOKEN_AUDIENCE,
      ttlSeconds: ACCESS_TOKEN_TTL_SECONDS,
      clock,
    }),
    google: createGoogleVerifier({ clientIds: input.config.googleClientIds, certsUrl: input.config.googleCertsUrl }),
    accounts: createAccounts(pool),
    authSessions: createAuthSessions(pool, { logger: input.logger }),
    accountTiers: createLedgerAccountTiers(ledger),
    workspace: createWorkspace(pool, { tiers: ledger.tiers }),
    ledger,
    aiGeneration,
    aiGenerationService: aiGeneration,
    catalog: { tiers: ledger.tiers, packages: DEFAULT_CREDIT_PACKAGES, modelPrices: input.config.modelPrices },
    payments: createPayments({
      secretKey: input.config.stripeSecretKey,
      webhookSecret: input.config.stripeWebhookSecret,
      apiUrl: input.config.stripe.apiUrl,
      successUrl: input.config.stripe.successUrl,
      cancelUrl: input.config.stripe.cancelUrl,
      now: () => clock.now().getTime(),
    }),
    sweeper: createSweeper({ accounts: ledger, tracker: expiryTracker, queries: createSweeperQueries(pool), clock, logger: input.logger }),
    projections: new ProjectionReader({ pool, eventStore, clock, metrics }),
    logBatches: createLogBatches({ pool, eventStore, clock }),
    readiness: [
      { name: 'postgres', check: async () => void (await pool.query(sql.unsafe`select 1`)) },
      { name: 'event_store', check: () => eventStore.ping() },
      {
        name: 'projector',
        // Some process (this one or `npm run projector`) holds the leader lock and projects.
        check: async () => {
          if (!(await leaderAlive(pool))) throw new Error('no projector is running');
        },
      },
    ],
  };
}

/**
 * The projector of this process (projections/runner.ts), reporting its commits to the read-your-writes
 * waiters of `deps`. Start it with `start()`, stop it before closing the event store and the pool.
 */
export function createProjector(deps: AppDeps, options: Partial<ProjectorOptions> = {}): ProjectorRunner {
  return new ProjectorRunner({
    pool: deps.pool,
    eventStore: deps.eventStore,
    logger: deps.logger.child({ component: 'projector' }),
    metrics: deps.metrics,
    ...options,
    onCommit: (batch) => {
      deps.projections.observe(batch.name, batch.generation, batch.position);
      options.onCommit?.(batch);
    },
  });
}
