import { createHash, type Hash } from 'node:crypto';
import { formatPosition, type JsonObject, type Position } from '../core/event-store.js';
import { GENESIS_HASH } from '../core/hash-chain.js';
import {
  accountStreamId,
  evolve,
  initialState,
  isLedgerEventType,
  type LedgerEvent,
  type LedgerState,
  type Lot,
} from '../ledger/index.js';
import { eventHashFast } from '../core/canonical.js';
import { parseLedgerEventFast } from './event-check.js';

/**
 * Verifies one account stream, one event at a time (memory: the account's state, never its events):
 *
 * 1. the chain — revisions contiguous from 0, each `metadata.prev_hash` equal to the previous event's
 *    `hash` (GENESIS_HASH for revision 0), each `metadata.hash` equal to the hash recomputed with the
 *    recipe of src/core/hash-chain.ts;
 * 2. the replay — each event parsed with its zod schema (`parseLedgerEvent`, through the exact fast
 *    check of ./event-check.ts) and folded with the same `evolve` the command handler uses; a stream
 *    that contradicts itself stops the replay there;
 * 3. the entries — every balance event's own `balance_after` / `reserved_after` equal to the replayed
 *    account right after it (each entry explains itself).
 *
 * Every check continues past a failure, so one run reports the first failure of each kind; the report
 * names the first bad revision. The replayed figures are what the read models must show (see
 * ./read-models.ts); the statement digest lets a whole `credit_transactions` history be compared with
 * one value per account.
 */

/** An event as read from the store (RecordedEvent fits). */
export interface AuditedEvent {
  readonly id: string;
  readonly type: string;
  readonly revision: bigint;
  readonly position: Position;
  readonly data: JsonObject;
  readonly metadata: JsonObject;
}

export type ChainProblem =
  | 'revision_gap'
  | 'revision_out_of_order'
  | 'prev_hash_mismatch'
  | 'missing_hash'
  | 'hash_mismatch'
  | 'missing_tail'
  /** The store's head is below an event the stream holds (its next append would collide with it). */
  | 'head_behind'
  /** The event says it belongs to another stream: it was copied or moved here. */
  | 'wrong_stream';

export interface ChainBreak {
  /** The first revision that is wrong (for a gap: the first missing one). */
  readonly revision: number;
  readonly problem: ChainProblem;
  readonly expected: string;
  readonly actual: string | null;
}

export type ReplayProblem = 'unknown_event_type' | 'invalid_event' | 'replay_failed';

export interface ReplayFailure {
  readonly revision: number;
  readonly problem: ReplayProblem;
  readonly message: string;
}

export interface EntryMismatch {
  readonly revision: number;
  readonly field: 'balance_after' | 'reserved_after';
  /** The replayed value. */
  readonly expected: number;
  /** What the event itself says. */
  readonly actual: number;
}

/** The statement (`credit_transactions`) an account's events imply. */
export interface StatementFigures {
  readonly count: number;
  /** Sum of the signed amounts: equals the balance. */
  readonly sum: number;
  readonly last_balance_after: number | null;
  /** sha256 over one line per row in revision order (see `statementLine`). */
  readonly digest: string;
}

export interface LotFigures {
  readonly count: number;
  readonly remaining: number;
  readonly held: number;
}

/** What both the replay and the read models say about an account (the compared fields). */
export interface AccountFigures {
  readonly balance: number;
  readonly reserved: number;
  readonly available: number;
  readonly total_purchased: number;
  readonly total_used: number;
  readonly total_bonus: number;
  readonly total_refunded: number;
  readonly total_expired: number;
  readonly total_adjusted: number;
  readonly total_clawed_back: number;
  /** Id and position of the last event that moved credits (what `user_credits` was last updated by). */
  readonly last_event_id: string | null;
  readonly last_position: string | null;
  readonly transactions: StatementFigures;
  readonly lots: LotFigures;
}

export interface LotDetail {
  readonly lot_id: string;
  readonly kind: string;
  readonly original: number;
  readonly remaining: number;
  readonly held: number;
  readonly clawed_back: boolean;
  readonly priority: number;
  readonly expires_at: string | null;
}

export interface StreamReport {
  readonly user_id: string;
  /** Events read (whatever their revisions). */
  readonly events: number;
  /** Revision of the last event read (-1: none). */
  readonly revision: number;
  /** Position of the last event read. */
  readonly position: Position | null;
  readonly last_hash: string;
  readonly hash_chain_ok: boolean;
  readonly chain_break: ChainBreak | null;
  readonly chain_breaks: number;
  /** A head read before the events was below the last one read and has not been read again (see `confirmHead`). */
  readonly head_unconfirmed: boolean;
  readonly replay_failure: ReplayFailure | null;
  readonly entry_mismatch: EntryMismatch | null;
  /** The replayed account (up to a replay failure). */
  readonly replayed: AccountFigures;
  /** Every lot the replay knows, depleted ones too. */
  readonly lots: readonly LotDetail[];
}

/** `credit_transactions.type` of each event that makes a statement row (API §5); others make none. */
export const STATEMENT_TYPES: Readonly<Partial<Record<LedgerEvent['type'], string>>> = {
  CreditsPurchased: 'purchase',
  CreditsGranted: 'bonus',
  CreditsSpent: 'use',
  CreditsRefunded: 'refund',
  CreditsAdjusted: 'admin',
  CreditsExpired: 'expire',
  PurchaseRefunded: 'refund',
};

/** One statement row in the digest: `revision|type|amount|balance_before|balance_after\n`. */
export const statementLine = (revision: bigint | number | string, type: string, amount: number | string, before: number | string, after: number | string): string =>
  `${revision}|${type}|${amount}|${before}|${after}\n`;

/** The digest of an empty statement. */
export const EMPTY_DIGEST = createHash('sha256').digest('hex');

const toNumber = (revision: bigint): number => Number(revision);

/** A statement row the replay implies (what `credit_transactions` must hold for the event). */
export interface ExpectedStatementRow {
  readonly stream_revision: number;
  readonly type: string;
  readonly amount: number;
  readonly balance_before: number;
  readonly balance_after: number;
}

export interface StreamVerifierOptions {
  /** Called with every statement row the replay implies, in revision order. */
  readonly onStatementRow?: (row: ExpectedStatementRow) => void;
}

export class StreamVerifier {
  private state: LedgerState = initialState();
  private events = 0;
  private nextRevision = 0n;
  private lastRevision = -1n;
  private position: Position | null = null;
  private prevHash = GENESIS_HASH;
  private chainBreak: ChainBreak | null = null;
  private chainBreaks = 0;
  private replayFailure: ReplayFailure | null = null;
  private entryMismatch: EntryMismatch | null = null;
  private headUnconfirmed = false;
  private statementCount = 0;
  private statementSum = 0;
  private lastBalanceAfter: number | null = null;
  private digest: Hash = createHash('sha256');
  private lastEventId: string | null = null;
  private lastBalancePosition: Position | null = null;
  private readonly streamId: string;

  constructor(
    readonly userId: string,
    private readonly options: StreamVerifierOptions = {},
  ) {
    this.streamId = accountStreamId(userId);
  }

  /** Revision of the last event added (-1n: none), to read on from. */
  get revision(): bigint {
    return this.lastRevision;
  }

  add(event: AuditedEvent): void {
    this.events += 1;
    this.position = event.position;
    this.lastRevision = event.revision;
    this.checkChain(event);
    if (this.replayFailure === null) this.replayOne(event);
  }

  /**
   * The stream's head as the store records it (e.g. the Postgres adapter's `streams.revision`, read
   * before the events): events missing after the last one read are a gap at the end.
   */
  expectHead(head: bigint): void {
    if (head > this.lastRevision) {
      this.breakChain(this.lastRevision + 1n, 'missing_tail', `revision ${head}`, this.lastRevision < 0n ? null : `revision ${this.lastRevision}`);
    } else if (head < this.lastRevision) {
      this.headUnconfirmed = true;
    }
  }

  /**
   * Whether the head given to `expectHead` was below the last event read: the stream moved on since
   * (a live ledger), or its head was lowered. `confirmHead` with a head read after the events tells.
   */
  get headIsUnconfirmed(): boolean {
    return this.headUnconfirmed;
  }

  /**
   * The head read again after the events. A head commits with its events and only moves forward, so
   * one still below the last event read was lowered: the stream's next append would collide.
   */
  confirmHead(head: bigint): void {
    this.headUnconfirmed = false;
    if (head < this.lastRevision) this.breakChain(head + 1n, 'head_behind', `revision ${this.lastRevision}`, `revision ${head}`);
  }

  private breakChain(revision: bigint, problem: ChainProblem, expected: string, actual: string | null): void {
    this.chainBreaks += 1;
    if (this.chainBreak === null) this.chainBreak = { revision: toNumber(revision), problem, expected, actual };
  }

  private checkChain(event: AuditedEvent): void {
    if (event.revision !== this.nextRevision) {
      if (event.revision > this.nextRevision) {
        this.breakChain(this.nextRevision, 'revision_gap', `revision ${this.nextRevision}`, `revision ${event.revision}`);
      } else {
        this.breakChain(event.revision, 'revision_out_of_order', `revision ${this.nextRevision}`, `revision ${event.revision}`);
      }
    }
    this.nextRevision = event.revision + 1n;
    // The stream id is inside the hashed metadata, so a chain copied from another account (which
    // would otherwise verify, every stream starting from the same genesis) is caught here.
    const stream = event.metadata.stream_id;
    if (stream !== this.streamId) {
      this.breakChain(event.revision, 'wrong_stream', this.streamId, typeof stream === 'string' ? stream : null);
    }
    const prev = event.metadata.prev_hash;
    if (prev !== this.prevHash) {
      this.breakChain(event.revision, 'prev_hash_mismatch', this.prevHash, typeof prev === 'string' ? prev : null);
    }
    const computed = eventHashFast(event.id, event.type, event.data, event.metadata);
    const recorded = event.metadata.hash;
    if (typeof recorded !== 'string') {
      this.breakChain(event.revision, 'missing_hash', computed, null);
    } else if (recorded !== computed) {
      this.breakChain(event.revision, 'hash_mismatch', computed, recorded);
    }
    // Link the next event to what this one says it is, so one edited event is one break.
    this.prevHash = typeof recorded === 'string' ? recorded : computed;
  }

  private replayOne(event: AuditedEvent): void {
    const revision = event.revision;
    if (!isLedgerEventType(event.type)) {
      this.replayFailure = { revision: toNumber(revision), problem: 'unknown_event_type', message: `${event.type} is not a ledger event` };
      return;
    }
    let parsed: LedgerEvent;
    try {
      parsed = parseLedgerEventFast(event.type, event.data);
    } catch (error) {
      this.replayFailure = { revision: toNumber(revision), problem: 'invalid_event', message: (error as Error).message };
      return;
    }
    const before = this.state.balance;
    try {
      // `parsed` is a fresh object (its data may be the event's own, never written to): it can carry the
      // store's fields itself (no copy per event).
      this.state = evolve(this.state, Object.assign(parsed, { metadata: event.metadata, revision, position: event.position }));
    } catch (error) {
      this.replayFailure = { revision: toNumber(revision), problem: 'replay_failed', message: (error as Error).message };
      return;
    }
    if (parsed.type === 'TierChanged') return;
    const after = this.state.balance;
    if (this.entryMismatch === null) {
      if (parsed.data.balance_after !== after) {
        this.entryMismatch = { revision: toNumber(revision), field: 'balance_after', expected: after, actual: parsed.data.balance_after };
      } else if (parsed.data.reserved_after !== this.state.reserved) {
        this.entryMismatch = { revision: toNumber(revision), field: 'reserved_after', expected: this.state.reserved, actual: parsed.data.reserved_after };
      }
    }
    this.lastEventId = event.id;
    this.lastBalancePosition = event.position;
    const rowType = STATEMENT_TYPES[parsed.type];
    if (rowType === undefined) return;
    const amount = after - before;
    this.statementCount += 1;
    this.statementSum += amount;
    this.lastBalanceAfter = after;
    this.digest.update(statementLine(revision, rowType, amount, before, after));
    this.options.onStatementRow?.({ stream_revision: toNumber(revision), type: rowType, amount, balance_before: before, balance_after: after });
  }

  /** The report so far (events may still be added afterwards). */
  report(): StreamReport {
    const s = this.state;
    const t = s.totals;
    let lotCount = 0;
    let remaining = 0;
    let held = 0;
    const lots: LotDetail[] = [];
    for (const lot of s.lots.values()) {
      lotCount += 1;
      remaining += lot.remaining;
      held += lot.held;
      lots.push(lotDetail(lot));
    }
    return {
      user_id: this.userId,
      events: this.events,
      revision: toNumber(this.lastRevision),
      position: this.position,
      last_hash: this.prevHash,
      hash_chain_ok: this.chainBreak === null,
      chain_break: this.chainBreak,
      chain_breaks: this.chainBreaks,
      head_unconfirmed: this.headUnconfirmed,
      replay_failure: this.replayFailure,
      entry_mismatch: this.entryMismatch,
      replayed: {
        balance: s.balance,
        reserved: s.reserved,
        available: s.balance - s.reserved,
        total_purchased: t.purchased,
        total_used: t.spent,
        total_bonus: t.granted,
        total_refunded: t.refunded,
        total_expired: t.expired,
        total_adjusted: t.adjusted_in - t.adjusted_out,
        total_clawed_back: t.clawed_back,
        last_event_id: this.lastEventId,
        last_position: this.lastBalancePosition === null ? null : formatPosition(this.lastBalancePosition),
        transactions: {
          count: this.statementCount,
          sum: this.statementSum,
          last_balance_after: this.lastBalanceAfter,
          digest: this.digest.copy().digest('hex'),
        },
        lots: { count: lotCount, remaining, held },
      },
      lots,
    };
  }
}

const lotDetail = (lot: Lot): LotDetail => ({
  lot_id: lot.lot_id,
  kind: lot.kind,
  original: lot.original,
  remaining: lot.remaining,
  held: lot.held,
  clawed_back: lot.clawed_back,
  priority: lot.priority,
  expires_at: lot.expires_at,
});
