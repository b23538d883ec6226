/**
 * Test support for the projection tests: a small ledger driver (the real pure decider, appended to a
 * real event store with expected revisions, folded with the real `evolve`), and helpers that wait for
 * projections and read their tables.
 */
import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { z } from 'zod';
import { type DatabasePool, sql } from '../../src/adapters/postgres/pool.js';
import { comparePositions, type EventStore, type Position, type RecordedEvent } from '../../src/core/event-store.js';
import {
  accountStreamId,
  DEFAULT_TIER_TABLE,
  type Decision,
  decide,
  evolve,
  initialState,
  type LedgerCommand,
  type LedgerEvent,
  type LedgerState,
  ledgerEventMetadata,
} from '../../src/ledger/index.js';
import { loadActiveCheckpoints } from '../../projections/store.js';

export const silentLogger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

export interface AppendedEvent {
  readonly userId: string;
  readonly event: LedgerEvent;
  readonly id: string;
  /** The account's balance and reserved right before this event (from evolve). */
  readonly before: { balance: number; reserved: number };
}

/** Decides commands with the real decider and appends the events, like the command handler does. */
export class LedgerDriver {
  readonly states = new Map<string, LedgerState>();
  readonly appended: AppendedEvent[] = [];
  /** Position of the last append (what a client would pass as `min_position`). */
  lastPosition: Position | null = null;
  nowMs: number;

  constructor(
    private readonly eventStore: EventStore,
    start = '2026-11-25T10:00:00.000Z',
  ) {
    this.nowMs = Date.parse(start);
  }

  get now(): Date {
    return new Date(this.nowMs);
  }

  advance(ms: number): void {
    this.nowMs += ms;
  }

  state(userId: string): LedgerState {
    let state = this.states.get(userId);
    if (!state) {
      state = initialState();
      this.states.set(userId, state);
    }
    return state;
  }

  async run(userId: string, command: LedgerCommand): Promise<Decision & { position?: Position }> {
    const state = this.state(userId);
    const decision = decide(command, state, { now: this.now, tiers: DEFAULT_TIER_TABLE });
    if (decision.kind !== 'applied' || decision.events.length === 0) return decision;
    const metadata = ledgerEventMetadata(command, { ip: '203.0.113.9', user_agent: 'driver/1.0' });
    const events = decision.events.map((event) => ({ id: randomUUID(), type: event.type, data: event.data as never, metadata }));
    const result = await this.eventStore.appendToStream(accountStreamId(userId), events, {
      expectedRevision: state.revision < 0n ? 'no_stream' : state.revision,
    });
    if (this.lastPosition === null || comparePositions(result.position, this.lastPosition) > 0) this.lastPosition = result.position;
    decision.events.forEach((event, index) => {
      this.appended.push({ userId, event, id: (events[index] as { id: string }).id, before: { balance: state.balance, reserved: state.reserved } });
      evolve(state, event);
    });
    return { ...decision, position: result.position };
  }
}

/**
 * Waits until every projection's active generation has processed `target` (default: the head). Pass
 * the position of the last append when there is one: the head is only what readers can see already,
 * and any open transaction (a projector batch, say) can hold the last append back from it.
 */
export async function waitForProjections(
  pool: DatabasePool,
  eventStore: EventStore,
  options: { target?: Position | null; timeoutMs?: number; names?: readonly string[] } = {},
): Promise<void> {
  const target = options.target === undefined ? await eventStore.headPosition() : options.target;
  const deadline = Date.now() + (options.timeoutMs ?? 20_000);
  if (target === null) return;
  for (;;) {
    const checkpoints = (await loadActiveCheckpoints(pool)).filter((c) => !options.names || options.names.includes(c.name));
    if (checkpoints.every((c) => c.position !== null && comparePositions(c.position, target) >= 0)) return;
    if (Date.now() > deadline) {
      throw new Error(`projections did not reach the target in time: ${JSON.stringify(checkpoints.map((c) => [c.name, c.status, c.error, c.position && `${c.position.major}-${c.position.minor}`]))}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

export async function readAllEvents(eventStore: EventStore): Promise<RecordedEvent[]> {
  const events: RecordedEvent[] = [];
  for await (const event of eventStore.readAll()) events.push(event);
  return events;
}

const int8 = z.bigint().transform(Number);

export const userCreditsRow = z.object({
  user_id: z.string(),
  balance: int8,
  reserved: int8,
  total_purchased: int8,
  total_used: int8,
  total_bonus: int8,
  total_refunded: int8,
  total_expired: int8,
  total_adjusted: int8,
  total_clawed_back: int8,
});

export const lotRow = z.object({
  user_id: z.string(),
  lot_id: z.string(),
  kind: z.string(),
  original: int8,
  remaining: int8,
  held: int8,
  expires_at: z.date().nullable(),
  priority: z.number().int(),
  clawed_back: z.boolean(),
});

export const transactionRow = z.object({
  id: z.string(),
  user_id: z.string(),
  type: z.string(),
  amount: int8,
  balance_before: int8,
  balance_after: int8,
  event_type: z.string(),
});

export const tierRow = z.object({
  user_id: z.string(),
  tier: z.string(),
  tier_expires_at: z.date().nullable(),
  api_calls_day: z.string().nullable(),
  api_calls_today: z.number().int(),
  api_calls_month_window: z.string().nullable(),
  api_calls_month: z.number().int(),
});

/** Every row of every projection table of a schema (or the public views), in a stable order, as JSON text. */
export async function dumpProjectionTables(pool: DatabasePool, schemas: { credits: string; activity: string; tiers: string }): Promise<Record<string, readonly string[]>> {
  const tables = [
    ['user_credits', schemas.credits],
    ['credit_transactions', schemas.credits],
    ['credit_lots', schemas.credits],
    ['activity_logs', schemas.activity],
    ['user_tiers', schemas.tiers],
  ] as const;
  const dump: Record<string, readonly string[]> = {};
  for (const [table, schema] of tables) {
    // Whole rows as text, sorted as text: every column takes part, order does not depend on insertion.
    dump[table] = await pool.anyFirst(sql.type(z.object({ row: z.string() }))`
      select t::text as row from ${sql.identifier([schema, table])} t order by 1`);
  }
  return dump;
}
