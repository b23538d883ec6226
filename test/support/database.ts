import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { migrate } from '../../src/adapters/postgres/migrations.js';
import { createDatabasePool, type DatabasePool } from '../../src/adapters/postgres/pool.js';

export interface TestDatabase {
  readonly url: string;
  readonly pool: DatabasePool;
  /** Drops the database. */
  drop(): Promise<void>;
}

const withAdmin = async <T>(run: (client: pg.Client) => Promise<T>): Promise<T> => {
  const client = new pg.Client({ connectionString: inject('postgresAdminUrl') });
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end();
  }
};

/** A fresh, migrated database on the run's real Postgres server. */
export async function createTestDatabase(options: { migrate?: boolean; maxPoolSize?: number } = {}): Promise<TestDatabase> {
  const name = `test_${randomBytes(6).toString('hex')}`;
  await withAdmin((client) => client.query(`create database ${name}`));
  const url = inject('postgresAdminUrl').replace(/\/[^/?]*(\?|$)/, `/${name}$1`);
  const pool = await createDatabasePool(url, { maxPoolSize: options.maxPoolSize ?? 10 });
  if (options.migrate !== false) await migrate(url);
  return {
    url,
    pool,
    drop: async () => {
      await pool.end();
      await withAdmin((client) => client.query(`drop database if exists ${name} with (force)`));
    },
  };
}
