import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { JsonObject } from '../../core/event-store.js';
import { BUILTIN_COMPONENTS } from '../../membership/builtin-components.js';
import { type ComponentRow, MAX_DEFINITION_DEPTH } from '../../membership/workspace.js';
import { idempotencyKeyOf, REPLAYED_HEADER } from '../idempotency.js';
import { textViolation, valueViolation } from '../json-input.js';
import { principalOf } from '../plugins/auth.js';
import { ApiError } from '../problem.js';
import { bearerSecurity, errorResponses, iso, isoDate } from '../schemas.js';
import { definitionSchema, idParams, nameSchema, pageQuery, planLimitError, requireTier, tierOf } from './flows.js';

/**
 * Components (API §7): the built-in catalog plus the caller's own components. Creating one counts
 * against `max_components` (and storage). `POST /components/ai-generate` is for pro and enterprise:
 * it charges credits through the ledger exactly like `/ai/generate` (deps.aiGeneration) and stores
 * the result as a component.
 */

const builtinResponse = z.object({
  id: z.uuid(),
  name: z.string(),
  category: z.string(),
  description: z.string(),
  definition: z.record(z.string(), z.unknown()),
});

const componentResponse = z.object({
  id: z.uuid(),
  name: z.string(),
  source: z.enum(['user', 'ai']),
  definition: z.record(z.string(), z.unknown()),
  size_bytes: z.int(),
  created_at: isoDate,
  updated_at: isoDate,
});

const componentOf = (component: ComponentRow) => ({
  id: component.id,
  name: component.name,
  source: component.source,
  definition: component.definition,
  size_bytes: component.size_bytes,
  created_at: iso(component.created_at),
  updated_at: iso(component.updated_at),
});

const aiGenerateResponse = z.object({
  component: componentResponse,
  result: z.object({ response: z.string(), model: z.string(), provider: z.string() }),
  credits_used: z.int(),
  balance_remaining: z.int(),
  position: z.string(),
});

const notFound = () => new ApiError('not_found', 'No such component.');

/** What the model is asked for; the user's words go last, verbatim. */
const componentPrompt = (prompt: string) =>
  `Design a reusable flow component. Answer with one JSON object with the keys "kind", "inputs", "outputs" and "config".\n\nRequest: ${prompt}`;

/**
 * The generated text as a definition: its JSON object when it is one that can be stored as it reads
 * (the rules a request's definition obeys: no escaped keys, no U+0000 or lone surrogates, not nested
 * too deep), else kept as text. The generation is paid for by now, so storing must not fail.
 */
const definitionFrom = (input: { prompt: string; response: string; model: string; provider: string }): JsonObject => {
  let spec: JsonObject | null = null;
  try {
    const parsed: unknown = textViolation(input.response) === null ? JSON.parse(input.response) : null;
    // The spec sits one level inside the definition.
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) && valueViolation(input.response, parsed, MAX_DEFINITION_DEPTH - 1) === null) {
      spec = parsed as JsonObject;
    }
  } catch {
    // Not JSON: keep the text.
  }
  return {
    kind: 'ai_generated',
    prompt: input.prompt,
    model: input.model,
    provider: input.provider,
    spec,
    text: spec === null ? input.response : null,
  };
};

const nameFrom = (prompt: string) => {
  const oneLine = prompt.replace(/\s+/g, ' ').trim();
  return oneLine.length <= 80 ? oneLine : `${oneLine.slice(0, 79)}…`;
};

export const componentRoutes: FastifyPluginAsyncZod = async (app) => {
  const { deps } = app;
  const common = { tags: ['components'], security: bearerSecurity };

  app.get(
    '/components',
    {
      onRequest: [app.authenticate],
      schema: {
        ...common,
        summary: 'The built-in catalog (always in full) and a page of own components, newest first',
        querystring: pageQuery,
        response: {
          200: z.object({ builtin: z.array(builtinResponse), items: z.array(componentResponse), next_cursor: z.string().nullable() }),
          ...errorResponses(400, 401),
        },
      },
    },
    async (request) => {
      const page = await deps.workspace.listComponents(principalOf(request).userId, {
        limit: request.query.limit,
        cursor: request.query.cursor ?? null,
      });
      return {
        builtin: BUILTIN_COMPONENTS.map((component) => ({ ...component })),
        items: page.items.map(componentOf),
        next_cursor: page.nextCursor,
      };
    },
  );

  app.post(
    '/components',
    {
      onRequest: [app.authenticate],
      schema: {
        ...common,
        summary: 'Create an own component (limits: max_components, max_storage_mb)',
        body: z.strictObject({ name: nameSchema, definition: definitionSchema }),
        response: { 201: componentResponse, ...errorResponses(400, 401, 403, 413) },
      },
    },
    async (request, reply) => {
      const { tier } = await tierOf(app, request);
      const written = await deps.workspace.createComponent(
        principalOf(request).userId,
        tier,
        { ...request.body, source: 'user' },
        deps.clock.now(),
      );
      if (!written.ok) throw planLimitError(tier, written.limit);
      return reply.code(201).send(componentOf(written.value));
    },
  );

  app.get(
    '/components/:id',
    {
      onRequest: [app.authenticate],
      schema: { ...common, summary: 'One own component', params: idParams, response: { 200: componentResponse, ...errorResponses(400, 401, 404) } },
    },
    async (request) => {
      const component = await deps.workspace.getComponent(principalOf(request).userId, request.params.id);
      if (!component) throw notFound();
      return componentOf(component);
    },
  );

  app.delete(
    '/components/:id',
    {
      onRequest: [app.authenticate],
      schema: {
        ...common,
        summary: 'Delete an own component',
        params: idParams,
        response: { 204: z.null().describe('Deleted'), ...errorResponses(400, 401, 404) },
      },
    },
    async (request, reply) => {
      if (!(await deps.workspace.deleteComponent(principalOf(request).userId, request.params.id))) throw notFound();
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/components/ai-generate',
    {
      onRequest: [app.authenticate, requireTier(app, 'pro', 'enterprise')],
      schema: {
        ...common,
        summary: 'Generate a component with AI (pro and enterprise; charged in credits like /ai/generate)',
        description:
          'Charges the model’s price through the ledger (reserve, generate, settle; released on failure) and stores the result ' +
          'as an own component. `model` defaults to the cheapest priced model. An optional `Idempotency-Key` header makes a retry ' +
          'return the first result and the same component without charging again.',
        body: z.strictObject({
          prompt: z.string().trim().min(1).max(4000),
          model: z.string().min(1).max(64).optional(),
        }),
        response: { 201: aiGenerateResponse, ...errorResponses(400, 401, 402, 403, 409, 422, 429, 502, 503) },
      },
    },
    async (request, reply) => {
      const generation = deps.aiGeneration;
      if (!generation) throw new ApiError('unavailable', 'AI generation is not available on this server yet.', {}, { 'retry-after': '60' });

      const idempotencyKey = idempotencyKeyOf(request, { required: false });

      const prices = deps.config.modelPrices;
      const model = request.body.model ?? cheapestModel(prices);
      if (model === undefined || !Object.hasOwn(prices, model)) {
        throw new ApiError('unknown_model', `Unknown model${request.body.model ? ` ${request.body.model}` : ''}; see GET /models.`);
      }

      const userId = principalOf(request).userId;
      const { tier } = await tierOf(app, request);
      const earlier = idempotencyKey === undefined ? null : await deps.workspace.findGeneratedComponent(userId, idempotencyKey);
      if (!earlier) {
        // Refuse before charging: nothing is spent on a component that could not be stored.
        const refused = await deps.workspace.checkComponentLimit(userId, tier);
        if (refused) throw planLimitError(tier, refused);
      }

      const result = await generation.generate({
        userId,
        model,
        prompt: componentPrompt(request.body.prompt),
        idempotencyKey,
        requestId: request.id,
        route: '/components/ai-generate',
      });
      const written = await deps.workspace.createComponent(
        userId,
        tier,
        {
          name: nameFrom(request.body.prompt),
          definition: definitionFrom({ prompt: request.body.prompt, response: result.response, model: result.model, provider: result.provider }),
          source: 'ai',
          idempotencyKey,
          // Charged now, not replayed: a new request, even if the key named a component once (> 24 h ago).
          freshUseOfKey: !result.replayed,
        },
        deps.clock.now(),
      );
      if (!written.ok) throw planLimitError(tier, written.limit);
      if (result.replayed) reply.header(REPLAYED_HEADER, 'true');
      return reply.code(201).send({
        component: componentOf(written.value),
        result: { response: result.response, model: result.model, provider: result.provider },
        credits_used: result.credits_used,
        balance_remaining: result.balance_remaining,
        position: result.position,
      });
    },
  );
};

/** The default model of /components/ai-generate: the cheapest one in the price table (first on a tie). */
export const cheapestModel = (prices: Readonly<Record<string, number>>): string | undefined => {
  let best: [string, number] | undefined;
  for (const [model, price] of Object.entries(prices)) if (!best || price < best[1]) best = [model, price];
  return best?.[0];
};
