import { createHash, randomUUID } from 'node:crypto';
import { errors as joseErrors, jwtVerify, SignJWT, type JWTHeaderParameters, type JWTPayload } from 'jose';
import type { Clock } from '../core/clock.js';

/**
 * Access tokens (API §3): HS256 JWTs with explicit typing (`typ: at+jwt`, RFC 9068), a `kid` so the
 * secret can be rotated (old keys stay verify-only), and every claim checked on the way in.
 */

export type Role = 'user' | 'admin' | 'auditor';
export type Tier = 'free' | 'basic' | 'pro' | 'enterprise';

export interface AccessClaims {
  readonly userId: string;
  readonly email: string;
  readonly tier: Tier;
  readonly role: Role;
  readonly sessionId: string;
  readonly tokenId: string;
  readonly issuedAt: Date;
  readonly expiresAt: Date;
}

export type AccessTokenFailure = 'invalid_token' | 'token_expired';

export class AccessTokenError extends Error {
  constructor(readonly code: AccessTokenFailure) {
    super(code);
    this.name = 'AccessTokenError';
  }
}

export interface AccessTokenOptions {
  /** Signing secret first; any further ones are accepted for verification only (rotation). */
  readonly secrets: readonly string[];
  readonly issuer: string;
  readonly audience: string;
  readonly ttlSeconds: number;
  readonly clock: Clock;
  /** Seconds of clock skew tolerated on exp/iat. */
  readonly clockToleranceSeconds?: number;
}

export interface AccessTokens {
  readonly ttlSeconds: number;
  sign(subject: { userId: string; email: string; tier: Tier; role: Role; sessionId: string }): Promise<string>;
  verify(token: string): Promise<AccessClaims>;
}

const ALGORITHM = 'HS256';
/** Verified tokens remembered by their exact text (see `verify`). */
const VERIFIED_CACHE_SIZE = 10_000;
const TOKEN_TYPE = 'at+jwt';
const ROLES = new Set<string>(['user', 'admin', 'auditor']);
const TIERS = new Set<string>(['free', 'basic', 'pro', 'enterprise']);

/** A key id that names a secret without revealing it. */
export const keyIdOf = (secret: string) => createHash('sha256').update(secret).digest('base64url').slice(0, 12);

export function createAccessTokens(options: AccessTokenOptions): AccessTokens {
  if (options.secrets.length === 0) throw new Error('at least one access-token secret is required');
  const keys = new Map(
    options.secrets.map((secret) => {
      if (Buffer.byteLength(secret) < 32) throw new Error('access-token secrets must be at least 32 bytes');
      return [keyIdOf(secret), new TextEncoder().encode(secret)] as const;
    }),
  );
  const signingKid = keyIdOf(options.secrets[0] as string);
  const signingKey = keys.get(signingKid) as Uint8Array;
  const tolerance = options.clockToleranceSeconds ?? 5;
  /**
   * A launcher sends the same access token with every request until it expires, and checking its HMAC
   * and claims again each time was a tenth of a spend's CPU. A token that verified once is remembered by
   * its exact text, signature included, so only that very token can hit; on every use its expiry is
   * checked again against the clock (jose's rule: expired once exp <= now - tolerance, in whole
   * seconds). Nothing else about a verified token changes with time. Revocation and deactivation are
   * not token properties: the session check after this still runs on every request. Oldest first out.
   */
  const verified = new Map<string, AccessClaims>();
  const remember = (token: string, claims: AccessClaims) => {
    if (verified.size >= VERIFIED_CACHE_SIZE) verified.delete(verified.keys().next().value as string);
    verified.set(token, claims);
  };

  const getKey = (header: JWTHeaderParameters) => {
    const key = header.kid === undefined ? undefined : keys.get(header.kid);
    if (!key) throw new AccessTokenError('invalid_token');
    return key;
  };

  return {
    ttlSeconds: options.ttlSeconds,
    async sign(subject) {
      const now = Math.floor(options.clock.now().getTime() / 1000);
      return new SignJWT({
        email: subject.email,
        tier: subject.tier,
        role: subject.role,
        sid: subject.sessionId,
        type: 'access',
      })
        .setProtectedHeader({ alg: ALGORITHM, typ: TOKEN_TYPE, kid: signingKid })
        .setIssuer(options.issuer)
        .setAudience(options.audience)
        .setSubject(subject.userId)
        .setJti(randomUUID())
        .setIssuedAt(now)
        .setExpirationTime(now + options.ttlSeconds)
        .sign(signingKey);
    },
    async verify(token) {
      const known = verified.get(token);
      if (known) {
        const now = Math.floor(options.clock.now().getTime() / 1000);
        if (known.expiresAt.getTime() / 1000 <= now - tolerance) {
          verified.delete(token);
          throw new AccessTokenError('token_expired');
        }
        return known;
      }
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, getKey, {
          algorithms: [ALGORITHM],
          issuer: options.issuer,
          audience: options.audience,
          typ: TOKEN_TYPE,
          requiredClaims: ['exp', 'iat', 'sub', 'jti', 'sid'],
          clockTolerance: tolerance,
          currentDate: options.clock.now(),
        }));
      } catch (error) {
        if (error instanceof joseErrors.JWTExpired) throw new AccessTokenError('token_expired');
        throw new AccessTokenError('invalid_token');
      }
      const { sub, email, tier, role, sid, jti, iat, exp, type } = payload as JWTPayload & Record<string, unknown>;
      if (
        type !== 'access' ||
        typeof sub !== 'string' ||
        typeof email !== 'string' ||
        typeof sid !== 'string' ||
        typeof jti !== 'string' ||
        typeof tier !== 'string' ||
        !TIERS.has(tier) ||
        typeof role !== 'string' ||
        !ROLES.has(role) ||
        typeof iat !== 'number' ||
        typeof exp !== 'number'
      ) {
        throw new AccessTokenError('invalid_token');
      }
      const claims: AccessClaims = Object.freeze({
        userId: sub,
        email,
        tier: tier as Tier,
        role: role as Role,
        sessionId: sid,
        tokenId: jti,
        issuedAt: new Date(iat * 1000),
        expiresAt: new Date(exp * 1000),
      });
      remember(token, claims);
      return claims;
    },
  };
}
