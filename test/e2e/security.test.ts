import { randomUUID } from 'node:crypto';
import { SignJWT, UnsecuredJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accountStreamId } from '../../src/ledger/events.js';
import { createAccessTokens, keyIdOf } from '../../src/membership/access-tokens.js';
import { TOKEN_AUDIENCE, TOKEN_ISSUER } from '../../src/services.js';
import { createTestApp, type TestApp, testSecret } from '../support/app.js';
import { type FakeGoogle, startFakeGoogle, TEST_CLIENT_ID } from '../support/google.js';

/**
 * The security checklist of issue 6: each case asserts status and problem code.
 */

const ALLOWED_ORIGIN = 'https://app.example.com';

let google: FakeGoogle;
let t: TestApp;
beforeAll(async () => {
  google = await startFakeGoogle();
  t = await createTestApp({
    env: { CORS_ORIGINS: ALLOWED_ORIGIN },
    config: { googleClientIds: [TEST_CLIENT_ID], googleCertsUrl: google.certsUrl, authRateLimitPerMinute: 100_000 },
  });
});
afterAll(async () => {
  await t?.close();
  await google?.close();
});

const expectProblem = (response: { statusCode: number; headers: Record<string, unknown>; json: () => unknown }, status: number, code: string) => {
  expect(response.statusCode).toBe(status);
  expect(String(response.headers['content-type'])).toMatch(/^application\/problem\+json/);
  expect((response.json() as { code: string }).code).toBe(code);
};

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

const signIn = async () => {
  const response = await t.app.inject({ method: 'POST', url: '/auth/google', payload: { credential: await google.idToken() } });
  expect(response.statusCode).toBe(200);
  return response.json() as { access_token: string; refresh_token: string; user: { id: string } };
};

const refresh = (refreshToken: string) => t.app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: refreshToken } });
const listFlows = (token: string) => t.app.inject({ method: 'GET', url: '/flows', headers: bearer(token) });

/** A token like ours, with parts overridden. */
const craft = async (
  claims: { sub: string; sid: string },
  options: { secret?: string; iss?: string; aud?: string; iat?: number; exp?: number; typ?: string } = {},
) => {
  const secret = options.secret ?? t.secrets.access;
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ email: 'x@example.com', tier: 'enterprise', role: 'admin', sid: claims.sid, type: 'access' })
    .setProtectedHeader({ alg: 'HS256', typ: options.typ ?? 'at+jwt', kid: keyIdOf(secret) })
    .setIssuer(options.iss ?? TOKEN_ISSUER)
    .setAudience(options.aud ?? TOKEN_AUDIENCE)
    .setSubject(claims.sub)
    .setJti(randomUUID())
    .setIssuedAt(options.iat ?? now)
    .setExpirationTime(options.exp ?? now + 600)
    .sign(new TextEncoder().encode(secret));
};

describe('access tokens', () => {
  it('alg: none → 401 invalid_token', async () => {
    const { userId, sessionId } = await t.signIn();
    const token = new UnsecuredJWT({ email: 'x@example.com', tier: 'enterprise', role: 'admin', sid: sessionId, type: 'access' })
      .setIssuer(TOKEN_ISSUER)
      .setAudience(TOKEN_AUDIENCE)
      .setSubject(userId)
      .setJti(randomUUID())
      .setIssuedAt()
      .setExpirationTime('10m')
      .encode();
    expectProblem(await listFlows(token), 401, 'invalid_token');
  });

  it('signed with another secret → 401 invalid_token (also when it claims our kid)', async () => {
    const { userId, sessionId } = await t.signIn();
    const other = createAccessTokens({ secrets: [testSecret()], issuer: TOKEN_ISSUER, audience: TOKEN_AUDIENCE, ttlSeconds: 600, clock: t.deps.clock });
    expectProblem(await listFlows(await other.sign({ userId, email: 'x@example.com', tier: 'pro', role: 'admin', sessionId })), 401, 'invalid_token');
    const forgedKid = await new SignJWT({ email: 'x@example.com', tier: 'pro', role: 'admin', sid: sessionId, type: 'access' })
      .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: keyIdOf(t.secrets.access) })
      .setIssuer(TOKEN_ISSUER)
      .setAudience(TOKEN_AUDIENCE)
      .setSubject(userId)
      .setJti(randomUUID())
      .setIssuedAt()
      .setExpirationTime('10m')
      .sign(new TextEncoder().encode(testSecret()));
    expectProblem(await listFlows(forgedKid), 401, 'invalid_token');
  });

  it('expired → 401 token_expired with a WWW-Authenticate challenge', async () => {
    const { userId, sessionId } = await t.signIn();
    const now = Math.floor(Date.now() / 1000);
    const response = await listFlows(await craft({ sub: userId, sid: sessionId }, { iat: now - 7200, exp: now - 60 }));
    expectProblem(response, 401, 'token_expired');
    expect(response.headers['www-authenticate']).toContain('invalid_token');
  });

  it.each([
    ['a wrong issuer', { iss: 'https://evil.example' }],
    ['a wrong audience', { aud: 'another-api' }],
    ['a plain JWT typ', { typ: 'JWT' }],
  ])('%s → 401 invalid_token', async (_label, options) => {
    const { userId, sessionId } = await t.signIn();
    expectProblem(await listFlows(await craft({ sub: userId, sid: sessionId }, options)), 401, 'invalid_token');
  });

  it('a refresh token used as a bearer token → 401 invalid_token', async () => {
    const { refresh_token } = await signIn();
    expectProblem(await listFlows(refresh_token), 401, 'invalid_token');
  });
});

describe('refresh tokens and sessions', () => {
  it('an access token posted to /auth/refresh → 401 invalid_refresh_token', async () => {
    const { access_token } = await signIn();
    expectProblem(await refresh(access_token), 401, 'invalid_refresh_token');
  });

  it('a reused refresh token → 401 refresh_token_reused, and the session’s other tokens die with it', async () => {
    const first = await signIn();
    const rotated = (await refresh(first.refresh_token)).json();
    const again = (await refresh(rotated.refresh_token)).json();
    expectProblem(await refresh(first.refresh_token), 401, 'refresh_token_reused');
    expectProblem(await refresh(again.refresh_token), 401, 'invalid_refresh_token');
    expectProblem(await listFlows(again.access_token), 401, 'invalid_token');
    expectProblem(await listFlows(first.access_token), 401, 'invalid_token');
  });

  it('a revoked session’s access token stops working on the next request', async () => {
    const session = await signIn();
    expect((await listFlows(session.access_token)).statusCode).toBe(200);
    const sessions = await t.app.inject({ method: 'GET', url: '/auth/sessions', headers: bearer(session.access_token) });
    const current = sessions.json().items.find((item: { current: boolean }) => item.current);
    const revoke = await t.app.inject({ method: 'DELETE', url: `/auth/sessions/${current.id}`, headers: bearer(session.access_token) });
    expect(revoke.statusCode).toBe(204);
    expectProblem(await listFlows(session.access_token), 401, 'invalid_token');
    expectProblem(await refresh(session.refresh_token), 401, 'invalid_refresh_token');
  });
});

describe('authorization', () => {
  it('a user reading or changing another user’s flow → 404 not_found', async () => {
    const owner = await t.signIn();
    const intruder = await t.signIn();
    const created = await t.app.inject({ method: 'POST', url: '/flows', headers: bearer(owner.token), payload: { name: 'mine', definition: { a: 1 } } });
    const id = created.json().id as string;
    expectProblem(await t.app.inject({ method: 'GET', url: `/flows/${id}`, headers: bearer(intruder.token) }), 404, 'not_found');
    expectProblem(
      await t.app.inject({ method: 'PUT', url: `/flows/${id}`, headers: bearer(intruder.token), payload: { name: 'yours', definition: {} } }),
      404,
      'not_found',
    );
    expectProblem(await t.app.inject({ method: 'DELETE', url: `/flows/${id}`, headers: bearer(intruder.token) }), 404, 'not_found');
    expect((await t.app.inject({ method: 'GET', url: `/flows/${id}`, headers: bearer(owner.token) })).json()).toMatchObject({ name: 'mine' });
  });

  it('a user (or auditor) calling an admin route → 403 forbidden, whatever the token claims', async () => {
    const victim = await t.signIn();
    for (const role of ['user', 'auditor'] as const) {
      const caller = await t.signIn({ role });
      const response = await t.app.inject({
        method: 'PUT',
        url: `/admin/users/${victim.userId}/active`,
        headers: bearer(caller.token),
        payload: { active: false, reason: 'nope' },
      });
      expectProblem(response, 403, 'forbidden');
    }
    // The token says admin; the database says user.
    const caller = await t.signIn();
    const forged = await craft({ sub: caller.userId, sid: caller.sessionId });
    const response = await t.app.inject({
      method: 'PUT',
      url: `/admin/users/${victim.userId}/active`,
      headers: bearer(forged),
      payload: { active: false, reason: 'nope' },
    });
    expectProblem(response, 403, 'forbidden');
    expect((await t.deps.users.findById(victim.userId))?.is_active).toBe(true);
  });

  it('a free user calling a pro route → 403 upgrade_required', async () => {
    const { token } = await t.signIn();
    const response = await t.app.inject({ method: 'POST', url: '/components/ai-generate', headers: bearer(token), payload: { prompt: 'x' } });
    expectProblem(response, 403, 'upgrade_required');
    expect(response.json()).toMatchObject({
      detail: "Upgrade required. Current: free, Required: ['pro', 'enterprise']",
      current_tier: 'free',
      required_tiers: ['pro', 'enterprise'],
    });
  });
});

describe('PUT /admin/users/:id/active', () => {
  it('deactivation refuses the user from the next request on (user_inactive), revokes refresh; reactivation needs a new sign-in', async () => {
    const admin = await t.signIn({ role: 'admin' });
    const user = await signIn();
    const set = (active: boolean) =>
      t.app.inject({
        method: 'PUT',
        url: `/admin/users/${user.user.id}/active`,
        headers: bearer(admin.token),
        payload: { active, reason: 'abuse report #12' },
      });

    const off = await set(false);
    expect(off.statusCode).toBe(200);
    expect(off.json()).toEqual({ id: user.user.id, is_active: false });
    expectProblem(await listFlows(user.access_token), 401, 'user_inactive');
    expectProblem(await refresh(user.refresh_token), 401, 'user_inactive');
    expectProblem(await t.app.inject({ method: 'GET', url: '/me', headers: bearer(user.access_token) }), 401, 'user_inactive');

    const on = await set(true);
    expect(on.json()).toEqual({ id: user.user.id, is_active: true });
    expectProblem(await listFlows(user.access_token), 401, 'invalid_token');
    expectProblem(await refresh(user.refresh_token), 401, 'invalid_refresh_token');

    const activity = [];
    for await (const event of t.eventStore.readStream(`activity-${user.user.id}`)) activity.push(event);
    expect(activity.map((event) => event.type)).toEqual(['UserSignedUp', 'UserDeactivated', 'UserReactivated']);
    expect(activity[1]?.data).toMatchObject({ actor_id: admin.userId, reason: 'abuse report #12' });
  });

  it('404 for an unknown user, 400 for a bad body, 403 for deactivating oneself', async () => {
    const admin = await t.signIn({ role: 'admin' });
    expectProblem(
      await t.app.inject({ method: 'PUT', url: `/admin/users/${randomUUID()}/active`, headers: bearer(admin.token), payload: { active: false, reason: 'x' } }),
      404,
      'not_found',
    );
    for (const payload of [{ active: 'false', reason: 'x' }, { active: false }, { active: false, reason: 'x', extra: 1 }]) {
      expectProblem(await t.app.inject({ method: 'PUT', url: `/admin/users/${admin.userId}/active`, headers: bearer(admin.token), payload }), 400, 'validation_failed');
    }
    expectProblem(
      await t.app.inject({ method: 'PUT', url: `/admin/users/${admin.userId}/active`, headers: bearer(admin.token), payload: { active: false, reason: 'x' } }),
      403,
      'forbidden',
    );
  });
});

describe('rate limiting and CORS', () => {
  let limited: TestApp;
  beforeAll(async () => {
    limited = await createTestApp({ env: { CORS_ORIGINS: ALLOWED_ORIGIN }, config: { googleClientIds: [TEST_CLIENT_ID], googleCertsUrl: google.certsUrl } });
  });
  afterAll(async () => {
    await limited?.close();
  });

  const attempt = (ip: string, headers: Record<string, string> = {}) =>
    limited.app.inject({ method: 'POST', url: '/auth/google', remoteAddress: ip, headers, payload: { credential: 'not-a-token' } });

  it('21 sign-in attempts in a minute from one IP: the 21st → 429 rate_limited with Retry-After', async () => {
    for (let i = 1; i <= 20; i += 1) expectProblem(await attempt('203.0.113.7'), 401, 'invalid_google_token');
    const response = await attempt('203.0.113.7');
    expectProblem(response, 429, 'rate_limited');
    const retryAfter = Number(response.headers['retry-after']);
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(60);
    // The budget covers every /auth route, and a spoofed X-Forwarded-For does not reset it.
    expectProblem(
      await limited.app.inject({ method: 'POST', url: '/auth/refresh', remoteAddress: '203.0.113.7', payload: { refresh_token: 'x' } }),
      429,
      'rate_limited',
    );
    expectProblem(await attempt('203.0.113.7', { 'x-forwarded-for': '198.51.100.1' }), 429, 'rate_limited');
    // Another address is unaffected, and so are routes outside /auth.
    expectProblem(await attempt('203.0.113.8'), 401, 'invalid_google_token');
    for (let i = 0; i < 25; i += 1) {
      expect((await limited.app.inject({ method: 'GET', url: '/healthz', remoteAddress: '203.0.113.7' })).statusCode).toBe(200);
    }
  });

  it('CORS preflight: a non-allowed origin gets no allow-origin header; the allowed one is echoed', async () => {
    const preflight = (origin: string) =>
      limited.app.inject({
        method: 'OPTIONS',
        url: '/flows',
        headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' },
      });
    const evil = await preflight('https://evil.example');
    expect(evil.headers['access-control-allow-origin']).toBeUndefined();
    const good = await preflight(ALLOWED_ORIGIN);
    expect(good.statusCode).toBeLessThan(300);
    expect(good.headers['access-control-allow-origin']).toBe(ALLOWED_ORIGIN);
    const simple = await limited.app.inject({ method: 'GET', url: '/healthz', headers: { origin: 'https://evil.example' } });
    expect(simple.headers['access-control-allow-origin']).toBeUndefined();
  });
});

describe('tier from the ledger', () => {
  it('an upgrade recorded on the account stream opens the pro route for the same access token', async () => {
    const { token, userId } = await t.signIn();
    const route = () => t.app.inject({ method: 'POST', url: '/components/ai-generate', headers: bearer(token), payload: { prompt: 'x' } });
    expectProblem(await route(), 403, 'upgrade_required');
    await t.eventStore.appendToStream(
      accountStreamId(userId),
      [{ id: randomUUID(), type: 'TierChanged', data: { at: new Date().toISOString(), tier: 'pro', previous_tier: 'free', expires_at: null, reason: 'upgrade', actor_id: null } }],
      { expectedRevision: 'any' },
    );
    // Past the gate now; the charged generation is the ledger's part (503 until it is wired).
    expect((await route()).statusCode).not.toBe(403);
  });
});
