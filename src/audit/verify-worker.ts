import { parentPort, workerData } from 'node:worker_threads';
import { AsyncQueue } from './async-queue.js';
import { type Chunk, createChunkScanner } from './chunk.js';

/**
 * A worker thread of `audit verify --all` (./verify-all.ts): verifies the chunks the coordinator sends
 * from their events and posts each chunk's reports (the coordinator compares them with the read models,
 * ./judge.ts), plus event counts for the progress bar. It loads no slonik and holds no pool.
 *
 * in:  { type: 'chunk', chunk } …, then { type: 'end' }
 * out: { type: 'progress', events } …, { type: 'chunk', scanned } …, then { type: 'done' } or { type: 'error', message }
 */

export interface WorkerInit {
  readonly connectionUri: string;
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
  const scanner = await createChunkScanner({ connectionUri: init.connectionUri, pageSize: init.pageSize });
  try {
    await scanner.run(
      queue,
      (scanned) => port?.postMessage({ type: 'chunk', scanned }),
      (events) => port?.postMessage({ type: 'progress', events }),
    );
  } finally {
    await scanner.close();
  }
}

main().then(
  () => port.postMessage({ type: 'done' }),
  (error: unknown) => port.postMessage({ type: 'error', message: error instanceof Error ? error.message : String(error) }),
);
