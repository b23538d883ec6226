/**
 * Keyset pages of the read models (API §1 lists) stay exact while the account keeps changing: walking
 * `next_cursor` while new rows arrive between pages yields exactly the rows that existed when the walk
 * began, newest first, no duplicates, no gaps — with and without a type/action filter, and across the
 * entries of one launcher log batch (rows that share an event position).
 */
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../support/app.js';
import { type Caller, command, fund, post } from '../support/ledger-http.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => {
  await t?.close();
});

const get = (who: Caller, url: string) => t.app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${who.token}` } });

async function list(who: Caller, url: string): Promise<{ items: { id: string; type?: string; action?: string }[]; next_cursor: string | null }> {
  const response = await get(who, url);
  expect(response.statusCode, response.body).toBe(200);
  return response.json();
}

/** Walks every page of `base` (with `limit`), calling `between` after each page; returns the ids seen. */
async function walk(who: Caller, base: string, limit: number, between: (page: number) => Promise<void>): Promise<string[]> {
  const seen: string[] = [];
  let cursor: string | null = null;
  let page = 0;
  do {
    const sep = base.includes('?') ? '&' : '?';
    const body = await list(who, `${base}${sep}limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`);
    expect(body.items.length).toBeLessThanOrEqual(limit);
    seen.push(...body.items.map((i) => i.id));
    cursor = body.next_cursor;
    await between(page++);
  } while (cursor);
  return seen;
}

/** A spend, read back (min_position) so its rows are in the read models before the next page. */
const spend = async (who: Caller, amount: number): Promise<string> => {
  const response = await command(t, '/credits/spend', who, { amount, description: 'page test' });
  expect(response.statusCode, response.body).toBe(201);
  const position: string = response.json().position;
  expect((await get(who, `/activity?limit=1&min_position=${position}`)).statusCode).toBe(200);
  expect((await get(who, `/credits?min_position=${position}`)).statusCode).toBe(200);
  return position;
};

it('GET /credits/transactions: pages walked while spends and grants arrive are exactly the rows at the start (any limit, any filter)', async () => {
  const who = await t.signIn();
  await fund(t, who.userId, 10_000, { tier: 'enterprise' });
  let last = '';
  for (let i = 0; i < 12; i++) last = await spend(who, 1 + i);
  await fund(t, who.userId, 50);
  last = await spend(who, 3);

  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 1, max: 6 }), fc.constantFrom(undefined, 'use', 'bonus', 'refund'), async (limit, type) => {
      const base = `/credits/transactions?min_position=${last}${type ? `&type=${type}` : ''}`;
      const before = (await list(who, `${base}&limit=200`)).items;
      const seen = await walk(who, base, limit, async () => {
        last = await spend(who, 1);
      });
      expect(seen).toEqual(before.map((i) => i.id));
      if (type) expect(before.every((i) => i.type === type)).toBe(true);
    }),
    { numRuns: 8 },
  );
});

it('GET /activity: pages cut through one 500-entry log batch and stay exact while more activity arrives', async () => {
  const who = await t.signIn();
  await fund(t, who.userId, 1_000);
  const logs = Array.from({ length: 500 }, (_, i) => ({ action: i % 3 === 0 ? 'tick' : 'tock', metadata: { i } }));
  const accepted = await post(t, '/logs/batch', who, { logs });
  expect(accepted.statusCode, accepted.body).toBe(202);
  let last = await spend(who, 2);

  for (const [action, limit] of [[undefined, 37], ['tick', 23], ['tock', 200], ['credits_spent', 1]] as const) {
    const base = `/activity?min_position=${last}${action ? `&action=${action}` : ''}`;
    const before: { id: string; action?: string }[] = [];
    for (let cursor: string | null = null, first = true; first || cursor; first = false) {
      const page = await list(who, `${base}&limit=200${cursor ? `&cursor=${cursor}` : ''}`);
      before.push(...page.items);
      cursor = page.next_cursor;
    }
    const seen = await walk(who, base, limit, async (page) => {
      if (page % 4 === 0) {
        last = await spend(who, 1);
        const more = await post(t, '/logs/batch', who, { logs: [{ action: 'tick' }, { action: 'tock' }] });
        expect(more.statusCode).toBe(202);
      }
    });
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toEqual(before.map((i) => i.id));
    if (action) expect(before.every((i) => i.action === action)).toBe(true);
  }
});
