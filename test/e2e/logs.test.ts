/**
 * POST /logs/batch (API §7): one event per batch on the user's activity stream, a repeated batch_id
 * accepted once (also concurrently, also after a crash between append and bookkeeping), limits
 * enforced; GET /activity shows one row per entry next to sign-ins.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { activityStreamId, LAUNCHER_LOGS_RECORDED, userSignedIn, userSignedUp } from '../../src/activity/events.js';
import { LOG_BATCH_NAMESPACE, recordActivity, uuidV5 } from '../../src/activity/record.js';
import { sql } from '../../src/adapters/postgres/pool.js';
import { formatPosition } from '../../src/core/event-store.js';
import { createTestApp, type TestApp } from '../support/app.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => {
  await t?.close();
});

const batch = (who: { token: string }, payload: unknown, headers: Record<string, string> = {}) =>
  t.app.inject({
    method: 'POST',
    url: '/logs/batch',
    headers: { authorization: `Bearer ${who.token}`, 'user-agent': 'launcher/3.1 (linux)', ...headers },
    payload: payload as Record<string, unknown>,
  });

const activity = async (who: { token: string }, query = '') => {
  const response = await t.app.inject({ method: 'GET', url: `/activity${query}`, headers: { authorization: `Bearer ${who.token}` } });
  expect(response.statusCode, response.body).toBe(200);
  return response.json() as { items: { id: string; action: string; resource_type: string | null; resource_id: string | null; metadata: unknown; ip: string | null; user_agent: string | null; created_at: string }[]; next_cursor: string | null };
};

const eventsOf = async (userId: string) => {
  const events = [];
  for await (const event of t.eventStore.readStream(activityStreamId(userId))) events.push(event);
  return events;
};

describe('POST /logs/batch', () => {
  it('records a batch as one event; the activity read model shows one row per entry', async () => {
    const who = await t.signIn();
    const response = await batch(who, {
      batch_id: 'b-1',
      logs: [
        { action: 'component_install', resource_type: 'component', resource_id: 'c-42', metadata: { version: '1.2.0' }, client_ts: '2026-11-25T09:59:58.000Z' },
        { action: 'flow_run', metadata: { nodes: 7, ok: true } },
      ],
    });
    expect(response.statusCode, response.body).toBe(202);
    const { accepted, position } = response.json();
    expect(accepted).toBe(2);
    expect(position).toMatch(/^\d+-\d+$/);
    const events = await eventsOf(who.userId);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ type: LAUNCHER_LOGS_RECORDED, id: uuidV5(`${who.userId}:b-1`, LOG_BATCH_NAMESPACE) });
    expect(formatPosition(events[0]!.position)).toBe(position);

    const { items } = await activity(who, `?min_position=${position}`);
    expect(items.map((i) => [i.action, i.resource_type, i.resource_id, i.metadata])).toEqual([
      ['flow_run', null, null, { nodes: 7, ok: true }],
      ['component_install', 'component', 'c-42', { version: '1.2.0' }],
    ]);
    expect(items[0]).toMatchObject({ ip: '127.0.0.1', user_agent: 'launcher/3.1 (linux)' });
    expect(new Set(items.map((i) => i.id)).size).toBe(2);
  });

  it('accepts a repeated batch_id once, even after other activity, answering with the first result', async () => {
    const who = await t.signIn();
    const payload = { batch_id: 'retry-me', logs: [{ action: 'login_screen' }] };
    const first = await batch(who, payload);
    expect(first.statusCode).toBe(202);
    await recordActivity(t.eventStore, who.userId, userSignedIn(randomUUID(), { at: new Date(), method: 'google', ip: '192.0.2.1', user_agent: 'ua', device_info: { os: 'linux' } }));
    const again = await batch(who, payload);
    expect(again.statusCode).toBe(202);
    expect(again.json()).toEqual(first.json());
    expect(again.headers['idempotent-replayed']).toBe('true');
    const logged = (await eventsOf(who.userId)).filter((e) => e.type === LAUNCHER_LOGS_RECORDED);
    expect(logged).toHaveLength(1);
  });

  it('concurrent duplicates produce exactly one event', async () => {
    const who = await t.signIn();
    const payload = { batch_id: 'storm', logs: [{ action: 'a' }, { action: 'b' }] };
    // Other writers on the same stream at the same time.
    const noise = Array.from({ length: 3 }, () =>
      recordActivity(t.eventStore, who.userId, userSignedIn(randomUUID(), { at: new Date(), method: 'google', ip: null, user_agent: null, device_info: null })),
    );
    const responses = await Promise.all([...Array.from({ length: 6 }, () => batch(who, payload)), ...noise]);
    const answers = responses.slice(0, 6) as Awaited<ReturnType<typeof batch>>[];
    for (const response of answers) expect(response.statusCode, response.body).toBe(202);
    expect(new Set(answers.map((r) => r.body)).size).toBe(1);
    const logged = (await eventsOf(who.userId)).filter((e) => e.type === LAUNCHER_LOGS_RECORDED);
    expect(logged).toHaveLength(1);
    const { items } = await activity(who, `?min_position=${answers[0]!.json().position}&action=a`);
    expect(items).toHaveLength(1);
  });

  it('a batch whose event landed but whose bookkeeping did not (crash in between) is not appended again', async () => {
    const who = await t.signIn();
    const stream = activityStreamId(who.userId);
    // The first attempt claimed revision "no stream", appended, and died before recording the position.
    const eventId = uuidV5(`${who.userId}:half-done`, LOG_BATCH_NAMESPACE);
    await t.db.pool.query(sql.unsafe`
      insert into log_batches (user_id, batch_id, event_id, request_hash, accepted, expected_revision)
      values (${who.userId}, 'half-done', ${eventId}, 'x', 1, -1)`);
    const landed = await t.eventStore.appendToStream(
      stream,
      [{ id: eventId, type: LAUNCHER_LOGS_RECORDED, data: { at: new Date().toISOString(), batch_id: 'half-done', ip: null, user_agent: null, entries: [{ action: 'x', resource_type: null, resource_id: null, metadata: null, client_ts: null }] } }],
      { expectedRevision: 'no_stream' },
    );
    // Meanwhile the stream moved on.
    await recordActivity(t.eventStore, who.userId, userSignedIn(randomUUID(), { at: new Date(), method: 'google', ip: null, user_agent: null, device_info: null }));

    const retry = await batch(who, { batch_id: 'half-done', logs: [{ action: 'x' }] });
    expect(retry.statusCode, retry.body).toBe(202);
    expect(retry.json()).toEqual({ accepted: 1, position: formatPosition(landed.position) });
    expect((await eventsOf(who.userId)).filter((e) => e.type === LAUNCHER_LOGS_RECORDED)).toHaveLength(1);
  });

  it('without a batch_id every post is a new batch', async () => {
    const who = await t.signIn();
    const one = await batch(who, { logs: [{ action: 'tick' }] });
    const two = await batch(who, { logs: [{ action: 'tick' }] });
    expect([one.statusCode, two.statusCode]).toEqual([202, 202]);
    expect(one.json().position).not.toBe(two.json().position);
    const { items } = await activity(who, `?min_position=${two.json().position}`);
    expect(items.map((i) => i.action)).toEqual(['tick', 'tick']);
  });

  it('enforces the limits: 500 entries (400), 1 MiB on this route only (413), strict entries', async () => {
    const who = await t.signIn();
    const tooMany = await batch(who, { logs: Array.from({ length: 501 }, () => ({ action: 'x' })) });
    expect(tooMany.statusCode).toBe(400);
    expect(tooMany.json().code).toBe('validation_failed');
    expect((await batch(who, { logs: Array.from({ length: 500 }, () => ({ action: 'x' })) })).statusCode).toBe(202);

    // ~900 KiB is fine here (the default body limit elsewhere is 64 KiB)...
    const big = 'x'.repeat(1800);
    const nearlyMiB = await batch(who, { logs: Array.from({ length: 500 }, () => ({ action: 'x', metadata: { blob: big } })) });
    expect(nearlyMiB.statusCode, nearlyMiB.body.slice(0, 200)).toBe(202);
    // ...above 1 MiB is not.
    const huge = await batch(who, { logs: Array.from({ length: 500 }, () => ({ action: 'x', metadata: { blob: 'y'.repeat(2200) } })) });
    expect(huge.statusCode).toBe(413);
    expect(huge.json().code).toBe('payload_too_large');

    for (const payload of [
      { logs: [] },
      { logs: [{ action: 'x', extra: 1 }] },
      { logs: [{ action: '' }] },
      { logs: [{ action: 'x' }], other: true },
      { logs: [{ action: 'a\u0000b' }] },
      { logs: [{ action: 'x', metadata: { k: 'nul\u0000' } }] },
      // Lone UTF-16 surrogates: no UTF-8 encoding, and Postgres jsonb refuses them (they were a 500).
      { logs: [{ action: 'a\ud800b' }] },
      { logs: [{ action: 'x', resource_id: 'r\udfff' }] },
      { logs: [{ action: 'x', metadata: { k: ['ok', { deep: 'lone\udc00' }] } }] },
      { logs: [{ action: 'x', client_ts: '\ud83d' }] },
      { batch_id: '', logs: [{ action: 'x' }] },
      { batch_id: 'has space', logs: [{ action: 'x' }] },
      { logs: [{ action: 'x', metadata: [1, 2] }] },
    ]) {
      const response = await batch(who, payload);
      expect(response.statusCode, JSON.stringify(payload)).toBe(400);
    }
    expect((await t.app.inject({ method: 'POST', url: '/logs/batch', payload: { logs: [{ action: 'x' }] } })).statusCode).toBe(401);
  });
});

describe('GET /activity', () => {
  it('shows sign-ups and sign-ins next to launcher logs, newest first, with cursor paging and an action filter', async () => {
    const who = await t.signIn();
    await recordActivity(t.eventStore, who.userId, userSignedUp(randomUUID(), { at: new Date('2026-11-25T08:00:00.000Z'), method: 'google', ip: '192.0.2.10', user_agent: 'Mozilla/5.0', device_info: { os: 'macos' } }));
    await recordActivity(t.eventStore, who.userId, userSignedIn(randomUUID(), { at: new Date('2026-11-25T09:00:00.000Z'), method: 'google', ip: '192.0.2.11', user_agent: 'launcher', device_info: null }));
    const last = await batch(who, { batch_id: 'x', logs: [{ action: 'one' }, { action: 'two' }, { action: 'three' }] });
    const all = await activity(who, `?min_position=${last.json().position}`);
    expect(all.items.map((i) => i.action)).toEqual(['three', 'two', 'one', 'login', 'signup']);
    expect(all.items[4]).toMatchObject({ ip: '192.0.2.10', user_agent: 'Mozilla/5.0', created_at: '2026-11-25T08:00:00.000Z', metadata: { method: 'google', device_info: { os: 'macos' } } });

    const pages: string[] = [];
    let cursor: string | null = null;
    do {
      const page = await activity(who, `?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      pages.push(...page.items.map((i) => i.action));
      cursor = page.next_cursor;
    } while (cursor);
    expect(pages).toEqual(['three', 'two', 'one', 'login', 'signup']);
    expect((await activity(who, '?action=login')).items.map((i) => i.action)).toEqual(['login']);
    const forged = Buffer.from(JSON.stringify(['1', '2', '99999999999'])).toString('base64url');
    const refused = await t.app.inject({ method: 'GET', url: `/activity?cursor=${forged}`, headers: { authorization: `Bearer ${who.token}` } });
    expect(refused.statusCode).toBe(400);

    // Another user's activity stays theirs.
    const other = await t.signIn();
    expect((await activity(other)).items).toEqual([]);
  });
});
