import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { DatabasePool } from '../adapters/postgres/pool.js';
import type { Config } from '../config.js';
import type { Clock } from '../core/clock.js';
import type { EventStore } from '../core/event-store.js';
import type { AccessTokens } from '../membership/access-tokens.js';
import type { Sessions } from '../membership/sessions.js';
import type { Users } from '../membership/users.js';

/** A named dependency that /readyz checks. */
export interface ReadinessCheck {
  readonly name: string;
  check(): Promise<void>;
}

/** Everything the HTTP layer needs, built by the composition root (src/services.ts) and injected. */
export interface AppDeps {
  readonly config: Config;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics: Registry;
  readonly pool: DatabasePool;
  readonly eventStore: EventStore;
  readonly users: Users;
  readonly sessions: Sessions;
  readonly accessTokens: AccessTokens;
  readonly readiness: readonly ReadinessCheck[];
}

declare module 'fastify' {
  interface FastifyInstance {
    deps: AppDeps;
  }
}
