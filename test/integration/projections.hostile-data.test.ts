/**
 * Events with unusual but valid data go through the real batch statement of every projection (the
 * worker, its checkpoint compare-and-set, the read-model writes) and land whole: unicode in every
 * text field, very long descriptions, null optional fields, the largest log batch — and text an
 * event store other than Postgres can carry but Postgres cannot (U+0000, lone UTF-16 surrogates),
 * which must not turn into a poison event that stops a projection for everyone.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { activityStreamId, LAUNCHER_LOGS_RECORDED } from '../../src/activity/events.js';
import { sql } from '../../src/adapters/postgres/pool.js';
import type { EventStore, JsonObject, Position, RecordedEvent } from '../../src/core/event-store.js';
import { accountStreamId } from '../../src/ledger/index.js';
import { activityProjection } from '../../projections/activity.js';
import { creditsProjection } from '../../projections/credits.js';
import type { ProjectionDefinition } from '../../projections/definition.js';
import { loadCheckpoint } from '../../projections/store.js';
import { tiersProjection } from '../../projections/tiers.js';
import { ProjectionWorker } from '../../projections/worker.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { silentLogger } from './projections.harness.js';

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.drop();
});

const AT = '2026-11-25T10:00:00.000Z';
let minor = 0n;
const recorded = (streamId: string, revision: bigint, type: string, data: JsonObject, metadata: JsonObject = {}): RecordedEvent => ({
  id: randomUUID(),
  type,
  streamId,
  revision,
  position: { major: 1000n, minor: ++minor } satisfies Position,
  data,
  metadata,
  recordedAt: new Date(AT),
});

/** Projects `events` with the real worker (a fake subscription), until it is idle, failed or fenced. */
async function project(definition: ProjectionDefinition, events: readonly RecordedEvent[]) {
  const stop = new AbortController();
  const worker = new ProjectionWorker({
    pool: db.pool,
    eventStore: {} as EventStore,
    definition,
    generation: 1,
    status: 'running',
    logger: silentLogger,
    signal: stop.signal,
    batchSize: 3,
    maxAttempts: 2,
    backoffMs: { initial: 1, max: 5 },
    idleMs: 50,
    source: (from) => {
      const pending = events.filter((e) => from === null || e.position.minor > from.minor);
      return (async function* () {
        yield* pending;
        await new Promise<void>((resolve) => stop.signal.addEventListener('abort', () => resolve(), { once: true }));
      })();
    },
    onProgress: (_position, idle) => idle,
  });
  const outcome = await worker.run();
  stop.abort();
  return { outcome, checkpoint: await loadCheckpoint(db.pool, definition.name, 1) };
}

const LONE = 'a\ud800b\udfffc';
const NUL = 'x\u0000y';
const FFFD = '\ufffd';
const UNICODE = 'Ünïcødé — 日本語 😀👩‍👩‍👧 \u202e "quoted" \\ back, {braces} NULL';

describe('hostile but valid event data', () => {
  const userId = randomUUID();
  const stream = accountStreamId(userId);
  const activity = activityStreamId(userId);
  const longDescription = '😀'.repeat(50_000);
  const events = [
    recorded(stream, 0n, 'CreditsGranted', {
      at: AT, lot_id: `lot-${UNICODE}`, kind: 'bonus', amount: 100, reason: UNICODE, expires_at: null, priority: 0, actor_id: null,
      balance_after: 100, reserved_after: 0,
    }, { ip: LONE, user_agent: NUL }),
    recorded(stream, 1n, 'CreditsSpent', {
      at: AT, spend_id: 's1', amount: 10, allocation: [{ lot_id: `lot-${UNICODE}`, amount: 10 }], description: longDescription,
      metadata: { big: longDescription, [UNICODE]: [UNICODE, null, 1.5, true] }, reservation_id: null, counts_api_call: true,
      reference_type: null, reference_id: null, balance_after: 90, reserved_after: 0,
    }),
    recorded(stream, 2n, 'CreditsSpent', {
      at: AT, spend_id: 's2', amount: 5, allocation: [{ lot_id: `lot-${UNICODE}`, amount: 5 }], description: `${LONE} ${NUL}`,
      metadata: { [`k${LONE}`]: LONE, nul: NUL, nested: { deep: [LONE] } }, reservation_id: null, counts_api_call: true,
      reference_type: LONE, reference_id: NUL, balance_after: 85, reserved_after: 0,
    }),
    recorded(activity, 0n, LAUNCHER_LOGS_RECORDED, {
      at: AT, batch_id: LONE, ip: null, user_agent: LONE,
      entries: Array.from({ length: 500 }, (_, i) => ({
        action: i % 2 === 0 ? UNICODE : LONE, resource_type: null, resource_id: i % 3 === 0 ? LONE : null,
        metadata: i % 2 === 0 ? { i, text: UNICODE } : { i, text: LONE }, client_ts: LONE,
      })),
    }),
  ];

  it('every projection takes them without stopping; text Postgres cannot hold is made well-formed (U+FFFD), U+0000 dropped', async () => {
    for (const definition of [creditsProjection, activityProjection, tiersProjection]) {
      const { outcome, checkpoint } = await project(definition, events);
      expect({ name: definition.name, outcome: outcome.kind, status: checkpoint?.status, error: checkpoint?.error }).toEqual({
        name: definition.name, outcome: 'stopped', status: 'running', error: null,
      });
      expect(checkpoint?.position).toEqual(events.at(-1)?.position);
      expect(checkpoint?.eventsProcessed).toBe(events.length);
    }

    const well = LONE.toWellFormed();
    expect(well).toBe(`a${FFFD}b${FFFD}c`);
    const tx = await db.pool.any(sql.type(z.object({ description: z.string().nullable(), metadata: z.unknown(), reference_type: z.string().nullable(), reference_id: z.string().nullable(), len: z.number() }))`
      select description, metadata, reference_type, reference_id, char_length(description) as len
      from credit_transactions where user_id = ${userId} order by position_minor`);
    expect(tx).toHaveLength(3);
    expect(tx[0]?.description).toBe(UNICODE);
    expect(tx[1]?.len).toBe(50_000);
    expect(tx[1]?.description).toBe(longDescription);
    expect(tx[2]).toMatchObject({ description: `${well} xy`, reference_type: well, reference_id: 'xy' });
    expect(tx[2]?.metadata).toEqual({ [`k${well}`]: well, nul: 'xy', nested: { deep: [well] } });

    const logs = await db.pool.any(sql.type(z.object({ action: z.string(), resource_id: z.string().nullable(), metadata: z.unknown(), user_agent: z.string().nullable(), client_ts: z.string().nullable(), ip_address: z.string().nullable() }))`
      select action, resource_id, metadata, user_agent, client_ts, ip_address from activity_logs
      where user_id = ${userId} order by position_minor, entry_index`);
    expect(logs).toHaveLength(3 + 500);
    expect(logs[0]).toMatchObject({ ip_address: well, user_agent: 'xy' });
    expect(logs[3]).toMatchObject({ action: UNICODE, resource_id: well, metadata: { i: 0, text: UNICODE }, user_agent: well, client_ts: well });
    expect(logs[4]).toMatchObject({ action: well, resource_id: null, metadata: { i: 1, text: well } });

    const tiers = await db.pool.one(sql.type(z.object({ api_calls_today: z.number() }))`select api_calls_today from user_tiers where user_id = ${userId}`);
    expect(tiers.api_calls_today).toBe(2);
  });
});
