import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createBatcher } from '../../../src/core/batcher.js';

const deferred = <T>() => {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
};

describe('createBatcher', () => {
  it('sends a lone request at once, and coalesces the ones arriving while it runs', async () => {
    const batches: number[][] = [];
    const gates: ReturnType<typeof deferred<void>>[] = [];
    const load = createBatcher(
      async (inputs: readonly number[]) => {
        batches.push([...inputs]);
        const gate = deferred<void>();
        gates.push(gate);
        await gate.promise;
        return inputs.map((n) => n * 10);
      },
      { maxInFlight: 1 },
    );
    const first = load(1);
    const rest = [load(2), load(3), load(4)];
    expect(batches).toEqual([[1]]);
    gates[0]?.resolve();
    expect(await first).toBe(10);
    await new Promise((resolve) => setImmediate(resolve));
    expect(batches).toEqual([[1], [2, 3, 4]]);
    gates[1]?.resolve();
    expect(await Promise.all(rest)).toEqual([20, 30, 40]);
  });

  it('fails every request of a failing batch, and only those', async () => {
    let calls = 0;
    const load = createBatcher(
      async (inputs: readonly number[]) => {
        calls += 1;
        if (calls === 1) throw new Error('boom');
        return inputs;
      },
      { maxInFlight: 1 },
    );
    const results = await Promise.allSettled([load(1), load(2), load(3)]);
    expect(results[0]).toMatchObject({ status: 'rejected' });
    expect(results.slice(1)).toEqual([
      { status: 'fulfilled', value: 2 },
      { status: 'fulfilled', value: 3 },
    ]);
  });

  it('refuses a batch answered with the wrong number of results', async () => {
    const load = createBatcher(async (inputs: readonly number[]) => inputs.slice(1));
    await expect(load(1)).rejects.toThrow(/0 results for 1 inputs/);
  });

  it('every caller gets the answer to its own input, whatever the batching', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer(), { maxLength: 300 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 50 }), async (inputs, maxInFlight, maxBatch) => {
        let running = 0;
        let most = 0;
        const load = createBatcher(
          async (batch: readonly number[]) => {
            expect(batch.length).toBeLessThanOrEqual(maxBatch);
            running += 1;
            most = Math.max(most, running);
            await new Promise((resolve) => setImmediate(resolve));
            running -= 1;
            return batch.map((n) => `${n}!`);
          },
          { maxInFlight, maxBatch },
        );
        expect(await Promise.all(inputs.map(load))).toEqual(inputs.map((n) => `${n}!`));
        expect(most).toBeLessThanOrEqual(maxInFlight);
      }),
      { numRuns: 50 },
    );
  });
});
