import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { sql } from '../../adapters/postgres/pool.js';
import { formatPosition } from '../../core/event-store.js';
import { principalOf } from '../plugins/auth.js';
import { pageOf, positionKeyset } from '../position-pages.js';
import { awaitProjections } from '../read-your-writes.js';
import { bearerSecurity, cursorParam, errorResponses, isoDate, limitParam, minPositionParam } from '../schemas.js';

/**
 * GET /credits and GET /credits/transactions (API §5), served from the credits read model
 * (projections/credits.ts). An account without history reads zeros.
 */

const TRANSACTION_TYPES = ['purchase', 'use', 'refund', 'bonus', 'expire', 'admin'] as const;
/** How many lots with an expiry GET /credits lists (soonest first). */
const EXPIRING_LIMIT = 20;

const int8 = z.bigint().transform(Number);

/**
 * `GET /credits` in one statement, so the balance and the expiring lots come from one snapshot (two
 * queries on two connections could straddle a projector batch). Both parts travel as JSON: numbers
 * as numbers (balances are safe integers), instants as text.
 */
const creditsRow = z.object({
  account: z
    .object({
      balance: z.number().int(),
      reserved: z.number().int(),
      total_purchased: z.number().int(),
      total_used: z.number().int(),
      total_bonus: z.number().int(),
      total_refunded: z.number().int(),
      total_expired: z.number().int(),
      updated_at: z.string(),
      position_major: z.string(),
      position_minor: z.string(),
    })
    .nullable(),
  expiring: z.array(z.object({ lot_id: z.string(), remaining: z.number().int(), expires_at: z.string() })),
});

const transactionRow = z.object({
  id: z.string(),
  type: z.enum(TRANSACTION_TYPES),
  amount: int8,
  balance_before: int8,
  balance_after: int8,
  description: z.string().nullable(),
  metadata: z.record(z.string(), z.unknown()).nullable(),
  reference_type: z.string().nullable(),
  reference_id: z.string().nullable(),
  created_at: z.date(),
  position_major: z.string(),
  position_minor: z.string(),
});

export const creditsResponse = z.object({
  user_id: z.string(),
  balance: z.int(),
  available: z.int(),
  reserved: z.int(),
  total_purchased: z.int(),
  total_used: z.int(),
  total_bonus: z.int(),
  total_refunded: z.int(),
  total_expired: z.int(),
  expiring: z.array(z.object({ lot_id: z.string(), amount: z.int(), expires_at: isoDate })),
  updated_at: isoDate.nullable(),
  position: z.string().nullable().describe('Position of the last event reflected for this account'),
});

/** Newest first, by event position. */
const TRANSACTION_KEY = [
  { column: 'position_major', type: 'numeric' },
  { column: 'position_minor', type: 'numeric' },
] as const;

export const transactionItem = z.object({
  id: z.string(),
  type: z.enum(TRANSACTION_TYPES),
  amount: z.int().describe('Signed: credits in are positive, credits out (use, expire, purchase refunds) negative'),
  balance_before: z.int(),
  balance_after: z.int(),
  description: z.string().nullable(),
  metadata: z.record(z.string(), z.unknown()).nullable(),
  reference_type: z.string().nullable(),
  reference_id: z.string().nullable(),
  created_at: isoDate,
  position: z.string(),
});

export const creditsQueryRoutes: FastifyPluginAsyncZod = async (app) => {
  const { deps } = app;

  app.get(
    '/credits',
    {
      preHandler: app.authenticate,
      schema: {
        tags: ['credits'],
        summary: 'Balance, totals and lots expiring soonest (read model)',
        security: bearerSecurity,
        querystring: z.strictObject({ min_position: minPositionParam }),
        response: { 200: creditsResponse, ...errorResponses(400, 401, 503) },
      },
    },
    async (request) => {
      const userId = principalOf(request).userId;
      await awaitProjections(app, ['credits'], request.query.min_position);
      const { account, expiring } = await deps.pool.one(sql.type(creditsRow)`
        select
          (select to_json(a) from (
             select balance, reserved, total_purchased, total_used, total_bonus, total_refunded, total_expired, updated_at,
               last_position_major::text as position_major, last_position_minor::text as position_minor
             from user_credits where user_id = ${userId}) a) as account,
          coalesce((select json_agg(l order by l.expires_at, l.lot_id) from (
             select lot_id, remaining, expires_at from credit_lots
             where user_id = ${userId} and remaining > 0 and expires_at is not null
             order by expires_at, lot_id
             limit ${EXPIRING_LIMIT}) l), '[]'::json) as expiring`);
      const balance = account?.balance ?? 0;
      const reserved = account?.reserved ?? 0;
      return {
        user_id: userId,
        balance,
        available: balance - reserved,
        reserved,
        total_purchased: account?.total_purchased ?? 0,
        total_used: account?.total_used ?? 0,
        total_bonus: account?.total_bonus ?? 0,
        total_refunded: account?.total_refunded ?? 0,
        total_expired: account?.total_expired ?? 0,
        expiring: expiring.map((lot) => ({ lot_id: lot.lot_id, amount: lot.remaining, expires_at: new Date(lot.expires_at).toISOString() })),
        updated_at: account ? new Date(account.updated_at).toISOString() : null,
        position: account ? formatPosition({ major: BigInt(account.position_major), minor: BigInt(account.position_minor) }) : null,
      };
    },
  );

  app.get(
    '/credits/transactions',
    {
      preHandler: app.authenticate,
      schema: {
        tags: ['credits'],
        summary: 'The account statement, newest first (read model)',
        security: bearerSecurity,
        querystring: z.strictObject({
          type: z.enum(TRANSACTION_TYPES).optional(),
          limit: limitParam,
          cursor: cursorParam,
          min_position: minPositionParam,
        }),
        response: {
          200: z.object({ items: z.array(transactionItem), next_cursor: z.string().nullable() }),
          ...errorResponses(400, 401, 503),
        },
      },
    },
    async (request) => {
      const userId = principalOf(request).userId;
      const { type, limit, cursor, min_position } = request.query;
      const keyset = positionKeyset('t', TRANSACTION_KEY, cursor);
      await awaitProjections(app, ['credits'], min_position);
      const conditions = [sql.fragment`user_id = ${userId}`];
      if (type !== undefined) conditions.push(sql.fragment`type = ${type}`);
      if (keyset.condition) conditions.push(keyset.condition);
      const rows = await deps.pool.any(sql.type(transactionRow)`
        select id::text as id, type, amount, balance_before, balance_after, description, metadata, reference_type, reference_id,
          created_at, position_major::text as position_major, position_minor::text as position_minor
        from credit_transactions t
        where ${sql.join(conditions, sql.fragment` and `)}
        order by ${keyset.orderBy}
        limit ${limit + 1}`);
      const { items, next_cursor } = pageOf(rows, limit, (row) => [row.position_major, row.position_minor]);
      return {
        items: items.map((row) => ({
          id: row.id,
          type: row.type,
          amount: row.amount,
          balance_before: row.balance_before,
          balance_after: row.balance_after,
          description: row.description,
          metadata: row.metadata,
          reference_type: row.reference_type,
          reference_id: row.reference_id,
          created_at: row.created_at.toISOString(),
          position: formatPosition({ major: BigInt(row.position_major), minor: BigInt(row.position_minor) }),
        })),
        next_cursor,
      };
    },
  );
};
