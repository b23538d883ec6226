import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

/** migrations/NNN_name.sql, applied in order, each once, recorded in `schema_migrations`. */

export const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../migrations');

/** Any constant shared by every process that migrates this database. */
const MIGRATION_LOCK_KEY = 7_461_001;

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
  readonly checksum: string;
}

export async function loadMigrations(dir = MIGRATIONS_DIR): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((file) => file.endsWith('.sql')).sort();
  const migrations: Migration[] = [];
  for (const file of files) {
    const match = /^(\d{3})_([a-z0-9_]+)\.sql$/.exec(file);
    if (!match) throw new Error(`migration file ${file} is not named NNN_name.sql`);
    const text = await readFile(path.join(dir, file), 'utf8');
    migrations.push({
      version: Number(match[1]),
      name: match[2] as string,
      sql: text,
      checksum: createHash('sha256').update(text).digest('hex'),
    });
  }
  const versions = new Set(migrations.map((m) => m.version));
  if (versions.size !== migrations.length) throw new Error('two migrations share a version number');
  return migrations;
}

export interface MigrateResult {
  readonly applied: readonly string[];
}

/**
 * Safe when several processes start at once: a session advisory lock serialises them, and the
 * loser then finds every migration recorded. Migration files are multi-statement scripts, which
 * slonik (rightly) refuses, so this one routine talks to Postgres through `pg` directly.
 */
export async function migrate(
  databaseUrl: string,
  options: { dir?: string; log?: (message: string) => void } = {},
): Promise<MigrateResult> {
  const migrations = await loadMigrations(options.dir);
  const applied: string[] = [];
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query('select pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    await client.query(`
      create table if not exists schema_migrations (
        version integer primary key,
        name text not null,
        checksum text not null,
        applied_at timestamptz not null default now()
      )`);
    const rows = await client.query<{ version: number; checksum: string }>('select version, checksum from schema_migrations');
    const done = new Map(rows.rows.map((row) => [row.version, row.checksum]));
    for (const migration of migrations) {
      const label = `${String(migration.version).padStart(3, '0')}_${migration.name}`;
      const checksum = done.get(migration.version);
      if (checksum !== undefined) {
        if (checksum !== migration.checksum) {
          throw new Error(`migration ${label} was changed after it was applied; add a new migration instead`);
        }
        continue;
      }
      await client.query('begin');
      try {
        await client.query(migration.sql);
        await client.query('insert into schema_migrations (version, name, checksum) values ($1, $2, $3)', [
          migration.version,
          migration.name,
          migration.checksum,
        ]);
        await client.query('commit');
      } catch (error) {
        await client.query('rollback');
        throw new Error(`migration ${label} failed: ${(error as Error).message}`);
      }
      applied.push(label);
      options.log?.(`applied migration ${label}`);
    }
  } finally {
    await client.query('select pg_advisory_unlock_all()').catch(() => {});
    await client.end();
  }
  return { applied };
}
