/**
 * The activity read model: `activity_logs`, the user's own history (GET /activity), fed by
 * - launcher log batches (`LauncherLogsRecorded` on `activity-<userId>`): one row per entry;
 * - sign-ups and sign-ins (`UserSignedUp` → action `signup`, `UserSignedIn` → `login`), and an admin
 *   (de)activating the account (`UserDeactivated` / `UserReactivated` → `account_deactivated` / `account_reactivated`);
 * - every ledger event on `account-<userId>` (action = the event in snake_case, e.g. `credits_spent`).
 *
 * Row ids are the event id (one row per event) or UUIDv5(event id, entry index) for log entries, and
 * `created_at` is the event's `at`: a rebuild writes the same rows.
 */
import { sql } from '../src/adapters/postgres/pool.js';
import type { JsonObject, JsonValue, RecordedEvent } from '../src/core/event-store.js';
import {
  DEACTIVATED_ACTION,
  LAUNCHER_LOGS_RECORDED,
  REACTIVATED_ACTION,
  SIGN_IN_ACTION,
  SIGN_UP_ACTION,
  USER_DEACTIVATED,
  USER_REACTIVATED,
  USER_SIGNED_IN,
  USER_SIGNED_UP,
  userIdOfActivityStream,
} from '../src/activity/events.js';
import { ACTIVITY_ROW_NAMESPACE, uuidV5 } from '../src/activity/record.js';
import { type LedgerEvent, userIdOfAccountStream } from '../src/ledger/events.js';
import { type ProjectionDefinition, type ProjectionWrite, positionParts } from './definition.js';
import { type Column, rowsOf } from './columns.js';
import { activityEventOf, ledgerEventOf } from './parse.js';

export interface ActivityRow {
  readonly id: string;
  readonly user_id: string;
  readonly action: string;
  readonly resource_type: string | null;
  readonly resource_id: string | null;
  readonly metadata: JsonObject | null;
  readonly ip_address: string | null;
  readonly user_agent: string | null;
  readonly client_ts: string | null;
  readonly created_at: string;
  readonly event_id: string;
  readonly event_type: string;
  readonly entry_index: number;
  readonly position: [string, string];
}

type LedgerActivity = Pick<ActivityRow, 'action' | 'resource_type' | 'resource_id' | 'metadata'>;

const balances = (d: { balance_after: number; reserved_after: number }) => ({
  balance_after: d.balance_after,
  reserved_after: d.reserved_after,
});

/** The activity row of a ledger event. */
export const ledgerActivity = (event: LedgerEvent): LedgerActivity => {
  switch (event.type) {
    case 'CreditsPurchased': {
      const d = event.data;
      return {
        action: 'credits_purchased',
        resource_type: 'purchase',
        resource_id: d.purchase_id,
        metadata: { credits: d.credits, package_id: d.package_id, amount_cents: d.amount_cents, currency: d.currency, ...balances(d) },
      };
    }
    case 'CreditsGranted': {
      const d = event.data;
      return {
        action: 'credits_granted',
        resource_type: 'lot',
        resource_id: d.lot_id,
        metadata: { amount: d.amount, kind: d.kind, reason: d.reason, expires_at: d.expires_at, ...balances(d) },
      };
    }
    case 'CreditsSpent': {
      const d = event.data;
      return {
        action: 'credits_spent',
        resource_type: 'spend',
        resource_id: d.spend_id,
        metadata: { amount: d.amount, description: d.description, reservation_id: d.reservation_id, ...balances(d) },
      };
    }
    case 'CreditsReserved': {
      const d = event.data;
      return {
        action: 'credits_reserved',
        resource_type: 'reservation',
        resource_id: d.reservation_id,
        metadata: { amount: d.amount, expires_at: d.expires_at, description: d.description, ...balances(d) },
      };
    }
    case 'ReservationSettled': {
      const d = event.data;
      return {
        action: 'reservation_settled',
        resource_type: 'reservation',
        resource_id: d.reservation_id,
        metadata: { spend_id: d.spend_id, credits_used: d.credits_used, released: d.released, ...balances(d) },
      };
    }
    case 'ReservationReleased': {
      const d = event.data;
      return {
        action: 'reservation_released',
        resource_type: 'reservation',
        resource_id: d.reservation_id,
        metadata: { released: d.released, ...balances(d) },
      };
    }
    case 'ReservationExpired': {
      const d = event.data;
      return {
        action: 'reservation_expired',
        resource_type: 'reservation',
        resource_id: d.reservation_id,
        metadata: { released: d.released, expires_at: d.expires_at, ...balances(d) },
      };
    }
    case 'CreditsRefunded': {
      const d = event.data;
      return {
        action: 'credits_refunded',
        resource_type: 'spend',
        resource_id: d.spend_id,
        metadata: { refund_id: d.refund_id, amount: d.amount, reason: d.reason, ...balances(d) },
      };
    }
    case 'CreditsAdjusted': {
      const d = event.data;
      return {
        action: 'credits_adjusted',
        resource_type: 'adjustment',
        resource_id: d.adjustment_id,
        metadata: { amount: d.amount, reason: d.reason, ...balances(d) },
      };
    }
    case 'CreditsExpired': {
      const d = event.data;
      return {
        action: 'credits_expired',
        resource_type: 'lot',
        resource_id: d.lot_id,
        metadata: { amount: d.amount, expires_at: d.expires_at, ...balances(d) },
      };
    }
    case 'PurchaseRefunded': {
      const d = event.data;
      return {
        action: 'purchase_refunded',
        resource_type: 'purchase',
        resource_id: d.purchase_id,
        metadata: { amount: d.amount, payment_id: d.payment_id, ...balances(d) },
      };
    }
    case 'TierChanged': {
      const d = event.data;
      return {
        action: 'tier_changed',
        resource_type: 'tier',
        resource_id: d.tier,
        metadata: { tier: d.tier, previous_tier: d.previous_tier, expires_at: d.expires_at, reason: d.reason },
      };
    }
    default: {
      const unreachable: never = event;
      throw new Error(`unmapped ledger event ${(unreachable as { type: string }).type}`);
    }
  }
};

const textOf = (value: JsonValue | undefined): string | null => (typeof value === 'string' ? value : null);

/** The activity rows of a batch of events (position order). Pure. */
export const planActivity = (events: readonly RecordedEvent[]): ActivityRow[] => {
  const rows: ActivityRow[] = [];
  for (const recorded of events) {
    const position = positionParts(recorded.position);
    const accountUser = userIdOfAccountStream(recorded.streamId);
    if (accountUser !== null) {
      const event = ledgerEventOf(recorded);
      if (event === null) continue;
      rows.push({
        ...ledgerActivity(event),
        id: recorded.id,
        user_id: accountUser,
        ip_address: textOf(recorded.metadata.ip),
        user_agent: textOf(recorded.metadata.user_agent),
        client_ts: null,
        created_at: event.data.at,
        event_id: recorded.id,
        event_type: recorded.type,
        entry_index: 0,
        position,
      });
      continue;
    }
    const activityUser = userIdOfActivityStream(recorded.streamId);
    if (activityUser === null) continue;
    const event = activityEventOf(recorded);
    if (event === null) continue;
    switch (event.type) {
      case USER_SIGNED_UP:
      case USER_SIGNED_IN: {
        const d = event.data;
        rows.push({
          id: recorded.id,
          user_id: activityUser,
          action: event.type === USER_SIGNED_UP ? SIGN_UP_ACTION : SIGN_IN_ACTION,
          resource_type: 'session',
          resource_id: null,
          metadata: { method: d.method, device_info: d.device_info },
          ip_address: d.ip,
          user_agent: d.user_agent,
          client_ts: null,
          created_at: d.at ?? recorded.recordedAt.toISOString(),
          event_id: recorded.id,
          event_type: recorded.type,
          entry_index: 0,
          position,
        });
        break;
      }
      case USER_DEACTIVATED:
      case USER_REACTIVATED: {
        const d = event.data;
        rows.push({
          id: recorded.id,
          user_id: activityUser,
          action: event.type === USER_DEACTIVATED ? DEACTIVATED_ACTION : REACTIVATED_ACTION,
          resource_type: 'user',
          resource_id: activityUser,
          metadata: { actor_id: d.actor_id, reason: d.reason },
          ip_address: null,
          user_agent: null,
          client_ts: null,
          created_at: d.at ?? recorded.recordedAt.toISOString(),
          event_id: recorded.id,
          event_type: recorded.type,
          entry_index: 0,
          position,
        });
        break;
      }
      case LAUNCHER_LOGS_RECORDED: {
        const d = event.data;
        d.entries.forEach((entry, index) => {
          rows.push({
            id: uuidV5(`${recorded.id}:${index}`, ACTIVITY_ROW_NAMESPACE),
            user_id: activityUser,
            action: entry.action,
            resource_type: entry.resource_type,
            resource_id: entry.resource_id,
            metadata: entry.metadata,
            ip_address: d.ip,
            user_agent: d.user_agent,
            client_ts: entry.client_ts,
            created_at: d.at,
            event_id: recorded.id,
            event_type: recorded.type,
            entry_index: index,
            position,
          });
        });
        break;
      }
      default: {
        const unreachable: never = event;
        throw new Error(`unmapped activity event ${(unreachable as { type: string }).type}`);
      }
    }
  }
  return rows;
};

const ACTIVITY_COLUMNS: readonly Column<ActivityRow>[] = [
  ['id', 'uuid', (r) => r.id],
  ['user_id', 'text', (r) => r.user_id],
  ['action', 'text', (r) => r.action],
  ['resource_type', 'text', (r) => r.resource_type],
  ['resource_id', 'text', (r) => r.resource_id],
  ['metadata', 'jsonb', (r) => r.metadata],
  ['ip_address', 'text', (r) => r.ip_address],
  ['user_agent', 'text', (r) => r.user_agent],
  ['client_ts', 'text', (r) => r.client_ts],
  ['created_at', 'timestamptz', (r) => r.created_at],
  ['event_id', 'uuid', (r) => r.event_id],
  ['event_type', 'text', (r) => r.event_type],
  ['entry_index', 'int4', (r) => r.entry_index],
  ['position_major', 'numeric', (r) => r.position[0]],
  ['position_minor', 'numeric', (r) => r.position[1]],
];

/** The rows as SQL: one array parameter per column (`unnest`), one insert — part of the batch's single statement. */
export function activityWrite(schema: string, rows: readonly ActivityRow[]): ProjectionWrite | null {
  if (rows.length === 0) return null;
  return {
    ctes: [
      sql.fragment`insert_activity as (
        insert into ${sql.identifier([schema, 'activity_logs'])} (id, user_id, action, resource_type, resource_id, metadata,
          ip_address, user_agent, client_ts, created_at, event_id, event_type, entry_index, position_major, position_minor)
        select id, user_id, action, resource_type, resource_id, metadata, ip_address, user_agent, client_ts, created_at,
          event_id, event_type, entry_index, position_major, position_minor
        from ${rowsOf(rows, ACTIVITY_COLUMNS)}
        on conflict (id) do nothing
      )`,
    ],
  };
}

export const activityProjection: ProjectionDefinition = {
  name: 'activity',
  tables: ['activity_logs'],
  plan: (schema, events) => activityWrite(schema, planActivity(events)),
};
