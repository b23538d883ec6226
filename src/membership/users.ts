import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { type DatabasePool, sql } from '../adapters/postgres/pool.js';
import type { Role, Tier } from './access-tokens.js';

/** The `users` table: identity. Tier and usage columns are projected from the ledger. */

export const userRow = z.object({
  id: z.string().uuid(),
  google_id: z.string().nullable(),
  email: z.string(),
  name: z.string().nullable(),
  profile_image: z.string().nullable(),
  role: z.enum(['user', 'admin', 'auditor']),
  tier: z.enum(['free', 'basic', 'pro', 'enterprise']),
  tier_expires_at: z.date().nullable(),
  is_active: z.boolean(),
  created_at: z.date(),
  updated_at: z.date(),
  last_login_at: z.date().nullable(),
});
export type UserRow = z.infer<typeof userRow>;

const columns = sql.fragment`id, google_id, email, name, profile_image, role, tier, tier_expires_at, is_active, created_at, updated_at, last_login_at`;

export class UserExistsError extends Error {
  constructor(readonly email: string) {
    super(`a user with email ${email} already exists`);
    this.name = 'UserExistsError';
  }
}

export interface Users {
  create(input: { email: string; name?: string | null; role?: Role; googleId?: string | null; profileImage?: string | null }): Promise<UserRow>;
  findById(id: string): Promise<UserRow | null>;
  findByEmail(email: string): Promise<UserRow | null>;
  setRole(id: string, role: Role): Promise<UserRow | null>;
  setActive(id: string, active: boolean): Promise<UserRow | null>;
}

export function createUsers(pool: DatabasePool): Users {
  return {
    async create(input) {
      const id = randomUUID();
      const row = await pool.maybeOne(sql.type(userRow)`
        insert into users (id, email, name, role, google_id, profile_image)
        values (${id}, ${input.email}, ${input.name ?? null}, ${input.role ?? 'user'}, ${input.googleId ?? null}, ${input.profileImage ?? null})
        on conflict do nothing
        returning ${columns}`);
      if (!row) throw new UserExistsError(input.email);
      return row;
    },
    findById: (id) => pool.maybeOne(sql.type(userRow)`select ${columns} from users where id = ${id}`),
    findByEmail: (email) => pool.maybeOne(sql.type(userRow)`select ${columns} from users where lower(email) = lower(${email})`),
    setRole: (id, role) =>
      pool.maybeOne(sql.type(userRow)`update users set role = ${role}, updated_at = now() where id = ${id} returning ${columns}`),
    setActive: (id, active) =>
      pool.maybeOne(sql.type(userRow)`update users set is_active = ${active}, updated_at = now() where id = ${id} returning ${columns}`),
  };
}

export type { Role, Tier };
