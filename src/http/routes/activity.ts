import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { MAX_LOG_BATCH_BYTES, MAX_LOG_ENTRIES } from '../../activity/events.js';
import { sql } from '../../adapters/postgres/pool.js';
import { formatPosition, type JsonObject } from '../../core/event-store.js';
import { principalOf } from '../plugins/auth.js';
import { ApiError } from '../problem.js';
import { pageOf, positionKeyset } from '../position-pages.js';
import { awaitProjections } from '../read-your-writes.js';
import { bearerSecurity, cursorParam, errorResponses, isoDate, limitParam, minPositionParam } from '../schemas.js';

/**
 * POST /logs/batch and GET /activity (API §7). A batch becomes one `LauncherLogsRecorded` event on
 * the user's activity stream (src/activity/log-batches.ts); the activity projection turns it into one
 * `activity_logs` row per entry, next to sign-ins and every ledger event.
 */

const text = (max: number) => z.string().max(max);

const logEntry = z.strictObject({
  action: text(100).min(1),
  resource_type: text(100).nullish(),
  resource_id: text(255).nullish(),
  metadata: z.record(z.string(), z.unknown()).nullish().describe("A JSON object (any shape)"),
  client_ts: text(64).nullish().describe("The launcher's own timestamp of the entry, kept as sent"),
});

const logBatchBody = z
  .strictObject({
    batch_id: z
      .string()
      .min(1)
      .max(255)
      .regex(/^[\x21-\x7e]+$/, 'must be 1-255 visible ASCII characters')
      .optional()
      .describe('A repeated batch_id is accepted once: the repeat answers with the first result'),
    logs: z.array(logEntry).min(1).max(MAX_LOG_ENTRIES),
  });

const activityRow = z.object({
  id: z.string(),
  action: z.string(),
  resource_type: z.string().nullable(),
  resource_id: z.string().nullable(),
  metadata: z.record(z.string(), z.unknown()).nullable(),
  ip_address: z.string().nullable(),
  user_agent: z.string().nullable(),
  created_at: z.date(),
  position_major: z.string(),
  position_minor: z.string(),
  entry_index: z.number().int(),
});

/** Newest first: by event position, then by the entry's index within its event (a log batch). */
const ACTIVITY_KEY = [
  { column: 'position_major', type: 'numeric' },
  { column: 'position_minor', type: 'numeric' },
  { column: 'entry_index', type: 'int' },
] as const;

export const activityItem = z.object({
  id: z.string(),
  action: z.string(),
  resource_type: z.string().nullable(),
  resource_id: z.string().nullable(),
  metadata: z.record(z.string(), z.unknown()).nullable(),
  ip: z.string().nullable(),
  user_agent: z.string().nullable(),
  created_at: isoDate,
});

export const activityRoutes: FastifyPluginAsyncZod = async (app) => {
  const { deps } = app;

  app.post(
    '/logs/batch',
    {
      preHandler: app.authenticate,
      bodyLimit: MAX_LOG_BATCH_BYTES,
      schema: {
        tags: ['activity'],
        summary: 'Record a batch of launcher logs (at most 500 entries, 1 MiB)',
        security: bearerSecurity,
        body: logBatchBody,
        response: {
          202: z.object({ accepted: z.int(), position: z.string() }),
          ...errorResponses(400, 401, 413),
        },
      },
    },
    async (request, reply) => {
      const userId = principalOf(request).userId;
      const { batch_id, logs } = request.body;
      const userAgent = request.headers['user-agent'];
      const result = await deps.logBatches.record({
        userId,
        batchId: batch_id ?? null,
        entries: logs.map((entry) => ({ ...entry, metadata: (entry.metadata ?? null) as JsonObject | null })),
        ip: request.ip ?? null,
        userAgent: typeof userAgent === 'string' ? userAgent : null,
      });
      if (result.replayed) reply.header('idempotent-replayed', 'true');
      return reply.code(202).send({ accepted: result.accepted, position: formatPosition(result.position) });
    },
  );

  app.get(
    '/activity',
    {
      preHandler: app.authenticate,
      schema: {
        tags: ['activity'],
        summary: 'Own activity, newest first: launcher logs, sign-ins and every ledger event (read model)',
        security: bearerSecurity,
        querystring: z.strictObject({
          action: z.string().min(1).max(100).optional(),
          limit: limitParam,
          cursor: cursorParam,
          min_position: minPositionParam,
        }),
        response: {
          200: z.object({ items: z.array(activityItem), next_cursor: z.string().nullable() }),
          ...errorResponses(400, 401, 503),
        },
      },
    },
    async (request) => {
      const userId = principalOf(request).userId;
      const { action, limit, cursor, min_position } = request.query;
      const keyset = positionKeyset('a', ACTIVITY_KEY, cursor);
      if (keyset.after && Number(keyset.after[2]) > MAX_LOG_ENTRIES) {
        throw new ApiError('validation_failed', 'The query is not valid.', {
          errors: [{ path: 'querystring.cursor', message: 'is not a cursor this API issued' }],
        });
      }
      await awaitProjections(app, ['activity'], min_position);
      const conditions = [sql.fragment`user_id = ${userId}`];
      if (action !== undefined) conditions.push(sql.fragment`action = ${action}`);
      if (keyset.condition) conditions.push(keyset.condition);
      const rows = await deps.pool.any(sql.type(activityRow)`
        select id::text as id, action, resource_type, resource_id, metadata, ip_address, user_agent, created_at,
          position_major::text as position_major, position_minor::text as position_minor, entry_index
        from activity_logs a
        where ${sql.join(conditions, sql.fragment` and `)}
        order by ${keyset.orderBy}
        limit ${limit + 1}`);
      const { items, next_cursor } = pageOf(rows, limit, (row) => [row.position_major, row.position_minor, row.entry_index]);
      return {
        items: items.map((row) => ({
          id: row.id,
          action: row.action,
          resource_type: row.resource_type,
          resource_id: row.resource_id,
          metadata: row.metadata,
          ip: row.ip_address,
          user_agent: row.user_agent,
          created_at: row.created_at.toISOString(),
        })),
        next_cursor,
      };
    },
  );
};
