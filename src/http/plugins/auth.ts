import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { AccessTokenError, type Role } from '../../membership/access-tokens.js';
import { ApiError } from '../problem.js';
import { isUuid } from '../../core/ids.js';

/**
 * `app.authenticate` (a preHandler) verifies the bearer token, then checks on every request that the
 * user is still active and the session not revoked, so deactivation and logout bite at once.
 */

export interface Principal {
  readonly userId: string;
  readonly email: string;
  readonly role: Role;
  readonly sessionId: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
  interface FastifyInstance {
    authenticate: (request: FastifyRequest, reply: FastifyReply) => Promise<void>;
    requireRole: (...roles: Role[]) => (request: FastifyRequest, reply: FastifyReply) => Promise<void>;
  }
}

// The scheme name is case-insensitive (RFC 9110 §11.1); the token is exactly one b64token.
const BEARER = /^bearer ([A-Za-z0-9._~+/-]+=*)$/i;
const challenge = (error: string) => ({ 'www-authenticate': `Bearer error="${error}"` });

/** The authenticated principal; only call behind `app.authenticate`. */
export const principalOf = (request: FastifyRequest): Principal => {
  if (!request.principal) throw new ApiError('missing_token', 'This route needs an access token.');
  return request.principal;
};

export const authPlugin = fp(async (app: FastifyInstance) => {
  app.decorateRequest('principal', null);

  app.decorate('authenticate', async (request: FastifyRequest) => {
    const header = request.headers.authorization;
    if (!header) throw new ApiError('missing_token', 'Send Authorization: Bearer <access_token>.', {}, { 'www-authenticate': 'Bearer' });
    const match = BEARER.exec(header);
    if (!match) throw new ApiError('invalid_token', 'The Authorization header is not a bearer token.', {}, challenge('invalid_token'));
    let claims;
    try {
      claims = await app.deps.accessTokens.verify(match[1] as string);
    } catch (error) {
      if (error instanceof AccessTokenError) {
        throw new ApiError(error.code, error.code === 'token_expired' ? 'The access token has expired; refresh it.' : 'The access token is not valid.', {}, challenge('invalid_token'));
      }
      throw error;
    }
    if (!isUuid(claims.userId) || !isUuid(claims.sessionId)) {
      throw new ApiError('invalid_token', 'The access token is not valid.', {}, challenge('invalid_token'));
    }
    const now = app.deps.clock.now();
    const found = await app.deps.sessions.principal(claims.userId, claims.sessionId, now);
    if (!found) throw new ApiError('invalid_token', 'The session of this access token has ended.', {}, challenge('invalid_token'));
    // A deactivated user hears so (API §3), whatever became of the session.
    if (!found.is_active) throw new ApiError('user_inactive', 'This account has been deactivated.');
    if (found.session_revoked || found.session_expired) {
      throw new ApiError('invalid_token', 'The session of this access token has ended.', {}, challenge('invalid_token'));
    }
    // The role comes from the database, not the (possibly stale) token.
    request.principal = { userId: found.user_id, email: found.email, role: found.role, sessionId: claims.sessionId };
  });

  app.decorate('requireRole', (...roles: Role[]) => async (request: FastifyRequest) => {
    const principal = principalOf(request);
    if (!roles.includes(principal.role)) throw new ApiError('forbidden', 'Your role does not allow this.');
  });
});
