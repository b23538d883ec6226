import { pino } from 'pino';
import { exitCleanlyOnSignals } from '../../src/process.js';

/**
 * A long-running process with one slow shutdown step (test/e2e/process-signals.test.ts): prints
 * "ready", and on SIGINT/SIGTERM "step done" once its step (500 ms) has finished.
 */
const logger = pino({ level: 'silent' });
const keepAlive = setInterval(() => {}, 1000);
exitCleanlyOnSignals(logger, [
  async () => {
    await new Promise((resolve) => setTimeout(resolve, 500));
    process.stdout.write('step done\n');
  },
  async () => clearInterval(keepAlive),
]);
process.stdout.write('ready\n');
