/**
 * An attacker with database access appends a malformed event to an account stream. The projector stops
 * on it (a poison event, status `failed`), so the read models can no longer be compared with anything.
 * What the events themselves prove must still be reported: a broken chain is a failure (HTTP 200 with
 * the chain break, CLI exit 1), never "not compared, the projector lags" (503 / exit 3), which would
 * let one bad row turn every verification of the tampered account into a shrug.
 *
 * Its own file: the poisoned projector stays failed for the rest of the test app's life.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProjectionReader } from '../../projections/reader.js';
import { sql } from '../../src/adapters/postgres/pool.js';
import { CREDITS_PROJECTION, projectionProgress } from '../../src/audit/projection-wait.js';
import { createAuditDeps, verifyAccount } from '../../src/audit/verify.js';
import { verifyAll } from '../../src/audit/verify-all.js';
import { auditVerifyCommand, EXIT_LAGGING, EXIT_MISMATCH } from '../../src/cli/commands/audit.js';
import type { CliContext } from '../../src/cli/context.js';
import { accountStreamId } from '../../src/ledger/index.js';
import { createTestApp, type TestApp } from '../support/app.js';

let t: TestApp;
let auditor: { token: string };
let victim: string;
let bystander: string;

const verifyRoute = (userId: string) =>
  t.app.inject({ method: 'GET', url: `/audit/accounts/${userId}/verify`, headers: { authorization: `Bearer ${auditor.token}` } });

const cliContext = (lines: string[]) =>
  ({
    config: t.deps.config,
    logger: t.deps.logger,
    database: { url: t.db.url, pool: t.db.pool, embedded: null, close: async () => {} },
    eventStore: t.eventStore,
    deps: { ...t.deps, projections: new ProjectionReader({ pool: t.db.pool, eventStore: t.eventStore, clock: t.deps.clock }) },
    print: (line: string) => lines.push(line),
  }) as unknown as CliContext;

beforeAll(async () => {
  t = await createTestApp();
  auditor = await t.signIn({ role: 'auditor' });
  ({ userId: victim } = await t.signIn());
  ({ userId: bystander } = await t.signIn());
  for (const userId of [victim, bystander]) {
    await t.deps.ledger.execute(userId, { type: 'Grant', lot_id: randomUUID(), kind: 'bonus', amount: 100, reason: 'welcome' });
    await t.deps.ledger.execute(userId, { type: 'Spend', spend_id: randomUUID(), amount: 10 });
  }
  // Both accounts projected and clean.
  for (const userId of [victim, bystander]) {
    let response = await verifyRoute(userId);
    for (let attempt = 0; response.statusCode === 503 && attempt < 10; attempt++) response = await verifyRoute(userId);
    expect(response.json()).toMatchObject({ hash_chain_ok: true, matches: true });
  }

  // The poison: revision 2 of the victim, a CreditsSpent whose amount is not a number, with no hash.
  const stream = accountStreamId(victim);
  await t.db.pool.query(sql.unsafe`
    insert into events (stream_id, stream_revision, event_id, type, data, metadata)
    values (${stream}, 2, ${randomUUID()}, 'CreditsSpent', ${sql.jsonb({ at: new Date().toISOString(), amount: 'all of it' })}, ${sql.jsonb({ stream_id: stream })})`);
  await t.db.pool.query(sql.unsafe`update streams set revision = 2 where stream_id = ${stream}`);
  for (let attempt = 0; attempt < 100; attempt++) {
    if ((await projectionProgress(t.db.pool, CREDITS_PROJECTION))?.status === 'failed') break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  expect((await projectionProgress(t.db.pool, CREDITS_PROJECTION))?.status).toBe('failed');
});

afterAll(async () => {
  await t?.close();
});

describe('a poison event that stops the projector', () => {
  it('verify still reports the broken chain at its revision (200, not 503 projection_lagging)', async () => {
    const response = await verifyRoute(victim);
    expect(response.statusCode).toBe(200);
    const body = response.json();
    expect(body.hash_chain_ok).toBe(false);
    expect(body.matches).toBe(false);
    expect(body.projected).toBeNull();
    expect(body.first_mismatch).toMatchObject({ revision: 2, field: 'hash_chain' });
  });

  it('verifyAccount returns the event-level failure without waiting out the projector', async () => {
    const result = await verifyAccount(createAuditDeps(t.eventStore, t.db.pool), victim, { projectionWaitMs: 200 });
    expect(result).toMatchObject({ hash_chain_ok: false, matches: false, projected: null });
    expect(result.first_mismatch?.revision).toBe(2);
  });

  it('an intact account behind the poison is still "not compared" (lagging), never a mismatch', async () => {
    const { userId } = await t.signIn();
    await t.deps.ledger.execute(userId, { type: 'Grant', lot_id: randomUUID(), kind: 'bonus', amount: 5, reason: 'late' });
    const response = await verifyRoute(userId);
    expect(response.statusCode).toBe(503);
    expect(response.json().code).toBe('projection_lagging');
  });

  it('verify --all counts the tampered account as failed (exit 1), not lagging (exit 3)', async () => {
    const summary = await verifyAll(createAuditDeps(t.eventStore, t.db.pool), { workers: 0, projectionWaitMs: 200 });
    const victimFailure = summary.failures.find((failure) => failure.user_id === victim);
    expect(victimFailure?.status).toBe('failed');
    expect(victimFailure?.result?.first_mismatch?.revision).toBe(2);
    expect(summary.failed).toBe(1);
    expect(summary.failures.find((failure) => failure.user_id === bystander)).toBeUndefined();
    const lines: string[] = [];
    expect(await auditVerifyCommand.run(cliContext(lines), { all: true, workers: '0' }, [])).toBe(EXIT_MISMATCH);
    expect(lines.find((line) => line.startsWith(victim))).toMatch(/failed .* BROKEN .* 2 /);
    lines.length = 0;
    expect(await auditVerifyCommand.run(cliContext(lines), { user: victim }, [])).toBe(EXIT_MISMATCH);
    expect(lines.join('\n')).toMatch(/first mismatch at revision 2: hash_chain/);
    expect(EXIT_LAGGING).not.toBe(EXIT_MISMATCH);
  }, 60_000);
});
