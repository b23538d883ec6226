import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { type DatabasePool, sql } from '../../adapters/postgres/pool.js';
import { TIER_NAMES, type TierName } from '../../ledger/events.js';
import { nextUtcDay, nextUtcMonth } from '../../ledger/state.js';
import { megabytes } from '../../membership/tier-gates.js';
import { principalOf } from '../plugins/auth.js';
import { awaitProjections } from '../read-your-writes.js';
import { bearerSecurity, errorResponses, isoDate, minPositionParam } from '../schemas.js';

/**
 * The tier in force and API-call usage of an account, from the tiers read model (projections/tiers.ts):
 * the tier falls back to free once `tier_expires_at` has passed; calls count in UTC days and months.
 */

const tierRow = z.object({
  tier: z.enum(TIER_NAMES),
  tier_expires_at: z.date().nullable(),
  api_calls_day: z.string().nullable(),
  api_calls_today: z.number().int(),
  api_calls_month_window: z.string().nullable(),
  api_calls_month: z.number().int(),
});

export interface ProjectedTier {
  readonly tier: TierName;
  readonly tier_expires_at: Date | null;
  readonly calls_today: number;
  readonly calls_this_month: number;
}

/** Tier in force at `now` and the calls counted in the current UTC day and month, from `user_tiers`. */
export async function projectedTierOf(
  pool: DatabasePool,
  userId: string,
  now: Date,
): Promise<ProjectedTier> {
  const row = await pool.maybeOne(sql.type(tierRow)`
    select tier, tier_expires_at, api_calls_day, api_calls_today, api_calls_month_window, api_calls_month
    from user_tiers where user_id = ${userId}`);
  const iso = now.toISOString();
  const expired = row?.tier_expires_at != null && row.tier_expires_at <= now;
  return {
    tier: !row || expired ? 'free' : row.tier,
    tier_expires_at: !row || expired ? null : row.tier_expires_at,
    calls_today: row && row.api_calls_day === iso.slice(0, 10) ? row.api_calls_today : 0,
    calls_this_month: row && row.api_calls_month_window === iso.slice(0, 7) ? row.api_calls_month : 0,
  };
}

const window = z.object({ used: z.int(), limit: z.int().describe('-1 = unlimited'), resets_at: isoDate });
const usedLimit = z.object({ used: z.number(), limit: z.int().describe('-1 = unlimited') });

export const usageResponse = z.object({
  tier: z.enum(TIER_NAMES),
  api_calls: z.object({ day: window, month: window }),
  projects: usedLimit,
  components: usedLimit,
  storage_mb: usedLimit,
});

export const usageRoutes: FastifyPluginAsyncZod = async (app) => {
  const { deps } = app;

  app.get(
    '/usage',
    {
      preHandler: app.authenticate,
      schema: {
        tags: ['account'],
        summary: 'Tier in force, API calls in the current UTC day and month, and plan usage',
        security: bearerSecurity,
        querystring: z.strictObject({ min_position: minPositionParam }),
        response: { 200: usageResponse, ...errorResponses(400, 401, 503) },
      },
    },
    async (request) => {
      const userId = principalOf(request).userId;
      await awaitProjections(app, ['tiers'], request.query.min_position);
      const now = deps.clock.now();
      const [projected, content] = await Promise.all([projectedTierOf(deps.pool, userId, now), deps.workspace.usage(userId)]);
      const limits = deps.catalog.tiers[projected.tier];
      return {
        tier: projected.tier,
        api_calls: {
          day: { used: projected.calls_today, limit: limits.max_api_calls_day, resets_at: nextUtcDay(now).toISOString() },
          month: { used: projected.calls_this_month, limit: limits.max_api_calls_month, resets_at: nextUtcMonth(now).toISOString() },
        },
        projects: { used: content.projects, limit: limits.max_projects },
        components: { used: content.components, limit: limits.max_components },
        storage_mb: { used: megabytes(content.storage_bytes), limit: limits.max_storage_mb },
      };
    },
  );
};
