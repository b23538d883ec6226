/**
 * Commands to the account decider. Each carries the ids its handler generated (spend_id, lot_id, …)
 * so `decide` stays deterministic; the clock comes in through the decide context.
 * Fields are snake_case like the HTTP bodies they mostly come from. Optional fields may be omitted.
 */
import type { JsonObject } from '../values.js';
import { EVENT_SCHEMA_VERSION, type GrantKind, type TierName } from './events.js';

/** From the `Idempotency-Key` header; `request_hash` is the handler's hash of the (canonical) body. */
export interface IdempotencyStamp {
  readonly key: string;
  readonly request_hash: string;
}

interface CommandBase {
  readonly idempotency?: IdempotencyStamp | undefined;
}

/** `POST /credits/spend`. Counts one API call unless `counts_api_call: false`. */
export interface SpendCommand extends CommandBase {
  readonly type: 'Spend';
  readonly spend_id: string;
  readonly amount: number;
  readonly description?: string | null | undefined;
  readonly metadata?: JsonObject | null | undefined;
  readonly reference_type?: string | null | undefined;
  readonly reference_id?: string | null | undefined;
  readonly counts_api_call?: boolean | undefined;
}

/** `POST /credits/reservations` and the first step of the AI calls. Checks (does not count) the quota. */
export interface ReserveCommand extends CommandBase {
  readonly type: 'Reserve';
  readonly reservation_id: string;
  readonly amount: number;
  /** Default 300, 1..3600. */
  readonly ttl_seconds?: number | undefined;
  readonly description?: string | null | undefined;
}

/** Spends `amount` (0 ≤ amount ≤ reserved) from the reservation's lots and releases the rest. Counts one API call. */
export interface SettleCommand extends CommandBase {
  readonly type: 'Settle';
  readonly reservation_id: string;
  readonly spend_id: string;
  readonly amount: number;
  readonly description?: string | null | undefined;
  readonly metadata?: JsonObject | null | undefined;
  readonly reference_type?: string | null | undefined;
  readonly reference_id?: string | null | undefined;
  readonly counts_api_call?: boolean | undefined;
}

export interface ReleaseCommand extends CommandBase {
  readonly type: 'Release';
  readonly reservation_id: string;
}

/** The sweeper's command: only the expiries every decision starts with. May decide no events. */
export interface ExpireDueCommand extends CommandBase {
  readonly type: 'ExpireDue';
}

export interface GrantCommand extends CommandBase {
  readonly type: 'Grant';
  readonly lot_id: string;
  readonly kind: GrantKind;
  readonly amount: number;
  readonly reason: string;
  /** Must be after `now` when given. */
  readonly expires_at?: string | null | undefined;
  /** Default 0; higher burns first. */
  readonly priority?: number | undefined;
  readonly actor_id?: string | null | undefined;
}

/** Signed, ≠ 0. Positive: a new lot whose id is `adjustment_id`. Negative: burned like a spend. */
export interface AdjustCommand extends CommandBase {
  readonly type: 'Adjust';
  readonly adjustment_id: string;
  readonly amount: number;
  readonly reason: string;
  readonly actor_id?: string | null | undefined;
}

/** Default amount: everything not yet refunded. */
export interface RefundSpendCommand extends CommandBase {
  readonly type: 'RefundSpend';
  readonly refund_id: string;
  readonly spend_id: string;
  readonly amount?: number | undefined;
  readonly reason: string;
  readonly actor_id?: string | null | undefined;
}

/** From a Stripe `checkout.session.completed`. Duplicate payment_id / provider_event_id → already_applied. */
export interface PurchaseCommand extends CommandBase {
  readonly type: 'Purchase';
  readonly purchase_id: string;
  readonly lot_id: string;
  readonly payment_id: string;
  readonly package_id: string;
  readonly credits: number;
  readonly amount_cents: number;
  readonly currency: string;
  readonly provider_event_id: string;
  readonly expires_at?: string | null | undefined;
  readonly priority?: number | undefined;
}

/** From a Stripe `charge.refunded`: claws back what is left of the purchase's lot. Found by purchase_id, else payment_id. */
export interface RefundPurchaseCommand extends CommandBase {
  readonly type: 'RefundPurchase';
  readonly payment_id: string;
  readonly purchase_id?: string | undefined;
  readonly provider_event_id: string;
}

export interface ChangeTierCommand extends CommandBase {
  readonly type: 'ChangeTier';
  readonly tier: TierName;
  /** Must be after `now` when given; the tier falls back to free then. */
  readonly expires_at?: string | null | undefined;
  readonly reason: string;
  readonly actor_id?: string | null | undefined;
}

export type LedgerCommand =
  | SpendCommand
  | ReserveCommand
  | SettleCommand
  | ReleaseCommand
  | ExpireDueCommand
  | GrantCommand
  | AdjustCommand
  | RefundSpendCommand
  | PurchaseCommand
  | RefundPurchaseCommand
  | ChangeTierCommand;

export type LedgerCommandType = LedgerCommand['type'];

/**
 * The metadata the handler stamps on EVERY event of one decision's append (merge in its own fields,
 * e.g. request id or causation). `evolve` reads `idempotency_key` / `request_hash` from it to rebuild
 * the idempotency records, and `command` to label them.
 */
export const ledgerEventMetadata = (command: LedgerCommand, extra: JsonObject = {}): JsonObject => {
  const metadata: JsonObject = { ...extra, schema_version: EVENT_SCHEMA_VERSION, command: command.type };
  if (command.idempotency) {
    metadata.idempotency_key = command.idempotency.key;
    metadata.request_hash = command.idempotency.request_hash;
  }
  return metadata;
};
