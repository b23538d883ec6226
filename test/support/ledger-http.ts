import { randomUUID } from 'node:crypto';
import type { LightMyRequestResponse } from 'fastify';
import { expect } from 'vitest';
import type { RecordedEvent } from '../../src/core/event-store.js';
import { accountStreamId, type TierName } from '../../src/ledger/index.js';
import type { TestApp } from './app.js';

/** Helpers for the ledger's HTTP tests (credits, admin credits, AI, purchases). */

export interface Caller {
  readonly userId: string;
  readonly token: string;
}

export type Problem = {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  error: string;
  errors?: { path: string; message: string }[];
  [extra: string]: unknown;
};

export const problemOf = (response: LightMyRequestResponse): Problem => {
  expect(String(response.headers['content-type'])).toMatch(/^application\/problem\+json/);
  const body = response.json() as Problem;
  expect(body.status).toBe(response.statusCode);
  expect(body.error).toBe(body.title);
  return body;
};

export const post = (
  t: TestApp,
  url: string,
  caller: Caller | null,
  payload: unknown,
  headers: Record<string, string | undefined> = {},
) =>
  t.app.inject({
    method: 'POST',
    url,
    payload: payload === undefined ? undefined : typeof payload === 'string' ? payload : JSON.stringify(payload),
    headers: {
      ...(payload === undefined ? {} : { 'content-type': 'application/json' }),
      ...(caller ? { authorization: `Bearer ${caller.token}` } : {}),
      ...(Object.fromEntries(Object.entries(headers).filter(([, v]) => v !== undefined)) as Record<string, string>),
    },
  });

/** POST with a fresh Idempotency-Key unless one is given. */
export const command = (t: TestApp, url: string, caller: Caller, payload: unknown, key: string | null = randomUUID(), method: 'POST' | 'PUT' = 'POST') =>
  t.app.inject({
    method,
    url,
    payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
    headers: {
      'content-type': 'application/json',
      authorization: `Bearer ${caller.token}`,
      ...(key === null ? {} : { 'idempotency-key': key }),
    },
  });

export async function streamEvents(t: TestApp, userId: string): Promise<RecordedEvent[]> {
  const events: RecordedEvent[] = [];
  for await (const event of t.eventStore.readStream(accountStreamId(userId))) events.push(event);
  return events;
}

/** Credits for a user, granted through the ledger (not HTTP). */
export async function fund(t: TestApp, userId: string, amount: number, options: { tier?: TierName } = {}): Promise<void> {
  if (options.tier) await t.deps.ledger.execute(userId, { type: 'ChangeTier', tier: options.tier, reason: 'test' });
  if (amount > 0) await t.deps.ledger.execute(userId, { type: 'Grant', lot_id: randomUUID(), kind: 'bonus', amount, reason: 'test' });
}

/** The account's balance replayed from the store by a fresh ledger instance (no cache). */
export async function storedBalance(t: TestApp, userId: string): Promise<{ balance: number; reserved: number }> {
  const { createAccounts } = await import('../../src/core/accounts.js');
  const { state } = await createAccounts({ eventStore: t.eventStore, clock: t.deps.clock }).load(userId);
  return { balance: state.balance, reserved: state.reserved };
}

export const POSITION = /^\d+-\d+$/;
