import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../config.js';
import { accessTokenSecrets, buildDeps, createLogger, openDatabase, openEventStore } from '../services.js';
import { commands } from './commands/index.js';
import { type CliCommand, UsageError } from './context.js';

/**
 * `npm run ledger -- <command>`. Works whether or not the service runs: on the embedded default it
 * connects to the running instance, or starts one itself for the duration of the command.
 */

const helpText = () =>
  ['usage: npm run ledger -- <command> [options]', '', ...commands.map((command) => `  ${command.usage}`)].join('\n');

function findCommand(argv: string[]): { command: CliCommand; rest: string[] } | null {
  // Longest match first: `users create` before `users`.
  const sorted = [...commands].sort((a, b) => b.name.split(' ').length - a.name.split(' ').length);
  for (const command of sorted) {
    const words = command.name.split(' ');
    if (words.every((word, index) => argv[index] === word)) return { command, rest: argv.slice(words.length) };
  }
  return null;
}

async function run(argv: string[]): Promise<number> {
  if (argv.length === 0 || argv[0] === 'help' || argv[0] === '--help' || argv[0] === '-h') {
    process.stdout.write(`${helpText()}\n`);
    return argv.length === 0 ? 2 : 0;
  }
  const found = findCommand(argv);
  if (!found) {
    process.stderr.write(`unknown command: ${argv.join(' ')}\n\n${helpText()}\n`);
    return 2;
  }
  const { command, rest } = found;
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`usage: npm run ledger -- ${command.usage}\n`);
    return 0;
  }
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options: command.options ?? {}, allowPositionals: true, strict: true });
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\nusage: npm run ledger -- ${command.usage}\n`);
    return 2;
  }

  // The CLI speaks through stdout; logs only when something is wrong (or LOG_LEVEL says otherwise).
  const config = loadConfig(undefined, { logLevel: 'warn' });
  const logger = createLogger(config);
  // `migrate` applies (and reports) migrations itself; every other command starts on an up-to-date schema.
  const database = await openDatabase(config, logger, { migrate: command.name !== 'migrate' });
  const eventStore = openEventStore(config, database.pool, logger);
  try {
    const deps = buildDeps({ config, logger, pool: database.pool, eventStore, secrets: await accessTokenSecrets(config) });
    const code = await command.run(
      { config, logger, database, eventStore, deps, print: (line) => process.stdout.write(`${line}\n`) },
      parsed.values as Record<string, string | boolean | undefined>,
      parsed.positionals,
    );
    return code ?? 0;
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`${error.message}\nusage: npm run ledger -- ${command.usage}\n`);
      return 2;
    }
    throw error;
  } finally {
    await eventStore.close();
    await database.close();
  }
}

run(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    process.stderr.write(`${error instanceof ConfigError ? error.message : `error: ${error instanceof Error ? error.message : String(error)}`}\n`);
    // Bad configuration exits 2, as the service and the projector do.
    process.exit(error instanceof ConfigError ? 2 : 1);
  },
);
