import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { DatabasePool } from '../adapters/postgres/pool.js';
import type { Config } from '../config.js';
import type { Clock } from '../core/clock.js';
import type { EventStore } from '../core/event-store.js';
import type { AccessTokens } from '../membership/access-tokens.js';
import type { Accounts } from '../membership/accounts.js';
import type { AuthSessions } from '../membership/auth-sessions.js';
import type { GoogleVerifier } from '../membership/google.js';
import type { AccountTiers, AiGeneration } from '../membership/ports.js';
import type { Sessions } from '../membership/sessions.js';
import type { Users } from '../membership/users.js';
import type { Workspace } from '../membership/workspace.js';
import type { Payments } from '../adapters/stripe/index.js';
import type { Accounts as LedgerAccounts } from '../core/accounts.js';
import type { Sweeper } from '../core/sweeper.js';
import type { AiGenerationService } from './ai-generation.js';
import type { Catalog } from './routes/catalog.js';
import type { LogBatches } from '../activity/log-batches.js';
import type { ProjectionReader } from '../../projections/reader.js';

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
  /** Google ID-token verification: one client per app (it caches Google's certificates). */
  readonly google: GoogleVerifier;
  /** Google sign-in upsert, (de)activation. */
  readonly accounts: Accounts;
  /** Sessions with rotating refresh tokens. */
  readonly authSessions: AuthSessions;
  /** The tier in force, from the ledger; tier gates and plan limits read it. */
  readonly accountTiers: AccountTiers;
  /** Flows and own components with their plan limits. */
  readonly workspace: Workspace;
  /** Charged AI generation (the ledger's /ai/generate service); unset → /components/ai-generate answers 503. */
  readonly aiGeneration?: AiGeneration;
  /** The ledger's command side: account streams through the decider (src/core/accounts.ts). */
  readonly ledger: LedgerAccounts;
  /** The same service as `aiGeneration`, with the ledger's extra options (max_tokens, request id, route). */
  readonly aiGenerationService: AiGenerationService;
  /** Tiers, credit packages and model prices (API §2). */
  readonly catalog: Catalog;
  /** Stripe Checkout and webhook verification (either may be unconfigured). */
  readonly payments: Payments;
  /** Reservation and lot expiry; main.ts starts it, tests call runOnce(). */
  readonly sweeper: Sweeper;
  /** Projection status and read-your-writes waits (`?min_position=`), projections/reader.ts. */
  readonly projections: ProjectionReader;
  /** POST /logs/batch: launcher log batches onto the activity stream, once per batch_id. */
  readonly logBatches: LogBatches;
  readonly readiness: readonly ReadinessCheck[];
}

declare module 'fastify' {
  interface FastifyInstance {
    deps: AppDeps;
  }
}
