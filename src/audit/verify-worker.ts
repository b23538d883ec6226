import { parentPort, workerData } from 'node:worker_threads';
import { createDatabasePool } from '../adapters/postgres/pool.js';
import { AsyncQueue } from './async-queue.js';
import { type Chunk, createChunkScanner } from './chunk.js';

/**
 * A worker thread of `audit verify --all` (./verify-all.ts): verifies the chunks the coordinator sends
 * and posts each chunk's outcome, plus event counts for the progress bar.
 *
 * in:  { type: 'chunk', chunk } …, then { type: 'end' }
 * out: { type: 'progress', events } …, { type: 'chunk', outcome } …, then { type: 'done' } or { type: 'error', message }
 */

export interface WorkerInit {
  readonly connectionUri: string;
  readonly compareReadModels: boolean;
  readonly pageSize?: number;
}

export type ToWorker = { type: 'chunk'; chunk: Chunk } | { type: 'end' };

const port = parentPort;
if (!port) throw new Error('verify-worker must run in a worker thread');
const init = workerData as WorkerInit;

const queue = new AsyncQueue<Chunk>();
port.on('message', (message: ToWorker) => {
  if (message.type === 'chunk') queue.push(message.chunk);
  else queue.end();
});

async function main(): Promise<void> {
  const pool = init.compareReadModels ? await createDatabasePool(init.connectionUri, { maxPoolSize: 1 }) : null;
  const scanner = await createChunkScanner({ connectionUri: init.connectionUri, pool, pageSize: init.pageSize });
  try {
    await scanner.run(
      queue,
      (outcome) => port?.postMessage({ type: 'chunk', outcome }),
      (events) => port?.postMessage({ type: 'progress', events }),
    );
  } finally {
    await scanner.close();
    await pool?.end();
  }
}

main().then(
  () => port.postMessage({ type: 'done' }),
  (error: unknown) => port.postMessage({ type: 'error', message: error instanceof Error ? error.message : String(error) }),
);
