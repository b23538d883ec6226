import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { principalOf } from '../plugins/auth.js';
import { ApiError } from '../problem.js';
import { bearerSecurity, errorResponses, iso, isoDate, isoOrNull } from '../schemas.js';

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
        response: { 200: meResponse, ...errorResponses(401) },
      },
    },
    async (request) => {
      const user = await app.deps.users.findById(principalOf(request).userId);
      if (!user) throw new ApiError('invalid_token', 'The user of this token no longer exists.');
      const now = app.deps.clock.now();
      const tierExpired = user.tier_expires_at !== null && user.tier_expires_at <= now;
      return {
        id: user.id,
        email: user.email,
        name: user.name,
        profile_image: user.profile_image,
        tier: tierExpired ? 'free' : user.tier,
        tier_expires_at: tierExpired ? null : isoOrNull(user.tier_expires_at),
        role: user.role,
        created_at: iso(user.created_at),
        last_login_at: isoOrNull(user.last_login_at),
      };
    },
  );
};
