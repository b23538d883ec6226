/**
 * Entry point of the child process started by child-process.ts: serves one double, reports its
 * connection string over IPC, and stops when told to or when its parent goes away.
 */
import { startEsdbDouble } from './index.js';

const double = await startEsdbDouble(JSON.parse(process.env.ESDB_DOUBLE_OPTIONS ?? '{}'));
process.send?.({ connectionString: double.connectionString });

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  void double.stop().then(() => process.exit(0));
};
process.on('message', (message) => {
  if (message === 'stop') stop();
});
process.on('disconnect', stop);
