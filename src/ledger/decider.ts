/**
 * The account decider: `decide(command, state, { now, tiers })` → events, an already-applied outcome,
 * or a typed error. Pure: no I/O, no clock, no randomness; never mutates `state`.
 *
 * Every decision first sweeps (API §5 "appended when the decider sees them"):
 *   1. `ReservationExpired` for open reservations with `expires_at <= now` (their holds return to lots);
 *   2. `PurchaseRefunded` (follow-up, `provider_event_id: null`) for unheld credits in a clawed-back lot,
 *      then `CreditsExpired` for unheld credits in lots with `expires_at <= now`;
 * then handles the command, then sweeps lots once more so credits released or refunded into an expired
 * or clawed-back lot leave at once. A rejected command appends nothing (not even the sweep).
 *
 * `now` is never earlier than the `at` of the stream's last event (a lagging clock is moved up to it),
 * so `data.at` never decreases along a stream.
 */
import {
  type Allocation,
  type AllocationEntry,
  GRANT_KINDS,
  type LedgerEvent,
  TIER_NAMES,
} from './events.js';
import type { LedgerCommand } from './commands.js';
import { type LedgerError, type ValidationIssue, validationFailed } from './errors.js';
import {
  applyToBook,
  type Book,
  compareBurnOrder,
  effectiveTier,
  findIdempotentResult,
  type IdempotentResult,
  type LedgerState,
  type Lot,
  type Reservation,
  usageOf,
} from './state.js';
import { isLimitReached, type TierTable } from './tiers.js';

export const MAX_AMOUNT = 1_000_000_000;
export const DEFAULT_RESERVATION_TTL_SECONDS = 300;
export const MAX_RESERVATION_TTL_SECONDS = 3600;
export const MAX_PRIORITY = 1_000_000;

export interface DecideContext {
  readonly now: Date;
  readonly tiers: TierTable;
}

export type AlreadyApplied =
  /** Same idempotency key and request hash within 24 h: rebuild the first response from `result`. */
  | { readonly reason: 'idempotent_replay'; readonly result: IdempotentResult }
  /** A purchase with this payment id or provider event id is already recorded. */
  | { readonly reason: 'duplicate_purchase'; readonly purchase_id: string; readonly lot_id: string }
  /** The purchase was already clawed back. */
  | { readonly reason: 'purchase_already_refunded'; readonly purchase_id: string }
  /** This provider (Stripe) event id already took effect. */
  | { readonly reason: 'duplicate_provider_event'; readonly provider_event_id: string };

export type Decision =
  | { readonly kind: 'applied'; readonly events: LedgerEvent[] }
  | { readonly kind: 'already_applied'; readonly events: []; readonly already_applied: AlreadyApplied }
  | { readonly kind: 'rejected'; readonly error: LedgerError };

const applied = (events: LedgerEvent[]): Decision => ({ kind: 'applied', events });
const alreadyApplied = (already: AlreadyApplied): Decision => ({ kind: 'already_applied', events: [], already_applied: already });
const rejected = (error: LedgerError): Decision => ({ kind: 'rejected', error });

// ---------------------------------------------------------------------------------------------
// Draft: a copy-on-write view of the state's book, so the decider can apply its own events in order
// (each event's balance_after depends on the ones before it) without touching the caller's state.

const cloneLot = (lot: Lot): Lot => ({ ...lot });
const cloneReservation = (r: Reservation): Reservation => ({ ...r, holds: r.holds.map((h) => ({ ...h })) });

class Draft implements Book {
  balance: number;
  reserved: number;
  lot_seq: number;
  readonly lots = new Map<string, Lot>();
  readonly live = new Map<string, Lot>();
  readonly reservations = new Map<string, Reservation>();
  readonly open = new Map<string, Reservation>();
  readonly events: LedgerEvent[] = [];

  constructor(
    readonly base: LedgerState,
    readonly nowMs: number,
  ) {
    this.balance = base.balance;
    this.reserved = base.reserved;
    this.lot_seq = base.lot_seq;
    for (const lot of base.live.values()) {
      const copy = cloneLot(lot);
      this.lots.set(lot.lot_id, copy);
      this.live.set(lot.lot_id, copy);
    }
    for (const r of base.open_reservations.values()) {
      const copy = cloneReservation(r);
      this.reservations.set(r.reservation_id, copy);
      this.open.set(r.reservation_id, copy);
    }
  }

  get available(): number {
    return this.balance - this.reserved;
  }

  hasLot(lotId: string): boolean {
    return this.lots.has(lotId) || this.base.lots.has(lotId);
  }

  lotForUpdate(lotId: string): Lot {
    let lot = this.lots.get(lotId);
    if (!lot) {
      const original = this.base.lots.get(lotId);
      if (!original) throw new Error(`decider: unknown lot ${lotId}`);
      lot = cloneLot(original);
      this.lots.set(lotId, lot);
    }
    return lot;
  }

  addLot(lot: Lot): void {
    this.lots.set(lot.lot_id, lot);
    if (lot.remaining > 0) this.live.set(lot.lot_id, lot);
  }

  lotChanged(lot: Lot): void {
    if (lot.remaining > 0) this.live.set(lot.lot_id, lot);
    else this.live.delete(lot.lot_id);
  }

  reservation(reservationId: string): Reservation | undefined {
    return this.reservations.get(reservationId) ?? this.base.reservations.get(reservationId);
  }

  reservationForUpdate(reservationId: string): Reservation {
    let r = this.reservations.get(reservationId);
    if (!r) {
      const original = this.base.reservations.get(reservationId);
      if (!original) throw new Error(`decider: unknown reservation ${reservationId}`);
      r = cloneReservation(original);
      this.reservations.set(reservationId, r);
    }
    return r;
  }

  addReservation(reservation: Reservation): void {
    this.reservations.set(reservation.reservation_id, reservation);
    this.open.set(reservation.reservation_id, reservation);
  }

  reservationClosed(reservation: Reservation): void {
    this.open.delete(reservation.reservation_id);
  }

  /** Applies the event to the draft and checks the balance fields the decider computed for it. */
  emit(event: LedgerEvent): void {
    applyToBook(this, event, this.nowMs);
    if (event.type !== 'TierChanged') {
      const { balance_after, reserved_after } = event.data;
      if (balance_after !== this.balance || reserved_after !== this.reserved) {
        throw new Error(
          `decider: ${event.type} claims ${balance_after}/${reserved_after}, book has ${this.balance}/${this.reserved}`,
        );
      }
    }
    this.events.push(event);
  }

  /** Lots credits may be taken from at `now`, in burn order. */
  burnable(): Lot[] {
    const lots: Lot[] = [];
    for (const lot of this.live.values()) {
      if (lot.remaining - lot.held > 0 && !lot.clawed_back && lot.expires_at_ms > this.nowMs) lots.push(lot);
    }
    return lots.sort(compareBurnOrder);
  }

  /** Takes `amount` from unheld credits in burn order; the caller checked `available` first. */
  allocate(amount: number): Allocation {
    const allocation: AllocationEntry[] = [];
    let left = amount;
    for (const lot of this.burnable()) {
      if (left === 0) break;
      const part = Math.min(left, lot.remaining - lot.held);
      allocation.push({ lot_id: lot.lot_id, amount: part });
      left -= part;
    }
    if (left !== 0) throw new Error(`decider: ${amount} not allocatable, ${left} short`);
    return allocation;
  }
}

// ---------------------------------------------------------------------------------------------
// Sweep

/** Like `a - b`, but `Infinity` (no expiry) compares equal to itself instead of giving NaN. */
const compareInstants = (a: number, b: number): number => (a < b ? -1 : a > b ? 1 : 0);

const sweepReservations = (draft: Draft, at: string): void => {
  const due = [...draft.open.values()]
    .filter((r) => r.expires_at_ms <= draft.nowMs)
    .sort((a, b) => compareInstants(a.expires_at_ms, b.expires_at_ms) || (a.reservation_id < b.reservation_id ? -1 : 1));
  for (const r of due) {
    draft.emit({
      type: 'ReservationExpired',
      data: {
        at,
        reservation_id: r.reservation_id,
        expires_at: r.expires_at,
        released: r.held,
        released_allocation: r.holds.map((h) => ({ lot_id: h.lot_id, amount: h.amount })),
        balance_after: draft.balance,
        reserved_after: draft.reserved - r.held,
      },
    });
  }
};

const sweepLots = (draft: Draft, at: string): void => {
  const due = [...draft.live.values()]
    .filter((lot) => lot.remaining - lot.held > 0 && (lot.clawed_back || lot.expires_at_ms <= draft.nowMs))
    .sort((a, b) => compareInstants(a.expires_at_ms, b.expires_at_ms) || a.seq - b.seq);
  for (const lot of due) {
    const amount = lot.remaining - lot.held;
    if (lot.clawed_back && lot.purchase_id !== null && lot.payment_id !== null) {
      draft.emit({
        type: 'PurchaseRefunded',
        data: {
          at,
          purchase_id: lot.purchase_id,
          payment_id: lot.payment_id,
          lot_id: lot.lot_id,
          amount,
          provider_event_id: null,
          balance_after: draft.balance - amount,
          reserved_after: draft.reserved,
        },
      });
    } else if (lot.expires_at !== null) {
      draft.emit({
        type: 'CreditsExpired',
        data: {
          at,
          lot_id: lot.lot_id,
          amount,
          expires_at: lot.expires_at,
          balance_after: draft.balance - amount,
          reserved_after: draft.reserved,
        },
      });
    }
  }
};

// ---------------------------------------------------------------------------------------------
// Validation

const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const VISIBLE_ASCII = /^[\x21-\x7e]{1,255}$/;

class Issues {
  readonly list: ValidationIssue[] = [];

  add(path: string, message: string): void {
    this.list.push({ path, message });
  }

  amount(path: string, value: unknown, min = 1): void {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > MAX_AMOUNT) {
      this.add(path, `must be an integer from ${min} to ${MAX_AMOUNT}`);
    }
  }

  id(path: string, value: unknown): void {
    if (typeof value !== 'string' || value.length === 0 || value.length > 255) this.add(path, 'must be a non-empty id');
  }

  text(path: string, value: unknown, required: boolean): void {
    if (value === undefined || value === null) {
      if (required) this.add(path, 'is required');
      return;
    }
    if (typeof value !== 'string' || (required && value.trim().length === 0)) this.add(path, 'must be a non-empty string');
  }

  futureInstant(path: string, value: unknown, nowMs: number): void {
    if (value === undefined || value === null) return;
    if (typeof value !== 'string' || !ISO_UTC.test(value) || Number.isNaN(Date.parse(value))) {
      this.add(path, 'must be an ISO 8601 UTC instant like 2026-11-25T10:00:00.000Z');
    } else if (Date.parse(value) <= nowMs) {
      this.add(path, 'must be in the future');
    }
  }

  priority(path: string, value: unknown): void {
    if (value === undefined) return;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || Math.abs(value) > MAX_PRIORITY) {
      this.add(path, `must be an integer from -${MAX_PRIORITY} to ${MAX_PRIORITY}`);
    }
  }
}

const validateCommand = (command: LedgerCommand, state: LedgerState, nowMs: number): ValidationIssue[] => {
  const v = new Issues();
  if (command.idempotency !== undefined) {
    if (!VISIBLE_ASCII.test(command.idempotency.key)) v.add('idempotency.key', 'must be 1-255 visible ASCII characters');
    if (command.idempotency.request_hash.length === 0) v.add('idempotency.request_hash', 'must not be empty');
  }
  switch (command.type) {
    case 'Spend':
      v.id('spend_id', command.spend_id);
      if (state.spends.has(command.spend_id)) v.add('spend_id', 'is already used');
      v.amount('amount', command.amount);
      break;
    case 'Reserve':
      v.id('reservation_id', command.reservation_id);
      if (state.reservations.has(command.reservation_id)) v.add('reservation_id', 'is already used');
      v.amount('amount', command.amount);
      if (
        command.ttl_seconds !== undefined &&
        (!Number.isSafeInteger(command.ttl_seconds) ||
          command.ttl_seconds < 1 ||
          command.ttl_seconds > MAX_RESERVATION_TTL_SECONDS)
      ) {
        v.add('ttl_seconds', `must be an integer from 1 to ${MAX_RESERVATION_TTL_SECONDS}`);
      }
      break;
    case 'Settle':
      v.id('reservation_id', command.reservation_id);
      v.id('spend_id', command.spend_id);
      if (state.spends.has(command.spend_id)) v.add('spend_id', 'is already used');
      v.amount('amount', command.amount, 0);
      break;
    case 'Release':
      v.id('reservation_id', command.reservation_id);
      break;
    case 'ExpireDue':
      break;
    case 'Grant':
      v.id('lot_id', command.lot_id);
      if (state.lots.has(command.lot_id)) v.add('lot_id', 'is already used');
      if (!(GRANT_KINDS as readonly string[]).includes(command.kind)) v.add('kind', `must be one of ${GRANT_KINDS.join(', ')}`);
      v.amount('amount', command.amount);
      v.text('reason', command.reason, true);
      v.futureInstant('expires_at', command.expires_at, nowMs);
      v.priority('priority', command.priority);
      break;
    case 'Adjust':
      v.id('adjustment_id', command.adjustment_id);
      if (state.lots.has(command.adjustment_id)) v.add('adjustment_id', 'is already used');
      if (
        typeof command.amount !== 'number' ||
        !Number.isSafeInteger(command.amount) ||
        command.amount === 0 ||
        Math.abs(command.amount) > MAX_AMOUNT
      ) {
        v.add('amount', `must be a non-zero integer from -${MAX_AMOUNT} to ${MAX_AMOUNT}`);
      }
      v.text('reason', command.reason, true);
      break;
    case 'RefundSpend':
      v.id('refund_id', command.refund_id);
      v.id('spend_id', command.spend_id);
      if (command.amount !== undefined) v.amount('amount', command.amount);
      v.text('reason', command.reason, true);
      break;
    case 'Purchase':
      v.id('purchase_id', command.purchase_id);
      v.id('lot_id', command.lot_id);
      v.id('payment_id', command.payment_id);
      v.id('package_id', command.package_id);
      v.id('provider_event_id', command.provider_event_id);
      v.amount('credits', command.credits);
      if (!Number.isSafeInteger(command.amount_cents) || command.amount_cents < 0) {
        v.add('amount_cents', 'must be a non-negative integer');
      }
      if (!/^[a-z]{3}$/.test(command.currency)) v.add('currency', 'must be a lower-case ISO 4217 code');
      v.futureInstant('expires_at', command.expires_at, nowMs);
      v.priority('priority', command.priority);
      break;
    case 'RefundPurchase':
      v.id('payment_id', command.payment_id);
      if (command.purchase_id !== undefined) v.id('purchase_id', command.purchase_id);
      v.id('provider_event_id', command.provider_event_id);
      break;
    case 'ChangeTier':
      if (!(TIER_NAMES as readonly string[]).includes(command.tier)) v.add('tier', `must be one of ${TIER_NAMES.join(', ')}`);
      v.futureInstant('expires_at', command.expires_at, nowMs);
      v.text('reason', command.reason, true);
      break;
    default: {
      const unreachable: never = command;
      v.add('type', `unknown command ${(unreachable as { type: string }).type}`);
    }
  }
  return v.list;
};

// ---------------------------------------------------------------------------------------------
// Rules

const insufficient = (available: number, required: number): LedgerError => ({
  code: 'insufficient_credits',
  detail: `Insufficient credits. Balance: ${available}, Required: ${required}`,
  balance: available,
  required,
});

/** quota_exceeded when the effective tier's limit is reached in the month or the day (month first: the longer wait). */
const quotaError = (state: LedgerState, ctx: DecideContext): LedgerError | null => {
  const tierName = effectiveTier(state, ctx.now);
  const tier = ctx.tiers[tierName];
  const usage = usageOf(state, ctx.now);
  const windows = [
    { window: 'month' as const, limit: tier.max_api_calls_month, usage: usage.month },
    { window: 'day' as const, limit: tier.max_api_calls_day, usage: usage.day },
  ];
  for (const w of windows) {
    if (isLimitReached(w.limit, w.usage.used)) {
      return {
        code: 'quota_exceeded',
        detail: `API call quota of the ${tierName} tier reached for this ${w.window} (${w.usage.used}/${w.limit})`,
        limit: w.limit,
        used: w.usage.used,
        window: w.window,
        retry_after_seconds: Math.max(1, Math.ceil((Date.parse(w.usage.resets_at) - ctx.now.getTime()) / 1000)),
        resets_at: w.usage.resets_at,
      };
    }
  }
  return null;
};

const wouldOverflow = (draft: Draft, added: number): boolean => draft.balance + added > Number.MAX_SAFE_INTEGER;
const overflowError = (path: string): LedgerError =>
  validationFailed([{ path, message: 'would take the balance above the largest safe integer' }]);

/** The closed-reservation error, or not_found; null when the reservation is open. */
const reservationUnusable = (draft: Draft, reservationId: string): LedgerError | null => {
  const r = draft.reservation(reservationId);
  if (!r) {
    return { code: 'not_found', detail: `Reservation ${reservationId} not found`, resource: 'reservation', id: reservationId };
  }
  switch (r.status) {
    case 'open':
      return null;
    case 'expired':
      return {
        code: 'reservation_expired',
        detail: `Reservation ${reservationId} expired at ${r.expires_at}; its credits were released`,
        reservation_id: reservationId,
        expires_at: r.expires_at,
      };
    case 'settled':
    case 'released':
      return {
        code: 'reservation_closed',
        detail: `Reservation ${reservationId} is already ${r.status}`,
        reservation_id: reservationId,
        status: r.status,
      };
    default: {
      const unreachable: never = r.status;
      throw new Error(`decider: unknown reservation status ${String(unreachable)}`);
    }
  }
};

/**
 * The part of a spend's allocation a refund restores: the most recently burned credits first (LIFO),
 * skipping what earlier refunds already restored. Full refunds restore the whole allocation.
 */
export const refundAllocation = (
  allocation: readonly AllocationEntry[],
  alreadyRefunded: number,
  amount: number,
): Allocation => {
  const restored: AllocationEntry[] = [];
  let skip = alreadyRefunded;
  let take = amount;
  for (let i = allocation.length - 1; i >= 0 && take > 0; i--) {
    const entry = allocation[i] as AllocationEntry;
    let left = entry.amount;
    const skipped = Math.min(skip, left);
    skip -= skipped;
    left -= skipped;
    const part = Math.min(take, left);
    if (part > 0) {
      restored.push({ lot_id: entry.lot_id, amount: part });
      take -= part;
    }
  }
  return restored;
};

/** Handles the command on a swept draft: emits its events, or returns the error. */
const handle = (command: LedgerCommand, state: LedgerState, draft: Draft, ctx: DecideContext, at: string): LedgerError | AlreadyApplied | null => {
  switch (command.type) {
    case 'ExpireDue':
      return null;

    case 'Spend': {
      const countsApiCall = command.counts_api_call ?? true;
      if (countsApiCall) {
        const quota = quotaError(state, ctx);
        if (quota) return quota;
      }
      if (draft.available < command.amount) return insufficient(draft.available, command.amount);
      draft.emit({
        type: 'CreditsSpent',
        data: {
          at,
          spend_id: command.spend_id,
          amount: command.amount,
          allocation: draft.allocate(command.amount),
          description: command.description ?? null,
          metadata: command.metadata ?? null,
          reservation_id: null,
          counts_api_call: countsApiCall,
          reference_type: command.reference_type ?? null,
          reference_id: command.reference_id ?? null,
          balance_after: draft.balance - command.amount,
          reserved_after: draft.reserved,
        },
      });
      return null;
    }

    case 'Reserve': {
      const quota = quotaError(state, ctx);
      if (quota) return quota;
      if (draft.available < command.amount) return insufficient(draft.available, command.amount);
      const ttl = command.ttl_seconds ?? DEFAULT_RESERVATION_TTL_SECONDS;
      draft.emit({
        type: 'CreditsReserved',
        data: {
          at,
          reservation_id: command.reservation_id,
          amount: command.amount,
          expires_at: new Date(draft.nowMs + ttl * 1000).toISOString(),
          allocation: draft.allocate(command.amount),
          description: command.description ?? null,
          balance_after: draft.balance,
          reserved_after: draft.reserved + command.amount,
        },
      });
      return null;
    }

    case 'Settle': {
      const unusable = reservationUnusable(draft, command.reservation_id);
      if (unusable) return unusable;
      const reservation = draft.reservationForUpdate(command.reservation_id);
      if (command.amount > reservation.held) {
        return validationFailed([{ path: 'amount', message: `must not exceed the reserved ${reservation.held}` }]);
      }
      const countsApiCall = command.counts_api_call ?? true;
      if (countsApiCall) {
        const quota = quotaError(state, ctx);
        if (quota) return quota;
      }
      const used: AllocationEntry[] = [];
      const released: AllocationEntry[] = [];
      let toUse = command.amount;
      for (const hold of reservation.holds) {
        const part = Math.min(toUse, hold.amount);
        if (part > 0) used.push({ lot_id: hold.lot_id, amount: part });
        if (hold.amount > part) released.push({ lot_id: hold.lot_id, amount: hold.amount - part });
        toUse -= part;
      }
      const releasedAmount = reservation.held - command.amount;
      draft.emit({
        type: 'CreditsSpent',
        data: {
          at,
          spend_id: command.spend_id,
          amount: command.amount,
          allocation: used,
          description: command.description ?? reservation.description,
          metadata: command.metadata ?? null,
          reservation_id: reservation.reservation_id,
          counts_api_call: countsApiCall,
          reference_type: command.reference_type ?? null,
          reference_id: command.reference_id ?? null,
          balance_after: draft.balance - command.amount,
          reserved_after: draft.reserved - command.amount,
        },
      });
      draft.emit({
        type: 'ReservationSettled',
        data: {
          at,
          reservation_id: reservation.reservation_id,
          spend_id: command.spend_id,
          credits_used: command.amount,
          released: releasedAmount,
          released_allocation: released,
          balance_after: draft.balance,
          reserved_after: draft.reserved - releasedAmount,
        },
      });
      return null;
    }

    case 'Release': {
      const unusable = reservationUnusable(draft, command.reservation_id);
      if (unusable) return unusable;
      const reservation = draft.reservationForUpdate(command.reservation_id);
      draft.emit({
        type: 'ReservationReleased',
        data: {
          at,
          reservation_id: reservation.reservation_id,
          released: reservation.held,
          released_allocation: reservation.holds.map((h) => ({ lot_id: h.lot_id, amount: h.amount })),
          balance_after: draft.balance,
          reserved_after: draft.reserved - reservation.held,
        },
      });
      return null;
    }

    case 'Grant': {
      if (wouldOverflow(draft, command.amount)) return overflowError('amount');
      draft.emit({
        type: 'CreditsGranted',
        data: {
          at,
          lot_id: command.lot_id,
          kind: command.kind,
          amount: command.amount,
          reason: command.reason,
          expires_at: command.expires_at ?? null,
          priority: command.priority ?? 0,
          actor_id: command.actor_id ?? null,
          balance_after: draft.balance + command.amount,
          reserved_after: draft.reserved,
        },
      });
      return null;
    }

    case 'Adjust': {
      const base = {
        at,
        adjustment_id: command.adjustment_id,
        amount: command.amount,
        reason: command.reason,
        actor_id: command.actor_id ?? null,
      };
      if (command.amount > 0) {
        if (wouldOverflow(draft, command.amount)) return overflowError('amount');
        draft.emit({
          type: 'CreditsAdjusted',
          data: {
            ...base,
            lot_id: command.adjustment_id,
            allocation: [],
            balance_after: draft.balance + command.amount,
            reserved_after: draft.reserved,
          },
        });
        return null;
      }
      const debit = -command.amount;
      if (draft.available < debit) return insufficient(draft.available, debit);
      draft.emit({
        type: 'CreditsAdjusted',
        data: {
          ...base,
          lot_id: null,
          allocation: draft.allocate(debit),
          balance_after: draft.balance - debit,
          reserved_after: draft.reserved,
        },
      });
      return null;
    }

    case 'RefundSpend': {
      const spend = state.spends.get(command.spend_id);
      if (!spend) {
        return { code: 'not_found', detail: `Spend ${command.spend_id} not found`, resource: 'spend', id: command.spend_id };
      }
      const refundable = spend.amount - spend.refunded;
      const amount = command.amount ?? refundable;
      if (amount > refundable || amount === 0) {
        return {
          code: 'refund_exceeds_spend',
          detail: `Spend ${spend.spend_id} has ${refundable} refundable credits, ${amount} requested`,
          refundable,
          requested: amount,
        };
      }
      draft.emit({
        type: 'CreditsRefunded',
        data: {
          at,
          refund_id: command.refund_id,
          spend_id: spend.spend_id,
          amount,
          allocation: refundAllocation(spend.allocation, spend.refunded, amount),
          reason: command.reason,
          actor_id: command.actor_id ?? null,
          balance_after: draft.balance + amount,
          reserved_after: draft.reserved,
        },
      });
      return null;
    }

    case 'Purchase': {
      const existingId = state.purchase_by_payment.get(command.payment_id);
      const existing = existingId === undefined ? undefined : state.purchases.get(existingId);
      if (existing) return { reason: 'duplicate_purchase', purchase_id: existing.purchase_id, lot_id: existing.lot_id };
      if (state.provider_event_ids.has(command.provider_event_id)) {
        return { reason: 'duplicate_provider_event', provider_event_id: command.provider_event_id };
      }
      if (state.purchases.has(command.purchase_id)) {
        return validationFailed([{ path: 'purchase_id', message: 'is already used by another payment' }]);
      }
      if (draft.hasLot(command.lot_id)) return validationFailed([{ path: 'lot_id', message: 'is already used' }]);
      if (wouldOverflow(draft, command.credits)) return overflowError('credits');
      draft.emit({
        type: 'CreditsPurchased',
        data: {
          at,
          lot_id: command.lot_id,
          purchase_id: command.purchase_id,
          payment_id: command.payment_id,
          package_id: command.package_id,
          credits: command.credits,
          amount_cents: command.amount_cents,
          currency: command.currency,
          provider_event_id: command.provider_event_id,
          expires_at: command.expires_at ?? null,
          priority: command.priority ?? 0,
          balance_after: draft.balance + command.credits,
          reserved_after: draft.reserved,
        },
      });
      return null;
    }

    case 'RefundPurchase': {
      if (state.provider_event_ids.has(command.provider_event_id)) {
        return { reason: 'duplicate_provider_event', provider_event_id: command.provider_event_id };
      }
      const purchaseId = command.purchase_id ?? state.purchase_by_payment.get(command.payment_id);
      const purchase = purchaseId === undefined ? undefined : state.purchases.get(purchaseId);
      if (!purchase) {
        const id = command.purchase_id ?? command.payment_id;
        return { code: 'not_found', detail: `Purchase ${id} not found`, resource: 'purchase', id };
      }
      if (purchase.refunded) return { reason: 'purchase_already_refunded', purchase_id: purchase.purchase_id };
      const lot = draft.lotForUpdate(purchase.lot_id);
      const amount = lot.remaining - lot.held;
      draft.emit({
        type: 'PurchaseRefunded',
        data: {
          at,
          purchase_id: purchase.purchase_id,
          payment_id: purchase.payment_id,
          lot_id: purchase.lot_id,
          amount,
          provider_event_id: command.provider_event_id,
          balance_after: draft.balance - amount,
          reserved_after: draft.reserved,
        },
      });
      return null;
    }

    case 'ChangeTier':
      draft.emit({
        type: 'TierChanged',
        data: {
          at,
          tier: command.tier,
          previous_tier: effectiveTier(state, ctx.now),
          expires_at: command.expires_at ?? null,
          reason: command.reason,
          actor_id: command.actor_id ?? null,
        },
      });
      return null;

    default: {
      const unreachable: never = command;
      throw new Error(`decider: unknown command ${(unreachable as { type: string }).type}`);
    }
  }
};

const isError = (outcome: LedgerError | AlreadyApplied): outcome is LedgerError => 'code' in outcome;

export const decide = (command: LedgerCommand, state: LedgerState, given: DecideContext): Decision => {
  const givenMs = given.now.getTime();
  if (Number.isNaN(givenMs)) throw new Error('decider: ctx.now is an invalid Date');
  // Time never runs backwards within a stream: a writer whose clock lags the one that decided the last
  // event decides at that event's instant instead. Otherwise it would count API calls into a day whose
  // counter was already left behind (unbounded calls past the limit) and spend credits the stream had
  // already expired.
  const lastMs = state.updated_at === null ? Number.NEGATIVE_INFINITY : Date.parse(state.updated_at);
  const nowMs = Math.max(givenMs, lastMs);
  const ctx: DecideContext = nowMs === givenMs ? given : { ...given, now: new Date(nowMs) };

  const issues = validateCommand(command, state, nowMs);
  if (issues.length > 0) return rejected(validationFailed(issues));

  if (command.idempotency) {
    const previous = findIdempotentResult(state, command.idempotency.key, ctx.now);
    if (previous) {
      if (previous.request_hash !== command.idempotency.request_hash) {
        return rejected({
          code: 'idempotency_key_reused',
          detail: 'This Idempotency-Key was already used with a different request',
          key: command.idempotency.key,
        });
      }
      return alreadyApplied({ reason: 'idempotent_replay', result: previous });
    }
  }

  const at = ctx.now.toISOString();
  const draft = new Draft(state, nowMs);
  sweepReservations(draft, at);
  sweepLots(draft, at);
  const outcome = handle(command, state, draft, ctx, at);
  if (outcome) return isError(outcome) ? rejected(outcome) : alreadyApplied(outcome);
  sweepLots(draft, at);
  return applied(draft.events);
};

/** Convenience for handlers and tests: the decision's events, or throws with the error / outcome. */
export const decideOrThrow = (command: LedgerCommand, state: LedgerState, ctx: DecideContext): LedgerEvent[] => {
  const decision = decide(command, state, ctx);
  if (decision.kind === 'rejected') throw new Error(`${decision.error.code}: ${decision.error.detail}`);
  return decision.events;
};
