import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../support/app.js';

/**
 * The CLI as a user runs it (a separate process, through tsx), on the same database as a running app:
 * a user created and a token printed by the CLI are accepted by GET /me.
 */
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let t: TestApp;

beforeAll(async () => {
  t = await createTestApp({ projector: false });
});
afterAll(async () => {
  await t?.close();
});

const ledger = (args: string[], env: Record<string, string> = {}) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', ...args],
      {
        cwd: root,
        env: {
          ...process.env,
          NODE_ENV: 'test',
          LOG_LEVEL: 'silent',
          DATABASE_URL: t.db.url,
          JWT_ACCESS_SECRET: t.secrets.access,
          JWT_REFRESH_SECRET: t.secrets.refresh,
          ...env,
        },
        timeout: 60_000,
      },
      (error, stdout, stderr) => resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });

const me = (token: string) => t.app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${token}` } });

describe('npm run ledger', () => {
  it('users create, then token: GET /me accepts the token; users role and deactivate take effect', async () => {
    const created = await ledger(['users', 'create', '--email', 'cli@example.com', '--name', 'Cli User']);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toMatch(/created user [0-9a-f-]{36} <cli@example.com>/);

    const printed = await ledger(['token', '--email', 'cli@example.com']);
    expect(printed.code, printed.stderr).toBe(0);
    const token = printed.stdout.trim();
    const response = await me(token);
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ email: 'cli@example.com', name: 'Cli User', role: 'user', tier: 'free' });

    expect((await ledger(['users', 'role', '--email', 'cli@example.com', '--role', 'auditor'])).code).toBe(0);
    expect((await me(token)).json().role).toBe('auditor');

    expect((await ledger(['users', 'deactivate', '--email', 'cli@example.com'])).code).toBe(0);
    const refused = await me(token);
    expect(refused.statusCode).toBe(401);
    expect(refused.json().code).toBe('user_inactive');
  });

  it('refuses bad input with a usage line and a non-zero exit, changing nothing', async () => {
    const bad = await ledger(['users', 'create', '--email', 'not-an-email']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--email must be an email address/);
    expect(await t.deps.users.findByEmail('not-an-email')).toBeNull();
    const unknown = await ledger(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command/);
  });

  it('a bad configuration exits 2 with one line naming the variable, as the service does', async () => {
    const bad = await ledger(['projections', 'status'], { PORT: 'abc' });
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toBe('invalid configuration: PORT must be a port number');
  });

  it('<command> --help prints that command\'s usage and exits 0', async () => {
    const help = await ledger(['users', 'create', '--help']);
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/^usage: npm run ledger -- users create --email E/);
  });

  it('token is refused when NODE_ENV=production', async () => {
    await ledger(['users', 'create', '--email', 'prod@example.com']);
    const refused = await ledger(['token', '--email', 'prod@example.com'], { NODE_ENV: 'production', AI_PROVIDER: 'echo' });
    expect(refused.code).toBe(2);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toMatch(/refused when NODE_ENV=production/);
  });
});
