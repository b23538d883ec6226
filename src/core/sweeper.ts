import type { Logger } from 'pino';
import type { LedgerState } from '../ledger/index.js';
import type { Accounts } from './accounts.js';
import type { Clock } from './clock.js';

/**
 * Reservation auto-expiry and lot expiry (API §5). The decider appends `ReservationExpired` /
 * `CreditsExpired` whenever it decides anything on an account; the sweeper makes sure that happens on
 * accounts nobody touches, by running `ExpireDue` (which may decide no events) on candidate accounts:
 *
 * - accounts this process has seen with something due (the tracker, fed by every command's state: it
 *   knows the exact instant, so expiries land within one interval);
 * - accounts the read models show holding credits (`user_credits.reserved > 0`) or with lots past
 *   expiry (`credit_lots`), which covers accounts written by other processes and restarts.
 *
 * Running ExpireDue on an account with nothing due appends nothing, so a stale or duplicated
 * candidate costs a read, never a wrong event; two sweepers racing are serialised by the expected
 * revision like any other command.
 */

/** When an account next has something to expire, or null. */
export function nextDueMs(state: LedgerState): number | null {
  let due = Number.POSITIVE_INFINITY;
  for (const reservation of state.open_reservations.values()) due = Math.min(due, reservation.expires_at_ms);
  for (const lot of state.live.values()) {
    if (lot.remaining - lot.held <= 0) continue; // a held lot is swept when its reservation closes
    if (lot.clawed_back) return Number.NEGATIVE_INFINITY; // credits returned into a refunded purchase: now
    due = Math.min(due, lot.expires_at_ms);
  }
  return Number.isFinite(due) ? due : null;
}

/** In-memory index: account → when it next has something due. */
export class ExpiryTracker {
  private readonly due = new Map<string, number>();

  /** Feed it every state the command path produces. */
  note(userId: string, state: LedgerState): void {
    const at = nextDueMs(state);
    if (at === null) this.due.delete(userId);
    else this.due.set(userId, at);
  }

  /** Accounts with something due at `nowMs`, soonest first. */
  dueAt(nowMs: number, limit: number): string[] {
    const due: [string, number][] = [];
    for (const [userId, at] of this.due) if (at <= nowMs) due.push([userId, at]);
    return due
      .sort((a, b) => a[1] - b[1])
      .slice(0, limit)
      .map(([userId]) => userId);
  }

  get size(): number {
    return this.due.size;
  }
}

export interface SweepReport {
  readonly candidates: number;
  /** Accounts where ExpireDue appended events. */
  readonly swept: number;
  readonly events: number;
  readonly failed: number;
}

export interface Sweeper {
  /** One pass; `readModels: true` also asks the read models for candidates (default: when due). */
  runOnce(options?: { readModels?: boolean }): Promise<SweepReport>;
  start(): void;
  stop(): Promise<void>;
}

/**
 * Where the sweeper finds accounts with work due beyond its in-memory tracker (after a restart, or
 * work decided by another process), and the upkeep it does on that scan. The Postgres implementation
 * reads the projections' read models (src/adapters/postgres/sweeper-queries.ts).
 */
export interface SweeperQueries {
  /** Accounts with reservations held or lots past expiry, at most `limit`. */
  candidates(now: Date, limit: number): Promise<string[]>;
  /** Drops stored AI answers older than their idempotency keys can replay. */
  pruneAiGenerations(now: Date): Promise<void>;
}

export function createSweeper(options: {
  accounts: Accounts;
  tracker: ExpiryTracker;
  queries: SweeperQueries;
  clock: Clock;
  logger: Logger;
  /** Pass interval. Default 5 s. */
  intervalMs?: number;
  /** How often a pass also asks the read models. Default 60 s. */
  readModelIntervalMs?: number;
  /** Accounts per pass. Default 1000. */
  batchSize?: number;
}): Sweeper {
  const { accounts, tracker, queries, clock, logger } = options;
  const intervalMs = options.intervalMs ?? 5000;
  const readModelIntervalMs = options.readModelIntervalMs ?? 60_000;
  const batchSize = options.batchSize ?? 1000;
  let lastReadModelScan = Number.NEGATIVE_INFINITY;
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<unknown> | null = null;
  let stopped = false;

  const runOnce = async (runOptions: { readModels?: boolean } = {}): Promise<SweepReport> => {
    const now = clock.now();
    const candidates = new Set(tracker.dueAt(now.getTime(), batchSize));
    const scanReadModels = runOptions.readModels ?? now.getTime() - lastReadModelScan >= readModelIntervalMs;
    if (scanReadModels) {
      lastReadModelScan = now.getTime();
      try {
        for (const userId of await queries.candidates(now, batchSize)) candidates.add(userId);
        await queries.pruneAiGenerations(now);
      } catch (error) {
        logger.warn({ err: error }, 'sweeper: read-model scan failed');
      }
    }
    let swept = 0;
    let events = 0;
    let failed = 0;
    for (const userId of candidates) {
      if (stopped) break;
      try {
        const result = await accounts.execute(userId, { type: 'ExpireDue' }, { requestId: 'sweeper' });
        if (result.appended.length > 0) {
          swept += 1;
          events += result.appended.length;
        }
      } catch (error) {
        failed += 1;
        logger.warn({ err: error, userId }, 'sweeper: ExpireDue failed');
      }
    }
    if (swept > 0) logger.info({ swept, events }, 'sweeper: expired reservations and lots');
    return { candidates: candidates.size, swept, events, failed };
  };

  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(() => {
      running = runOnce()
        .catch((error) => logger.error({ err: error }, 'sweeper pass failed'))
        .finally(() => {
          running = null;
          schedule();
        });
    }, intervalMs);
    timer.unref();
  };

  return {
    runOnce,
    start: () => {
      stopped = false;
      if (!timer) schedule();
    },
    stop: async () => {
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = null;
      await running;
    },
  };
}
