/**
 * Account state: what the decider needs to know about one account stream, rebuilt by `evolve`.
 *
 * Ownership: `evolve(state, event)` MUTATES `state` and returns it (replaying 100k-event streams must
 * not copy maps per event). Treat the state passed to `evolve` as consumed: keep using the returned
 * value, never an older reference you expected to stay unchanged. `decide` never mutates the state it
 * is given (it works on a copy-on-write draft), and the helpers below only read.
 *
 * Growth is bounded by time where it can be: idempotency records and closed reservations are forgotten
 * 24 h after they were recorded/closed (pruned inside evolve from the events' own `at`, so replay is
 * deterministic). Spends are kept for the account's lifetime because an admin may refund any spend.
 */
import type { JsonObject, Position } from '../values.js';
import { type AllocationEntry, type GrantKind, isLedgerEventType, type LedgerEvent, parseLedgerEvent, type TierName } from './events.js';

export const IDEMPOTENCY_RETENTION_MS = 24 * 60 * 60 * 1000;
export const CLOSED_RESERVATION_RETENTION_MS = 24 * 60 * 60 * 1000;

/** Where a lot's credits came from. Only `purchase` counts as paid for the burn order. */
export type LotKind = 'purchase' | GrantKind | 'adjustment';

export interface Lot {
  readonly lot_id: string;
  readonly kind: LotKind;
  /** Amount the lot was created with. */
  readonly original: number;
  /** Credits still in the lot, including the part held by open reservations. */
  remaining: number;
  /** Part of `remaining` earmarked by open reservations (never expires or is clawed back while held). */
  held: number;
  readonly expires_at: string | null;
  /** `Infinity` when the lot never expires. */
  readonly expires_at_ms: number;
  readonly priority: number;
  /** Creation order within the account (oldest first). */
  readonly seq: number;
  readonly created_at: string;
  readonly purchase_id: string | null;
  readonly payment_id: string | null;
  /** The purchase was refunded: credits returning to this lot are clawed back at once. */
  clawed_back: boolean;
}

export type ReservationStatus = 'open' | 'settled' | 'released' | 'expired';

export interface Reservation {
  readonly reservation_id: string;
  readonly amount: number;
  readonly expires_at: string;
  readonly expires_at_ms: number;
  readonly description: string | null;
  readonly created_at: string;
  status: ReservationStatus;
  /** What is still held, per lot, in burn order. Empty once closed. */
  holds: AllocationEntry[];
  held: number;
  closed_at_ms: number | null;
}

export interface SpendRecord {
  readonly spend_id: string;
  readonly amount: number;
  readonly allocation: readonly AllocationEntry[];
  readonly reservation_id: string | null;
  readonly at: string;
  refunded: number;
}

export interface PurchaseRecord {
  readonly purchase_id: string;
  readonly payment_id: string;
  readonly lot_id: string;
  readonly provider_event_id: string;
  readonly credits: number;
  refunded: boolean;
}

/** The first outcome recorded under an idempotency key (what a replayed response is rebuilt from). */
export interface IdempotentResult {
  readonly key: string;
  readonly request_hash: string;
  /** `metadata.command` of the events (the command type), when stamped. */
  readonly command: string | null;
  readonly at: string;
  readonly first_revision: bigint;
  last_revision: bigint;
  /** Global position of the last event of the outcome, when evolve was given positions. */
  last_position: Position | null;
  readonly events: { type: LedgerEvent['type']; data: LedgerEvent['data'] }[];
  readonly at_ms: number;
}

export interface Totals {
  purchased: number;
  granted: number;
  adjusted_in: number;
  adjusted_out: number;
  spent: number;
  refunded: number;
  expired: number;
  clawed_back: number;
}

export interface ApiCallCounter {
  /** `YYYY-MM-DD` (UTC) of the counted day, or null before the first call. */
  day: string | null;
  day_count: number;
  /** `YYYY-MM` (UTC). */
  month: string | null;
  month_count: number;
}

export interface LedgerState {
  /** Revision of the last evolved event (0-based), -1n for an empty stream. */
  revision: bigint;
  position: Position | null;
  /** `at` of the last evolved event. */
  updated_at: string | null;
  balance: number;
  reserved: number;
  /** Every lot ever created (depleted ones too: a refund may restore into them). */
  readonly lots: Map<string, Lot>;
  /** Lots with `remaining > 0`. */
  readonly live: Map<string, Lot>;
  lot_seq: number;
  readonly reservations: Map<string, Reservation>;
  readonly open_reservations: Map<string, Reservation>;
  readonly spends: Map<string, SpendRecord>;
  readonly purchases: Map<string, PurchaseRecord>;
  readonly purchase_by_payment: Map<string, string>;
  readonly provider_event_ids: Set<string>;
  tier: TierName;
  tier_expires_at: string | null;
  readonly api_calls: ApiCallCounter;
  readonly idempotency: Map<string, IdempotentResult>;
  readonly totals: Totals;
  /** Pruning queues, in time order: [at_ms, id]. */
  readonly idempotency_queue: TimeQueue;
  readonly closed_reservation_queue: TimeQueue;
}

/** FIFO of (time, id) with an advancing head; compacted occasionally so it stays O(live entries). */
export interface TimeQueue {
  times: number[];
  ids: string[];
  head: number;
}

const newQueue = (): TimeQueue => ({ times: [], ids: [], head: 0 });

const pushQueue = (q: TimeQueue, atMs: number, id: string): void => {
  q.times.push(atMs);
  q.ids.push(id);
};

/** Pops every entry recorded at or before `cutoffMs`, calling `drop(id, atMs)` for each. */
const drainQueue = (q: TimeQueue, cutoffMs: number, drop: (id: string, atMs: number) => void): void => {
  while (q.head < q.times.length && (q.times[q.head] as number) <= cutoffMs) {
    drop(q.ids[q.head] as string, q.times[q.head] as number);
    q.head++;
  }
  if (q.head > 1024 && q.head * 2 > q.times.length) {
    q.times = q.times.slice(q.head);
    q.ids = q.ids.slice(q.head);
    q.head = 0;
  }
};

export const initialState = (): LedgerState => ({
  revision: -1n,
  position: null,
  updated_at: null,
  balance: 0,
  reserved: 0,
  lots: new Map(),
  live: new Map(),
  lot_seq: 0,
  reservations: new Map(),
  open_reservations: new Map(),
  spends: new Map(),
  purchases: new Map(),
  purchase_by_payment: new Map(),
  provider_event_ids: new Set(),
  tier: 'free',
  tier_expires_at: null,
  api_calls: { day: null, day_count: 0, month: null, month_count: 0 },
  idempotency: new Map(),
  totals: {
    purchased: 0,
    granted: 0,
    adjusted_in: 0,
    adjusted_out: 0,
    spent: 0,
    refunded: 0,
    expired: 0,
    clawed_back: 0,
  },
  idempotency_queue: newQueue(),
  closed_reservation_queue: newQueue(),
});

/** Thrown by evolve when a stream contradicts itself (unknown lot, over-spent lot, …): a corrupt stream. */
export class LedgerReplayError extends Error {
  readonly code = 'ledger_replay_failed' as const;
  constructor(message: string) {
    super(message);
    this.name = 'LedgerReplayError';
  }
}

// ---------------------------------------------------------------------------------------------
// The book: lots, reservations and the two counters. `applyToBook` is the single definition of how
// events move credits; evolve applies it to the state in place, the decider to a copy-on-write draft.

export interface Book {
  balance: number;
  reserved: number;
  lot_seq: number;
  /** A lot this book may mutate; throws LedgerReplayError when unknown. */
  lotForUpdate(lotId: string): Lot;
  addLot(lot: Lot): void;
  /** Call after changing a lot's `remaining` so the live set follows. */
  lotChanged(lot: Lot): void;
  reservationForUpdate(reservationId: string): Reservation;
  addReservation(reservation: Reservation): void;
  reservationClosed(reservation: Reservation, atMs: number): void;
}

const NO_EXPIRY = Number.POSITIVE_INFINITY;

const parseInstant = (iso: string): number => {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) throw new LedgerReplayError(`invalid instant ${iso}`);
  return ms;
};

const createLot = (
  book: Book,
  fields: {
    lot_id: string;
    kind: LotKind;
    amount: number;
    expires_at: string | null;
    priority: number;
    at: string;
    purchase_id?: string;
    payment_id?: string;
  },
): void => {
  const lot: Lot = {
    lot_id: fields.lot_id,
    kind: fields.kind,
    original: fields.amount,
    remaining: fields.amount,
    held: 0,
    expires_at: fields.expires_at,
    expires_at_ms: fields.expires_at === null ? NO_EXPIRY : parseInstant(fields.expires_at),
    priority: fields.priority,
    seq: book.lot_seq++,
    created_at: fields.at,
    purchase_id: fields.purchase_id ?? null,
    payment_id: fields.payment_id ?? null,
    clawed_back: false,
  };
  book.addLot(lot);
  book.balance += fields.amount;
};

/** Takes credits out of lots (spend, negative adjustment, expiry, clawback); `fromHeld` for settled reservations. */
const takeFromLots = (book: Book, allocation: readonly AllocationEntry[], fromHeld: boolean): number => {
  let total = 0;
  for (const { lot_id, amount } of allocation) {
    const lot = book.lotForUpdate(lot_id);
    const takeable = fromHeld ? lot.held : lot.remaining - lot.held;
    if (amount > takeable) {
      throw new LedgerReplayError(`lot ${lot_id} has ${takeable} ${fromHeld ? 'held' : 'unheld'}, event takes ${amount}`);
    }
    lot.remaining -= amount;
    if (fromHeld) lot.held -= amount;
    book.lotChanged(lot);
    total += amount;
  }
  return total;
};

const sumOf = (allocation: readonly AllocationEntry[]): number => {
  let total = 0;
  for (const entry of allocation) total += entry.amount;
  return total;
};

const checkSum = (what: string, allocation: readonly AllocationEntry[], expected: number): void => {
  const total = sumOf(allocation);
  if (total !== expected) throw new LedgerReplayError(`${what}: allocation sums to ${total}, amount is ${expected}`);
};

/**
 * Removes `allocation` from a reservation's holds (each lot's holds front to back) and from the lots'
 * `held`. One pass over the holds: a reservation may span thousands of lots, and scanning its holds once
 * per allocation entry made settling or releasing it quadratic.
 */
const unhold = (book: Book, reservation: Reservation, allocation: readonly AllocationEntry[]): void => {
  const take = new Map<string, number>();
  for (const { lot_id, amount } of allocation) take.set(lot_id, (take.get(lot_id) ?? 0) + amount);
  for (const hold of reservation.holds) {
    const left = take.get(hold.lot_id);
    if (left === undefined || left === 0) continue;
    const part = Math.min(left, hold.amount);
    hold.amount -= part;
    take.set(hold.lot_id, left - part);
  }
  for (const [lot_id, left] of take) {
    if (left !== 0) {
      throw new LedgerReplayError(`reservation ${reservation.reservation_id} does not hold ${left} more of lot ${lot_id}`);
    }
  }
  for (const { lot_id, amount } of allocation) {
    const lot = book.lotForUpdate(lot_id);
    lot.held -= amount;
    if (lot.held < 0) throw new LedgerReplayError(`lot ${lot_id} held went negative`);
  }
  reservation.holds = reservation.holds.filter((h) => h.amount > 0);
};

const closeReservation = (
  book: Book,
  reservationId: string,
  status: Exclude<ReservationStatus, 'open'>,
  released: readonly AllocationEntry[],
  releasedAmount: number,
  atMs: number,
): void => {
  const reservation = book.reservationForUpdate(reservationId);
  if (reservation.status !== 'open') {
    throw new LedgerReplayError(`reservation ${reservationId} is already ${reservation.status}`);
  }
  checkSum(`reservation ${reservationId} release`, released, releasedAmount);
  unhold(book, reservation, released);
  reservation.held -= releasedAmount;
  if (reservation.held !== 0 || reservation.holds.length !== 0) {
    throw new LedgerReplayError(`reservation ${reservationId} closed with ${reservation.held} still held`);
  }
  book.reserved -= releasedAmount;
  reservation.status = status;
  reservation.closed_at_ms = atMs;
  book.reservationClosed(reservation, atMs);
};

/** How an event moves credits between lots, reservations, balance and reserved. */
export const applyToBook = (book: Book, event: LedgerEvent, atMs: number): void => {
  switch (event.type) {
    case 'CreditsPurchased': {
      const d = event.data;
      createLot(book, {
        lot_id: d.lot_id,
        kind: 'purchase',
        amount: d.credits,
        expires_at: d.expires_at,
        priority: d.priority,
        at: d.at,
        purchase_id: d.purchase_id,
        payment_id: d.payment_id,
      });
      return;
    }
    case 'CreditsGranted': {
      const d = event.data;
      createLot(book, {
        lot_id: d.lot_id,
        kind: d.kind,
        amount: d.amount,
        expires_at: d.expires_at,
        priority: d.priority,
        at: d.at,
      });
      return;
    }
    case 'CreditsSpent': {
      const d = event.data;
      checkSum(`spend ${d.spend_id}`, d.allocation, d.amount);
      if (d.reservation_id !== null) {
        const reservation = book.reservationForUpdate(d.reservation_id);
        if (reservation.status !== 'open') {
          throw new LedgerReplayError(`spend ${d.spend_id} from ${reservation.status} reservation`);
        }
        unhold(book, reservation, d.allocation);
        reservation.held -= d.amount;
        book.reserved -= d.amount;
        // the lots' held was reduced by unhold; now take the credits out of the lots themselves
        for (const { lot_id, amount } of d.allocation) {
          const lot = book.lotForUpdate(lot_id);
          lot.remaining -= amount;
          if (lot.remaining < lot.held) throw new LedgerReplayError(`lot ${lot_id} over-spent`);
          book.lotChanged(lot);
        }
      } else {
        takeFromLots(book, d.allocation, false);
      }
      book.balance -= d.amount;
      return;
    }
    case 'CreditsReserved': {
      const d = event.data;
      checkSum(`reservation ${d.reservation_id}`, d.allocation, d.amount);
      for (const { lot_id, amount } of d.allocation) {
        const lot = book.lotForUpdate(lot_id);
        if (lot.remaining - lot.held < amount) throw new LedgerReplayError(`lot ${lot_id} cannot hold ${amount}`);
        lot.held += amount;
      }
      book.addReservation({
        reservation_id: d.reservation_id,
        amount: d.amount,
        expires_at: d.expires_at,
        expires_at_ms: parseInstant(d.expires_at),
        description: d.description,
        created_at: d.at,
        status: 'open',
        holds: d.allocation.map((e) => ({ lot_id: e.lot_id, amount: e.amount })),
        held: d.amount,
        closed_at_ms: null,
      });
      book.reserved += d.amount;
      return;
    }
    case 'ReservationSettled':
      closeReservation(book, event.data.reservation_id, 'settled', event.data.released_allocation, event.data.released, atMs);
      return;
    case 'ReservationReleased':
      closeReservation(book, event.data.reservation_id, 'released', event.data.released_allocation, event.data.released, atMs);
      return;
    case 'ReservationExpired':
      closeReservation(book, event.data.reservation_id, 'expired', event.data.released_allocation, event.data.released, atMs);
      return;
    case 'CreditsRefunded': {
      const d = event.data;
      checkSum(`refund ${d.refund_id}`, d.allocation, d.amount);
      for (const { lot_id, amount } of d.allocation) {
        const lot = book.lotForUpdate(lot_id);
        lot.remaining += amount;
        if (lot.remaining > lot.original) throw new LedgerReplayError(`lot ${lot_id} refunded above its original amount`);
        book.lotChanged(lot);
      }
      book.balance += d.amount;
      return;
    }
    case 'CreditsAdjusted': {
      const d = event.data;
      if (d.amount > 0) {
        if (d.lot_id === null) throw new LedgerReplayError(`positive adjustment ${d.adjustment_id} without lot`);
        createLot(book, { lot_id: d.lot_id, kind: 'adjustment', amount: d.amount, expires_at: null, priority: 0, at: d.at });
      } else {
        checkSum(`adjustment ${d.adjustment_id}`, d.allocation, -d.amount);
        takeFromLots(book, d.allocation, false);
        book.balance += d.amount;
      }
      return;
    }
    case 'CreditsExpired': {
      const d = event.data;
      takeFromLots(book, [{ lot_id: d.lot_id, amount: d.amount }], false);
      book.balance -= d.amount;
      return;
    }
    case 'PurchaseRefunded': {
      const d = event.data;
      const lot = book.lotForUpdate(d.lot_id);
      lot.clawed_back = true;
      if (d.amount > 0) takeFromLots(book, [{ lot_id: d.lot_id, amount: d.amount }], false);
      book.balance -= d.amount;
      return;
    }
    case 'TierChanged':
      return;
    default: {
      const unreachable: never = event;
      throw new LedgerReplayError(`unknown event ${(unreachable as { type: string }).type}`);
    }
  }
};

// ---------------------------------------------------------------------------------------------
// evolve

/** What evolve accepts: a ledger event plus, when read from the store, its metadata, revision and position. */
export type EvolveInput = LedgerEvent & {
  readonly metadata?: JsonObject | undefined;
  readonly revision?: bigint | undefined;
  readonly position?: Position | undefined;
};

const stateBook = (state: LedgerState): Book => ({
  get balance() {
    return state.balance;
  },
  set balance(value: number) {
    state.balance = value;
  },
  get reserved() {
    return state.reserved;
  },
  set reserved(value: number) {
    state.reserved = value;
  },
  get lot_seq() {
    return state.lot_seq;
  },
  set lot_seq(value: number) {
    state.lot_seq = value;
  },
  lotForUpdate(lotId) {
    const lot = state.lots.get(lotId);
    if (!lot) throw new LedgerReplayError(`unknown lot ${lotId}`);
    return lot;
  },
  addLot(lot) {
    if (state.lots.has(lot.lot_id)) throw new LedgerReplayError(`lot ${lot.lot_id} created twice`);
    state.lots.set(lot.lot_id, lot);
    if (lot.remaining > 0) state.live.set(lot.lot_id, lot);
  },
  lotChanged(lot) {
    if (lot.remaining < 0) throw new LedgerReplayError(`lot ${lot.lot_id} went negative`);
    if (lot.remaining > 0) state.live.set(lot.lot_id, lot);
    else state.live.delete(lot.lot_id);
  },
  reservationForUpdate(reservationId) {
    const reservation = state.reservations.get(reservationId);
    if (!reservation) throw new LedgerReplayError(`unknown reservation ${reservationId}`);
    return reservation;
  },
  addReservation(reservation) {
    if (state.reservations.has(reservation.reservation_id)) {
      throw new LedgerReplayError(`reservation ${reservation.reservation_id} created twice`);
    }
    state.reservations.set(reservation.reservation_id, reservation);
    state.open_reservations.set(reservation.reservation_id, reservation);
  },
  reservationClosed(reservation, atMs) {
    state.open_reservations.delete(reservation.reservation_id);
    pushQueue(state.closed_reservation_queue, atMs, reservation.reservation_id);
  },
});

// One book per state object, created lazily (getters/setters close over the state).
const books = new WeakMap<LedgerState, Book>();
const bookOf = (state: LedgerState): Book => {
  let book = books.get(state);
  if (!book) {
    book = stateBook(state);
    books.set(state, book);
  }
  return book;
};

const utcDay = (iso: string): string => iso.slice(0, 10);
const utcMonth = (iso: string): string => iso.slice(0, 7);

const countApiCall = (counter: ApiCallCounter, at: string): void => {
  const day = utcDay(at);
  const month = utcMonth(at);
  // a call stamped before the current window (clock skew between handlers) belongs to a past window
  if (counter.day === null || day > counter.day) {
    counter.day = day;
    counter.day_count = 1;
  } else if (day === counter.day) {
    counter.day_count++;
  }
  if (counter.month === null || month > counter.month) {
    counter.month = month;
    counter.month_count = 1;
  } else if (month === counter.month) {
    counter.month_count++;
  }
};

const bookkeep = (state: LedgerState, event: LedgerEvent): void => {
  const t = state.totals;
  switch (event.type) {
    case 'CreditsPurchased': {
      const d = event.data;
      state.purchases.set(d.purchase_id, {
        purchase_id: d.purchase_id,
        payment_id: d.payment_id,
        lot_id: d.lot_id,
        provider_event_id: d.provider_event_id,
        credits: d.credits,
        refunded: false,
      });
      state.purchase_by_payment.set(d.payment_id, d.purchase_id);
      state.provider_event_ids.add(d.provider_event_id);
      t.purchased += d.credits;
      return;
    }
    case 'CreditsGranted':
      t.granted += event.data.amount;
      return;
    case 'CreditsSpent': {
      const d = event.data;
      if (state.spends.has(d.spend_id)) throw new LedgerReplayError(`spend ${d.spend_id} recorded twice`);
      state.spends.set(d.spend_id, {
        spend_id: d.spend_id,
        amount: d.amount,
        allocation: d.allocation,
        reservation_id: d.reservation_id,
        at: d.at,
        refunded: 0,
      });
      if (d.counts_api_call) countApiCall(state.api_calls, d.at);
      t.spent += d.amount;
      return;
    }
    case 'CreditsRefunded': {
      const spend = state.spends.get(event.data.spend_id);
      if (!spend) throw new LedgerReplayError(`refund of unknown spend ${event.data.spend_id}`);
      spend.refunded += event.data.amount;
      if (spend.refunded > spend.amount) throw new LedgerReplayError(`spend ${spend.spend_id} refunded above its amount`);
      t.refunded += event.data.amount;
      return;
    }
    case 'CreditsAdjusted':
      if (event.data.amount > 0) t.adjusted_in += event.data.amount;
      else t.adjusted_out -= event.data.amount;
      return;
    case 'CreditsExpired':
      t.expired += event.data.amount;
      return;
    case 'PurchaseRefunded': {
      const d = event.data;
      const purchase = state.purchases.get(d.purchase_id);
      if (purchase) purchase.refunded = true;
      if (d.provider_event_id !== null) state.provider_event_ids.add(d.provider_event_id);
      t.clawed_back += d.amount;
      return;
    }
    case 'TierChanged':
      state.tier = event.data.tier;
      state.tier_expires_at = event.data.expires_at;
      return;
    case 'CreditsReserved':
    case 'ReservationSettled':
    case 'ReservationReleased':
    case 'ReservationExpired':
      return;
    default: {
      const unreachable: never = event;
      throw new LedgerReplayError(`unknown event ${(unreachable as { type: string }).type}`);
    }
  }
};

const recordIdempotency = (state: LedgerState, event: EvolveInput, atMs: number): void => {
  const metadata = event.metadata;
  if (!metadata) return;
  const key = metadata.idempotency_key;
  const hash = metadata.request_hash;
  if (typeof key !== 'string' || typeof hash !== 'string') return;
  const command = typeof metadata.command === 'string' ? metadata.command : null;
  const entry = { type: event.type, data: event.data };
  const existing = state.idempotency.get(key);
  // events of one decision are consecutive and share key, hash and `at`
  if (
    existing &&
    existing.last_revision === state.revision - 1n &&
    existing.request_hash === hash &&
    existing.at === event.data.at
  ) {
    existing.events.push(entry);
    existing.last_revision = state.revision;
    existing.last_position = event.position ?? null;
    return;
  }
  state.idempotency.set(key, {
    key,
    request_hash: hash,
    command,
    at: event.data.at,
    at_ms: atMs,
    first_revision: state.revision,
    last_revision: state.revision,
    last_position: event.position ?? null,
    events: [entry],
  });
  pushQueue(state.idempotency_queue, atMs, key);
};

const prune = (state: LedgerState, atMs: number): void => {
  drainQueue(state.idempotency_queue, atMs - IDEMPOTENCY_RETENTION_MS, (key, recordedMs) => {
    if (state.idempotency.get(key)?.at_ms === recordedMs) state.idempotency.delete(key);
  });
  drainQueue(state.closed_reservation_queue, atMs - CLOSED_RESERVATION_RETENTION_MS, (id, closedMs) => {
    const reservation = state.reservations.get(id);
    if (reservation && reservation.status !== 'open' && reservation.closed_at_ms === closedMs) {
      state.reservations.delete(id);
    }
  });
};

/**
 * Applies one event to the state IN PLACE and returns it (see the ownership note at the top).
 * Events of a type this version does not know are counted (revision) and otherwise ignored.
 * Throws LedgerReplayError when the stream contradicts itself.
 */
export const evolve = (state: LedgerState, event: EvolveInput): LedgerState => {
  state.revision = event.revision ?? state.revision + 1n;
  if (event.position) state.position = event.position;
  const data = event.data as { at?: unknown } | undefined;
  if (typeof data?.at !== 'string') return state;
  const atMs = parseInstant(data.at);
  state.updated_at = data.at;
  switch (event.type) {
    case 'CreditsPurchased':
    case 'CreditsGranted':
    case 'CreditsSpent':
    case 'CreditsReserved':
    case 'ReservationSettled':
    case 'ReservationReleased':
    case 'ReservationExpired':
    case 'CreditsRefunded':
    case 'CreditsAdjusted':
    case 'CreditsExpired':
    case 'PurchaseRefunded':
    case 'TierChanged':
      break;
    default:
      return state;
  }
  applyToBook(bookOf(state), event, atMs);
  bookkeep(state, event);
  prune(state, atMs);
  recordIdempotency(state, event, atMs);
  return state;
};

/** An event as the store hands it out (the event-store port's RecordedEvent fits). */
export interface StoredEvent {
  readonly type: string;
  readonly data: JsonObject;
  readonly metadata: JsonObject;
  readonly revision: bigint;
  readonly position: Position;
}

/**
 * Turns an event read from the store into evolve's input (type, data, metadata, revision, position);
 * null for a type that is not a ledger event. `validate` (default true) parses the data with its zod
 * schema and throws InvalidLedgerEventError on a mismatch; pass false for bulk replays of a trusted
 * store (evolve still refuses a self-contradicting stream with LedgerReplayError).
 */
export const fromRecorded = (recorded: StoredEvent, options: { validate?: boolean } = {}): EvolveInput | null => {
  if (!isLedgerEventType(recorded.type)) return null;
  const event =
    options.validate === false ? ({ type: recorded.type, data: recorded.data } as LedgerEvent) : parseLedgerEvent(recorded.type, recorded.data);
  return { ...event, metadata: recorded.metadata, revision: recorded.revision, position: recorded.position };
};

/** Folds events from `initialState()` (or a given state, which is consumed). */
export const replay = (events: Iterable<EvolveInput>, from: LedgerState = initialState()): LedgerState => {
  let state = from;
  for (const event of events) state = evolve(state, event);
  return state;
};

// ---------------------------------------------------------------------------------------------
// Read helpers (pure)

export const balanceOf = (state: LedgerState): number => state.balance;
export const reservedOf = (state: LedgerState): number => state.reserved;
export const availableOf = (state: LedgerState): number => state.balance - state.reserved;

const compareNumbers = (a: number, b: number): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * Burn order (API §5): higher priority first, then soonest expiry (no expiry last), then granted
 * (bonus/promotional/compensation/adjustment) before paid (purchase), then oldest.
 */
export const compareBurnOrder = (a: Lot, b: Lot): number =>
  compareNumbers(b.priority, a.priority) ||
  compareNumbers(a.expires_at_ms, b.expires_at_ms) ||
  compareNumbers(a.kind === 'purchase' ? 1 : 0, b.kind === 'purchase' ? 1 : 0) ||
  compareNumbers(a.seq, b.seq);

export interface LiveLot {
  readonly lot_id: string;
  readonly kind: LotKind;
  /** Credits left in the lot (held ones included). */
  readonly amount: number;
  readonly held: number;
  readonly expires_at: string | null;
  readonly priority: number;
  readonly created_at: string;
  readonly purchase_id: string | null;
}

/** Lots with credits left, in burn order. */
export const liveLots = (state: LedgerState): LiveLot[] =>
  [...state.live.values()].sort(compareBurnOrder).map((lot) => ({
    lot_id: lot.lot_id,
    kind: lot.kind,
    amount: lot.remaining,
    held: lot.held,
    expires_at: lot.expires_at,
    priority: lot.priority,
    created_at: lot.created_at,
    purchase_id: lot.purchase_id,
  }));

/** The tier that applies at `now`: the stored one, or free once its `tier_expires_at` has passed. */
export const effectiveTier = (state: LedgerState, now: Date): TierName =>
  state.tier_expires_at !== null && now.getTime() >= Date.parse(state.tier_expires_at) ? 'free' : state.tier;

export interface WindowUsage {
  readonly used: number;
  readonly resets_at: string;
}

export interface Usage {
  readonly day: WindowUsage;
  readonly month: WindowUsage;
}

export const nextUtcDay = (now: Date): Date =>
  new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1));
export const nextUtcMonth = (now: Date): Date => new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1));

/** API calls counted in the UTC day and month of `now`, and when each window resets. */
export const usageOf = (state: LedgerState, now: Date): Usage => {
  const iso = now.toISOString();
  const c = state.api_calls;
  return {
    day: { used: c.day === utcDay(iso) ? c.day_count : 0, resets_at: nextUtcDay(now).toISOString() },
    month: { used: c.month === utcMonth(iso) ? c.month_count : 0, resets_at: nextUtcMonth(now).toISOString() },
  };
};

export const totalsOf = (state: LedgerState): Readonly<Totals> => ({ ...state.totals });

export interface OpenReservation {
  readonly reservation_id: string;
  readonly amount: number;
  readonly expires_at: string;
  readonly description: string | null;
  readonly created_at: string;
}

export const openReservations = (state: LedgerState): OpenReservation[] =>
  [...state.open_reservations.values()].map((r) => ({
    reservation_id: r.reservation_id,
    amount: r.held,
    expires_at: r.expires_at,
    description: r.description,
    created_at: r.created_at,
  }));

/** A spend and how much of it is still refundable, or null when unknown. */
export const spendOf = (
  state: LedgerState,
  spendId: string,
): { spend_id: string; amount: number; refunded: number; refundable: number; reservation_id: string | null; at: string } | null => {
  const spend = state.spends.get(spendId);
  return spend
    ? {
        spend_id: spend.spend_id,
        amount: spend.amount,
        refunded: spend.refunded,
        refundable: spend.amount - spend.refunded,
        reservation_id: spend.reservation_id,
        at: spend.at,
      }
    : null;
};

/**
 * The first outcome recorded under `key`, while younger than 24 h at `now`; null otherwise.
 * Compare its `request_hash` with the request's: equal → replay the response, different → 422.
 */
export const findIdempotentResult = (state: LedgerState, key: string, now: Date): IdempotentResult | null => {
  const record = state.idempotency.get(key);
  if (!record) return null;
  return now.getTime() - record.at_ms < IDEMPOTENCY_RETENTION_MS ? record : null;
};
