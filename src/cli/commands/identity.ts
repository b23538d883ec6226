import { z } from 'zod';
import { migrate } from '../../adapters/postgres/migrations.js';
import { sql } from '../../adapters/postgres/pool.js';
import type { Role } from '../../membership/access-tokens.js';
import { UserExistsError } from '../../membership/users.js';
import { type CliCommand, UsageError } from '../context.js';

const ROLES: readonly Role[] = ['user', 'admin', 'auditor'];
const email = z.email();

const requireEmail = (value: unknown): string => {
  const parsed = email.safeParse(value);
  if (!parsed.success) throw new UsageError('--email must be an email address');
  return parsed.data;
};

const requireRole = (value: unknown): Role => {
  if (typeof value !== 'string' || !ROLES.includes(value as Role)) throw new UsageError(`--role must be one of ${ROLES.join(', ')}`);
  return value as Role;
};

export const migrateCommand: CliCommand = {
  name: 'migrate',
  usage: 'migrate                       apply pending migrations',
  async run({ database, print }) {
    const { applied } = await migrate(database.url, { log: (line) => print(line) });
    if (applied.length === 0) print('migrations are up to date');
  },
};

export const usersCreateCommand: CliCommand = {
  name: 'users create',
  usage: 'users create --email E [--name N] [--role admin|auditor]',
  options: { email: { type: 'string' }, name: { type: 'string' }, role: { type: 'string' } },
  async run({ deps, print }, values) {
    const address = requireEmail(values.email);
    const role = values.role === undefined ? 'user' : requireRole(values.role);
    try {
      const user = await deps.users.create({ email: address, name: typeof values.name === 'string' ? values.name : null, role });
      print(`created user ${user.id} <${user.email}> role=${user.role}`);
    } catch (error) {
      if (error instanceof UserExistsError) {
        print(`a user with email ${address} already exists`);
        return 1;
      }
      throw error;
    }
  },
};

export const usersRoleCommand: CliCommand = {
  name: 'users role',
  usage: 'users role --email E --role user|admin|auditor',
  options: { email: { type: 'string' }, role: { type: 'string' } },
  async run({ deps, print }, values) {
    const user = await deps.users.findByEmail(requireEmail(values.email));
    if (!user) throw new UsageError(`no user with email ${String(values.email)}`);
    const updated = await deps.users.setRole(user.id, requireRole(values.role));
    print(`user ${updated?.email} now has role ${updated?.role}`);
  },
};

const setActive = (active: boolean): CliCommand => ({
  name: active ? 'users activate' : 'users deactivate',
  usage: `users ${active ? 'activate' : 'deactivate'} --email E`,
  options: { email: { type: 'string' } },
  async run({ deps, print }, values) {
    const user = await deps.users.findByEmail(requireEmail(values.email));
    if (!user) throw new UsageError(`no user with email ${String(values.email)}`);
    // The same transition as PUT /admin/users/:id/active: deactivation revokes the refresh tokens,
    // reactivation closes every session from before, however the user was deactivated.
    await deps.accounts.setActive(user.id, active, { now: deps.clock.now(), reason: 'cli' });
    print(`user ${user.email} is now ${active ? 'active' : 'inactive'}`);
  },
});

export const usersActivateCommand = setActive(true);
export const usersDeactivateCommand = setActive(false);

export const tokenCommand: CliCommand = {
  name: 'token',
  usage: 'token --email E                print an access token (not in production)',
  options: { email: { type: 'string' } },
  async run({ config, deps, print }, values) {
    if (config.nodeEnv === 'production') throw new UsageError('token is refused when NODE_ENV=production');
    const user = await deps.users.findByEmail(requireEmail(values.email));
    if (!user) throw new UsageError(`no user with email ${String(values.email)}`);
    if (!user.is_active) throw new UsageError(`user ${user.email} is inactive`);
    const session = await deps.sessions.open({ userId: user.id, now: deps.clock.now(), deviceInfo: { source: 'cli' } });
    // The tier claim is the ledger's effective tier, as at sign-in (gates never trust it anyway).
    const { tier } = await deps.accountTiers.effectiveTier(user.id, deps.clock.now());
    const token = await deps.accessTokens.sign({
      userId: user.id,
      email: user.email,
      tier,
      role: user.role,
      sessionId: session.id,
    });
    print(token);
  },
};

export const userIdByEmail = async (deps: { pool: import('slonik').DatabasePool }, address: string) =>
  deps.pool.maybeOneFirst(sql.type(z.object({ id: z.string() }))`select id::text as id from users where lower(email) = lower(${address})`);
