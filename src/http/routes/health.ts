import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { sendProblem } from '../plugins/errors.js';

const withTimeout = <T>(promise: Promise<T>, ms: number) =>
  Promise.race([promise, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timed out')), ms).unref())]);

export const healthRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get(
    '/healthz',
    { schema: { tags: ['operations'], summary: 'Process is up', response: { 200: z.object({ status: z.literal('ok') }) } } },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      schema: {
        tags: ['operations'],
        summary: 'Postgres, the event store and the projector are reachable',
        response: { 200: z.object({ status: z.literal('ready'), checks: z.record(z.string(), z.literal('ok')) }) },
      },
    },
    async (request, reply) => {
      const results = await Promise.all(
        app.deps.readiness.map(async ({ name, check }) => {
          try {
            await withTimeout(check(), 2000);
            return [name, 'ok'] as const;
          } catch (error) {
            request.log.warn({ err: error, check: name }, 'readiness check failed');
            return [name, 'failing'] as const;
          }
        }),
      );
      const failing = results.filter(([, state]) => state !== 'ok').map(([name]) => name);
      if (failing.length > 0) {
        return sendProblem(reply, 'unavailable', `Not ready: ${failing.join(', ')}.`, { failing }, { 'retry-after': '1' });
      }
      return { status: 'ready' as const, checks: Object.fromEntries(results.map(([name]) => [name, 'ok' as const])) };
    },
  );

  app.get('/metrics', { schema: { tags: ['operations'], summary: 'Prometheus metrics', hide: true } }, async (_request, reply) => {
    const registry = app.deps.metrics;
    return reply.type(registry.contentType).send(await registry.metrics());
  });
};
