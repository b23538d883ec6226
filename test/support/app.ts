import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { createPostgresEventStore } from '../../src/adapters/postgres-event-store/event-store.js';
import { buildApp } from '../../src/app.js';
import { type Config, loadConfig } from '../../src/config.js';
import { type Clock, systemClock } from '../../src/core/clock.js';
import type { EventStore } from '../../src/core/event-store.js';
import type { AppDeps } from '../../src/http/deps.js';
import { buildDeps, createProjector } from '../../src/services.js';
import type { ProjectorOptions, ProjectorRunner } from '../../projections/runner.js';
import { createTestDatabase, type TestDatabase } from './database.js';

export interface TestApp {
  readonly app: FastifyInstance;
  readonly deps: AppDeps;
  readonly db: TestDatabase;
  readonly eventStore: EventStore;
  readonly secrets: { access: string; refresh: string };
  /** The in-process projector (null when the test turned it off). */
  readonly projector: ProjectorRunner | null;
  /** Creates a user and a session and returns a valid access token for them. */
  signIn(input?: { email?: string; role?: 'user' | 'admin' | 'auditor' }): Promise<{ userId: string; token: string; sessionId: string }>;
  close(): Promise<void>;
}

export const testSecret = () => randomBytes(32).toString('base64url');

/** The real app on a fresh real Postgres database, with the Postgres event store. */
export async function createTestApp(
  options: {
    env?: Record<string, string>;
    clock?: Clock;
    config?: Partial<Config>;
    /** Extra routes for tests of cross-cutting behaviour, registered before the app is ready. */
    beforeReady?: (app: FastifyInstance) => void | Promise<void>;
    /** Replaces some of the built dependencies (fakes, smaller tier tables). */
    overrideDeps?: (deps: AppDeps, db: TestDatabase) => Partial<AppDeps>;
    /** The projector runs in the app like in the service (default); `false` turns it off, an object tunes it. */
    projector?: boolean | Partial<ProjectorOptions>;
    /** Another event store than the Postgres one in the test database (e.g. EventStoreDB on the gRPC double). */
    eventStore?: () => EventStore;
  } = {},
): Promise<TestApp> {
  const db = await createTestDatabase();
  const secrets = { access: testSecret(), refresh: testSecret() };
  const config: Config = {
    ...loadConfig({ NODE_ENV: 'test', JWT_ACCESS_SECRET: secrets.access, JWT_REFRESH_SECRET: secrets.refresh, ...options.env }),
    databaseUrl: db.url,
    ...options.config,
  };
  const eventStore = options.eventStore?.() ?? createPostgresEventStore({ pool: db.pool });
  const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const built = buildDeps({ config, logger, pool: db.pool, eventStore, clock: options.clock ?? systemClock, secrets });
  const deps: AppDeps = { ...built, ...options.overrideDeps?.(built, db) };
  const app = await buildApp(deps);
  await options.beforeReady?.(app);
  await app.ready();
  const projector =
    options.projector === false
      ? null
      : createProjector(deps, { lockRetryMs: 200, ...(typeof options.projector === 'object' ? options.projector : {}) });
  await projector?.start();
  let counter = 0;
  return {
    app,
    deps,
    db,
    eventStore,
    secrets,
    projector,
    async signIn(input = {}) {
      counter += 1;
      const user = await deps.users.create({
        email: input.email ?? `user${counter}-${randomBytes(3).toString('hex')}@example.com`,
        role: input.role ?? 'user',
      });
      const session = await deps.sessions.open({ userId: user.id, now: deps.clock.now() });
      const token = await deps.accessTokens.sign({
        userId: user.id,
        email: user.email,
        tier: user.tier,
        role: user.role,
        sessionId: session.id,
      });
      return { userId: user.id, token, sessionId: session.id };
    },
    async close() {
      await projector?.stop();
      await app.close();
      await eventStore.close();
      await db.drop();
    },
  };
}
