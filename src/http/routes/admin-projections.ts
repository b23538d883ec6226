import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { sql } from '../../adapters/postgres/pool.js';
import { TIER_NAMES } from '../../ledger/events.js';
import { decodeCursor, encodeCursor } from '../../membership/cursor.js';
import { ApiError } from '../problem.js';
import { awaitProjections } from '../read-your-writes.js';
import { bearerSecurity, cursorParam, errorResponses, isoDate, limitParam, minPositionParam } from '../schemas.js';

/**
 * GET /admin/projections (admin, auditor): each projection's checkpoint, the head, the lag, the
 * status and, when it stopped on a poison event, why. GET /admin/users (admin): users with their
 * tier (tiers read model), role, active flag and balance (credits read model), newest first.
 */

export const projectionStatusItem = z.object({
  name: z.string(),
  checkpoint: z.string().nullable(),
  head: z.string().nullable(),
  lag_events: z.int(),
  lag_ms: z.int(),
  status: z.enum(['running', 'stopped', 'failed']),
  generation: z.int(),
  events_processed: z.int(),
  updated_at: isoDate,
  error: z
    .object({
      message: z.string(),
      event_id: z.string().nullable(),
      event_type: z.string().nullable(),
      position: z.string().nullable(),
      at: isoDate.nullable(),
    })
    .nullable(),
  rebuild: z.object({ generation: z.int(), checkpoint: z.string().nullable(), status: z.string() }).nullable(),
});

const adminUserRow = z.object({
  id: z.string(),
  email: z.string(),
  name: z.string().nullable(),
  role: z.enum(['user', 'admin', 'auditor']),
  is_active: z.boolean(),
  created_at: z.date(),
  last_login_at: z.date().nullable(),
  tier: z.enum(TIER_NAMES).nullable(),
  tier_expires_at: z.date().nullable(),
  balance: z.bigint().transform(Number),
  reserved: z.bigint().transform(Number),
});

export const adminUserItem = z.object({
  id: z.string(),
  email: z.string(),
  name: z.string().nullable(),
  role: z.enum(['user', 'admin', 'auditor']),
  is_active: z.boolean(),
  tier: z.enum(TIER_NAMES),
  tier_expires_at: isoDate.nullable(),
  balance: z.int(),
  available: z.int(),
  created_at: isoDate,
  last_login_at: isoDate.nullable(),
});

/** `%`, `_` and `\` taken literally in a LIKE pattern. */
// The cursor carries milliseconds; ordering by the truncated time keeps rows with microseconds in between from being skipped.
const likeLiteral = (text: string): string => text.replace(/[\\%_]/g, (c) => `\\${c}`);

export const adminProjectionRoutes: FastifyPluginAsyncZod = async (app) => {
  const { deps } = app;
  // The read-your-writes waiters' LISTEN connection lives as long as the app.
  app.addHook('onClose', async () => deps.projections.close());

  app.get(
    '/admin/projections',
    {
      preHandler: [app.authenticate, app.requireRole('admin', 'auditor')],
      schema: {
        tags: ['admin'],
        summary: 'Projection checkpoints, head, lag and status',
        security: bearerSecurity,
        querystring: z.strictObject({ min_position: minPositionParam }),
        response: { 200: z.array(projectionStatusItem), ...errorResponses(400, 401, 403, 503) },
      },
    },
    async (request) => {
      const statuses = await deps.projections.statuses();
      await awaitProjections(
        app,
        statuses.map((s) => s.name),
        request.query.min_position,
      );
      return request.query.min_position === undefined ? statuses : deps.projections.statuses();
    },
  );

  app.get(
    '/admin/users',
    {
      preHandler: [app.authenticate, app.requireRole('admin')],
      schema: {
        tags: ['admin'],
        summary: 'Users with tier, role, active flag and balance, newest first',
        security: bearerSecurity,
        querystring: z.strictObject({
          email: z.string().min(1).max(255).optional().describe('Case-insensitive substring of the email address'),
          limit: limitParam,
          cursor: cursorParam,
          min_position: minPositionParam,
        }),
        response: {
          200: z.object({ items: z.array(adminUserItem), next_cursor: z.string().nullable() }),
          ...errorResponses(400, 401, 403, 503),
        },
      },
    },
    async (request) => {
      const { email, limit, cursor, min_position } = request.query;
      const after = cursor === undefined ? null : decodeCursor(cursor);
      if (cursor !== undefined && !after) {
        throw new ApiError('validation_failed', 'The query is not valid.', {
          errors: [{ path: 'querystring.cursor', message: 'is not a cursor this API issued' }],
        });
      }
      await awaitProjections(app, ['credits', 'tiers'], min_position);
      const conditions = [sql.fragment`true`];
      if (email !== undefined) conditions.push(sql.fragment`lower(u.email) like ${`%${likeLiteral(email.toLowerCase())}%`}`);
      if (after) {
        conditions.push(sql.fragment`(date_trunc('milliseconds', u.created_at), u.id) < (${after.createdAt.toISOString()}::timestamptz, ${after.id}::uuid)`);
      }
      const rows = await deps.pool.any(sql.type(adminUserRow)`
        select u.id::text as id, u.email, u.name, u.role, u.is_active, u.created_at, u.last_login_at,
          t.tier, t.tier_expires_at, coalesce(c.balance, 0)::int8 as balance, coalesce(c.reserved, 0)::int8 as reserved
        from users u
        left join user_tiers t on t.user_id = u.id::text
        left join user_credits c on c.user_id = u.id::text
        where ${sql.join(conditions, sql.fragment` and `)}
        order by date_trunc('milliseconds', u.created_at) desc, u.id desc
        limit ${limit + 1}`);
      const now = deps.clock.now();
      const items = rows.slice(0, limit);
      const last = items[items.length - 1];
      return {
        items: items.map((row) => {
          const expired = row.tier_expires_at !== null && row.tier_expires_at <= now;
          return {
            id: row.id,
            email: row.email,
            name: row.name,
            role: row.role,
            is_active: row.is_active,
            tier: row.tier === null || expired ? 'free' : row.tier,
            tier_expires_at: row.tier === null || expired || row.tier_expires_at === null ? null : row.tier_expires_at.toISOString(),
            balance: row.balance,
            available: row.balance - row.reserved,
            created_at: row.created_at.toISOString(),
            last_login_at: row.last_login_at?.toISOString() ?? null,
          };
        }),
        next_cursor: rows.length > limit && last ? encodeCursor({ createdAt: last.created_at, id: last.id }) : null,
      };
    },
  );
};
