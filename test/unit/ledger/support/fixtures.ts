/**
 * Event builders for `given(...)`. Balance fields are explicit (`bal(balance, reserved)`) so a reader of a
 * spec sees the account's numbers; evolve does not trust them, so a wrong one only misleads, never passes.
 */
import type { JsonObject } from '../../../../src/core/event-store.js';
import type {
  AllocationEntry,
  CreditsAdjusted,
  CreditsExpired,
  CreditsGranted,
  CreditsPurchased,
  CreditsRefunded,
  CreditsReserved,
  CreditsSpent,
  GrantKind,
  PurchaseRefunded,
  ReservationExpired,
  ReservationReleased,
  ReservationSettled,
  TierChanged,
  TierName,
} from '../../../../src/ledger/events.js';
import type { EvolveInput } from '../../../../src/ledger/state.js';

export const T0 = '2026-11-25T09:00:00.000Z';

/** ISO instant `ms` milliseconds after `base`. */
export const plus = (base: string, ms: number): string => new Date(Date.parse(base) + ms).toISOString();
export const SECOND = 1000;
export const MINUTE = 60 * SECOND;
export const HOUR = 60 * MINUTE;
export const DAY = 24 * HOUR;

export const bal = (balance_after: number, reserved_after = 0) => ({ balance_after, reserved_after });
export const alloc = (...pairs: [string, number][]): AllocationEntry[] => pairs.map(([lot_id, amount]) => ({ lot_id, amount }));

export const purchased = (
  p: { lot_id: string; credits: number; at?: string; purchase_id?: string; payment_id?: string; provider_event_id?: string; expires_at?: string | null; priority?: number },
  b: { balance_after: number; reserved_after: number },
): CreditsPurchased => ({
  type: 'CreditsPurchased',
  data: {
    at: p.at ?? T0,
    lot_id: p.lot_id,
    purchase_id: p.purchase_id ?? `purchase-${p.lot_id}`,
    payment_id: p.payment_id ?? `pi-${p.lot_id}`,
    package_id: 'starter',
    credits: p.credits,
    amount_cents: 500,
    currency: 'usd',
    provider_event_id: p.provider_event_id ?? `evt-${p.lot_id}`,
    expires_at: p.expires_at ?? null,
    priority: p.priority ?? 0,
    ...b,
  },
});

export const granted = (
  g: { lot_id: string; amount: number; at?: string; kind?: GrantKind; expires_at?: string | null; priority?: number },
  b: { balance_after: number; reserved_after: number },
): CreditsGranted => ({
  type: 'CreditsGranted',
  data: {
    at: g.at ?? T0,
    lot_id: g.lot_id,
    kind: g.kind ?? 'bonus',
    amount: g.amount,
    reason: 'welcome',
    expires_at: g.expires_at ?? null,
    priority: g.priority ?? 0,
    actor_id: 'admin-1',
    ...b,
  },
});

export const spent = (
  s: { spend_id: string; allocation: AllocationEntry[]; at?: string; reservation_id?: string | null; counts_api_call?: boolean; metadata?: JsonObject | null },
  b: { balance_after: number; reserved_after: number },
): CreditsSpent => ({
  type: 'CreditsSpent',
  data: {
    at: s.at ?? T0,
    spend_id: s.spend_id,
    amount: s.allocation.reduce((sum, e) => sum + e.amount, 0),
    allocation: s.allocation,
    description: null,
    metadata: s.metadata ?? null,
    reservation_id: s.reservation_id ?? null,
    counts_api_call: s.counts_api_call ?? true,
    reference_type: null,
    reference_id: null,
    ...b,
  },
});

export const reserved = (
  r: { reservation_id: string; allocation: AllocationEntry[]; expires_at: string; at?: string },
  b: { balance_after: number; reserved_after: number },
): CreditsReserved => ({
  type: 'CreditsReserved',
  data: {
    at: r.at ?? T0,
    reservation_id: r.reservation_id,
    amount: r.allocation.reduce((sum, e) => sum + e.amount, 0),
    expires_at: r.expires_at,
    allocation: r.allocation,
    description: null,
    ...b,
  },
});

export const settled = (
  s: { reservation_id: string; spend_id: string; credits_used: number; released_allocation: AllocationEntry[]; at?: string },
  b: { balance_after: number; reserved_after: number },
): ReservationSettled => ({
  type: 'ReservationSettled',
  data: {
    at: s.at ?? T0,
    reservation_id: s.reservation_id,
    spend_id: s.spend_id,
    credits_used: s.credits_used,
    released: s.released_allocation.reduce((sum, e) => sum + e.amount, 0),
    released_allocation: s.released_allocation,
    ...b,
  },
});

export const released = (
  r: { reservation_id: string; released_allocation: AllocationEntry[]; at?: string },
  b: { balance_after: number; reserved_after: number },
): ReservationReleased => ({
  type: 'ReservationReleased',
  data: {
    at: r.at ?? T0,
    reservation_id: r.reservation_id,
    released: r.released_allocation.reduce((sum, e) => sum + e.amount, 0),
    released_allocation: r.released_allocation,
    ...b,
  },
});

export const reservationExpired = (
  r: { reservation_id: string; expires_at: string; released_allocation: AllocationEntry[]; at?: string },
  b: { balance_after: number; reserved_after: number },
): ReservationExpired => ({
  type: 'ReservationExpired',
  data: {
    at: r.at ?? T0,
    reservation_id: r.reservation_id,
    expires_at: r.expires_at,
    released: r.released_allocation.reduce((sum, e) => sum + e.amount, 0),
    released_allocation: r.released_allocation,
    ...b,
  },
});

export const refunded = (
  r: { refund_id: string; spend_id: string; allocation: AllocationEntry[]; at?: string },
  b: { balance_after: number; reserved_after: number },
): CreditsRefunded => ({
  type: 'CreditsRefunded',
  data: {
    at: r.at ?? T0,
    refund_id: r.refund_id,
    spend_id: r.spend_id,
    amount: r.allocation.reduce((sum, e) => sum + e.amount, 0),
    allocation: r.allocation,
    reason: 'support',
    actor_id: 'admin-1',
    ...b,
  },
});

export const adjusted = (
  a: { adjustment_id: string; amount: number; allocation?: AllocationEntry[]; at?: string },
  b: { balance_after: number; reserved_after: number },
): CreditsAdjusted => ({
  type: 'CreditsAdjusted',
  data: {
    at: a.at ?? T0,
    adjustment_id: a.adjustment_id,
    amount: a.amount,
    lot_id: a.amount > 0 ? a.adjustment_id : null,
    allocation: a.allocation ?? [],
    reason: 'correction',
    actor_id: 'admin-1',
    ...b,
  },
});

export const expired = (
  e: { lot_id: string; amount: number; expires_at: string; at?: string },
  b: { balance_after: number; reserved_after: number },
): CreditsExpired => ({
  type: 'CreditsExpired',
  data: { at: e.at ?? T0, lot_id: e.lot_id, amount: e.amount, expires_at: e.expires_at, ...b },
});

export const purchaseRefunded = (
  r: { lot_id: string; amount: number; provider_event_id?: string | null; at?: string },
  b: { balance_after: number; reserved_after: number },
): PurchaseRefunded => ({
  type: 'PurchaseRefunded',
  data: {
    at: r.at ?? T0,
    purchase_id: `purchase-${r.lot_id}`,
    payment_id: `pi-${r.lot_id}`,
    lot_id: r.lot_id,
    amount: r.amount,
    provider_event_id: r.provider_event_id === undefined ? `evt-refund-${r.lot_id}` : r.provider_event_id,
    ...b,
  },
});

export const tierChanged = (t: { tier: TierName; previous_tier?: TierName; expires_at?: string | null; at?: string }): TierChanged => ({
  type: 'TierChanged',
  data: {
    at: t.at ?? T0,
    tier: t.tier,
    previous_tier: t.previous_tier ?? 'free',
    expires_at: t.expires_at ?? null,
    reason: 'upgrade',
    actor_id: 'admin-1',
  },
});

/** Stamps idempotency metadata the way the handler does (see ledgerEventMetadata). */
export const withKey = <E extends EvolveInput>(event: E, key: string, request_hash = `hash-${key}`): E => ({
  ...event,
  metadata: { schema_version: 1, command: 'Spend', idempotency_key: key, request_hash },
});
