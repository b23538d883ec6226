/**
 * An untouched ledger of tens of thousands of events (decided by the real decider, projected by the real
 * projector) verifies clean: every account, through the worker scan, the per-account route and the export.
 */
import { execFile } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadLedgerFixture } from '../../bench/audit-fixture.js';
import { exportLines } from '../../src/audit/export.js';
import { CREDITS_PROJECTION } from '../../src/audit/projection-wait.js';
import { createAuditDeps } from '../../src/audit/verify.js';
import { verifyAll } from '../../src/audit/verify-all.js';
import { createTestApp, type TestApp } from '../support/app.js';

const ACCOUNTS = 300;
const EVENTS_PER_ACCOUNT = 100;

let t: TestApp;
let userIds: readonly string[];
let auditor: { token: string };

beforeAll(async () => {
  t = await createTestApp();
  auditor = await t.signIn({ role: 'auditor' });
  ({ userIds } = await loadLedgerFixture(t.db.pool, { accounts: ACCOUNTS, eventsPerAccount: EVENTS_PER_ACCOUNT, project: false, seed: 42 }));
  const head = await t.eventStore.headPosition();
  expect(head).not.toBeNull();
  // The real projector (running in the test app) projects the fixture.
  expect(await t.deps.projections.waitFor([CREDITS_PROJECTION], head as NonNullable<typeof head>, 120_000)).toBe(true);
}, 180_000);

afterAll(async () => {
  await t?.close();
});

describe(`a clean ledger of ${ACCOUNTS * EVENTS_PER_ACCOUNT} events`, () => {
  it('verifies clean with audit verify --all, on workers and in-process', async () => {
    for (const workers of [2, 0]) {
      const summary = await verifyAll(createAuditDeps(t.eventStore, t.db.pool), { workers, chunkEvents: 4000 });
      expect(summary).toMatchObject({ mode: 'postgres-scan', accounts: ACCOUNTS, events: ACCOUNTS * EVENTS_PER_ACCOUNT, ok: ACCOUNTS, failed: 0, lagging: 0 });
      expect(summary.failures).toEqual([]);
    }
  }, 120_000);

  it('verifies clean account by account through the route', async () => {
    for (const userId of userIds.slice(0, 20)) {
      const response = await t.app.inject({ method: 'GET', url: `/audit/accounts/${userId}/verify`, headers: { authorization: `Bearer ${auditor.token}` } });
      const body = response.json();
      expect(body, userId).toMatchObject({ events: EVENTS_PER_ACCOUNT, hash_chain_ok: true, matches: true, first_mismatch: null });
      expect(body.projected).toEqual(body.replayed);
    }
  });

  it('exports every event', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/audit/export', headers: { authorization: `Bearer ${auditor.token}` } });
    expect(response.statusCode).toBe(200);
    expect(response.body.trimEnd().split('\n')).toHaveLength(ACCOUNTS * EVENTS_PER_ACCOUNT);
  });

  it("docs/audit.md's outside-auditor script recomputes every chain of an export, and spots an edit", async () => {
    const docs = await readFile(new URL('../../docs/audit.md', import.meta.url), 'utf8');
    const script = /```js\n([\s\S]*?)```/.exec(docs)?.[1];
    expect(script).toBeDefined();
    const dir = await mkdtemp(path.join(tmpdir(), 'audit-script-'));
    try {
      await writeFile(path.join(dir, 'verify-chain.mjs'), script as string);
      const file = path.join(dir, 'ledger.ndjson');
      await pipeline(Readable.from(exportLines(t.eventStore, { format: 'ndjson' })), createWriteStream(file));
      const run = promisify(execFile);
      const clean = await run(process.execPath, [path.join(dir, 'verify-chain.mjs'), file]);
      expect(clean.stdout.trim()).toBe(`${ACCOUNTS} streams checked: every chain intact`);

      const lines = (await readFile(file, 'utf8')).trimEnd().split('\n');
      const victim = JSON.parse(lines[1234] as string);
      victim.data.balance_after += 1;
      lines[1234] = JSON.stringify(victim);
      await writeFile(file, `${lines.join('\n')}\n`);
      const edited = await run(process.execPath, [path.join(dir, 'verify-chain.mjs'), file]);
      expect(edited.stdout).toContain(`BROKEN ${victim.stream_id} at revision ${victim.revision}`);
      expect(edited.stdout).toContain('1 broken events');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
