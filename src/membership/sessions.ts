import { randomUUID } from 'node:crypto';
import type { CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import { type DatabasePool, prepared, sql } from '../adapters/postgres/pool.js';
import { createBatcher } from '../core/batcher.js';
import type { JsonObject } from '../core/event-store.js';
import { isUuid } from '../core/ids.js';

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

const principalOfBatch = principalRow.extend({ i: z.coerce.number() });

/**
 * One lookup query in flight: measured against two and four, the fewest statements per spend (Postgres
 * ~318 µs per spend against ~343 and ~465) at the same throughput and p99.
 */
const SESSION_BATCHING = { maxInFlight: 1 } as const;

interface PrincipalLookup {
  readonly userId: string;
  readonly sessionId: string;
  readonly now: Date;
}

export function createSessions(pool: DatabasePool): Sessions {
  /**
   * Every authenticated request asks this, so concurrent requests share one query (src/core/batcher.ts):
   * each still reads the rows as committed when its batch runs, after its token was verified, so a
   * revocation or deactivation committed before that is seen, as with one query per request.
   */
  const lookup = createBatcher(async (lookups: readonly PrincipalLookup[]) => {
    const rows = await pool.any(
      prepared(sql.type(principalOfBatch)`
      select k.i, u.id::text as user_id, u.email, u.role, u.is_active,
             s.revoked_at is not null as session_revoked,
             s.expires_at <= k.at as session_expired
      from unnest(
        ${sql.array(lookups.map((l) => l.userId), 'uuid')},
        ${sql.array(lookups.map((l) => l.sessionId), 'uuid')},
        ${sql.array(lookups.map((l) => l.now.toISOString()), 'timestamptz')}
      ) with ordinality as k(user_id, session_id, at, i)
      join users u on u.id = k.user_id
      join user_sessions s on s.user_id = u.id and s.id = k.session_id`),
    );
    const found = new Map(rows.map(({ i, ...principal }) => [i, principal]));
    return lookups.map((_, index) => found.get(index + 1) ?? null);
  }, SESSION_BATCHING);
  return {
    open: (input) => insertSession(pool, input),
    // Ids that are not UUIDs name no row (and must not fail the batch they would share).
    principal: async (userId, sessionId, now) => (isUuid(userId) && isUuid(sessionId) ? lookup({ userId, sessionId, now }) : null),
  };
}
