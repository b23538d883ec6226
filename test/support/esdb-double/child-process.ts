/**
 * The double in a child process: client and server then no longer share an event loop, so
 * responses arrive in network-sized pieces while the client is busy, as from a real server. Some
 * client behaviour (a completed call left paused with data in its buffer) only shows up this way.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import type { EsdbDoubleOptions } from './index.js';

export type ChildEsdbDoubleOptions = Pick<EsdbDoubleOptions, 'appendPath' | 'maxAppendSize' | 'seedSystemEvents'>;

export interface ChildEsdbDouble {
  readonly connectionString: string;
  /** Stops the server and waits for the child to exit (killed if it takes longer than 5 s). */
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 5_000;

const waitForExit = async (child: ChildProcess): Promise<void> => {
  if (child.exitCode !== null || child.signalCode !== null) return;
  let timer: NodeJS.Timeout | undefined;
  const exited = once(child, 'exit').then(() => undefined);
  const killed = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve();
    }, STOP_TIMEOUT_MS);
  });
  await Promise.race([exited, killed]);
  clearTimeout(timer);
};

export async function startEsdbDoubleInChildProcess(options: ChildEsdbDoubleOptions = {}): Promise<ChildEsdbDouble> {
  const child = fork(fileURLToPath(new URL('./child.ts', import.meta.url)), [], {
    execArgv: ['--import', 'tsx'],
    env: { ...process.env, ESDB_DOUBLE_OPTIONS: JSON.stringify(options) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  try {
    const connectionString = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the EventStoreDB double did not start in time')), START_TIMEOUT_MS);
      child.once('message', (message: { connectionString?: unknown }) => {
        clearTimeout(timer);
        if (typeof message.connectionString === 'string') resolve(message.connectionString);
        else reject(new Error(`unexpected message from the double: ${JSON.stringify(message)}`));
      });
      child.once('error', reject);
      child.once('exit', (code, signal) => reject(new Error(`the double exited early (${code ?? signal})`)));
    });
    return {
      connectionString,
      stop: async () => {
        if (child.connected) child.send('stop');
        await waitForExit(child);
      },
    };
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
}
