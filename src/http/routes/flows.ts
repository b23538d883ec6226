import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { JsonObject } from '../../core/event-store.js';
import type { TierName } from '../../ledger/tiers.js';
import { decodeCursor, type KeysetCursor } from '../../membership/cursor.js';
import type { AccountTier } from '../../membership/ports.js';
import { checkTier, type PlanLimitReached, upgradeRequiredMessage } from '../../membership/tier-gates.js';
import { type FlowRow, type FlowSummary, MAX_DEFINITION_DEPTH } from '../../membership/workspace.js';
import { nestsWithin } from '../../values.js';
import { principalOf } from '../plugins/auth.js';
import { ApiError } from '../problem.js';
import { bearerSecurity, errorResponses, iso, isoDate, limitParam } from '../schemas.js';

// ---------------------------------------------------------------------------------------------
// Shared by the workspace routes (flows, components): tier lookup, tier gate, plan-limit problem,
// list paging, definition bodies.

const tiers = new WeakMap<FastifyRequest, AccountTier>();

/** The caller's tier in force now, from the ledger (never the token's `tier` claim); once per request. */
export async function tierOf(app: FastifyInstance, request: FastifyRequest): Promise<AccountTier> {
  const known = tiers.get(request);
  if (known) return known;
  const tier = await app.deps.accountTiers.effectiveTier(principalOf(request).userId, app.deps.clock.now());
  tiers.set(request, tier);
  return tier;
}

/** An onRequest/preHandler hook (after `app.authenticate`): 403 upgrade_required unless the tier is allowed. */
export const requireTier =
  (app: FastifyInstance, ...allowed: TierName[]) =>
  async (request: FastifyRequest): Promise<void> => {
    const refused = checkTier((await tierOf(app, request)).tier, allowed);
    if (refused) {
      throw new ApiError('upgrade_required', upgradeRequiredMessage(refused), {
        current_tier: refused.current_tier,
        required_tiers: refused.required_tiers,
      });
    }
  };

const RESOURCE_TEXT = { projects: 'projects', components: 'components', storage_mb: 'MB of storage' } as const;

export const planLimitError = (tier: TierName, limit: PlanLimitReached): ApiError =>
  new ApiError(
    'plan_limit_reached',
    `The ${tier} plan allows ${limit.limit} ${RESOURCE_TEXT[limit.resource]}; ${limit.used} in use. Upgrade or delete some first.`,
    { limit: limit.limit, used: limit.used, resource: limit.resource },
  );

/** `?cursor=`: opaque, issued by this API as `next_cursor`. */
export const keysetCursorParam = z
  .string()
  .max(512)
  .transform((text, context): KeysetCursor => {
    const cursor = decodeCursor(text);
    if (!cursor) {
      context.addIssue({ code: 'custom', message: 'must be a next_cursor returned by this API' });
      return z.NEVER;
    }
    return cursor;
  })
  .optional();

export const pageQuery = z.strictObject({ limit: limitParam, cursor: keysetCursorParam });

export const idParams = z.strictObject({ id: z.uuid() });

/**
 * A JSON object of any shape (the body is parsed JSON, so its values are JSON already); its serialized
 * size counts against `max_storage_mb`. Not `z.json()`: that recursive schema leaves a dangling `$ref`
 * in the generated OpenAPI document.
 */
export const definitionSchema = z
  .record(z.string(), z.unknown())
  .refine((value) => nestsWithin(value, MAX_DEFINITION_DEPTH), `must not nest objects and arrays more than ${MAX_DEFINITION_DEPTH} deep`)
  .describe(`A JSON object (any shape, nested at most ${MAX_DEFINITION_DEPTH} deep); its size counts against the plan storage`)
  .transform((value) => value as JsonObject);

export const nameSchema = z.string().trim().min(1).max(200);

// ---------------------------------------------------------------------------------------------
// Flows (the seed's projects)

const flowSummary = z.object({
  id: z.uuid(),
  name: z.string(),
  size_bytes: z.int(),
  created_at: isoDate,
  updated_at: isoDate,
});
const flowResponse = flowSummary.extend({ definition: z.record(z.string(), z.unknown()) });
const flowBody = z.strictObject({ name: nameSchema, definition: definitionSchema });

const summaryOf = (flow: FlowSummary) => ({
  id: flow.id,
  name: flow.name,
  size_bytes: flow.size_bytes,
  created_at: iso(flow.created_at),
  updated_at: iso(flow.updated_at),
});
const flowOf = (flow: FlowRow) => ({ ...summaryOf(flow), definition: flow.definition });

const notFound = () => new ApiError('not_found', 'No such flow.');

export const flowRoutes: FastifyPluginAsyncZod = async (app) => {
  const auth = { onRequest: [app.authenticate], schema: { tags: ['flows'], security: bearerSecurity } };

  app.get(
    '/flows',
    {
      onRequest: auth.onRequest,
      schema: {
        ...auth.schema,
        summary: 'Own flows, newest first (summaries without definitions)',
        querystring: pageQuery,
        response: { 200: z.object({ items: z.array(flowSummary), next_cursor: z.string().nullable() }), ...errorResponses(400, 401) },
      },
    },
    async (request) => {
      const page = await app.deps.workspace.listFlows(principalOf(request).userId, {
        limit: request.query.limit,
        cursor: request.query.cursor ?? null,
      });
      return { items: page.items.map(summaryOf), next_cursor: page.nextCursor };
    },
  );

  app.post(
    '/flows',
    {
      onRequest: auth.onRequest,
      schema: {
        ...auth.schema,
        summary: 'Create a flow (limits: max_projects, max_storage_mb)',
        body: flowBody,
        response: { 201: flowResponse, ...errorResponses(400, 401, 403, 413) },
      },
    },
    async (request, reply) => {
      const { tier } = await tierOf(app, request);
      const written = await app.deps.workspace.createFlow(principalOf(request).userId, tier, request.body, app.deps.clock.now());
      if (!written.ok) throw planLimitError(tier, written.limit);
      return reply.code(201).send(flowOf(written.value));
    },
  );

  app.get(
    '/flows/:id',
    {
      onRequest: auth.onRequest,
      schema: { ...auth.schema, summary: 'One own flow', params: idParams, response: { 200: flowResponse, ...errorResponses(400, 401, 404) } },
    },
    async (request) => {
      const flow = await app.deps.workspace.getFlow(principalOf(request).userId, request.params.id);
      if (!flow) throw notFound();
      return flowOf(flow);
    },
  );

  app.put(
    '/flows/:id',
    {
      onRequest: auth.onRequest,
      schema: {
        ...auth.schema,
        summary: 'Replace a flow’s name and definition (may not grow storage past max_storage_mb)',
        params: idParams,
        body: flowBody,
        response: { 200: flowResponse, ...errorResponses(400, 401, 403, 404, 413) },
      },
    },
    async (request) => {
      const { tier } = await tierOf(app, request);
      const written = await app.deps.workspace.updateFlow(principalOf(request).userId, request.params.id, tier, request.body, app.deps.clock.now());
      if (!written) throw notFound();
      if (!written.ok) throw planLimitError(tier, written.limit);
      return flowOf(written.value);
    },
  );

  app.delete(
    '/flows/:id',
    {
      onRequest: auth.onRequest,
      schema: {
        ...auth.schema,
        summary: 'Delete a flow',
        params: idParams,
        response: { 204: z.null().describe('Deleted'), ...errorResponses(400, 401, 404) },
      },
    },
    async (request, reply) => {
      if (!(await app.deps.workspace.deleteFlow(principalOf(request).userId, request.params.id))) throw notFound();
      return reply.code(204).send(null);
    },
  );
};
