/**
 * Ledger events: the facts recorded in an account stream (`account-<userId>`), schema version 1.
 *
 * Conventions every event follows:
 * - `data` is a JSON object with snake_case fields; optional facts are `null`, never absent.
 * - `data.at` is the decision time (ISO 8601 UTC, `Date#toISOString()` form). All events appended by
 *   one decision share the same `at`.
 * - Every event that changes the balance or the reserved amount carries `balance_after` and
 *   `reserved_after` (integers, the account's values right after this event), so each entry explains
 *   itself and a read model never needs to replay. `available_after` = `balance_after − reserved_after`.
 * - `allocation` lists the lots an amount was taken from (or restored to / released back to),
 *   in the order the decider applied them. Its amounts sum to the event's amount.
 *
 * Events are never edited. A new need gets a new event type or an upcaster, never a changed meaning.
 */
import { z } from 'zod';
import type { JsonObject, JsonValue } from '../values.js';

export const EVENT_SCHEMA_VERSION = 1;

export const ACCOUNT_STREAM_PREFIX = 'account-';

export const accountStreamId = (userId: string): string => `${ACCOUNT_STREAM_PREFIX}${userId}`;

/** The user id of an account stream, or null when the stream is not an account stream. */
export const userIdOfAccountStream = (streamId: string): string | null =>
  streamId.startsWith(ACCOUNT_STREAM_PREFIX) && streamId.length > ACCOUNT_STREAM_PREFIX.length
    ? streamId.slice(ACCOUNT_STREAM_PREFIX.length)
    : null;

// ---------------------------------------------------------------------------------------------
// Field schemas

const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** `2026-11-25T10:00:00.000Z` exactly (the form `Date#toISOString()` produces). */
export const IsoInstant = z
  .string()
  .regex(ISO_UTC, 'must be an ISO 8601 UTC instant like 2026-11-25T10:00:00.000Z')
  .refine((s) => !Number.isNaN(Date.parse(s)), 'must be a valid instant');

const Credits = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const PositiveCredits = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);
const SignedCredits = z.number().int().min(-Number.MAX_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER);
const Id = z.string().min(1);

const JsonValueSchema: z.ZodType<JsonValue> = z.lazy(() =>
  z.union([
    z.null(),
    z.boolean(),
    z.number(),
    z.string(),
    z.array(JsonValueSchema),
    z.record(z.string(), JsonValueSchema),
  ]),
);
export const JsonObjectSchema: z.ZodType<JsonObject> = z.record(z.string(), JsonValueSchema);

export const AllocationEntry = z.object({ lot_id: Id, amount: PositiveCredits });
export type AllocationEntry = z.infer<typeof AllocationEntry>;
export const Allocation = z.array(AllocationEntry);
export type Allocation = z.infer<typeof Allocation>;

/** Kinds of credit granted without payment. */
export const GRANT_KINDS = ['bonus', 'promotional', 'compensation'] as const;
export const GrantKind = z.enum(GRANT_KINDS);
export type GrantKind = z.infer<typeof GrantKind>;

export const TIER_NAMES = ['free', 'basic', 'pro', 'enterprise'] as const;
export const TierName = z.enum(TIER_NAMES);
export type TierName = z.infer<typeof TierName>;

const balanceFields = { balance_after: Credits, reserved_after: Credits };

// ---------------------------------------------------------------------------------------------
// Event data schemas

/** A paid lot from a completed checkout. Purchase lots sort after granted ones at equal priority/expiry. */
export const CreditsPurchasedData = z.object({
  at: IsoInstant,
  lot_id: Id,
  purchase_id: Id,
  payment_id: Id,
  package_id: Id,
  credits: PositiveCredits,
  amount_cents: Credits,
  currency: z.string().regex(/^[a-z]{3}$/),
  provider_event_id: Id,
  expires_at: IsoInstant.nullable(),
  priority: z.number().int(),
  ...balanceFields,
});

/** A lot given without payment (admin grant, promotion, compensation). */
export const CreditsGrantedData = z.object({
  at: IsoInstant,
  lot_id: Id,
  kind: GrantKind,
  amount: PositiveCredits,
  reason: z.string(),
  expires_at: IsoInstant.nullable(),
  priority: z.number().int(),
  actor_id: z.string().nullable(),
  ...balanceFields,
});

/**
 * Credits consumed. A direct spend has `reservation_id: null`; a settled reservation appends one
 * `CreditsSpent` with its `reservation_id` (amount = credits used, possibly 0 with an empty allocation)
 * followed by `ReservationSettled`. `counts_api_call` marks the event that counts one API call in the
 * UTC day and month of `at` (the quota counter reads only this flag).
 */
export const CreditsSpentData = z.object({
  at: IsoInstant,
  spend_id: Id,
  amount: Credits,
  allocation: Allocation,
  description: z.string().nullable(),
  metadata: JsonObjectSchema.nullable(),
  reservation_id: Id.nullable(),
  counts_api_call: z.boolean(),
  reference_type: z.string().nullable(),
  reference_id: z.string().nullable(),
  ...balanceFields,
});

/** Credits earmarked from specific lots; they leave `available`, not `balance`. */
export const CreditsReservedData = z.object({
  at: IsoInstant,
  reservation_id: Id,
  amount: PositiveCredits,
  expires_at: IsoInstant,
  allocation: Allocation,
  description: z.string().nullable(),
  ...balanceFields,
});

/**
 * Closes a reservation after its `CreditsSpent` (same decision). `credits_used` is that spend's
 * amount; `released` goes back to `available` from the lots in `released_allocation`.
 */
export const ReservationSettledData = z.object({
  at: IsoInstant,
  reservation_id: Id,
  spend_id: Id,
  credits_used: Credits,
  released: Credits,
  released_allocation: Allocation,
  ...balanceFields,
});

/** Closed by the client without spending. */
export const ReservationReleasedData = z.object({
  at: IsoInstant,
  reservation_id: Id,
  released: Credits,
  released_allocation: Allocation,
  ...balanceFields,
});

/** Closed because the decider saw it past `expires_at`; everything still held is released. */
export const ReservationExpiredData = z.object({
  at: IsoInstant,
  reservation_id: Id,
  expires_at: IsoInstant,
  released: Credits,
  released_allocation: Allocation,
  ...balanceFields,
});

/** Part or all of an earlier spend given back, to exactly the lots that spend took. */
export const CreditsRefundedData = z.object({
  at: IsoInstant,
  refund_id: Id,
  spend_id: Id,
  amount: PositiveCredits,
  allocation: Allocation,
  reason: z.string(),
  actor_id: z.string().nullable(),
  ...balanceFields,
});

/**
 * Admin correction. `amount > 0`: a new lot `lot_id` (no expiry, priority 0, `allocation: []`).
 * `amount < 0`: burned from lots like a spend (`lot_id: null`, `allocation` sums to `-amount`).
 */
export const CreditsAdjustedData = z.object({
  at: IsoInstant,
  adjustment_id: Id,
  amount: SignedCredits.refine((n) => n !== 0, 'must not be 0'),
  lot_id: Id.nullable(),
  allocation: Allocation,
  reason: z.string(),
  actor_id: z.string().nullable(),
  ...balanceFields,
});

/** The unheld remainder of a lot that the decider saw past its `expires_at`. */
export const CreditsExpiredData = z.object({
  at: IsoInstant,
  lot_id: Id,
  amount: PositiveCredits,
  expires_at: IsoInstant,
  ...balanceFields,
});

/**
 * Credits of a purchase lot clawed back after the payment was refunded. The first one carries the
 * provider's event id; credits that later come back into that lot (a reservation released, a spend
 * refunded) are clawed back at once by a follow-up event with `provider_event_id: null`.
 * `amount` may be 0 on the first one (nothing left, but the refund is still recorded).
 */
export const PurchaseRefundedData = z.object({
  at: IsoInstant,
  purchase_id: Id,
  payment_id: Id,
  lot_id: Id,
  amount: Credits,
  provider_event_id: Id.nullable(),
  ...balanceFields,
});

export const TierChangedData = z.object({
  at: IsoInstant,
  tier: TierName,
  previous_tier: TierName,
  expires_at: IsoInstant.nullable(),
  reason: z.string(),
  actor_id: z.string().nullable(),
});

export type CreditsPurchasedData = z.infer<typeof CreditsPurchasedData>;
export type CreditsGrantedData = z.infer<typeof CreditsGrantedData>;
export type CreditsSpentData = z.infer<typeof CreditsSpentData>;
export type CreditsReservedData = z.infer<typeof CreditsReservedData>;
export type ReservationSettledData = z.infer<typeof ReservationSettledData>;
export type ReservationReleasedData = z.infer<typeof ReservationReleasedData>;
export type ReservationExpiredData = z.infer<typeof ReservationExpiredData>;
export type CreditsRefundedData = z.infer<typeof CreditsRefundedData>;
export type CreditsAdjustedData = z.infer<typeof CreditsAdjustedData>;
export type CreditsExpiredData = z.infer<typeof CreditsExpiredData>;
export type PurchaseRefundedData = z.infer<typeof PurchaseRefundedData>;
export type TierChangedData = z.infer<typeof TierChangedData>;

// The audit checks events against these schemas with a plain-code copy (src/audit/event-check.ts, proved by
// test/unit/audit/event-check.test.ts): change it with them.
export const LEDGER_EVENT_SCHEMAS = {
  CreditsPurchased: CreditsPurchasedData,
  CreditsGranted: CreditsGrantedData,
  CreditsSpent: CreditsSpentData,
  CreditsReserved: CreditsReservedData,
  ReservationSettled: ReservationSettledData,
  ReservationReleased: ReservationReleasedData,
  ReservationExpired: ReservationExpiredData,
  CreditsRefunded: CreditsRefundedData,
  CreditsAdjusted: CreditsAdjustedData,
  CreditsExpired: CreditsExpiredData,
  PurchaseRefunded: PurchaseRefundedData,
  TierChanged: TierChangedData,
} as const;

export type LedgerEventType = keyof typeof LEDGER_EVENT_SCHEMAS;
export const LEDGER_EVENT_TYPES = Object.keys(LEDGER_EVENT_SCHEMAS) as LedgerEventType[];

export type CreditsPurchased = { type: 'CreditsPurchased'; data: CreditsPurchasedData };
export type CreditsGranted = { type: 'CreditsGranted'; data: CreditsGrantedData };
export type CreditsSpent = { type: 'CreditsSpent'; data: CreditsSpentData };
export type CreditsReserved = { type: 'CreditsReserved'; data: CreditsReservedData };
export type ReservationSettled = { type: 'ReservationSettled'; data: ReservationSettledData };
export type ReservationReleased = { type: 'ReservationReleased'; data: ReservationReleasedData };
export type ReservationExpired = { type: 'ReservationExpired'; data: ReservationExpiredData };
export type CreditsRefunded = { type: 'CreditsRefunded'; data: CreditsRefundedData };
export type CreditsAdjusted = { type: 'CreditsAdjusted'; data: CreditsAdjustedData };
export type CreditsExpired = { type: 'CreditsExpired'; data: CreditsExpiredData };
export type PurchaseRefunded = { type: 'PurchaseRefunded'; data: PurchaseRefundedData };
export type TierChanged = { type: 'TierChanged'; data: TierChangedData };

export type LedgerEvent =
  | CreditsPurchased
  | CreditsGranted
  | CreditsSpent
  | CreditsReserved
  | ReservationSettled
  | ReservationReleased
  | ReservationExpired
  | CreditsRefunded
  | CreditsAdjusted
  | CreditsExpired
  | PurchaseRefunded
  | TierChanged;

/** Events that carry `balance_after` / `reserved_after` (all but `TierChanged`). */
export type BalanceEvent = Exclude<LedgerEvent, TierChanged>;

export const isLedgerEventType = (type: string): type is LedgerEventType =>
  Object.hasOwn(LEDGER_EVENT_SCHEMAS, type);

export const isBalanceEvent = (event: LedgerEvent): event is BalanceEvent => event.type !== 'TierChanged';

export class InvalidLedgerEventError extends Error {
  readonly code = 'invalid_ledger_event' as const;
  constructor(
    readonly eventType: string,
    readonly issues: readonly { path: string; message: string }[],
  ) {
    super(
      issues.length === 0
        ? `unknown ledger event type ${eventType}`
        : `invalid ${eventType} data: ${issues.map((i) => `${i.path || '(root)'} ${i.message}`).join('; ')}`,
    );
    this.name = 'InvalidLedgerEventError';
  }
}

/**
 * Parses a stored event's type and data into a typed `LedgerEvent`.
 * Throws `InvalidLedgerEventError` on an unknown type or data that does not match the schema.
 * Unknown data properties are dropped (tolerant reader).
 */
export const parseLedgerEvent = (type: string, data: unknown): LedgerEvent => {
  if (!isLedgerEventType(type)) throw new InvalidLedgerEventError(type, []);
  const result = LEDGER_EVENT_SCHEMAS[type].safeParse(data);
  if (!result.success) {
    throw new InvalidLedgerEventError(
      type,
      result.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })),
    );
  }
  return { type, data: result.data } as LedgerEvent;
};

/** Like `parseLedgerEvent` but returns null for a type that is not a ledger event (still throws on bad data). */
export const tryParseLedgerEvent = (type: string, data: unknown): LedgerEvent | null =>
  isLedgerEventType(type) ? parseLedgerEvent(type, data) : null;
