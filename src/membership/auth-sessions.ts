import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import { type DatabasePool, sql } from '../adapters/postgres/pool.js';
import type { JsonObject } from '../core/event-store.js';
import type { Role } from './access-tokens.js';
import { type KeysetCursor, type Page, pageOf } from './cursor.js';
import { insertSession } from './sessions.js';

/**
 * Sessions and their rotating refresh tokens (API §3; RFC 9700 §4.14.2).
 *
 * A session is one sign-in on one device: the family of its refresh tokens. Refresh tokens are
 * opaque (`rt_` + 256 random bits, base64url); only their SHA-256 is stored. Every refresh marks the
 * presented token used and issues a child that expires with the session — rotation never extends the
 * session's absolute lifetime (30 days from sign-in).
 *
 * Presenting a token that was already rotated means two parties hold it (a leak, RFC 9700): the whole
 * session and all its tokens are revoked. One exception, for a client that fires two refreshes at
 * once: within REFRESH_REUSE_GRACE_MS of the rotation, and only while no child of that token has been
 * used yet, the token is rotated again into a sibling. The first sibling to be used supersedes the
 * others; presenting a superseded sibling is reuse too. Everything happens in one transaction that
 * locks the session row first, so concurrent refreshes of one session are serialised.
 */

export const REFRESH_TOKEN_PREFIX = 'rt_';
export const REFRESH_TOKEN_PATTERN = /^rt_[A-Za-z0-9_-]{43}$/;
/** How long after a rotation the same token may be rotated again (a concurrent double refresh). */
export const REFRESH_REUSE_GRACE_MS = 10_000;

export const hashRefreshToken = (token: string): string => createHash('sha256').update(token).digest('hex');
const newRefreshToken = (): string => `${REFRESH_TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;

export interface Client {
  readonly ip: string | null;
  readonly userAgent: string | null;
}

export interface OpenedSession {
  readonly sessionId: string;
  readonly refreshToken: string;
  readonly expiresAt: Date;
}

export type RotateResult =
  | {
      readonly outcome: 'rotated';
      readonly userId: string;
      readonly email: string;
      readonly role: Role;
      readonly sessionId: string;
      readonly refreshToken: string;
      readonly expiresAt: Date;
      /** True when this was a second rotation inside the grace window. */
      readonly grace: boolean;
    }
  /** Unknown, malformed, expired or revoked token, or its session is over. */
  | { readonly outcome: 'invalid' }
  /** An already rotated token: the session has just been revoked. */
  | { readonly outcome: 'reused'; readonly userId: string; readonly sessionId: string }
  | { readonly outcome: 'inactive' };

export interface SessionView {
  readonly id: string;
  readonly device_info: JsonObject | null;
  readonly ip: string | null;
  readonly created_at: Date;
  readonly last_used_at: Date;
  readonly expires_at: Date;
}

export interface AuthSessions {
  open(input: { userId: string; now: Date; deviceInfo: JsonObject | null } & Client): Promise<OpenedSession>;
  rotate(input: { refreshToken: string; now: Date } & Client): Promise<RotateResult>;
  /** Logout: revokes the session of a refresh token that belongs to `userId`. False: no such token of this user. */
  revokeByRefreshToken(userId: string, refreshToken: string, now: Date): Promise<boolean>;
  /** Revokes one of the user's sessions. False: the user has no session with this id. */
  revoke(userId: string, sessionId: string, now: Date, reason: string): Promise<boolean>;
  /** The user's live sessions (not revoked, not expired), newest first. */
  list(userId: string, now: Date, page: { limit: number; cursor: KeysetCursor | null }): Promise<Page<SessionView>>;
}

const tokenRow = z.object({
  id: z.string(),
  session_id: z.string(),
  user_id: z.string(),
  parent_id: z.string().nullable(),
  used_at: z.date().nullable(),
  revoked_at: z.date().nullable(),
  revoke_reason: z.string().nullable(),
  expires_at: z.date(),
});

const lockedSessionRow = z.object({
  id: z.string(),
  user_id: z.string(),
  device_info: z.record(z.string(), z.unknown()).nullable(),
  revoked_at: z.date().nullable(),
  expires_at: z.date(),
  email: z.string(),
  role: z.enum(['user', 'admin', 'auditor']),
  is_active: z.boolean(),
});

const sessionViewRow = z.object({
  id: z.string(),
  device_info: z.record(z.string(), z.unknown()).nullable(),
  ip: z.string().nullable(),
  created_at: z.date(),
  last_used_at: z.date(),
  expires_at: z.date(),
});

const jsonb = (value: JsonObject | null) => (value ? sql.jsonb(value) : null);

export function createAuthSessions(pool: DatabasePool, options: { logger?: { warn(obj: object, msg: string): void } } = {}): AuthSessions {
  const revokeSession = async (
    tx: CommonQueryMethods,
    sessionId: string,
    at: string,
    reason: string,
  ): Promise<void> => {
    await tx.query(sql.unsafe`
      update user_sessions set revoked_at = ${at}, revoke_reason = ${reason}
      where id = ${sessionId} and revoked_at is null`);
    await tx.query(sql.unsafe`
      update user_tokens set revoked_at = ${at}, revoke_reason = ${reason}
      where session_id = ${sessionId} and revoked_at is null`);
  };

  return {
    open: ({ userId, now, deviceInfo, ip, userAgent }) =>
      pool.transaction(async (tx) => {
        const { id: sessionId, expiresAt } = await insertSession(tx, { userId, now, deviceInfo, ip, userAgent });
        const refreshToken = newRefreshToken();
        const at = now.toISOString();
        await tx.query(sql.unsafe`
          insert into user_tokens (id, user_id, session_id, token_hash, parent_id, device_info, ip_address, user_agent, issued_at, expires_at)
          values (${randomUUID()}, ${userId}, ${sessionId}, ${hashRefreshToken(refreshToken)}, null, ${jsonb(deviceInfo)},
                  ${ip}, ${userAgent}, ${at}, ${expiresAt.toISOString()})`);
        return { sessionId, refreshToken, expiresAt };
      }),

    async rotate({ refreshToken, now, ip, userAgent }) {
      if (!REFRESH_TOKEN_PATTERN.test(refreshToken)) return { outcome: 'invalid' };
      const hash = hashRefreshToken(refreshToken);
      const result = await pool.transaction(async (tx): Promise<RotateResult> => {
        const found = await tx.maybeOne(sql.type(z.object({ session_id: z.string() }))`
          select session_id from user_tokens where token_hash = ${hash}`);
        if (!found) return { outcome: 'invalid' };
        // Session row first: every rotation of this family queues here.
        const session = await tx.maybeOne(sql.type(lockedSessionRow)`
          select s.id, s.user_id, s.device_info, s.revoked_at, s.expires_at, u.email, u.role, u.is_active
          from user_sessions s join users u on u.id = s.user_id
          where s.id = ${found.session_id}
          for update of s`);
        const token = await tx.maybeOne(sql.type(tokenRow)`
          select id, session_id, user_id, parent_id, used_at, revoked_at, revoke_reason, expires_at
          from user_tokens where token_hash = ${hash} for update`);
        if (!session || !token) return { outcome: 'invalid' };
        // A deactivated user hears so first (API §3), whatever state the token is in.
        if (!session.is_active) return { outcome: 'inactive' };
        if (session.revoked_at !== null || session.expires_at <= now) return { outcome: 'invalid' };
        if (token.expires_at <= now) return { outcome: 'invalid' };
        const at = now.toISOString();
        const reused = () => revokeSession(tx, session.id, at, 'refresh_token_reused').then(
          (): RotateResult => ({ outcome: 'reused', userId: session.user_id, sessionId: session.id }),
        );
        if (token.revoked_at !== null) {
          // Superseded siblings are held by nobody legitimate; any other revocation ended the session.
          return token.revoke_reason === 'superseded' ? reused() : { outcome: 'invalid' };
        }
        let grace = false;
        if (token.used_at !== null) {
          const withinGrace = now.getTime() - token.used_at.getTime() <= REFRESH_REUSE_GRACE_MS;
          const familyMovedOn = await tx.exists(sql.unsafe`
            select 1 from user_tokens
            where parent_id = ${token.id} and (used_at is not null or revoked_at is not null)`);
          if (!withinGrace || familyMovedOn) return reused();
          grace = true;
        }
        if (!grace) {
          await tx.query(sql.unsafe`update user_tokens set used_at = ${at} where id = ${token.id}`);
          if (token.parent_id !== null) {
            // The client kept this token; siblings minted in a grace window are now dead weight.
            await tx.query(sql.unsafe`
              update user_tokens set revoked_at = ${at}, revoke_reason = 'superseded'
              where parent_id = ${token.parent_id} and id <> ${token.id} and used_at is null and revoked_at is null`);
          }
        }
        const next = newRefreshToken();
        const deviceInfo = session.device_info as JsonObject | null;
        await tx.query(sql.unsafe`
          insert into user_tokens (id, user_id, session_id, token_hash, parent_id, device_info, ip_address, user_agent, issued_at, expires_at)
          values (${randomUUID()}, ${session.user_id}, ${session.id}, ${hashRefreshToken(next)}, ${token.id}, ${jsonb(deviceInfo)},
                  ${ip}, ${userAgent}, ${at}, ${session.expires_at.toISOString()})`);
        await tx.query(sql.unsafe`
          update user_sessions set last_used_at = ${at}, ip = coalesce(${ip}, ip), user_agent = coalesce(${userAgent}, user_agent)
          where id = ${session.id}`);
        return {
          outcome: 'rotated',
          userId: session.user_id,
          email: session.email,
          role: session.role,
          sessionId: session.id,
          refreshToken: next,
          expiresAt: session.expires_at,
          grace,
        };
      });
      if (result.outcome === 'reused') {
        options.logger?.warn({ user_id: result.userId, session_id: result.sessionId, ip }, 'refresh token reuse: session revoked');
      }
      return result;
    },

    async revokeByRefreshToken(userId, refreshToken, now) {
      if (!REFRESH_TOKEN_PATTERN.test(refreshToken)) return false;
      return pool.transaction(async (tx) => {
        const token = await tx.maybeOne(sql.type(z.object({ session_id: z.string(), user_id: z.string() }))`
          select session_id, user_id from user_tokens where token_hash = ${hashRefreshToken(refreshToken)}`);
        if (!token || token.user_id !== userId) return false;
        await revokeSession(tx, token.session_id, now.toISOString(), 'logout');
        return true;
      });
    },

    revoke: (userId, sessionId, now, reason) =>
      pool.transaction(async (tx) => {
        const own = await tx.exists(sql.unsafe`select 1 from user_sessions where id = ${sessionId} and user_id = ${userId}`);
        if (!own) return false;
        await revokeSession(tx, sessionId, now.toISOString(), reason);
        return true;
      }),

    async list(userId, now, { limit, cursor }) {
      const after = cursor
        ? sql.fragment`and (created_at, id) < (${cursor.createdAt.toISOString()}::timestamptz, ${cursor.id}::uuid)`
        : sql.fragment``;
      const rows = await pool.any(sql.type(sessionViewRow)`
        select id, device_info, ip, created_at, last_used_at, expires_at
        from user_sessions
        where user_id = ${userId} and revoked_at is null and expires_at > ${now.toISOString()} ${after}
        order by created_at desc, id desc
        limit ${limit + 1}`);
      return pageOf(
        rows.map((row) => ({ ...row, device_info: row.device_info as JsonObject | null })),
        limit,
      );
    },
  };
}
