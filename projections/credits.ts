/**
 * The credits read model: `user_credits` (one row per account), `credit_transactions` (the account's
 * statement) and `credit_lots` (what is left of each lot, for "expiring soon").
 *
 * Every balance-changing ledger event carries `balance_after` / `reserved_after`, so the account row
 * takes its balance from the last event and never re-computes it; totals are sums of the events.
 *
 * Event → statement row and totals (exhaustive; `amount` is signed, balance_before = balance_after − amount):
 *
 * | event              | row type | amount    | reference           | totals                       |
 * |--------------------|----------|-----------|---------------------|------------------------------|
 * | CreditsPurchased   | purchase | +credits  | purchase/purchase_id| total_purchased += credits   |
 * | CreditsGranted     | bonus    | +amount   | grant/lot_id        | total_bonus += amount        |
 * | CreditsSpent       | use      | −amount   | the event's, else spend/spend_id | total_used += amount |
 * | CreditsRefunded    | refund   | +amount   | spend/spend_id      | total_refunded += amount     |
 * | CreditsAdjusted    | admin    | ±amount   | adjustment/adjustment_id | total_adjusted += amount |
 * | CreditsExpired     | expire   | −amount   | lot/lot_id          | total_expired += amount      |
 * | PurchaseRefunded   | refund   | −amount   | purchase/purchase_id| total_clawed_back += amount  |
 * | CreditsReserved    | —        |           |                     | reserved (from the event)    |
 * | ReservationSettled / Released / Expired | — |  |                 | reserved (from the event)    |
 * | TierChanged        | —        |           |                     | (the tiers projection)       |
 *
 * Choices: every grant kind (bonus, promotional, compensation) is a `bonus` row, its kind in metadata.
 * A purchase refunded at the payment provider is a `refund` row with a NEGATIVE amount (credits going
 * back with the money), kept apart from `total_refunded` (spends given back to the user) in
 * `total_clawed_back`. A reservation moves credits between `available` and `reserved`, not the
 * balance: it makes no row; the spend that settles it does. Rows are written for zero amounts too
 * (a reservation settled at 0, a purchase refunded with nothing left): the statement shows every fact.
 *
 * Lots follow `applyToBook` of src/ledger/state.ts: created by purchases, grants and positive
 * adjustments; spends, negative adjustments, expiries and clawbacks take from `remaining`;
 * reservations move credits into `held`, settlement and release take them out again; refunds put
 * credits back into exactly the lots the spend took.
 */
import { sql } from '../src/adapters/postgres/pool.js';
import type { JsonObject, RecordedEvent } from '../src/core/event-store.js';
import { type LedgerEvent, userIdOfAccountStream } from '../src/ledger/events.js';
import { type ProjectionDefinition, type ProjectionWrite, positionParts } from './definition.js';
import { type Column, positionColumns, rowsOf } from './columns.js';
import { ledgerEventOf } from './parse.js';

export type TransactionType = 'purchase' | 'use' | 'refund' | 'bonus' | 'expire' | 'admin';
export const TRANSACTION_TYPES: readonly TransactionType[] = ['purchase', 'use', 'refund', 'bonus', 'expire', 'admin'];

export interface TransactionRow {
  readonly id: string;
  readonly user_id: string;
  readonly type: TransactionType;
  readonly amount: number;
  readonly balance_before: number;
  readonly balance_after: number;
  readonly description: string | null;
  readonly metadata: JsonObject | null;
  readonly reference_type: string | null;
  readonly reference_id: string | null;
  readonly event_type: string;
  readonly stream_revision: bigint;
  readonly created_at: string;
  readonly position: [string, string];
}

export interface TotalsDelta {
  purchased: number;
  used: number;
  bonus: number;
  refunded: number;
  expired: number;
  adjusted: number;
  clawed_back: number;
}

/** The change one batch makes to one account row. */
export interface AccountChange {
  readonly user_id: string;
  balance: number;
  reserved: number;
  readonly totals: TotalsDelta;
  readonly created_at: string;
  updated_at: string;
  last_event_id: string;
  readonly first_position: [string, string];
  last_position: [string, string];
}

/** The change one batch makes to one lot: a creation (with its first values) and/or deltas. */
export interface LotChange {
  readonly user_id: string;
  readonly lot_id: string;
  created: {
    kind: string;
    original: number;
    expires_at: string | null;
    priority: number;
    purchase_id: string | null;
    created_at: string;
  } | null;
  remaining_delta: number;
  held_delta: number;
  clawed_back: boolean;
  readonly first_position: [string, string];
  last_position: [string, string];
  updated_at: string;
}

export interface CreditsPlan {
  readonly transactions: TransactionRow[];
  readonly accounts: Map<string, AccountChange>;
  readonly lots: Map<string, LotChange>;
}

type TransactionFields = Pick<TransactionRow, 'type' | 'amount' | 'description' | 'metadata' | 'reference_type' | 'reference_id'>;

/** The statement row of an event, or null for events that make none. */
export const transactionOf = (event: LedgerEvent): TransactionFields | null => {
  switch (event.type) {
    case 'CreditsPurchased': {
      const d = event.data;
      return {
        type: 'purchase',
        amount: d.credits,
        description: `Purchased ${d.package_id} package`,
        metadata: {
          lot_id: d.lot_id,
          package_id: d.package_id,
          payment_id: d.payment_id,
          amount_cents: d.amount_cents,
          currency: d.currency,
          expires_at: d.expires_at,
        },
        reference_type: 'purchase',
        reference_id: d.purchase_id,
      };
    }
    case 'CreditsGranted': {
      const d = event.data;
      return {
        type: 'bonus',
        amount: d.amount,
        description: d.reason,
        metadata: { lot_id: d.lot_id, kind: d.kind, expires_at: d.expires_at, priority: d.priority, actor_id: d.actor_id },
        reference_type: 'grant',
        reference_id: d.lot_id,
      };
    }
    case 'CreditsSpent': {
      const d = event.data;
      const ownReference = d.reference_type !== null || d.reference_id !== null;
      return {
        type: 'use',
        amount: 0 - d.amount,
        description: d.description,
        metadata: d.metadata,
        reference_type: ownReference ? d.reference_type : 'spend',
        reference_id: ownReference ? d.reference_id : d.spend_id,
      };
    }
    case 'CreditsRefunded': {
      const d = event.data;
      return {
        type: 'refund',
        amount: d.amount,
        description: d.reason,
        metadata: { refund_id: d.refund_id, actor_id: d.actor_id },
        reference_type: 'spend',
        reference_id: d.spend_id,
      };
    }
    case 'CreditsAdjusted': {
      const d = event.data;
      return {
        type: 'admin',
        amount: d.amount,
        description: d.reason,
        metadata: { lot_id: d.lot_id, actor_id: d.actor_id },
        reference_type: 'adjustment',
        reference_id: d.adjustment_id,
      };
    }
    case 'CreditsExpired': {
      const d = event.data;
      return {
        type: 'expire',
        amount: 0 - d.amount,
        description: 'Credits expired',
        metadata: { lot_id: d.lot_id, expires_at: d.expires_at },
        reference_type: 'lot',
        reference_id: d.lot_id,
      };
    }
    case 'PurchaseRefunded': {
      const d = event.data;
      return {
        type: 'refund',
        amount: 0 - d.amount,
        description: 'Purchase refunded',
        metadata: { lot_id: d.lot_id, payment_id: d.payment_id, provider_event_id: d.provider_event_id },
        reference_type: 'purchase',
        reference_id: d.purchase_id,
      };
    }
    case 'CreditsReserved':
    case 'ReservationSettled':
    case 'ReservationReleased':
    case 'ReservationExpired':
    case 'TierChanged':
      return null;
    default: {
      const unreachable: never = event;
      throw new Error(`unmapped ledger event ${(unreachable as { type: string }).type}`);
    }
  }
};

const zeroTotals = (): TotalsDelta => ({ purchased: 0, used: 0, bonus: 0, refunded: 0, expired: 0, adjusted: 0, clawed_back: 0 });

/** What the event adds to the account's totals. */
export const addTotals = (totals: TotalsDelta, event: LedgerEvent): void => {
  switch (event.type) {
    case 'CreditsPurchased':
      totals.purchased += event.data.credits;
      return;
    case 'CreditsGranted':
      totals.bonus += event.data.amount;
      return;
    case 'CreditsSpent':
      totals.used += event.data.amount;
      return;
    case 'CreditsRefunded':
      totals.refunded += event.data.amount;
      return;
    case 'CreditsAdjusted':
      totals.adjusted += event.data.amount;
      return;
    case 'CreditsExpired':
      totals.expired += event.data.amount;
      return;
    case 'PurchaseRefunded':
      totals.clawed_back += event.data.amount;
      return;
    case 'CreditsReserved':
    case 'ReservationSettled':
    case 'ReservationReleased':
    case 'ReservationExpired':
    case 'TierChanged':
      return;
    default: {
      const unreachable: never = event;
      throw new Error(`unmapped ledger event ${(unreachable as { type: string }).type}`);
    }
  }
};

/** Folds a batch of events (position order) into the rows and deltas it writes. Pure. */
export const planCredits = (events: readonly RecordedEvent[]): CreditsPlan => {
  const plan: CreditsPlan = { transactions: [], accounts: new Map(), lots: new Map() };
  for (const recorded of events) {
    const userId = userIdOfAccountStream(recorded.streamId);
    // Tier changes are the tiers projection's: not even read here, so a bad one cannot stop credits.
    if (userId === null || recorded.type === 'TierChanged') continue;
    const event = ledgerEventOf(recorded);
    if (event === null || event.type === 'TierChanged') continue;
    const position = positionParts(recorded.position);
    const at = event.data.at;

    const row = transactionOf(event);
    if (row) {
      plan.transactions.push({
        ...row,
        id: recorded.id,
        user_id: userId,
        balance_before: event.data.balance_after - row.amount,
        balance_after: event.data.balance_after,
        event_type: event.type,
        stream_revision: recorded.revision,
        created_at: at,
        position,
      });
    }

    let account = plan.accounts.get(userId);
    if (!account) {
      account = {
        user_id: userId,
        balance: 0,
        reserved: 0,
        totals: zeroTotals(),
        created_at: at,
        updated_at: at,
        last_event_id: recorded.id,
        first_position: position,
        last_position: position,
      };
      plan.accounts.set(userId, account);
    }
    account.balance = event.data.balance_after;
    account.reserved = event.data.reserved_after;
    account.updated_at = at;
    account.last_event_id = recorded.id;
    account.last_position = position;
    addTotals(account.totals, event);

    applyToLots(plan.lots, userId, event, position, recorded);
  }
  return plan;
};

const lotChange = (
  lots: Map<string, LotChange>,
  userId: string,
  lotId: string,
  position: [string, string],
  at: string,
): LotChange => {
  const key = `${userId}\u0000${lotId}`;
  let change = lots.get(key);
  if (!change) {
    change = {
      user_id: userId,
      lot_id: lotId,
      created: null,
      remaining_delta: 0,
      held_delta: 0,
      clawed_back: false,
      first_position: position,
      last_position: position,
      updated_at: at,
    };
    lots.set(key, change);
  }
  change.last_position = position;
  change.updated_at = at;
  return change;
};

const applyToLots = (
  lots: Map<string, LotChange>,
  userId: string,
  event: Exclude<LedgerEvent, { type: 'TierChanged' }>,
  position: [string, string],
  recorded: RecordedEvent,
): void => {
  const at = event.data.at;
  const lot = (lotId: string) => lotChange(lots, userId, lotId, position, at);
  const create = (lotId: string, created: NonNullable<LotChange['created']>) => {
    const change = lot(lotId);
    if (change.created !== null) throw new Error(`lot ${lotId} created twice`);
    change.created = created;
  };
  switch (event.type) {
    case 'CreditsPurchased': {
      const d = event.data;
      create(d.lot_id, { kind: 'purchase', original: d.credits, expires_at: d.expires_at, priority: d.priority, purchase_id: d.purchase_id, created_at: at });
      return;
    }
    case 'CreditsGranted': {
      const d = event.data;
      create(d.lot_id, { kind: d.kind, original: d.amount, expires_at: d.expires_at, priority: d.priority, purchase_id: null, created_at: at });
      return;
    }
    case 'CreditsSpent':
      for (const { lot_id, amount } of event.data.allocation) {
        const change = lot(lot_id);
        change.remaining_delta -= amount;
        if (event.data.reservation_id !== null) change.held_delta -= amount;
      }
      return;
    case 'CreditsReserved':
      for (const { lot_id, amount } of event.data.allocation) lot(lot_id).held_delta += amount;
      return;
    case 'ReservationSettled':
    case 'ReservationReleased':
    case 'ReservationExpired':
      for (const { lot_id, amount } of event.data.released_allocation) lot(lot_id).held_delta -= amount;
      return;
    case 'CreditsRefunded':
      for (const { lot_id, amount } of event.data.allocation) lot(lot_id).remaining_delta += amount;
      return;
    case 'CreditsAdjusted': {
      const d = event.data;
      if (d.amount > 0) {
        if (d.lot_id === null) throw new Error(`positive adjustment ${d.adjustment_id} without a lot (event ${recorded.id})`);
        create(d.lot_id, { kind: 'adjustment', original: d.amount, expires_at: null, priority: 0, purchase_id: null, created_at: at });
      } else {
        for (const { lot_id, amount } of d.allocation) lot(lot_id).remaining_delta -= amount;
      }
      return;
    }
    case 'CreditsExpired':
      lot(event.data.lot_id).remaining_delta -= event.data.amount;
      return;
    case 'PurchaseRefunded': {
      const change = lot(event.data.lot_id);
      change.clawed_back = true;
      change.remaining_delta -= event.data.amount;
      return;
    }
    default: {
      const unreachable: never = event;
      throw new Error(`unmapped ledger event ${(unreachable as { type: string }).type}`);
    }
  }
};

const TRANSACTION_COLUMNS: readonly Column<TransactionRow>[] = [
  ['id', 'uuid', (r) => r.id],
  ['user_id', 'text', (r) => r.user_id],
  ['type', 'text', (r) => r.type],
  ['amount', 'int8', (r) => r.amount],
  ['balance_before', 'int8', (r) => r.balance_before],
  ['balance_after', 'int8', (r) => r.balance_after],
  ['description', 'text', (r) => r.description],
  ['metadata', 'jsonb', (r) => r.metadata],
  ['reference_type', 'text', (r) => r.reference_type],
  ['reference_id', 'text', (r) => r.reference_id],
  ['event_type', 'text', (r) => r.event_type],
  ['stream_revision', 'int8', (r) => r.stream_revision.toString()],
  ['created_at', 'timestamptz', (r) => r.created_at],
  ['position_major', 'numeric', (r) => r.position[0]],
  ['position_minor', 'numeric', (r) => r.position[1]],
];

const ACCOUNT_COLUMNS: readonly Column<AccountChange>[] = [
  ['user_id', 'text', (a) => a.user_id],
  ['balance', 'int8', (a) => a.balance],
  ['reserved', 'int8', (a) => a.reserved],
  ['purchased', 'int8', (a) => a.totals.purchased],
  ['used', 'int8', (a) => a.totals.used],
  ['bonus', 'int8', (a) => a.totals.bonus],
  ['refunded', 'int8', (a) => a.totals.refunded],
  ['expired', 'int8', (a) => a.totals.expired],
  ['adjusted', 'int8', (a) => a.totals.adjusted],
  ['clawed_back', 'int8', (a) => a.totals.clawed_back],
  ['created_at', 'timestamptz', (a) => a.created_at],
  ['updated_at', 'timestamptz', (a) => a.updated_at],
  ['last_event_id', 'uuid', (a) => a.last_event_id],
  ...positionColumns(),
];

const LOT_COLUMNS: readonly Column<LotChange>[] = [
  ['user_id', 'text', (l) => l.user_id],
  ['lot_id', 'text', (l) => l.lot_id],
  ['kind', 'text', (l) => l.created?.kind ?? null],
  ['original', 'int8', (l) => l.created?.original ?? null],
  ['expires_at', 'timestamptz', (l) => l.created?.expires_at ?? null],
  ['priority', 'int4', (l) => l.created?.priority ?? null],
  ['purchase_id', 'text', (l) => l.created?.purchase_id ?? null],
  ['created_at', 'timestamptz', (l) => l.created?.created_at ?? null],
  ['remaining_delta', 'int8', (l) => l.remaining_delta],
  ['held_delta', 'int8', (l) => l.held_delta],
  ['clawed_back', 'boolean', (l) => l.clawed_back],
  ['updated_at', 'timestamptz', (l) => l.updated_at],
  ...positionColumns(),
];

/**
 * The plan as SQL: each table's rows travel as one array parameter per column (`unnest`, see
 * ./columns.ts), and data-modifying CTEs insert the statement rows and upsert the accounts and the
 * lots — part of the batch's single statement.
 */
export function creditsWrite(schema: string, plan: CreditsPlan): ProjectionWrite | null {
  if (plan.transactions.length === 0 && plan.accounts.size === 0 && plan.lots.size === 0) return null;
  const lots = [...plan.lots.values()];
  const tableT = sql.identifier([schema, 'credit_transactions']);
  const tableA = sql.identifier([schema, 'user_credits']);
  const tableL = sql.identifier([schema, 'credit_lots']);
  const missing = lots.filter((l) => l.created === null).map((l) => l.lot_id);
  return {
    ctes: [
      sql.fragment`tx_rows as (select x.* from ${rowsOf(plan.transactions, TRANSACTION_COLUMNS)})`,
      sql.fragment`insert_transactions as (
        insert into ${tableT} (id, event_id, user_id, type, amount, balance_before, balance_after, description, metadata,
          reference_type, reference_id, event_type, stream_revision, created_at, position_major, position_minor)
        select id, id, user_id, type, amount, balance_before, balance_after, description, metadata,
          reference_type, reference_id, event_type, stream_revision, created_at, position_major, position_minor
        from tx_rows
        on conflict (id) do nothing
      )`,
      sql.fragment`account_rows as (select x.* from ${rowsOf([...plan.accounts.values()], ACCOUNT_COLUMNS)})`,
      sql.fragment`insert_accounts as (
        insert into ${tableA} (user_id, balance, reserved, total_purchased, total_used, total_bonus, total_refunded,
          total_expired, total_adjusted, total_clawed_back, created_at, updated_at, last_event_id,
          last_position_major, last_position_minor)
        select user_id, balance, reserved, purchased, used, bonus, refunded, expired, adjusted, clawed_back,
          created_at, updated_at, last_event_id, last_major, last_minor
        from account_rows
        on conflict (user_id) do nothing
      )`,
      sql.fragment`update_accounts as (
        update ${tableA} a set
          balance = x.balance,
          reserved = x.reserved,
          total_purchased = a.total_purchased + x.purchased,
          total_used = a.total_used + x.used,
          total_bonus = a.total_bonus + x.bonus,
          total_refunded = a.total_refunded + x.refunded,
          total_expired = a.total_expired + x.expired,
          total_adjusted = a.total_adjusted + x.adjusted,
          total_clawed_back = a.total_clawed_back + x.clawed_back,
          updated_at = x.updated_at,
          last_event_id = x.last_event_id,
          last_position_major = x.last_major,
          last_position_minor = x.last_minor
        from account_rows x
        where a.user_id = x.user_id
          and (a.last_position_major, a.last_position_minor) < (x.first_major, x.first_minor)
      )`,
      sql.fragment`lot_rows as (select x.* from ${rowsOf(lots, LOT_COLUMNS)})`,
      sql.fragment`insert_lots as (
        insert into ${tableL} (user_id, lot_id, kind, original, remaining, held, expires_at, priority, purchase_id,
          clawed_back, created_at, updated_at, last_position_major, last_position_minor)
        select user_id, lot_id, kind, original, original + remaining_delta, held_delta, expires_at, priority, purchase_id,
          clawed_back, created_at, updated_at, last_major, last_minor
        from lot_rows where kind is not null
        on conflict (user_id, lot_id) do nothing
      )`,
      sql.fragment`update_lots as (
        update ${tableL} l set
          remaining = l.remaining + x.remaining_delta,
          held = l.held + x.held_delta,
          clawed_back = l.clawed_back or x.clawed_back,
          updated_at = x.updated_at,
          last_position_major = x.last_major,
          last_position_minor = x.last_minor
        from lot_rows x
        where x.kind is null and l.user_id = x.user_id and l.lot_id = x.lot_id
          and (l.last_position_major, l.last_position_minor) < (x.first_major, x.first_minor)
      )`,
    ],
    failures:
      missing.length === 0
        ? []
        : [
            {
              when: sql.fragment`exists (
                select 1 from lot_rows x
                where x.kind is null and not exists (select 1 from ${tableL} l where l.user_id = x.user_id and l.lot_id = x.lot_id))`,
              message: `events move credits of lots that were never created (one of ${missing.slice(0, 5).join(', ')})`,
            },
          ],
  };
}

export const creditsProjection: ProjectionDefinition = {
  name: 'credits',
  tables: ['user_credits', 'credit_transactions', 'credit_lots'],
  plan: (schema, events) => creditsWrite(schema, planCredits(events)),
};
