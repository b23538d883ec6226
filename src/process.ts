import type { Logger } from 'pino';
import { type Config, ConfigError, loadConfig } from './config.js';

/** What the two long-running entry points (the service and the standalone projector) share. */

/** The configuration, or exit 2 with the one-line reason. */
export function configOrExit(): Config {
  try {
    return loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
}

/**
 * On SIGINT/SIGTERM: run `steps` in order (each closing one resource), then exit 0; exit 1 when a step
 * fails or the whole shutdown takes longer than 15 s.
 */
export function exitCleanlyOnSignals(logger: Logger, steps: readonly (() => Promise<void>)[]): void {
  let closing = false;
  const shutdown = async (signal: string) => {
    if (closing) {
      // A second signal is common (Ctrl-C reaches the whole process group, and npm/tsx relay it once
      // more): it must not cut the shutdown short.
      logger.info({ signal }, 'already shutting down');
      return;
    }
    closing = true;
    logger.info({ signal }, 'shutting down: finishing in-flight work');
    const force = setTimeout(() => {
      logger.error('shutdown took too long; exiting');
      process.exit(1);
    }, 15_000);
    force.unref();
    try {
      for (const step of steps) await step();
      logger.info('stopped');
      process.exit(0);
    } catch (error) {
      logger.error({ err: error }, 'shutdown failed');
      process.exit(1);
    }
  };
  // `on`, not `once`: with the handler gone, a repeated signal would kill the process mid-shutdown
  // (in-flight requests cut, the embedded database left running).
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
}
