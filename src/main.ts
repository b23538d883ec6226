import { buildApp } from './app.js';
import { ConfigError, loadConfig } from './config.js';
import { accessTokenSecrets, buildDeps, createLogger, createProjector, openDatabase, openEventStore } from './services.js';

/** Composition root: reads config, builds adapters, starts the server; shuts down cleanly on signals. */
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
  const logger = createLogger(config);
  const database = await openDatabase(config, logger);
  const eventStore = openEventStore(config, database.pool, logger);
  const deps = buildDeps({ config, logger, pool: database.pool, eventStore, secrets: await accessTokenSecrets(config) });
  const app = await buildApp(deps);
  deps.sweeper.start();
  // The projector runs in every service process; the leader lock lets exactly one of them project.
  const projector = createProjector(deps);
  await projector.start();

  let closing = false;
  const shutdown = async (signal: string) => {
    if (closing) return;
    closing = true;
    logger.info({ signal }, 'shutting down: finishing in-flight requests');
    const force = setTimeout(() => {
      logger.error('shutdown took too long; exiting');
      process.exit(1);
    }, 15_000);
    force.unref();
    try {
      await deps.sweeper.stop();
      await app.close();
      await projector.stop();
      await eventStore.close();
      await database.close();
      logger.info('stopped');
      process.exit(0);
    } catch (error) {
      logger.error({ err: error }, 'shutdown failed');
      process.exit(1);
    }
  };
  process.once('SIGINT', () => void shutdown('SIGINT'));
  process.once('SIGTERM', () => void shutdown('SIGTERM'));

  await app.listen({ port: config.port, host: config.host });
}

main().catch((error) => {
  process.stderr.write(`failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
