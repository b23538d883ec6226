/**
 * Coalesces concurrent lookups into batches, like a group commit: a request that finds fewer than
 * `maxInFlight` batches running goes out at once (no added latency when idle); requests arriving while
 * they run wait and then go out together as one batch. `run` answers a batch in input order, one
 * result per input; if it throws, every request of that batch fails with its error.
 */
export interface BatcherOptions {
  /** Batches running at once. Default 2. */
  readonly maxInFlight?: number;
  /** Most inputs in one batch. Default 256. */
  readonly maxBatch?: number;
}

export function createBatcher<I, O>(run: (inputs: readonly I[]) => Promise<readonly O[]>, options: BatcherOptions = {}): (input: I) => Promise<O> {
  const maxInFlight = options.maxInFlight ?? 2;
  const maxBatch = options.maxBatch ?? 256;
  const queue: { input: I; resolve: (output: O) => void; reject: (error: unknown) => void }[] = [];
  let inFlight = 0;

  const pump = () => {
    while (inFlight < maxInFlight && queue.length > 0) {
      const batch = queue.splice(0, maxBatch);
      inFlight += 1;
      run(batch.map((item) => item.input))
        .then(
          (outputs) => {
            if (outputs.length !== batch.length) throw new Error(`batcher: ${outputs.length} results for ${batch.length} inputs`);
            for (const [i, item] of batch.entries()) item.resolve(outputs[i] as O);
          },
          (error) => {
            for (const item of batch) item.reject(error);
          },
        )
        .catch((error) => {
          for (const item of batch) item.reject(error);
        })
        .finally(() => {
          inFlight -= 1;
          pump();
        });
    }
  };

  return (input) =>
    new Promise<O>((resolve, reject) => {
      queue.push({ input, resolve, reject });
      pump();
    });
}
