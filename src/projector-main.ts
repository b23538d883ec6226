import { Registry } from 'prom-client';
import { ProjectorRunner } from '../projections/runner.js';
import { ConfigError, loadConfig } from './config.js';
import { createLogger, openDatabase, openEventStore } from './services.js';

/**
 * `npm run projector`: the projector on its own, next to (or instead of) the ones inside the service
 * processes. Whichever process holds the leader lock projects; this one takes over within about a
 * second when the leader dies.
 */
async function main() {
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const logger = createLogger(config).child({ component: 'projector' });
  const database = await openDatabase(config, logger);
  const eventStore = openEventStore(config, database.pool, logger);
  const projector = new ProjectorRunner({ pool: database.pool, eventStore, logger, metrics: new Registry() });

  let closing = false;
  const shutdown = async (signal: string) => {
    if (closing) return;
    closing = true;
    logger.info({ signal }, 'projector: stopping');
    const force = setTimeout(() => {
      logger.error('projector: shutdown took too long; exiting');
      process.exit(1);
    }, 15_000);
    force.unref();
    try {
      await projector.stop();
      await eventStore.close();
      await database.close();
      process.exit(0);
    } catch (error) {
      logger.error({ err: error }, 'projector: shutdown failed');
      process.exit(1);
    }
  };
  process.once('SIGINT', () => void shutdown('SIGINT'));
  process.once('SIGTERM', () => void shutdown('SIGTERM'));

  await projector.start();
  logger.info({ instance: projector.instanceId, leader: projector.isLeader }, projector.isLeader ? 'projector: started, leading' : 'projector: started, standing by');
}

main().catch((error) => {
  process.stderr.write(`projector failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
