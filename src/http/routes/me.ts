import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { principalOf } from '../plugins/auth.js';
import { ApiError } from '../problem.js';
import { awaitProjections } from '../read-your-writes.js';
import { bearerSecurity, errorResponses, iso, isoDate, isoOrNull, minPositionParam } from '../schemas.js';
import { projectedTierOf } from './usage.js';

export const meResponse = z.object({
  id: z.string(),
  email: z.string(),
  name: z.string().nullable(),
  profile_image: z.string().nullable(),
  tier: z.enum(['free', 'basic', 'pro', 'enterprise']),
  tier_expires_at: isoDate.nullable(),
  role: z.enum(['user', 'admin', 'auditor']),
  created_at: isoDate,
  last_login_at: isoDate.nullable(),
});

export const meRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get(
    '/me',
    {
      preHandler: app.authenticate,
      schema: {
        tags: ['account'],
        summary: 'The signed-in user',
        security: bearerSecurity,
        querystring: z.strictObject({ min_position: minPositionParam }),
        response: { 200: meResponse, ...errorResponses(400, 401, 503) },
      },
    },
    async (request) => {
      const userId = principalOf(request).userId;
      await awaitProjections(app, ['tiers'], request.query.min_position);
      const now = app.deps.clock.now();
      // Identity from `users`; the tier from the ledger's tiers read model (free once it has expired).
      const [user, projected] = await Promise.all([app.deps.users.findById(userId), projectedTierOf(app.deps.pool, userId, now)]);
      if (!user) throw new ApiError('invalid_token', 'The user of this token no longer exists.');
      return {
        id: user.id,
        email: user.email,
        name: user.name,
        profile_image: user.profile_image,
        tier: projected.tier,
        tier_expires_at: isoOrNull(projected.tier_expires_at),
        role: user.role,
        created_at: iso(user.created_at),
        last_login_at: isoOrNull(user.last_login_at),
      };
    },
  );
};
