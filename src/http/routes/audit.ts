import { Readable } from 'node:stream';
import type { FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { balanceAt } from '../../audit/balance-at.js';
import { EXPORT_CONTENT_TYPES, exportLines } from '../../audit/export.js';
import { CREDITS_PROJECTION, ProjectionLaggingError } from '../../audit/projection-wait.js';
import { auditRecord } from '../../audit/recorded.js';
import { createAuditDeps, verifyAccount } from '../../audit/verify.js';
import { parsePosition } from '../../core/event-store.js';
import { accountStreamId } from '../../ledger/index.js';
import { principalOf } from '../plugins/auth.js';
import { ApiError } from '../problem.js';
import { awaitProjections } from '../read-your-writes.js';
import { bearerSecurity, errorResponses, limitParam, minPositionParam, queryInt, uuid } from '../schemas.js';

/**
 * Audit routes (API §8): the account stream as recorded, its verification (hash chain, replay, read
 * models), the balance at any instant, and the export of every ledger event.
 *
 * Who may call them: `auditor` and `admin` for every account. A `user` may read, verify and query the
 * balance history of their OWN account (it shows only what GET /credits/transactions already shows
 * them, and lets anyone check their own balance without trusting us); another user's account is
 * `403 forbidden`. The export covers every account, so it is for auditors and admins only.
 */

const json = z.record(z.string(), z.unknown());

const auditRecordSchema = z.object({
  revision: z.int().describe('0-based revision in the account stream (a JSON number: streams stay far below 2^53 events)'),
  position: z.string().describe('Global event-store position (opaque string)'),
  id: z.string(),
  type: z.string(),
  data: json,
  metadata: json.describe('As recorded; `hash` is computed over id, type, data and this object without `hash`'),
  recorded_at: z.string(),
  prev_hash: z.string().nullable(),
  hash: z.string().nullable(),
});

const figuresSchema = z.object({
  balance: z.int(),
  reserved: z.int(),
  available: z.int(),
  total_purchased: z.int(),
  total_used: z.int(),
  total_bonus: z.int(),
  total_refunded: z.int(),
  total_expired: z.int(),
  total_adjusted: z.int(),
  total_clawed_back: z.int(),
  last_event_id: z.string().nullable(),
  last_position: z.string().nullable(),
  transactions: z.object({
    count: z.int(),
    sum: z.int(),
    last_balance_after: z.int().nullable(),
    digest: z.string().describe('sha256 over "revision|type|amount|balance_before|balance_after\\n" per statement row'),
  }),
  lots: z.object({ count: z.int(), remaining: z.int(), held: z.int() }),
});

const mismatchSchema = z.object({
  revision: z.int().nullable().describe('The first bad revision, when the problem belongs to one'),
  field: z.string().describe('hash_chain, replay, data.balance_after, user_credits.balance, credit_transactions[revision=N].amount, credit_lots[id].remaining, …'),
  problem: z.string(),
  expected: z.unknown(),
  actual: z.unknown(),
  detail: z.string(),
});

const verifyResponse = z.object({
  user_id: z.string(),
  events: z.int(),
  revision: z.int(),
  position: z.string().nullable(),
  last_hash: z.string(),
  hash_chain_ok: z.boolean(),
  replayed: figuresSchema,
  projected: figuresSchema.nullable(),
  matches: z.boolean(),
  first_mismatch: mismatchSchema.nullable(),
});

const accountParams = z.strictObject({ user_id: uuid });

export const auditRoutes: FastifyPluginAsyncZod = async (app) => {
  const { deps } = app;
  const audit = createAuditDeps(deps.eventStore, deps.pool, (target, timeoutMs) => deps.projections.waitFor([CREDITS_PROJECTION], target, timeoutMs));
  const auditorsOnly = app.requireRole('admin', 'auditor');

  /** Auditors and admins: any account; users: their own (see the module comment); others: 403. */
  const ownAccountOrAuditor = async (request: FastifyRequest) => {
    const principal = principalOf(request);
    if (principal.role === 'admin' || principal.role === 'auditor') return;
    const { user_id } = request.params as { user_id: string };
    if (principal.userId !== user_id.toLowerCase()) throw new ApiError('forbidden', 'You may audit only your own account.');
  };

  /** 404 for an account that neither exists as a user nor has a stream. */
  const assertKnown = async (userId: string, hasEvents: boolean) => {
    if (hasEvents) return;
    if (!(await deps.users.findById(userId))) throw new ApiError('not_found', `No account ${userId}.`);
  };

  app.get(
    '/audit/accounts/:user_id/events',
    {
      preHandler: [app.authenticate, ownAccountOrAuditor],
      schema: {
        tags: ['audit'],
        summary: "The account's event stream exactly as recorded, oldest first, with positions and hashes",
        security: bearerSecurity,
        params: accountParams,
        querystring: z.strictObject({
          from_revision: queryInt(0, 9_999_999_999).optional().default(0).describe('First revision to return (inclusive)'),
          limit: limitParam,
        }),
        response: {
          200: z.object({
            user_id: z.string(),
            items: z.array(auditRecordSchema),
            next_from_revision: z.int().nullable().describe('Pass as from_revision for the next page; null at the end'),
          }),
          ...errorResponses(400, 401, 403, 404),
        },
      },
    },
    async (request) => {
      const userId = request.params.user_id.toLowerCase();
      const { from_revision, limit } = request.query;
      const items = [];
      for await (const event of deps.eventStore.readStream(accountStreamId(userId), { fromRevision: BigInt(from_revision), maxCount: limit + 1 })) {
        items.push(auditRecord(event));
      }
      const more = items.length > limit;
      if (more) items.pop();
      await assertKnown(userId, items.length > 0 || from_revision > 0);
      const last = items[items.length - 1];
      return { user_id: userId, items, next_from_revision: more && last ? last.revision + 1 : null };
    },
  );

  app.get(
    '/audit/accounts/:user_id/verify',
    {
      preHandler: [app.authenticate, ownAccountOrAuditor],
      schema: {
        tags: ['audit'],
        summary: 'Replays the stream, checks its hash chain and compares it with the read models',
        description:
          'Waits (up to 2 s) for the projector to reach the stream’s last event (and `min_position`, when given), else 503 projection_lagging. ' +
          '`matches`: the replay succeeded, every entry agrees with it and the read models show exactly the replayed figures; ' +
          '`first_mismatch`: the first problem, the hash chain included.',
        security: bearerSecurity,
        params: accountParams,
        querystring: z.strictObject({ min_position: minPositionParam }),
        response: { 200: verifyResponse, ...errorResponses(400, 401, 403, 404, 503) },
      },
    },
    async (request) => {
      const userId = request.params.user_id.toLowerCase();
      // The comparison reads the credits read model: `?min_position=` first (API §1), as on GET /credits.
      await awaitProjections(app, [CREDITS_PROJECTION], request.query.min_position);
      try {
        const result = await verifyAccount(audit, userId);
        await assertKnown(userId, result.events > 0);
        return result;
      } catch (error) {
        if (error instanceof ProjectionLaggingError) {
          throw new ApiError('projection_lagging', `${error.message}; retry shortly.`, {}, { 'retry-after': '1' });
        }
        throw error;
      }
    },
  );

  app.get(
    '/audit/accounts/:user_id/balance',
    {
      preHandler: [app.authenticate, ownAccountOrAuditor],
      schema: {
        tags: ['audit'],
        summary: 'The balance at an instant, by replaying the stream up to it',
        description: 'Replays the events decided at or before `at` (their `data.at`).',
        security: bearerSecurity,
        params: accountParams,
        querystring: z.strictObject({
          at: z.iso.datetime({ offset: true }).describe('ISO 8601 instant, e.g. 2026-11-25T10:00:00.000Z'),
        }),
        response: {
          200: z.object({
            user_id: z.string(),
            at: z.string(),
            balance: z.int(),
            reserved: z.int(),
            available: z.int(),
            revision: z.int().nullable().describe('Last revision included; null before the first event'),
            position: z.string().nullable(),
            events: z.int(),
          }),
          ...errorResponses(400, 401, 403, 404),
        },
      },
    },
    async (request) => {
      const userId = request.params.user_id.toLowerCase();
      const result = await balanceAt(deps.eventStore, userId, new Date(request.query.at));
      await assertKnown(userId, result.revision !== null);
      return result;
    },
  );

  app.get(
    '/audit/export',
    {
      preHandler: [app.authenticate, auditorsOnly],
      schema: {
        tags: ['audit'],
        summary: 'Streams every ledger event (account streams) in position order, as NDJSON or CSV',
        description:
          'Streamed, never buffered. `from_position` is exclusive: resume with the last exported position. ' +
          'NDJSON: one event per line ({ position, stream_id, user_id, revision, id, type, data, metadata, recorded_at, prev_hash, hash }). ' +
          'CSV (RFC 4180, CRLF): the same columns, data and metadata as JSON text.',
        security: bearerSecurity,
        querystring: z.strictObject({
          format: z.enum(['ndjson', 'csv']).optional().default('ndjson'),
          from_position: minPositionParam,
        }),
        response: {
          200: z.unknown().describe('application/x-ndjson or text/csv, streamed'),
          ...errorResponses(400, 401, 403),
        },
      },
    },
    async (request, reply) => {
      const { format, from_position } = request.query;
      const fromPosition = from_position === undefined ? undefined : (parsePosition(from_position) ?? undefined);
      const lines = exportLines(deps.eventStore, { format, fromPosition });
      return reply
        .type(EXPORT_CONTENT_TYPES[format])
        .header('content-disposition', `attachment; filename="ledger-events.${format}"`)
        .header('cache-control', 'no-store')
        .send(Readable.from(lines, { objectMode: false }));
    },
  );
};
