import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ApiError } from '../../src/http/problem.js';
import { credits, limitParam } from '../../src/http/schemas.js';
import { createTestApp, type TestApp } from '../support/app.js';

/**
 * The input policy of API §1, on a probe route registered through the real app (same plugins,
 * same validator, same error handler as every real route).
 */
let t: TestApp;
const received: unknown[] = [];

beforeAll(async () => {
  t = await createTestApp({
    beforeReady: (app: FastifyInstance) => {
      app.withTypeProvider<ZodTypeProvider>().post(
        '/__probe',
        {
          schema: {
            body: z.strictObject({ amount: credits, note: z.string().max(20).optional() }),
            querystring: z.strictObject({ limit: limitParam }),
          },
        },
        async (request) => {
          received.push(request.body);
          return { ok: true, amount: request.body.amount, limit: request.query.limit };
        },
      );
      app.get('/__boom', async () => {
        throw new Error('relation "secret_table" does not exist');
      });
      app.get('/__down', async () => {
        throw new ApiError('unavailable', 'The ledger is down for maintenance.', {}, { 'retry-after': '30' });
      });
    },
  });
});
afterAll(async () => {
  await t?.close();
});

const post = (payload: string, url = '/__probe', contentType = 'application/json') =>
  t.app.inject({ method: 'POST', url, payload, headers: { 'content-type': contentType } });

describe('strict input (API §1)', () => {
  it('accepts a valid body and applies query defaults', async () => {
    const response = await post('{"amount":5}');
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ ok: true, amount: 5, limit: 50 });
  });

  it.each([
    ['a string for a number', '{"amount":"100"}'],
    ['true for 1', '{"amount":true}'],
    ['1e300', '{"amount":1e300}'],
    ['an unsafe integer', '{"amount":9007199254740993}'],
    ['a fraction', '{"amount":1.5}'],
    ['zero', '{"amount":0}'],
    ['a negative number', '{"amount":-5}'],
    ['an absurd amount', '{"amount":1000000001}'],
    ['an unknown property', '{"amount":5,"user_id":"someone-else"}'],
    ['a missing property', '{}'],
    ['null', 'null'],
    ['an array', '[1]'],
  ])('rejects %s with 400 validation_failed listing the field', async (_label, payload) => {
    const before = received.length;
    const response = await post(payload);
    expect(response.statusCode).toBe(400);
    const body = response.json();
    expect(body.code).toBe('validation_failed');
    expect(Array.isArray(body.errors)).toBe(true);
    expect(body.errors.length).toBeGreaterThan(0);
    expect(received.length).toBe(before);
  });

  it('names each bad field', async () => {
    const response = await post('{"amount":"1","note":7}');
    expect(response.statusCode).toBe(400);
    const paths = response.json().errors.map((error: { path: string }) => error.path).sort();
    expect(paths).toEqual(['amount', 'note']);
  });

  it('malformed JSON → 400 validation_failed, never 500', async () => {
    const response = await post('{"amount": 5');
    expect(response.statusCode).toBe(400);
    expect(response.json().code).toBe('validation_failed');
  });

  it.each([
    ['a quote', String.raw`{"amount":5,"meta":{"a\"b":1}}`],
    ['a newline', String.raw`{"amount":5,"meta":{"\n":1}}`],
    ['a backslash', String.raw`{"amount":5,"meta":{"\\":1}}`],
    ['a unicode escape of a plain letter', String.raw`{"\u0061mount":5}`],
  ])('an object key written with an escape (%s) → 400 validation_failed before parsing (V8 may decode it wrongly)', async (_label, payload) => {
    const before = received.length;
    const response = await post(payload);
    expect(response.statusCode).toBe(400);
    expect(response.json().code).toBe('validation_failed');
    expect(response.json().errors[0].path).toBe('body');
    expect(received.length).toBe(before);
  });

  it('escapes inside string values are fine', async () => {
    const response = await post(String.raw`{"amount":5,"note":"a\"b\\c\n:"}`);
    expect(response.statusCode).toBe(200);
  });

  it('__proto__ pollution attempts are refused', async () => {
    const response = await post('{"amount":5,"__proto__":{"admin":true}}');
    expect(response.statusCode).toBe(400);
  });

  it.each([['abc'], ['0'], ['201'], ['1.5'], ['-1']])('query limit=%s → 400', async (limit) => {
    const response = await post('{"amount":5}', `/__probe?limit=${limit}`);
    expect(response.statusCode).toBe(400);
    expect(response.json().code).toBe('validation_failed');
    expect(response.json().errors[0].path).toBe('querystring.limit');
  });

  it('an unknown query parameter → 400', async () => {
    const response = await post('{"amount":5}', '/__probe?sort=amount;DROP TABLE x');
    expect(response.statusCode).toBe(400);
  });

  it('a body over the limit → 413 payload_too_large', async () => {
    const response = await post(JSON.stringify({ amount: 5, note: 'x'.repeat(100_000) }));
    expect(response.statusCode).toBe(413);
    expect(response.json().code).toBe('payload_too_large');
  });

  it('a non-JSON content type → 415', async () => {
    const response = await post('<amount>5</amount>', '/__probe', 'text/xml');
    expect(response.statusCode).toBe(415);
    expect(response.headers['content-type']).toMatch(/problem\+json/);
  });

  it('a 5xx never leaks internals; its detail names the request id', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/__boom', headers: { 'x-request-id': 'trace-me' } });
    expect(response.statusCode).toBe(500);
    const body = response.json();
    expect(body.code).toBe('internal_error');
    expect(body.detail).toContain('trace-me');
    expect(response.body).not.toContain('secret_table');
  });

  it('the app refuses to register a route whose body schema is not strict', async () => {
    const { buildApp } = await import('../../src/app.js');
    const app = await buildApp(t.deps);
    expect(() =>
      app.withTypeProvider<ZodTypeProvider>().post('/loose', { schema: { body: z.object({ amount: credits }) } }, async () => ({})),
    ).toThrow(/strictObject/);
    await app.close();
  });
});

describe('URLs the router cannot take (API §1: problem+json errors, x-request-id on every response)', () => {
  it.each([
    ['a malformed percent-escape', '/credits/reservations/%E0%A4%A/release'],
    ['a path parameter longer than the router allows', `/flows/${'a'.repeat(200)}`],
  ])('%s → 400 validation_failed as problem+json, with the request id', async (_label, url) => {
    const response = await t.app.inject({ method: 'GET', url, headers: { 'x-request-id': 'bad-url-1' } });
    expect(response.statusCode).toBe(400);
    expect(String(response.headers['content-type'])).toMatch(/^application\/problem\+json/);
    expect(response.headers['x-request-id']).toBe('bad-url-1');
    const body = response.json();
    expect(body).toMatchObject({ status: 400, code: 'validation_failed', title: 'Validation failed', error: 'Validation failed' });
    expect(body.errors).toEqual([{ path: 'url', message: expect.any(String) }]);
    expect(response.body).not.toContain('FST_ERR');
  });
});

describe('every 5xx names the request id in its detail (API §1)', () => {
  it.each([
    ['a 503 thrown by a route', { method: 'GET', url: '/__down' }],
    ['503 projection_lagging', { method: 'GET', url: '/credits?min_position=18446744073709551615-1', auth: true }],
    ['503 unavailable from sign-in (Google not configured)', { method: 'POST', url: '/auth/google', payload: { credential: 'x' } }],
  ] as const)('%s', async (_label, request) => {
    const headers: Record<string, string> = { 'x-request-id': 'five-hundred-1' };
    if ('auth' in request) headers.authorization = `Bearer ${(await t.signIn()).token}`;
    const response = await t.app.inject({ method: request.method, url: request.url, headers, ...('payload' in request ? { payload: request.payload } : {}) });
    expect(response.statusCode).toBeGreaterThanOrEqual(500);
    const body = response.json();
    expect(body.detail).toContain('five-hundred-1');
    expect(body.status).toBe(response.statusCode);
  });

  it('keeps the detail it was given, and names the id once', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/__down', headers: { 'x-request-id': 'down-2' } });
    expect(response.json().detail).toBe('The ledger is down for maintenance. Request id: down-2.');
    expect(response.headers['retry-after']).toBe('30');
    const boom = await t.app.inject({ method: 'GET', url: '/__boom', headers: { 'x-request-id': 'boom-2' } });
    expect(boom.json().detail.match(/boom-2/g)).toHaveLength(1);
  });
});

describe('text that cannot be stored (U+0000) in a query string: 400, never 500', () => {
  it.each(['/activity?action=%00', '/activity?action=a%00b', '/admin/users?email=x%00', '/credits/transactions?type=%00'])('%s', async (url) => {
    const admin = await t.signIn({ role: 'admin' });
    const response = await t.app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${admin.token}` } });
    expect(response.statusCode, response.body).toBe(400);
    expect(response.json().code).toBe('validation_failed');
  });

  it('an encoded percent sign is ordinary text', async () => {
    const admin = await t.signIn({ role: 'admin' });
    const response = await t.app.inject({ method: 'GET', url: '/activity?action=%2500', headers: { authorization: `Bearer ${admin.token}` } });
    expect(response.statusCode, response.body).toBe(200);
  });
});
