/**
 * The tier and usage read model: `user_tiers`, one row per account that has changed tier or made a
 * counted API call. Behind the tier of GET /me and GET /usage (the `users` table holds identity only).
 *
 * - `TierChanged` → tier, tier_expires_at (the effective tier falls back to free past it, at read time).
 * - `CreditsSpent` with `counts_api_call` → one call in the UTC day and month of its `at`, counted the
 *   way the decider counts (src/ledger/state.ts `countApiCall`): a call in a later window starts that
 *   window at 1, a call in the current window adds 1, a call stamped in an earlier window is ignored.
 *
 * Within a batch, that rule folds to "the latest window seen and the number of calls in it", which
 * the upsert merges with the stored window in SQL.
 */
import { sql } from '../src/adapters/postgres/pool.js';
import type { RecordedEvent } from '../src/core/event-store.js';
import { type TierName, userIdOfAccountStream } from '../src/ledger/events.js';
import { type ProjectionDefinition, type ProjectionWrite, positionParts } from './definition.js';
import { type Column, positionColumns, rowsOf } from './columns.js';
import { ledgerEventOf } from './parse.js';

/** The latest window of a batch and the calls counted in it. */
export interface WindowCount {
  window: string;
  count: number;
}

export interface TierChange {
  readonly user_id: string;
  tier: { tier: TierName; expires_at: string | null; changed_at: string } | null;
  day: WindowCount | null;
  month: WindowCount | null;
  last_api_call_at: string | null;
  readonly created_at: string;
  updated_at: string;
  readonly first_position: [string, string];
  last_position: [string, string];
}

const count = (current: WindowCount | null, window: string): WindowCount => {
  if (current === null || window > current.window) return { window, count: 1 };
  if (window === current.window) current.count += 1;
  return current;
};

/** Per account, what a batch of events (position order) changes. Pure. */
export const planTiers = (events: readonly RecordedEvent[]): Map<string, TierChange> => {
  const changes = new Map<string, TierChange>();
  for (const recorded of events) {
    const userId = userIdOfAccountStream(recorded.streamId);
    if (userId === null) continue;
    if (recorded.type !== 'TierChanged' && recorded.type !== 'CreditsSpent') continue;
    const event = ledgerEventOf(recorded);
    if (event === null) continue;
    if (event.type === 'CreditsSpent' && !event.data.counts_api_call) continue;
    const at = event.data.at;
    const position = positionParts(recorded.position);
    let change = changes.get(userId);
    if (!change) {
      change = {
        user_id: userId,
        tier: null,
        day: null,
        month: null,
        last_api_call_at: null,
        created_at: at,
        updated_at: at,
        first_position: position,
        last_position: position,
      };
      changes.set(userId, change);
    }
    change.updated_at = at;
    change.last_position = position;
    if (event.type === 'TierChanged') {
      change.tier = { tier: event.data.tier, expires_at: event.data.expires_at, changed_at: at };
    } else if (event.type === 'CreditsSpent') {
      change.day = count(change.day, at.slice(0, 10));
      change.month = count(change.month, at.slice(0, 7));
      if (change.last_api_call_at === null || at > change.last_api_call_at) change.last_api_call_at = at;
    }
  }
  return changes;
};

const TIER_COLUMNS: readonly Column<TierChange>[] = [
  ['user_id', 'text', (r) => r.user_id],
  ['tier', 'text', (r) => r.tier?.tier ?? null],
  ['tier_expires_at', 'timestamptz', (r) => r.tier?.expires_at ?? null],
  ['tier_changed_at', 'timestamptz', (r) => r.tier?.changed_at ?? null],
  ['day', 'text', (r) => r.day?.window ?? null],
  ['day_count', 'int4', (r) => r.day?.count ?? 0],
  ['month', 'text', (r) => r.month?.window ?? null],
  ['month_count', 'int4', (r) => r.month?.count ?? 0],
  ['last_api_call_at', 'timestamptz', (r) => r.last_api_call_at],
  ['created_at', 'timestamptz', (r) => r.created_at],
  ['updated_at', 'timestamptz', (r) => r.updated_at],
  ...positionColumns(),
];

/** The changes as SQL (one array parameter per column, an insert and an update) — part of the batch's single statement. */
export function tiersWrite(schema: string, changes: ReadonlyMap<string, TierChange>): ProjectionWrite | null {
  if (changes.size === 0) return null;
  const table = sql.identifier([schema, 'user_tiers']);
  return {
    ctes: [
      sql.fragment`tier_rows as (select x.* from ${rowsOf([...changes.values()], TIER_COLUMNS)})`,
      sql.fragment`insert_tiers as (
        insert into ${table} (user_id, tier, tier_expires_at, tier_changed_at, api_calls_day, api_calls_today,
          api_calls_month_window, api_calls_month, last_api_call_at, created_at, updated_at,
          last_position_major, last_position_minor)
        select user_id, coalesce(tier, 'free'), tier_expires_at, tier_changed_at, day, day_count, month, month_count,
          last_api_call_at, created_at, updated_at, last_major, last_minor
        from tier_rows
        on conflict (user_id) do nothing
      )`,
      // Windows compare as text in the C collation: 'YYYY-MM-DD' / 'YYYY-MM' sort like the dates they name.
      sql.fragment`update_tiers as (
        update ${table} u set
          tier = coalesce(x.tier, u.tier),
          tier_expires_at = case when x.tier is null then u.tier_expires_at else x.tier_expires_at end,
          tier_changed_at = coalesce(x.tier_changed_at, u.tier_changed_at),
          api_calls_today = case
            when x.day is null then u.api_calls_today
            when u.api_calls_day is null or x.day collate "C" > u.api_calls_day then x.day_count
            when x.day = u.api_calls_day then u.api_calls_today + x.day_count
            else u.api_calls_today end,
          api_calls_day = case when x.day is null then u.api_calls_day else greatest(u.api_calls_day collate "C", x.day) end,
          api_calls_month = case
            when x.month is null then u.api_calls_month
            when u.api_calls_month_window is null or x.month collate "C" > u.api_calls_month_window then x.month_count
            when x.month = u.api_calls_month_window then u.api_calls_month + x.month_count
            else u.api_calls_month end,
          api_calls_month_window = case
            when x.month is null then u.api_calls_month_window
            else greatest(u.api_calls_month_window collate "C", x.month) end,
          last_api_call_at = greatest(u.last_api_call_at, x.last_api_call_at),
          updated_at = x.updated_at,
          last_position_major = x.last_major,
          last_position_minor = x.last_minor
        from tier_rows x
        where u.user_id = x.user_id
          and (u.last_position_major, u.last_position_minor) < (x.first_major, x.first_minor)
      )`,
    ],
  };
}

export const tiersProjection: ProjectionDefinition = {
  name: 'tiers',
  tables: ['user_tiers'],
  plan: (schema, events) => tiersWrite(schema, planTiers(events)),
};
