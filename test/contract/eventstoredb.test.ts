/**
 * The shared event-store contract against the EventStoreDB adapter:
 * - over the in-process gRPC double, a fresh one per test, once per append path;
 * - over one double in a child process shared by every test, the way a real server is used (not
 *   `isolated`: the suite then names its streams uniquely and reads the global log only from the
 *   head it found), with answers arriving over the network while the client is busy;
 * - against a real server when EVENTSTORE_URL is set, e.g.
 *   `EVENTSTORE_URL='esdb://localhost:2113?tls=false' npx vitest run test/contract/eventstoredb`.
 */
import { afterAll, describe } from 'vitest';
import { createEventStoreDbEventStore } from '../../src/adapters/eventstoredb/event-store.js';
import { type ChildEsdbDouble, startEsdbDoubleInChildProcess } from '../support/esdb-double/child-process.js';
import { startEsdbDouble } from '../support/esdb-double/index.js';
import { describeEventStoreContract } from './event-store.contract.js';

/** A store whose cleanup fails the test if close() had to give up on calls the client left open. */
const openStore = (connectionString: string) => {
  const warnings: string[] = [];
  const store = createEventStoreDbEventStore({
    connectionString,
    logger: { debug: () => undefined, warn: (_details, message) => warnings.push(message) },
  });
  const close = async () => {
    await store.close();
    const leaks = warnings.filter((message) => message.includes('still open after close()'));
    if (leaks.length > 0) throw new Error(`EventStoreDB adapter: ${leaks.join('; ')}`);
  };
  return { store, close };
};

for (const appendPath of ['batch', 'legacy'] as const) {
  describeEventStoreContract(`eventstoredb (gRPC double, ${appendPath === 'batch' ? 'BatchAppend' : 'Append'})`, async () => {
    const double = await startEsdbDouble({ appendPath });
    const { store, close } = openStore(double.connectionString);
    return {
      store,
      cleanup: async () => {
        try {
          await close();
        } finally {
          await double.stop();
        }
      },
    };
  });
}

describe('one EventStoreDB double in another process, shared as a server is', () => {
  let shared: Promise<ChildEsdbDouble> | undefined;
  afterAll(async () => {
    await shared?.then(
      (double) => double.stop(),
      () => undefined,
    );
  });
  describeEventStoreContract(
    'eventstoredb (shared gRPC double in a child process)',
    async () => {
      shared ??= startEsdbDoubleInChildProcess();
      const { store, close } = openStore((await shared).connectionString);
      return { store, cleanup: close };
    },
    { isolated: false },
  );
});

const serverUrl = process.env.EVENTSTORE_URL;

describe.runIf(serverUrl !== undefined && serverUrl !== '')('a real EventStoreDB server (EVENTSTORE_URL)', () => {
  describeEventStoreContract(
    'eventstoredb (server)',
    async () => {
      const { store, close } = openStore(serverUrl as string);
      return { store, cleanup: close };
    },
    { isolated: false },
  );
});
