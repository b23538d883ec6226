import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { GRANT_KINDS, MAX_PRIORITY, TIER_NAMES } from '../../ledger/index.js';
import { idempotencyStamp } from '../idempotency.js';
import { eventOf, requireBalanceAfter, runAccountCommand } from '../ledger.js';
import { principalOf } from '../plugins/auth.js';
import { ApiError } from '../problem.js';
import { bearerSecurity, credits, errorResponses, isoDate, MAX_CREDITS, uuid } from '../schemas.js';
import { answer } from './credits.js';

/**
 * Admin credit and tier commands (API §8) on another user's account. The admin's Idempotency-Key is
 * kept in its own namespace on that account (`adm:<admin id>:…`), and the admin is recorded as
 * `actor_id` on the events.
 */

const userParams = z.strictObject({ id: uuid });
const reason = z.string().trim().min(1).max(500);

/** Any ISO 8601 instant with an offset, normalised to `2026-11-25T10:00:00.000Z`. */
const instant = z.iso.datetime({ offset: true }).transform((text) => new Date(text).toISOString());

const position = z.string();

async function requireUser(app: FastifyInstance, userId: string): Promise<void> {
  const user = await app.deps.users.findById(userId);
  if (!user) throw new ApiError('not_found', `No user ${userId}.`, { resource: 'user', id: userId });
}

export const adminCreditRoutes: FastifyPluginAsyncZod = async (app) => {
  const adminOnly = [app.authenticate, app.requireRole('admin')];
  const run = (request: Parameters<typeof principalOf>[0]) => ({
    requestId: request.id,
    actorId: principalOf(request).userId,
    log: request.log,
  });

  app.post(
    '/admin/users/:id/credits/grants',
    {
      preHandler: adminOnly,
      schema: {
        tags: ['admin'],
        summary: 'Grant a lot of credits (bonus, promotional, compensation); Idempotency-Key required',
        security: bearerSecurity,
        params: userParams,
        body: z.strictObject({
          amount: credits,
          kind: z.enum(GRANT_KINDS),
          reason,
          expires_at: instant.optional(),
          priority: z.int().min(-MAX_PRIORITY).max(MAX_PRIORITY).optional(),
        }),
        response: { 201: z.object({ lot_id: z.string(), balance: z.int(), position }), ...errorResponses(400, 401, 403, 404, 409, 422, 503) },
      },
    },
    async (request, reply) => {
      const admin = principalOf(request);
      const idempotency = idempotencyStamp(request, { required: true, actorId: admin.userId, namespace: 'admin' });
      await requireUser(app, request.params.id);
      const body = request.body;
      const outcome = await runAccountCommand(
        app.deps.ledger,
        request.params.id,
        {
          type: 'Grant',
          lot_id: randomUUID(),
          kind: body.kind,
          amount: body.amount,
          reason: body.reason,
          expires_at: body.expires_at ?? null,
          priority: body.priority,
          actor_id: admin.userId,
          idempotency,
        },
        run(request),
      );
      return answer(reply, 201, outcome, {
        lot_id: eventOf(outcome.events, 'CreditsGranted').lot_id,
        balance: requireBalanceAfter(outcome.events).balance,
        position: outcome.position,
      });
    },
  );

  app.post(
    '/admin/users/:id/credits/adjustments',
    {
      preHandler: adminOnly,
      schema: {
        tags: ['admin'],
        summary: 'Correct a balance by a signed amount (never below zero); Idempotency-Key required',
        security: bearerSecurity,
        params: userParams,
        body: z.strictObject({
          amount: z
            .int()
            .min(-MAX_CREDITS)
            .max(MAX_CREDITS)
            .refine((n) => n !== 0, 'must not be 0'),
          reason,
        }),
        response: { 201: z.object({ balance: z.int(), position }), ...errorResponses(400, 401, 402, 403, 404, 409, 422, 503) },
      },
    },
    async (request, reply) => {
      const admin = principalOf(request);
      const idempotency = idempotencyStamp(request, { required: true, actorId: admin.userId, namespace: 'admin' });
      await requireUser(app, request.params.id);
      const outcome = await runAccountCommand(
        app.deps.ledger,
        request.params.id,
        {
          type: 'Adjust',
          adjustment_id: randomUUID(),
          amount: request.body.amount,
          reason: request.body.reason,
          actor_id: admin.userId,
          idempotency,
        },
        run(request),
      );
      return answer(reply, 201, outcome, { balance: requireBalanceAfter(outcome.events).balance, position: outcome.position });
    },
  );

  app.post(
    '/admin/users/:id/credits/refunds',
    {
      preHandler: adminOnly,
      schema: {
        tags: ['admin'],
        summary: 'Give back (part of) a spend to exactly the lots it took; Idempotency-Key required',
        security: bearerSecurity,
        params: userParams,
        body: z.strictObject({ spend_id: z.string().min(1).max(255), amount: credits.optional(), reason }),
        response: {
          201: z.object({ refunded: z.int(), balance: z.int(), position }),
          ...errorResponses(400, 401, 403, 404, 409, 422, 503),
        },
      },
    },
    async (request, reply) => {
      const admin = principalOf(request);
      const idempotency = idempotencyStamp(request, { required: true, actorId: admin.userId, namespace: 'admin' });
      await requireUser(app, request.params.id);
      const outcome = await runAccountCommand(
        app.deps.ledger,
        request.params.id,
        {
          type: 'RefundSpend',
          refund_id: randomUUID(),
          spend_id: request.body.spend_id,
          amount: request.body.amount,
          reason: request.body.reason,
          actor_id: admin.userId,
          idempotency,
        },
        run(request),
      );
      return answer(reply, 201, outcome, {
        refunded: eventOf(outcome.events, 'CreditsRefunded').amount,
        balance: requireBalanceAfter(outcome.events).balance,
        position: outcome.position,
      });
    },
  );

  app.put(
    '/admin/users/:id/tier',
    {
      preHandler: adminOnly,
      schema: {
        tags: ['admin'],
        summary: "Set a user's tier, optionally until a date (then free again); Idempotency-Key optional",
        security: bearerSecurity,
        params: userParams,
        body: z.strictObject({ tier: z.enum(TIER_NAMES), expires_at: instant.nullable().optional(), reason }),
        response: {
          200: z.object({ tier: z.enum(TIER_NAMES), tier_expires_at: isoDate.nullable(), position }),
          ...errorResponses(400, 401, 403, 404, 409, 422, 503),
        },
      },
    },
    async (request, reply) => {
      const admin = principalOf(request);
      const idempotency = idempotencyStamp(request, { required: false, actorId: admin.userId, namespace: 'admin' });
      await requireUser(app, request.params.id);
      const outcome = await runAccountCommand(
        app.deps.ledger,
        request.params.id,
        {
          type: 'ChangeTier',
          tier: request.body.tier,
          expires_at: request.body.expires_at ?? null,
          reason: request.body.reason,
          actor_id: admin.userId,
          idempotency,
        },
        run(request),
      );
      const changed = eventOf(outcome.events, 'TierChanged');
      return answer(reply, 200, outcome, { tier: changed.tier, tier_expires_at: changed.expires_at, position: outcome.position });
    },
  );
};
