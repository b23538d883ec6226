import { z } from 'zod';
import type { SweeperQueries } from '../../core/sweeper.js';
import { type DatabasePool, sql } from './pool.js';
import { isUuid } from '../../core/ids.js';

const candidateRow = z.object({ user_id: z.string() });
const existsRow = z.object({ ok: z.boolean() });
/** The sweeper's questions, answered from the projections' read models. */
export function createSweeperQueries(pool: DatabasePool): SweeperQueries {
  return {
    async candidates(now, limit) {
      const present = await pool.one(sql.type(existsRow)`
        select to_regclass('public.user_credits') is not null and to_regclass('public.credit_lots') is not null as ok`);
      if (!present.ok) return [];
      const rows = await pool.any(sql.type(candidateRow)`
        select user_id from user_credits where reserved > 0
        union
        select user_id from credit_lots where remaining > held and expires_at <= ${now.toISOString()}::timestamptz
        limit ${limit}`);
      return rows.map((row) => row.user_id).filter(isUuid);
    },
    async pruneAiGenerations(now) {
      // Replays of /ai/generate need the stored answer for as long as the idempotency key lives (24 h).
      await pool.query(sql.unsafe`
        delete from ai_generations where created_at < ${new Date(now.getTime() - 25 * 3600_000).toISOString()}::timestamptz`);
    },
  };
}
