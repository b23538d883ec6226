import { randomUUID } from 'node:crypto';
import rateLimit from '@fastify/rate-limit';
import type { FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { activityStreamId, USER_SIGNED_IN, USER_SIGNED_UP } from '../../activity/events.js';
import type { JsonObject } from '../../core/event-store.js';
import { AccountConflictError } from '../../membership/accounts.js';
import { emailKey } from '../../membership/emails.js';
import { GoogleVerificationError } from '../../membership/google.js';
import { principalOf } from '../plugins/auth.js';
import { ApiError } from '../problem.js';
import { bearerSecurity, errorResponses, iso, isoDate } from '../schemas.js';
import { idParams, pageQuery } from './flows.js';

/**
 * Sign-in and sessions (API §3). Every /auth route shares one per-IP budget
 * (`AUTH_RATE_LIMIT_PER_MINUTE`, default 20 a minute) — sign-in, refresh, logout and the session
 * list alike — so guessing refresh tokens or hammering Google verification costs the same.
 */

const MAX_USER_AGENT = 512;

/** `device_info`: a flat object of up to 16 scalar fields, e.g. `{ "os": "windows", "version": "1.4.2", "device_id": "…" }`. */
const deviceInfoSchema = z
  .record(z.string().min(1).max(64), z.union([z.string().max(256), z.number(), z.boolean(), z.null()]))
  .refine((value) => Object.keys(value).length <= 16, 'must have at most 16 fields')
  .describe('Flat object describing the client device, e.g. { os, version, device_id }');

const tierEnum = z.enum(['free', 'basic', 'pro', 'enterprise']);

const tokenPair = {
  access_token: z.string(),
  refresh_token: z.string(),
  token_type: z.literal('Bearer'),
  expires_in: z.int().describe('Access-token lifetime in seconds'),
};

const signInResponse = z.object({
  ...tokenPair,
  is_new_user: z.boolean(),
  user: z.object({
    id: z.uuid(),
    email: z.string(),
    name: z.string().nullable(),
    profile_image: z.string().nullable(),
    tier: tierEnum,
  }),
});

const sessionResponse = z.object({
  id: z.uuid(),
  device_info: z.record(z.string(), z.unknown()).nullable(),
  ip: z.string().nullable(),
  created_at: isoDate,
  last_used_at: isoDate,
  expires_at: isoDate,
  current: z.boolean().describe('True for the session of the access token making this request'),
});

const refreshBody = z.strictObject({ refresh_token: z.string().min(1).max(4096) });

const clientOf = (request: FastifyRequest) => {
  const agent = request.headers['user-agent'];
  return { ip: request.ip ?? null, userAgent: typeof agent === 'string' && agent.length > 0 ? agent.slice(0, MAX_USER_AGENT) : null };
};

export const authRoutes: FastifyPluginAsyncZod = async (app) => {
  const { deps } = app;

  await app.register(rateLimit, { global: false });
  // One limiter — one bucket per IP — shared by every route of this plugin, and only them. Its options
  // are passed here, not at registration, so they hold even if the plugin is also registered higher up.
  app.addHook(
    'onRequest',
    app.rateLimit({
      max: deps.config.authRateLimitPerMinute,
      timeWindow: 60_000,
      errorResponseBuilder: (_request, context) => {
        const seconds = String(Math.max(1, Math.ceil(context.ttl / 1000)));
        return new ApiError('rate_limited', `Too many requests to /auth from this address; retry in ${seconds} s.`, {}, { 'retry-after': seconds });
      },
    }),
  );

  const issueAccessToken = async (user: { id: string; email: string; role: 'user' | 'admin' | 'auditor' }, sessionId: string) => {
    const { tier } = await deps.accountTiers.effectiveTier(user.id, deps.clock.now());
    const accessToken = await deps.accessTokens.sign({ userId: user.id, email: user.email, tier, role: user.role, sessionId });
    return { accessToken, tier };
  };

  app.post(
    '/auth/google',
    {
      schema: {
        tags: ['auth'],
        summary: 'Sign in with a Google ID token (public)',
        description:
          'Verifies the Google ID token (`credential`: from Google Identity Services on the web, or the `id_token` the launcher ' +
          'obtained through the system browser with a loopback redirect and PKCE), creates the user on first sign-in, opens a ' +
          'session and returns an access/refresh token pair.',
        body: z.strictObject({ credential: z.string().min(1).max(8192), device_info: deviceInfoSchema.optional() }),
        response: { 200: signInResponse, ...errorResponses(400, 401, 403, 429, 503) },
      },
    },
    async (request) => {
      let identity;
      try {
        identity = await deps.google.verify(request.body.credential);
      } catch (error) {
        if (!(error instanceof GoogleVerificationError)) throw error;
        // The hint is token-free by construction; the library's own message never leaves google.ts.
        request.log.info({ reason: error.reason, hint: error.hint }, 'Google sign-in refused');
        if (error.reason === 'unavailable') throw new ApiError('unavailable', 'Google sign-in is unavailable right now; try again shortly.', {}, { 'retry-after': '5' });
        // An unverified email is refused here too, as 401 invalid_google_token: API §9 has no 403 for
        // it, and to the client it is the same outcome — this credential cannot sign anyone in.
        throw new ApiError('invalid_google_token', 'The Google credential is not valid.');
      }
      const now = deps.clock.now();
      let signedIn;
      try {
        signedIn = await deps.accounts.signInWithGoogle(identity, {
          now,
          admin: deps.config.adminEmails.includes(emailKey(identity.email)),
        });
      } catch (error) {
        if (error instanceof AccountConflictError) throw new ApiError('forbidden', 'This email address already belongs to another account.');
        throw error;
      }
      const { user, isNew } = signedIn;
      if (!user.is_active) throw new ApiError('user_inactive', 'This account has been deactivated.');

      const client = clientOf(request);
      const deviceInfo = (request.body.device_info ?? null) as JsonObject | null;
      const session = await deps.authSessions.open({ userId: user.id, now, deviceInfo, ...client });
      try {
        const { accessToken, tier } = await issueAccessToken(user, session.sessionId);
        await deps.eventStore.appendToStream(
          activityStreamId(user.id),
          [
            {
              id: randomUUID(),
              type: isNew ? USER_SIGNED_UP : USER_SIGNED_IN,
              data: { at: now.toISOString(), method: 'google', ip: client.ip, user_agent: client.userAgent, device_info: deviceInfo },
              metadata: { request_id: request.id, session_id: session.sessionId },
            },
          ],
          { expectedRevision: 'any' },
        );
        return {
          access_token: accessToken,
          refresh_token: session.refreshToken,
          token_type: 'Bearer' as const,
          expires_in: deps.accessTokens.ttlSeconds,
          is_new_user: isNew,
          user: { id: user.id, email: user.email, name: user.name, profile_image: user.profile_image, tier },
        };
      } catch (error) {
        // Sign-in did not complete (nothing recorded, no tokens handed out): do not leave a live session behind.
        await deps.authSessions.revoke(user.id, session.sessionId, deps.clock.now(), 'sign_in_failed').catch(() => {});
        throw error;
      }
    },
  );

  app.post(
    '/auth/refresh',
    {
      schema: {
        tags: ['auth'],
        summary: 'Rotate a refresh token into a new token pair (public)',
        description:
          'The presented refresh token is used up. Presenting an already rotated token revokes the whole session ' +
          '(401 refresh_token_reused) — except within 10 seconds of its rotation while its replacement is still unused, ' +
          'which covers a client that sent two refreshes at once.',
        body: refreshBody,
        response: { 200: z.object(tokenPair), ...errorResponses(400, 401, 429) },
      },
    },
    async (request) => {
      const result = await deps.authSessions.rotate({ refreshToken: request.body.refresh_token, now: deps.clock.now(), ...clientOf(request) });
      switch (result.outcome) {
        case 'invalid':
          throw new ApiError('invalid_refresh_token', 'The refresh token is unknown, expired or revoked; sign in again.');
        case 'reused':
          throw new ApiError('refresh_token_reused', 'This refresh token was already used; the session has been revoked. Sign in again.');
        case 'inactive':
          throw new ApiError('user_inactive', 'This account has been deactivated.');
        case 'rotated': {
          const { accessToken } = await issueAccessToken({ id: result.userId, email: result.email, role: result.role }, result.sessionId);
          return {
            access_token: accessToken,
            refresh_token: result.refreshToken,
            token_type: 'Bearer' as const,
            expires_in: deps.accessTokens.ttlSeconds,
          };
        }
        default: {
          const unreachable: never = result;
          throw new Error(`unexpected rotation outcome ${String(unreachable)}`);
        }
      }
    },
  );

  app.post(
    '/auth/logout',
    {
      onRequest: [app.authenticate],
      schema: {
        tags: ['auth'],
        summary: 'Sign out: revoke the session of a refresh token',
        security: bearerSecurity,
        body: refreshBody,
        response: { 204: z.null().describe('Signed out'), ...errorResponses(400, 401, 429) },
      },
    },
    async (request, reply) => {
      const revoked = await deps.authSessions.revokeByRefreshToken(principalOf(request).userId, request.body.refresh_token, deps.clock.now());
      if (!revoked) throw new ApiError('invalid_refresh_token', 'This refresh token does not belong to your sessions.');
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/auth/sessions',
    {
      onRequest: [app.authenticate],
      schema: {
        tags: ['auth'],
        summary: 'Own live sessions, newest first',
        security: bearerSecurity,
        querystring: pageQuery,
        response: { 200: z.object({ items: z.array(sessionResponse), next_cursor: z.string().nullable() }), ...errorResponses(400, 401, 429) },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const page = await deps.authSessions.list(principal.userId, deps.clock.now(), {
        limit: request.query.limit,
        cursor: request.query.cursor ?? null,
      });
      return {
        items: page.items.map((session) => ({
          id: session.id,
          device_info: session.device_info,
          ip: session.ip,
          created_at: iso(session.created_at),
          last_used_at: iso(session.last_used_at),
          expires_at: iso(session.expires_at),
          current: session.id === principal.sessionId,
        })),
        next_cursor: page.nextCursor,
      };
    },
  );

  app.delete(
    '/auth/sessions/:id',
    {
      onRequest: [app.authenticate],
      schema: {
        tags: ['auth'],
        summary: 'Revoke one of your sessions (its tokens stop working on their next use)',
        security: bearerSecurity,
        params: idParams,
        response: { 204: z.null().describe('Revoked'), ...errorResponses(400, 401, 404, 429) },
      },
    },
    async (request, reply) => {
      const revoked = await deps.authSessions.revoke(principalOf(request).userId, request.params.id, deps.clock.now(), 'revoked_by_user');
      if (!revoked) throw new ApiError('not_found', 'No such session.');
      return reply.code(204).send(null);
    },
  );
};
