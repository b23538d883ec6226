import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { aiGenerateBody } from '../ai-generation.js';
import { idempotencyKeyOf, markReplayed } from '../idempotency.js';
import { principalOf } from '../plugins/auth.js';
import { bearerSecurity, errorResponses } from '../schemas.js';

/** `POST /ai/generate` (API §7): a charged generation; see src/http/ai-generation.ts for the steps. */

export const MAX_PROMPT_CHARS = 32_000;

const generateResponse = z.object({
  result: z.object({ response: z.string(), model: z.string(), provider: z.string() }),
  credits_used: z.int(),
  balance_remaining: z.int(),
  position: z.string(),
});

export const aiRoutes: FastifyPluginAsyncZod = async (app) => {
  app.post(
    '/ai/generate',
    {
      preHandler: app.authenticate,
      schema: {
        tags: ['ai'],
        summary: "Generate with a model, charged at the model's price (Idempotency-Key optional)",
        security: bearerSecurity,
        body: z.strictObject({
          model: z.string().min(1).max(64),
          prompt: z.string().min(1).max(MAX_PROMPT_CHARS),
          max_tokens: z.int().min(1).max(32_768).optional(),
        }),
        response: { 200: generateResponse, ...errorResponses(400, 401, 402, 409, 422, 429, 502, 503) },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const result = await app.deps.aiGenerationService.generate({
        userId: principal.userId,
        model: request.body.model,
        prompt: request.body.prompt,
        maxTokens: request.body.max_tokens,
        idempotencyKey: idempotencyKeyOf(request, { required: false }),
        requestId: request.id,
        route: '/ai/generate',
        log: request.log,
      });
      if (result.replayed) markReplayed(reply);
      return aiGenerateBody(result);
    },
  );
};
