import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { migrate } from '../../src/adapters/postgres/migrations.js';
import { sql } from '../../src/adapters/postgres/pool.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

let db: TestDatabase | undefined;
afterEach(async () => {
  await db?.drop();
  db = undefined;
});

const migrationsDir = async (files: Record<string, string>) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'migrations-'));
  for (const [name, text] of Object.entries(files)) await writeFile(path.join(dir, name), text);
  return dir;
};

describe('migrations', () => {
  it('applies every migration once, in order, and records it', async () => {
    db = await createTestDatabase({ migrate: false });
    const dir = await migrationsDir({
      '001_a.sql': 'create table a (id int); insert into a values (1);',
      '002_b.sql': 'insert into a values (2);',
    });
    expect((await migrate(db.url, { dir })).applied).toEqual(['001_a', '002_b']);
    expect((await migrate(db.url, { dir })).applied).toEqual([]);
    const ids = await db.pool.manyFirst(sql.type(z.object({ id: z.number() }))`select id from a order by id`);
    expect(ids).toEqual([1, 2]);
  });

  it('is safe when several processes migrate at once', async () => {
    db = await createTestDatabase({ migrate: false });
    const dir = await migrationsDir({ '001_a.sql': 'create table a (id int primary key); insert into a values (1);' });
    const results = await Promise.all([1, 2, 3, 4].map(() => migrate(db!.url, { dir })));
    expect(results.flatMap((r) => r.applied)).toEqual(['001_a']);
  });

  it('refuses a migration that was edited after being applied', async () => {
    db = await createTestDatabase({ migrate: false });
    const dir = await migrationsDir({ '001_a.sql': 'create table a (id int);' });
    await migrate(db.url, { dir });
    await writeFile(path.join(dir, '001_a.sql'), 'create table a (id bigint);');
    await expect(migrate(db.url, { dir })).rejects.toThrow(/changed after it was applied/);
  });

  it('rolls back a failing migration entirely', async () => {
    db = await createTestDatabase({ migrate: false });
    const dir = await migrationsDir({ '001_a.sql': 'create table a (id int); select 1/0;' });
    await expect(migrate(db.url, { dir })).rejects.toThrow();
    const exists = await db.pool.oneFirst(sql.type(z.object({ t: z.string().nullable() }))`select to_regclass('a')::text as t`);
    expect(exists).toBeNull();
  });
});
