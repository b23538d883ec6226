import { SignJWT, UnsecuredJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAccessTokens } from '../../src/membership/access-tokens.js';
import { TOKEN_AUDIENCE, TOKEN_ISSUER } from '../../src/services.js';
import { createTestApp, type TestApp, testSecret } from '../support/app.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => {
  await t?.close();
});

const problemOf = (response: { headers: Record<string, unknown>; json: () => unknown }) => {
  expect(String(response.headers['content-type'])).toMatch(/^application\/problem\+json/);
  return response.json() as { code: string; status: number; title: string; error: string; detail: string; type: string; errors?: { path: string; message: string }[] };
};

describe('operations', () => {
  it('GET /healthz answers 200', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/healthz' });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ status: 'ok' });
  });

  it('GET /readyz checks Postgres and the event store', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/readyz' });
    expect(response.statusCode).toBe(200);
    expect(response.json().checks).toMatchObject({ postgres: 'ok', event_store: 'ok' });
  });

  it('echoes a valid x-request-id and mints one otherwise', async () => {
    const echoed = await t.app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'req-123' } });
    expect(echoed.headers['x-request-id']).toBe('req-123');
    const minted = await t.app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'bad id with spaces' } });
    expect(minted.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('serves an OpenAPI document generated from the route schemas, and /docs', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/openapi.json' });
    expect(response.statusCode).toBe(200);
    const document = response.json();
    expect(document.openapi).toMatch(/^3\./);
    expect(Object.keys(document.paths)).toEqual(expect.arrayContaining(['/healthz', '/me']));
    const docs = await t.app.inject({ method: 'GET', url: '/docs' });
    expect([200, 302]).toContain(docs.statusCode);
  });

  it('the OpenAPI document has no dangling $ref, and every operation has a summary', async () => {
    const document = (await t.app.inject({ method: 'GET', url: '/openapi.json' })).json();
    const text = JSON.stringify(document);
    const refs = new Set(text.match(/"\$ref":"[^"]+"/g) ?? []);
    for (const ref of refs) {
      const target = ref.slice('"$ref":"'.length, -1);
      expect(target.startsWith('#/components/schemas/'), target).toBe(true);
      expect(document.components?.schemas?.[target.split('/').pop() as string], target).toBeDefined();
    }
    for (const [path, operations] of Object.entries(document.paths as Record<string, Record<string, { summary?: string }>>)) {
      for (const [method, operation] of Object.entries(operations)) expect(operation.summary, `${method} ${path}`).toBeTruthy();
    }
  });

  it('answers unknown routes with a 404 problem', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/nope' });
    expect(response.statusCode).toBe(404);
    expect(problemOf(response)).toMatchObject({ code: 'not_found', status: 404, error: 'Not found', title: 'Not found' });
  });

  it('exposes Prometheus metrics', async () => {
    await t.app.inject({ method: 'GET', url: '/healthz' });
    const response = await t.app.inject({ method: 'GET', url: '/metrics' });
    expect(response.statusCode).toBe(200);
    expect(response.body).toContain('http_request_duration_seconds');
  });
});

describe('GET /me and the authenticate hook', () => {
  it('accepts a valid token', async () => {
    const { token, userId } = await t.signIn({ email: 'me@example.com' });
    const response = await t.app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${token}` } });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ id: userId, email: 'me@example.com', tier: 'free', role: 'user', tier_expires_at: null });
  });

  it('no token → 401 missing_token', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/me' });
    expect(response.statusCode).toBe(401);
    expect(problemOf(response).code).toBe('missing_token');
  });

  it('a token signed with another secret → 401 invalid_token', async () => {
    const { userId, sessionId } = await t.signIn();
    const other = createAccessTokens({ secrets: [testSecret()], issuer: TOKEN_ISSUER, audience: TOKEN_AUDIENCE, ttlSeconds: 60, clock: t.deps.clock });
    const token = await other.sign({ userId, email: 'x@example.com', tier: 'free', role: 'admin', sessionId });
    const response = await t.app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${token}` } });
    expect(response.statusCode).toBe(401);
    expect(problemOf(response).code).toBe('invalid_token');
  });

  it('alg: none → 401 invalid_token', async () => {
    const { userId, sessionId } = await t.signIn();
    const token = new UnsecuredJWT({ email: 'x@example.com', tier: 'free', role: 'admin', sid: sessionId, type: 'access' })
      .setIssuer(TOKEN_ISSUER)
      .setAudience(TOKEN_AUDIENCE)
      .setSubject(userId)
      .setJti('j')
      .setIssuedAt()
      .setExpirationTime('10m')
      .encode();
    const response = await t.app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${token}` } });
    expect(response.statusCode).toBe(401);
    expect(problemOf(response).code).toBe('invalid_token');
  });

  it('an expired token → 401 token_expired', async () => {
    const { userId, sessionId } = await t.signIn();
    const key = new TextEncoder().encode(t.secrets.access);
    const { keyIdOf } = await import('../../src/membership/access-tokens.js');
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({ email: 'x@example.com', tier: 'free', role: 'user', sid: sessionId, type: 'access' })
      .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: keyIdOf(t.secrets.access) })
      .setIssuer(TOKEN_ISSUER)
      .setAudience(TOKEN_AUDIENCE)
      .setSubject(userId)
      .setJti('j')
      .setIssuedAt(now - 7200)
      .setExpirationTime(now - 3600)
      .sign(key);
    const response = await t.app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${token}` } });
    expect(response.statusCode).toBe(401);
    expect(problemOf(response).code).toBe('token_expired');
  });

  it('wrong issuer, wrong audience or a plain JWT typ → 401 invalid_token', async () => {
    const { userId, sessionId } = await t.signIn();
    const key = new TextEncoder().encode(t.secrets.access);
    const { keyIdOf } = await import('../../src/membership/access-tokens.js');
    const variants = [
      { iss: 'someone-else', aud: TOKEN_AUDIENCE, typ: 'at+jwt' },
      { iss: TOKEN_ISSUER, aud: 'another-api', typ: 'at+jwt' },
      { iss: TOKEN_ISSUER, aud: TOKEN_AUDIENCE, typ: 'JWT' },
    ];
    for (const variant of variants) {
      const token = await new SignJWT({ email: 'x@example.com', tier: 'free', role: 'user', sid: sessionId, type: 'access' })
        .setProtectedHeader({ alg: 'HS256', typ: variant.typ, kid: keyIdOf(t.secrets.access) })
        .setIssuer(variant.iss)
        .setAudience(variant.aud)
        .setSubject(userId)
        .setJti('j')
        .setIssuedAt()
        .setExpirationTime('10m')
        .sign(key);
      const response = await t.app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${token}` } });
      expect(response.statusCode, JSON.stringify(variant)).toBe(401);
      expect(problemOf(response).code).toBe('invalid_token');
    }
  });

  it('garbage after Bearer → 401 invalid_token', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/me', headers: { authorization: 'Bearer not.a.jwt' } });
    expect(response.statusCode).toBe(401);
    expect(problemOf(response).code).toBe('invalid_token');
  });

  it('a deactivated user is refused from the next request on → 401 user_inactive', async () => {
    const { token, userId } = await t.signIn();
    await t.deps.users.setActive(userId, false);
    const response = await t.app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${token}` } });
    expect(response.statusCode).toBe(401);
    expect(problemOf(response).code).toBe('user_inactive');
  });
});
