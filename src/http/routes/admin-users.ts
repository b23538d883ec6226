import { randomUUID } from 'node:crypto';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { activityStreamId, USER_DEACTIVATED, USER_REACTIVATED } from '../../activity/events.js';
import { principalOf } from '../plugins/auth.js';
import { ApiError } from '../problem.js';
import { bearerSecurity, errorResponses } from '../schemas.js';

/**
 * `PUT /admin/users/:id/active` (API §8): deactivation takes effect on the user's next request —
 * the authenticate hook checks `is_active` every time — and also revokes every session and refresh
 * token, so reactivating later does not bring old sessions back. The change and its reason are
 * recorded on the user's activity stream (`UserDeactivated` / `UserReactivated`).
 */
export const adminUserRoutes: FastifyPluginAsyncZod = async (app) => {
  const { deps } = app;

  app.put(
    '/admin/users/:id/active',
    {
      onRequest: [app.authenticate, app.requireRole('admin')],
      schema: {
        tags: ['admin'],
        summary: 'Activate or deactivate a user (deactivation revokes all their sessions)',
        security: bearerSecurity,
        params: z.strictObject({ id: z.uuid() }),
        body: z.strictObject({ active: z.boolean(), reason: z.string().trim().min(1).max(500) }),
        response: { 200: z.object({ id: z.uuid(), is_active: z.boolean() }), ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const actor = principalOf(request);
      const { id } = request.params;
      const { active, reason } = request.body;
      if (!active && id === actor.userId) {
        throw new ApiError('forbidden', 'You cannot deactivate your own account; ask another admin or use the CLI.');
      }
      const now = deps.clock.now();
      const user = await deps.accounts.setActive(id, active, { now, reason });
      if (!user) throw new ApiError('not_found', 'No such user.');
      await deps.eventStore.appendToStream(
        activityStreamId(id),
        [
          {
            id: randomUUID(),
            type: active ? USER_REACTIVATED : USER_DEACTIVATED,
            data: { at: now.toISOString(), actor_id: actor.userId, reason },
            metadata: { request_id: request.id },
          },
        ],
        { expectedRevision: 'any' },
      );
      return { id: user.id, is_active: user.is_active };
    },
  );
};
