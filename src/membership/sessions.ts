import { randomUUID } from 'node:crypto';
import type { CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import { type DatabasePool, sql } from '../adapters/postgres/pool.js';
import type { JsonObject } from '../core/event-store.js';

/** Sessions: what an access token's `sid` points at, so revocation takes effect on the next request. */

export const SESSION_TTL_DAYS = 30;

const principalRow = z.object({
  user_id: z.string(),
  email: z.string(),
  role: z.enum(['user', 'admin', 'auditor']),
  is_active: z.boolean(),
  session_revoked: z.boolean(),
  session_expired: z.boolean(),
});
export type Principal = z.infer<typeof principalRow>;

export interface Sessions {
  /** Opens a session; `now` is the decision time. */
  open(input: NewSession): Promise<{ id: string; expiresAt: Date }>;
  /** The user and session behind a verified access token, or null when either is gone. */
  principal(userId: string, sessionId: string, now: Date): Promise<Principal | null>;
}

export interface NewSession {
  readonly userId: string;
  readonly now: Date;
  readonly deviceInfo?: JsonObject | null;
  readonly ip?: string | null;
  readonly userAgent?: string | null;
}

/** Inserts a session row (on a pool or inside a caller's transaction); it ends SESSION_TTL_DAYS after `now`. */
export async function insertSession(db: CommonQueryMethods, input: NewSession): Promise<{ id: string; expiresAt: Date }> {
  const id = randomUUID();
  const at = input.now.toISOString();
  const expiresAt = new Date(input.now.getTime() + SESSION_TTL_DAYS * 86_400_000);
  await db.query(sql.unsafe`
    insert into user_sessions (id, user_id, device_info, ip, user_agent, created_at, last_used_at, expires_at)
    values (${id}, ${input.userId}, ${input.deviceInfo ? sql.jsonb(input.deviceInfo) : null}, ${input.ip ?? null},
            ${input.userAgent ?? null}, ${at}, ${at}, ${expiresAt.toISOString()})`);
  return { id, expiresAt };
}

export function createSessions(pool: DatabasePool): Sessions {
  return {
    open: (input) => insertSession(pool, input),
    principal: (userId, sessionId, now) =>
      pool.maybeOne(sql.type(principalRow)`
        select u.id::text as user_id, u.email, u.role, u.is_active,
               s.revoked_at is not null as session_revoked,
               s.expires_at <= ${now.toISOString()} as session_expired
        from users u join user_sessions s on s.user_id = u.id
        where u.id = ${userId} and s.id = ${sessionId}`),
  };
}
