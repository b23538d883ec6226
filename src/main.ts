import { buildApp } from './app.js';
import { configOrExit, exitCleanlyOnSignals } from './process.js';
import { accessTokenSecrets, buildDeps, createLogger, createProjector, openDatabase, openEventStore } from './services.js';

/** Composition root: reads config, builds adapters, starts the server; shuts down cleanly on signals. */
async function main() {
  const config = configOrExit();
  const logger = createLogger(config);
  const database = await openDatabase(config, logger);
  const eventStore = openEventStore(config, database.pool, logger);
  const deps = buildDeps({ config, logger, pool: database.pool, eventStore, secrets: await accessTokenSecrets(config) });
  const app = await buildApp(deps);
  deps.sweeper.start();
  // The projector runs in every service process; the leader lock lets exactly one of them project.
  const projector = createProjector(deps);
  await projector.start();

  exitCleanlyOnSignals(logger, [
    () => deps.sweeper.stop(),
    () => app.close(),
    () => projector.stop(),
    () => eventStore.close(),
    () => database.close(),
  ]);

  await app.listen({ port: config.port, host: config.host });
}

main().catch((error) => {
  process.stderr.write(`failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
