import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { EventStore } from '../core/event-store.js';
import type { AppDeps } from '../http/deps.js';
import type { Database } from '../services.js';

/** What a CLI command gets: the same services the server builds, on the same database. */
export interface CliContext {
  readonly config: Config;
  readonly logger: Logger;
  readonly database: Database;
  readonly eventStore: EventStore;
  readonly deps: AppDeps;
  /** Human output (stdout). */
  print(line: string): void;
}

export class UsageError extends Error {
  override name = 'UsageError';
}

export interface CliCommand {
  /** e.g. `users create`. */
  readonly name: string;
  readonly usage: string;
  /** Options parsed with node:util parseArgs. */
  readonly options?: Record<string, { type: 'string' | 'boolean'; short?: string }>;
  run(context: CliContext, values: Record<string, string | boolean | undefined>, positionals: string[]): Promise<number | void>;
}
