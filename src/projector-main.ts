import { Registry } from 'prom-client';
import { ProjectorRunner } from '../projections/runner.js';
import { configOrExit, exitCleanlyOnSignals } from './process.js';
import { createLogger, openDatabase, openEventStore } from './services.js';

/**
 * `npm run projector`: the projector on its own, next to (or instead of) the ones inside the service
 * processes. Whichever process holds the leader lock projects; this one takes over within about a
 * second when the leader dies.
 */
async function main() {
  const config = configOrExit();
  const logger = createLogger(config).child({ component: 'projector' });
  const database = await openDatabase(config, logger);
  const eventStore = openEventStore(config, database.pool, logger);
  const projector = new ProjectorRunner({ pool: database.pool, eventStore, logger, metrics: new Registry() });

  exitCleanlyOnSignals(logger, [() => projector.stop(), () => eventStore.close(), () => database.close()]);

  await projector.start();
  logger.info({ instance: projector.instanceId, leader: projector.isLeader }, projector.isLeader ? 'projector: started, leading' : 'projector: started, standing by');
}

main().catch((error) => {
  process.stderr.write(`projector failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
