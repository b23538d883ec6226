import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres } from '../../src/adapters/postgres/embedded.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Admin URL of the Postgres server the tests use (database `postgres`). */
    postgresAdminUrl: string;
  }
}

/**
 * One real Postgres for the whole run: TEST_DATABASE_URL when given (CI or a developer's server),
 * otherwise an embedded server in a temporary directory. Each test file makes its own database.
 */
export default async function setup(project: TestProject) {
  const external = process.env.TEST_DATABASE_URL;
  if (external) {
    project.provide('postgresAdminUrl', external);
    return;
  }
  const dataDir = await mkdtemp(path.join(tmpdir(), 'ledger-test-pg-'));
  const db = await startEmbeddedPostgres({ dataDir, database: 'postgres' });
  project.provide('postgresAdminUrl', db.url);
  return async () => {
    await db.stop();
    await rm(dataDir, { recursive: true, force: true });
  };
}
