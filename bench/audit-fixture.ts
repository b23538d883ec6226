/**
 * A large, valid ledger for the audit benchmark and the "untouched ledger verifies clean" test, written
 * straight into the Postgres `events` table (a fixture, not a path the service takes):
 *
 * - a few history templates are decided by the real decider (`decide` → events, `evolve`) from a seeded
 *   random stream of commands: purchases, grants (some expiring), spends, reservations settled or
 *   released, refunds, adjustments, tier changes — with the metadata the service stamps;
 * - each account takes one template with its own event ids and its own hash chain (`chainEvents` of
 *   src/core/hash-chain.ts, the recipe the command handler uses — not the audit's fast copy, so the
 *   benchmark also checks the two agree);
 * - rows go in with one multi-row insert per batch (JSON recordset), and, when asked, the credits read
 *   models are written by the real projection code (`applyEvents(creditsProjection)`, what the runner
 *   runs per batch) in the same transaction, with the projection's checkpoint moved to the batch's
 *   last position.
 */
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { type DatabasePool, sql } from '../src/adapters/postgres/pool.js';
import type { JsonObject, RecordedEvent } from '../src/core/event-store.js';
import { chainEvents, GENESIS_HASH } from '../src/core/hash-chain.js';
import {
  accountStreamId,
  DEFAULT_TIER_TABLE,
  decide,
  evolve,
  initialState,
  type LedgerCommand,
  ledgerEventMetadata,
  type LedgerState,
} from '../src/ledger/index.js';

export interface TemplateEvent {
  readonly type: string;
  readonly data: JsonObject;
  readonly metadata: JsonObject;
}

/** Deterministic PRNG (mulberry32), so a seed gives the same histories every run. */
export const seededRandom = (seed: number): (() => number) => {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
};

const MINUTE = 60_000;

/**
 * One account history of exactly `events` events, decided by the real decider. Time advances by a few
 * minutes per command from `startAt`, so expiring grants do expire (the decider sweeps them).
 */
export function generateHistory(random: () => number, events: number, startAt = '2026-01-05T08:00:00.000Z'): TemplateEvent[] {
  const out: TemplateEvent[] = [];
  let state: LedgerState = initialState();
  let nowMs = Date.parse(startAt);
  let seq = 0;
  const id = (prefix: string) => `${prefix}-${++seq}`;
  const int = (min: number, max: number) => min + Math.floor(random() * (max - min + 1));
  const openReservations: string[] = [];
  const spends: string[] = [];

  const run = (command: LedgerCommand): boolean => {
    const now = new Date(nowMs);
    const decision = decide(command, state, { now, tiers: DEFAULT_TIER_TABLE });
    if (decision.kind !== 'applied') return false;
    const metadata = ledgerEventMetadata(command, { request_id: randomUUID() });
    for (const event of decision.events) {
      if (out.length >= events) break;
      state = evolve(state, { ...event, metadata });
      out.push({ type: event.type, data: event.data as unknown as JsonObject, metadata });
    }
    return true;
  };
  const key = () => (random() < 0.6 ? { key: randomUUID(), request_hash: randomUUID().replace(/-/g, '') } : undefined);

  run({ type: 'ChangeTier', tier: 'enterprise', reason: 'bench', actor_id: 'bench' });
  run({
    type: 'Purchase',
    purchase_id: id('purchase'),
    lot_id: id('lot'),
    payment_id: id('pi'),
    package_id: 'pro',
    credits: 2000,
    amount_cents: 6000,
    currency: 'usd',
    provider_event_id: id('evt'),
  });
  while (out.length < events) {
    nowMs += int(1, 20) * MINUTE;
    const available = state.balance - state.reserved;
    const roll = random();
    if (openReservations.length > 0 && roll < 0.25) {
      const reservation = openReservations.shift() as string;
      const held = state.reservations.get(reservation)?.held ?? 0;
      if (random() < 0.8) {
        const spendId = id('spend');
        if (run({ type: 'Settle', reservation_id: reservation, spend_id: spendId, amount: int(0, held), idempotency: key() })) spends.push(spendId);
      } else {
        run({ type: 'Release', reservation_id: reservation, idempotency: key() });
      }
    } else if (roll < 0.55 && available > 0) {
      const spendId = id('spend');
      const ok = run({
        type: 'Spend',
        spend_id: spendId,
        amount: int(1, Math.min(available, 15)),
        description: 'gpt-4 request',
        metadata: { model: 'gpt-4', tokens: int(10, 4000) },
        idempotency: key(),
      });
      if (ok) spends.push(spendId);
    } else if (roll < 0.68 && available > 0) {
      const reservation = id('reservation');
      if (run({ type: 'Reserve', reservation_id: reservation, amount: int(1, Math.min(available, 15)), ttl_seconds: 3600, idempotency: key() })) {
        openReservations.push(reservation);
      }
    } else if (roll < 0.8) {
      run({
        type: 'Grant',
        lot_id: id('lot'),
        kind: random() < 0.5 ? 'bonus' : 'promotional',
        amount: int(10, 200),
        reason: 'campaign',
        expires_at: random() < 0.5 ? new Date(nowMs + int(60, 600) * MINUTE).toISOString() : null,
        priority: int(0, 2),
        actor_id: 'admin',
        idempotency: key(),
      });
    } else if (roll < 0.86) {
      run({
        type: 'Purchase',
        purchase_id: id('purchase'),
        lot_id: id('lot'),
        payment_id: id('pi'),
        package_id: 'starter',
        credits: 100,
        amount_cents: 500,
        currency: 'usd',
        provider_event_id: id('evt'),
      });
    } else if (roll < 0.94 && spends.length > 0) {
      const spend = spends[int(0, spends.length - 1)] as string;
      const refundable = state.spends.get(spend);
      if (refundable && refundable.amount > refundable.refunded) {
        run({ type: 'RefundSpend', refund_id: id('refund'), spend_id: spend, amount: int(1, refundable.amount - refundable.refunded), reason: 'support', actor_id: 'admin' });
      }
    } else if (available > 0) {
      const amount = random() < 0.5 ? int(1, 50) : -int(1, Math.min(available, 20));
      run({ type: 'Adjust', adjustment_id: id('adjustment'), amount, reason: 'correction', actor_id: 'admin' });
    }
  }
  return out;
}

export interface FixtureOptions {
  readonly accounts: number;
  readonly eventsPerAccount: number;
  /** Distinct histories the accounts share (each account has its own ids and chain). Default 16. */
  readonly templates?: number;
  readonly seed?: number;
  /** Also write the credits read models (user_credits, credit_transactions, credit_lots). Default true. */
  readonly project?: boolean;
  /** Events per insert. Default 5000. */
  readonly batchEvents?: number;
  /** Batches written at once (separate transactions; batches never share an account). Default 2. */
  readonly concurrency?: number;
  readonly onProgress?: (eventsWritten: number) => void;
}

export interface Fixture {
  readonly userIds: readonly string[];
  readonly events: number;
}

const insertedRow = z.object({
  stream_id: z.string(),
  stream_revision: z.coerce.bigint(),
  transaction_id: z.string(),
  global_position: z.coerce.bigint(),
  recorded_at: z.coerce.date(),
});

const schemaRow = z.object({ schema: z.string(), generation: z.number().int() });

/** Writes the fixture into the database of `pool` (migrated, empty event store). */
export async function loadLedgerFixture(pool: DatabasePool, options: FixtureOptions): Promise<Fixture> {
  const random = seededRandom(options.seed ?? 20261125);
  const templateCount = options.templates ?? 16;
  const templates = Array.from({ length: templateCount }, () => generateHistory(random, options.eventsPerAccount));
  const batchEvents = options.batchEvents ?? 5000;
  const project = options.project ?? true;
  const accountsPerBatch = Math.max(1, Math.floor(batchEvents / options.eventsPerAccount));
  const userIds = Array.from({ length: options.accounts }, () => randomUUID());

  const projection = project
    ? await pool.one(sql.type(schemaRow)`
        select format('proj_%s_g%s', name, active_generation) as schema, active_generation as generation
        from projections where name = 'credits'`)
    : null;
  // The projection code itself (not the runner): a batch's read-model writes in the batch's transaction.
  const projectionCode = project
    ? { ...(await import('../projections/credits.js')), ...(await import('../projections/definition.js')) }
    : null;

  let written = 0;
  const writeBatch = async (first: number) => {
    const batchUsers = userIds.slice(first, first + accountsPerBatch);
    const rows: { stream_id: string; stream_revision: number; event_id: string; type: string; data: JsonObject; metadata: JsonObject }[] = [];
    batchUsers.forEach((userId, index) => {
      const template = templates[(first + index) % templateCount] as TemplateEvent[];
      const streamId = accountStreamId(userId);
      const { events } = chainEvents(
        template.map((event) => ({ id: randomUUID(), type: event.type, data: event.data, metadata: { ...event.metadata, stream_id: streamId } })),
        GENESIS_HASH,
      );
      events.forEach((event, revision) => {
        rows.push({ stream_id: streamId, stream_revision: revision, event_id: event.id, type: event.type, data: event.data, metadata: event.metadata });
      });
    });
    await pool.transaction(async (tx) => {
      // A fixture: nothing is lost if the machine dies mid-load, so commits need not wait for the WAL flush.
      await tx.query(sql.unsafe`set local synchronous_commit = off`);
      const inserted = await tx.any(sql.type(insertedRow)`
        insert into events (stream_id, stream_revision, event_id, type, data, metadata)
        select x.stream_id, x.stream_revision, x.event_id, x.type, x.data, x.metadata
        from jsonb_to_recordset(${sql.jsonb(rows)}) as x(stream_id text, stream_revision bigint, event_id uuid, type text, data jsonb, metadata jsonb)
        order by x.stream_id, x.stream_revision
        returning stream_id, stream_revision, transaction_id::text as transaction_id, global_position, recorded_at`);
      await tx.query(sql.unsafe`
        insert into streams (stream_id, revision)
        select stream_id, max(stream_revision) from events
        where stream_id = any(${sql.array(batchUsers.map(accountStreamId), 'text')})
        group by stream_id`);
      if (projection && projectionCode) {
        const byKey = new Map(rows.map((row) => [`${row.stream_id}\u0000${row.stream_revision}`, row]));
        const recorded: RecordedEvent[] = inserted
          .map((row) => {
            const source = byKey.get(`${row.stream_id}\u0000${row.stream_revision}`);
            if (!source) throw new Error('fixture: inserted row not found');
            return {
              id: source.event_id,
              type: source.type,
              streamId: row.stream_id,
              revision: row.stream_revision,
              position: { major: BigInt(row.transaction_id), minor: row.global_position },
              data: source.data,
              metadata: source.metadata,
              recordedAt: row.recorded_at,
            };
          })
          .sort((a, b) => (a.position.minor < b.position.minor ? -1 : a.position.minor > b.position.minor ? 1 : 0));
        await projectionCode.applyEvents(tx, projectionCode.creditsProjection, projection.schema, recorded);
        const last = recorded[recorded.length - 1];
        if (last) {
          // Batches commit in any order: the checkpoint only moves forward.
          await tx.query(sql.unsafe`
            update projection_checkpoints
            set position_major = greatest_major, position_minor = greatest_minor,
                events_processed = events_processed + ${recorded.length}, updated_at = now()
            from (
              select case when c.position_major is null or (c.position_major, c.position_minor) < (${last.position.major.toString()}::numeric, ${last.position.minor.toString()}::numeric)
                       then ${last.position.major.toString()}::numeric else c.position_major end as greatest_major,
                     case when c.position_major is null or (c.position_major, c.position_minor) < (${last.position.major.toString()}::numeric, ${last.position.minor.toString()}::numeric)
                       then ${last.position.minor.toString()}::numeric else c.position_minor end as greatest_minor
              from projection_checkpoints c where c.name = 'credits' and c.generation = ${projection.generation}
              for update
            ) as g
            where name = 'credits' and generation = ${projection.generation}`);
        }
      }
    });
    written += rows.length;
    options.onProgress?.(written);
  };

  // A small pool of batches in flight: the next batch is chained (Node work) while others insert.
  const concurrency = Math.max(1, options.concurrency ?? 2);
  let next = 0;
  const lane = async () => {
    while (next < userIds.length) {
      const first = next;
      next += accountsPerBatch;
      await writeBatch(first);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  return { userIds, events: written };
}
