import type { JsonObject } from '../core/event-store.js';
import { GRANT_KINDS, type LedgerEvent, type LedgerEventType, parseLedgerEvent, TIER_NAMES } from '../ledger/index.js';

/**
 * The audit's hot path for `parseLedgerEvent` (src/ledger/events.ts): the verifier replays a million
 * events per run, and the zod parse of each one (a fresh output object per event and per allocation
 * entry) cost about as much as the hash. This is a plain-code check of the same schemas that only ever
 * says yes: data with exactly the schema's fields, each valid, is returned as it is. Anything else —
 * an unknown type, a missing or extra field, any doubtful value — goes to `parseLedgerEvent` itself,
 * which accepts it (an extra field, dropped by the tolerant reader) or throws the very error the
 * service throws. So a malformed event is reported exactly as before.
 *
 * The check must never accept what the schemas reject. test/unit/audit/event-check.test.ts proves it
 * for every event type, field by field, valid and invalid values mixed at random; when a schema changes,
 * change the table below with it (an added field alone is safe: the check then defers every event).
 */

type Check = (value: unknown) => boolean;

const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

const instant: Check = (v) => typeof v === 'string' && ISO_UTC.test(v) && !Number.isNaN(Date.parse(v));
const id: Check = (v) => typeof v === 'string' && v.length > 0;
const text: Check = (v) => typeof v === 'string';
const bool: Check = (v) => typeof v === 'boolean';
const int: Check = (v) => Number.isSafeInteger(v);
const credits: Check = (v) => Number.isSafeInteger(v) && (v as number) >= 0;
const positive: Check = (v) => Number.isSafeInteger(v) && (v as number) > 0;
const nonZero: Check = (v) => Number.isSafeInteger(v) && v !== 0;
const currency: Check = (v) => typeof v === 'string' && /^[a-z]{3}$/.test(v);
const oneOf = (values: readonly string[]): Check => {
  const set = new Set<unknown>(values);
  return (v) => set.has(v);
};
const nullable =
  (check: Check): Check =>
  (v) =>
    v === null || check(v);

/** Exactly the keys of `shape`, each valid (keys are distinct, so equal counts and all known means the same set). */
const exactObject = (value: unknown, shape: ReadonlyMap<string, Check>): boolean => {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const keys = Object.keys(value);
  if (keys.length !== shape.size) return false;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i] as string;
    const check = shape.get(key);
    if (check === undefined || !check((value as Record<string, unknown>)[key])) return false;
  }
  return true;
};

const ENTRY = new Map<string, Check>([
  ['lot_id', id],
  ['amount', positive],
]);
const allocation: Check = (v) => {
  if (!Array.isArray(v)) return false;
  for (let i = 0; i < v.length; i++) if (!exactObject(v[i], ENTRY)) return false;
  return true;
};

/** What JSON.parse can produce, on plain objects; `__proto__` keys are left to the schema (its output differs). */
const json = (v: unknown, depth: number): boolean => {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return true;
  if (typeof v === 'number') return Number.isFinite(v);
  if (depth > 64 || typeof v !== 'object') return false;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) if (!json(v[i], depth + 1)) return false;
    return true;
  }
  return jsonObject(v, depth);
};
const jsonObject = (v: object, depth: number): boolean => {
  if (Object.getPrototypeOf(v) !== Object.prototype) return false;
  const keys = Object.keys(v);
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i] as string;
    if (key === '__proto__' || !json((v as Record<string, unknown>)[key], depth + 1)) return false;
  }
  return true;
};
const record: Check = (v) => typeof v === 'object' && v !== null && !Array.isArray(v) && jsonObject(v, 0);

const balance = { balance_after: credits, reserved_after: credits };

/** The schemas of LEDGER_EVENT_SCHEMAS, field by field. */
export const EVENT_FIELDS: Readonly<Record<LedgerEventType, Readonly<Record<string, Check>>>> = {
  CreditsPurchased: {
    at: instant,
    lot_id: id,
    purchase_id: id,
    payment_id: id,
    package_id: id,
    credits: positive,
    amount_cents: credits,
    currency,
    provider_event_id: id,
    expires_at: nullable(instant),
    priority: int,
    ...balance,
  },
  CreditsGranted: {
    at: instant,
    lot_id: id,
    kind: oneOf(GRANT_KINDS),
    amount: positive,
    reason: text,
    expires_at: nullable(instant),
    priority: int,
    actor_id: nullable(text),
    ...balance,
  },
  CreditsSpent: {
    at: instant,
    spend_id: id,
    amount: credits,
    allocation,
    description: nullable(text),
    metadata: nullable(record),
    reservation_id: nullable(id),
    counts_api_call: bool,
    reference_type: nullable(text),
    reference_id: nullable(text),
    ...balance,
  },
  CreditsReserved: {
    at: instant,
    reservation_id: id,
    amount: positive,
    expires_at: instant,
    allocation,
    description: nullable(text),
    ...balance,
  },
  ReservationSettled: {
    at: instant,
    reservation_id: id,
    spend_id: id,
    credits_used: credits,
    released: credits,
    released_allocation: allocation,
    ...balance,
  },
  ReservationReleased: {
    at: instant,
    reservation_id: id,
    released: credits,
    released_allocation: allocation,
    ...balance,
  },
  ReservationExpired: {
    at: instant,
    reservation_id: id,
    expires_at: instant,
    released: credits,
    released_allocation: allocation,
    ...balance,
  },
  CreditsRefunded: {
    at: instant,
    refund_id: id,
    spend_id: id,
    amount: positive,
    allocation,
    reason: text,
    actor_id: nullable(text),
    ...balance,
  },
  CreditsAdjusted: {
    at: instant,
    adjustment_id: id,
    amount: nonZero,
    lot_id: nullable(id),
    allocation,
    reason: text,
    actor_id: nullable(text),
    ...balance,
  },
  CreditsExpired: {
    at: instant,
    lot_id: id,
    amount: positive,
    expires_at: instant,
    ...balance,
  },
  PurchaseRefunded: {
    at: instant,
    purchase_id: id,
    payment_id: id,
    lot_id: id,
    amount: credits,
    provider_event_id: nullable(id),
    ...balance,
  },
  TierChanged: {
    at: instant,
    tier: oneOf(TIER_NAMES),
    previous_tier: oneOf(TIER_NAMES),
    expires_at: nullable(instant),
    reason: text,
    actor_id: nullable(text),
  },
};

const SHAPES = new Map<string, ReadonlyMap<string, Check>>(Object.entries(EVENT_FIELDS).map(([type, fields]) => [type, new Map(Object.entries(fields))]));

/** True only when the schema of `type` accepts `data` as it is (exactly its fields, each valid); false says nothing. */
export const fastAccepts = (type: string, data: unknown): boolean => {
  const shape = SHAPES.get(type);
  return shape !== undefined && exactObject(data, shape);
};

/**
 * `parseLedgerEvent`, same answers: data the check accepts is used as it is (the schema would return
 * an equal copy); anything else is parsed by the schema, which returns its copy or throws.
 */
export const parseLedgerEventFast = (type: string, data: JsonObject): LedgerEvent =>
  fastAccepts(type, data) ? ({ type, data } as unknown as LedgerEvent) : parseLedgerEvent(type, data);
