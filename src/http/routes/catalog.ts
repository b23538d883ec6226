import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { ModelPrices } from '../../config.js';
import { type CreditPackage, TIER_NAMES, type TierDefinition, type TierTable } from '../../ledger/index.js';

/** What the public catalog serves (API §2): configuration handed in by the composition root. */
export interface Catalog {
  readonly tiers: TierTable;
  readonly packages: readonly CreditPackage[];
  readonly modelPrices: ModelPrices;
}

export const findPackage = (catalog: Catalog, id: string): CreditPackage | undefined => catalog.packages.find((p) => p.id === id);

const tierSchema = z.object({
  tier: z.enum(TIER_NAMES),
  display_name: z.string(),
  max_projects: z.int(),
  max_components: z.int(),
  max_api_calls_day: z.int(),
  max_api_calls_month: z.int(),
  max_storage_mb: z.int(),
  features: z.record(z.string(), z.boolean()),
  price_monthly: z.number().nullable(),
  price_yearly: z.number().nullable(),
});
const packageSchema = z.object({ id: z.string(), name: z.string(), credits: z.int(), price_cents: z.int(), currency: z.string() });
const modelSchema = z.object({ model: z.string(), credits_per_request: z.int() });

const CACHE = 'public, max-age=300';

export const catalogRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get(
    '/tiers',
    {
      schema: {
        tags: ['catalog'],
        summary: 'Tiers and their limits (-1 = unlimited)',
        response: { 200: z.array(tierSchema) },
      },
    },
    async (_request, reply) => {
      const { tiers } = app.deps.catalog;
      reply.header('cache-control', CACHE);
      return TIER_NAMES.map((name): TierDefinition => tiers[name]);
    },
  );

  app.get(
    '/credit-packages',
    { schema: { tags: ['catalog'], summary: 'Credit packages for purchase', response: { 200: z.array(packageSchema) } } },
    async (_request, reply) => {
      reply.header('cache-control', CACHE);
      return app.deps.catalog.packages.map(({ id, name, credits, price_cents, currency }) => ({ id, name, credits, price_cents, currency }));
    },
  );

  app.get(
    '/models',
    { schema: { tags: ['catalog'], summary: 'AI models and their price in credits per request', response: { 200: z.array(modelSchema) } } },
    async (_request, reply) => {
      reply.header('cache-control', CACHE);
      return Object.entries(app.deps.catalog.modelPrices).map(([model, price]) => ({ model, credits_per_request: price }));
    },
  );
};
