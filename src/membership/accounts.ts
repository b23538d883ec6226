import { randomUUID } from 'node:crypto';
import { UniqueIntegrityConstraintViolationError } from 'slonik';
import { z } from 'zod';
import { type DatabasePool, sql } from '../adapters/postgres/pool.js';
import { emailKey } from './emails.js';
import type { GoogleIdentity } from './google.js';
import { type UserRow, userRow } from './users.js';

/**
 * Account lifecycle around Google sign-in and (de)activation. Users are keyed by Google's `sub`; an
 * account created beforehand by the CLI (same verified email, no Google id yet) is linked on its
 * first Google sign-in.
 */

const columns = sql.fragment`id, google_id, email, name, profile_image, role, tier, tier_expires_at, is_active, created_at, updated_at, last_login_at`;

/** The verified email already belongs to an account tied to another Google identity. */
export class AccountConflictError extends Error {
  constructor() {
    super('the email of this Google account belongs to another account');
    this.name = 'AccountConflictError';
  }
}

export interface GoogleSignInResult {
  readonly user: UserRow;
  readonly isNew: boolean;
}

export interface Accounts {
  /**
   * Gets or creates the user of a verified Google identity, refreshing email, name, picture and
   * `last_login_at`; `admin` promotes the user (ADMIN_EMAILS), it never demotes.
   */
  signInWithGoogle(identity: GoogleIdentity, options: { now: Date; admin: boolean }): Promise<GoogleSignInResult>;
  /**
   * Sets `is_active`. Deactivation revokes the user's sessions: their refresh tokens at once, and their
   * access tokens are refused (`user_inactive`) from the next request on; reactivation then closes those
   * sessions for good, so the user signs in afresh. Null: no such user.
   */
  setActive(userId: string, active: boolean, options: { now: Date; reason: string }): Promise<UserRow | null>;
}

const MAX_ATTEMPTS = 3;

export function createAccounts(pool: DatabasePool): Accounts {
  const attempt = (identity: GoogleIdentity, now: string, admin: boolean) =>
    pool.transaction(async (tx): Promise<GoogleSignInResult> => {
      const role = admin ? sql.fragment`'admin'` : sql.fragment`role`;
      const byGoogleId = await tx.maybeOne(sql.type(userRow)`
        select ${columns} from users where google_id = ${identity.googleId} for update`);
      if (byGoogleId) {
        const emailTaken = await tx.exists(sql.unsafe`
          select 1 from users where lower(email) = lower(${identity.email}) and id <> ${byGoogleId.id}`);
        if (emailTaken) throw new AccountConflictError();
        const user = await tx.one(sql.type(userRow)`
          update users
          set email = ${identity.email},
              name = coalesce(${identity.name}, name),
              profile_image = coalesce(${identity.picture}, profile_image),
              role = ${role},
              last_login_at = ${now},
              updated_at = ${now}
          where id = ${byGoogleId.id}
          returning ${columns}`);
        return { user, isNew: false };
      }
      const byEmail = await tx.maybeOne(sql.type(userRow)`
        select ${columns} from users where lower(email) = lower(${identity.email}) for update`);
      if (byEmail) {
        // Postgres' lower() folds some non-ASCII letters onto ASCII ones (U+212A KELVIN SIGN is `k`): only the
        // same address, up to ASCII case, may take over an account created beforehand.
        if (byEmail.google_id !== null || emailKey(byEmail.email) !== emailKey(identity.email)) throw new AccountConflictError();
        const user = await tx.one(sql.type(userRow)`
          update users
          set google_id = ${identity.googleId},
              email = ${identity.email},
              name = coalesce(${identity.name}, name),
              profile_image = coalesce(${identity.picture}, profile_image),
              role = ${role},
              last_login_at = ${now},
              updated_at = ${now}
          where id = ${byEmail.id}
          returning ${columns}`);
        return { user, isNew: false };
      }
      const user = await tx.one(sql.type(userRow)`
        insert into users (id, google_id, email, name, profile_image, role, created_at, updated_at, last_login_at)
        values (${randomUUID()}, ${identity.googleId}, ${identity.email}, ${identity.name}, ${identity.picture},
                ${admin ? 'admin' : 'user'}, ${now}, ${now}, ${now})
        returning ${columns}`);
      return { user, isNew: true };
    });

  return {
    async signInWithGoogle(identity, { now, admin }) {
      for (let round = 1; ; round += 1) {
        try {
          return await attempt(identity, now.toISOString(), admin);
        } catch (error) {
          // A concurrent first sign-in (or email change) won the race: look again.
          if (error instanceof UniqueIntegrityConstraintViolationError && round < MAX_ATTEMPTS) continue;
          if (error instanceof UniqueIntegrityConstraintViolationError) throw new AccountConflictError();
          throw error;
        }
      }
    },

    setActive: (userId, active, { now, reason }) =>
      pool.transaction(async (tx) => {
        const at = now.toISOString();
        // `for no key update`, not `for update`: a refresh inserting a token of this user takes a key-share
        // lock on the user row (foreign key) while it holds its session row, which this transaction wants next.
        const before = await tx.maybeOne(sql.type(z.object({ is_active: z.boolean() }))`
          select is_active from users where id = ${userId} for no key update`);
        if (!before) return null;
        const user = await tx.one(sql.type(userRow)`
          update users set is_active = ${active}, updated_at = ${at} where id = ${userId} returning ${columns}`);
        if (!active) {
          // Refresh tokens die now. The session rows stay open while the user is inactive so that their
          // access tokens are answered `user_inactive` (the authenticate hook checks the session first).
          // Sessions before tokens: a refresh locks its session row, then its token rows, and taking
          // them in the other order here deadlocks with a refresh of the same user.
          await tx.query(sql.unsafe`
            update user_sessions set revoke_reason = ${`user_deactivated: ${reason}`.slice(0, 500)}
            where user_id = ${userId} and revoked_at is null`);
          await tx.query(sql.unsafe`
            update user_tokens set revoked_at = ${at}, revoke_reason = 'user_deactivated'
            where user_id = ${userId} and revoked_at is null`);
        } else if (!before.is_active) {
          // Reactivated: nothing from before the deactivation comes back; the user signs in afresh.
          await tx.query(sql.unsafe`
            update user_sessions set revoked_at = ${at}, revoke_reason = coalesce(revoke_reason, 'user_deactivated')
            where user_id = ${userId} and revoked_at is null`);
        }
        return user;
      }),
  };
}
