import { randomUUID } from 'node:crypto';
import type { FastifyReply } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { JsonObject } from '../../core/event-store.js';
import { MAX_RESERVATION_TTL_SECONDS } from '../../ledger/index.js';
import { idempotencyStamp, markReplayed } from '../idempotency.js';
import { type CommandOutcome, eventOf, requireBalanceAfter, runAccountCommand } from '../ledger.js';
import { principalOf } from '../plugins/auth.js';
import { ApiError } from '../problem.js';
import { bearerSecurity, credits, errorResponses, isoDate, MAX_CREDITS, uuid } from '../schemas.js';

/**
 * Credit commands of the signed-in user (API §5): spend, reservations (create, settle, release).
 * Each runs one ledger command on the caller's account stream; the answer is built from the events of
 * the outcome (decided now or replayed for a repeated Idempotency-Key) and carries the balance after
 * it and its `position`. Reads (`GET /credits…`) are served by the projections' routes.
 */

const MAX_METADATA_BYTES = 4096;

export const description = z.string().max(500);

/** Free-form JSON object kept with the spend (≤ 4 KiB serialised). */
export const metadataObject = z
  .record(z.string().max(100), z.unknown())
  .refine((value) => Buffer.byteLength(JSON.stringify(value)) <= MAX_METADATA_BYTES, {
    message: `must serialise to at most ${MAX_METADATA_BYTES} bytes`,
  });

const position = z.string().describe('Global position of the last event appended; pass as ?min_position= to read your write');

const spendResponse = z.object({ spend_id: z.string(), credits_used: z.int(), balance_remaining: z.int(), position });
const reservationResponse = z.object({
  reservation_id: z.string(),
  amount: z.int(),
  expires_at: isoDate,
  available: z.int(),
  position,
});
const settleResponse = z.object({
  spend_id: z.string(),
  credits_used: z.int(),
  released: z.int(),
  balance_remaining: z.int(),
  position,
});
const releaseResponse = z.object({ released: z.int(), position });

const reservationParams = z.strictObject({ id: uuid });

/** Sends `body` with `status`; marks replays. */
export function answer<T>(reply: FastifyReply, status: number, outcome: Pick<CommandOutcome, 'replayed'>, body: T): T {
  if (outcome.replayed) markReplayed(reply);
  reply.code(status);
  return body;
}

export const creditRoutes: FastifyPluginAsyncZod = async (app) => {
  const ledger = () => app.deps.ledger;

  app.post(
    '/credits/spend',
    {
      preHandler: app.authenticate,
      schema: {
        tags: ['credits'],
        summary: 'Spend credits (Idempotency-Key required)',
        security: bearerSecurity,
        body: z.strictObject({ amount: credits, description: description.optional(), metadata: metadataObject.optional() }),
        response: { 201: spendResponse, ...errorResponses(400, 401, 402, 409, 422, 429, 503) },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const idempotency = idempotencyStamp(request, { required: true, actorId: principal.userId });
      const outcome = await runAccountCommand(
        ledger(),
        principal.userId,
        {
          type: 'Spend',
          spend_id: randomUUID(),
          amount: request.body.amount,
          description: request.body.description ?? null,
          metadata: (request.body.metadata as JsonObject | undefined) ?? null,
          idempotency,
        },
        { requestId: request.id, actorId: principal.userId, log: request.log },
      );
      const spent = eventOf(outcome.events, 'CreditsSpent');
      return answer(reply, 201, outcome, {
        spend_id: spent.spend_id,
        credits_used: spent.amount,
        balance_remaining: requireBalanceAfter(outcome.events).balance,
        position: outcome.position,
      });
    },
  );

  app.post(
    '/credits/reservations',
    {
      preHandler: app.authenticate,
      schema: {
        tags: ['credits'],
        summary: 'Hold credits for a later settle (Idempotency-Key required)',
        security: bearerSecurity,
        body: z.strictObject({
          amount: credits,
          ttl_seconds: z.int().min(1).max(MAX_RESERVATION_TTL_SECONDS).optional(),
          description: description.optional(),
        }),
        response: { 201: reservationResponse, ...errorResponses(400, 401, 402, 409, 422, 429, 503) },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const idempotency = idempotencyStamp(request, { required: true, actorId: principal.userId });
      const outcome = await runAccountCommand(
        ledger(),
        principal.userId,
        {
          type: 'Reserve',
          reservation_id: randomUUID(),
          amount: request.body.amount,
          ttl_seconds: request.body.ttl_seconds,
          description: request.body.description ?? null,
          idempotency,
        },
        { requestId: request.id, actorId: principal.userId, log: request.log },
      );
      const reserved = eventOf(outcome.events, 'CreditsReserved');
      return answer(reply, 201, outcome, {
        reservation_id: reserved.reservation_id,
        amount: reserved.amount,
        expires_at: reserved.expires_at,
        available: requireBalanceAfter(outcome.events).available,
        position: outcome.position,
      });
    },
  );

  app.post(
    '/credits/reservations/:id/settle',
    {
      preHandler: app.authenticate,
      schema: {
        tags: ['credits'],
        summary: 'Spend part or all of a reservation and release the rest (Idempotency-Key required)',
        security: bearerSecurity,
        params: reservationParams,
        body: z.strictObject({ amount: z.int().min(0).max(MAX_CREDITS) }),
        response: { 200: settleResponse, ...errorResponses(400, 401, 404, 409, 422, 429, 503) },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const idempotency = idempotencyStamp(request, { required: true, actorId: principal.userId });
      const outcome = await runAccountCommand(
        ledger(),
        principal.userId,
        { type: 'Settle', reservation_id: request.params.id, spend_id: randomUUID(), amount: request.body.amount, idempotency },
        { requestId: request.id, actorId: principal.userId, log: request.log },
      );
      const spent = eventOf(outcome.events, 'CreditsSpent');
      const settled = eventOf(outcome.events, 'ReservationSettled');
      return answer(reply, 200, outcome, {
        spend_id: spent.spend_id,
        credits_used: spent.amount,
        released: settled.released,
        balance_remaining: requireBalanceAfter(outcome.events).balance,
        position: outcome.position,
      });
    },
  );

  app.post(
    '/credits/reservations/:id/release',
    {
      preHandler: app.authenticate,
      schema: {
        tags: ['credits'],
        summary: 'Release a reservation without spending (Idempotency-Key optional)',
        security: bearerSecurity,
        params: reservationParams,
        response: { 200: releaseResponse, ...errorResponses(400, 401, 404, 409, 422, 503) },
      },
    },
    async (request, reply) => {
      // No body is expected; an empty JSON object is tolerated, anything else is refused (API §1).
      const body = request.body as unknown;
      if (body !== undefined && body !== null && !(typeof body === 'object' && !Array.isArray(body) && Object.keys(body).length === 0)) {
        throw new ApiError('validation_failed', 'This request takes no body.', { errors: [{ path: '', message: 'must be empty' }] });
      }
      const principal = principalOf(request);
      const idempotency = idempotencyStamp(request, { required: false, actorId: principal.userId });
      const outcome = await runAccountCommand(
        ledger(),
        principal.userId,
        { type: 'Release', reservation_id: request.params.id, idempotency },
        { requestId: request.id, actorId: principal.userId, log: request.log },
      );
      return answer(reply, 200, outcome, {
        released: eventOf(outcome.events, 'ReservationReleased').released,
        position: outcome.position,
      });
    },
  );
};
