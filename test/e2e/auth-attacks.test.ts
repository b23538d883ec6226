import { generateKeyPair, SignJWT } from 'jose';
import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { sql } from '../../src/adapters/postgres/pool.js';
import { usersActivateCommand } from '../../src/cli/commands/identity.js';
import type { CliContext } from '../../src/cli/context.js';
import { ManualClock } from '../../src/core/clock.js';
import { keyIdOf } from '../../src/membership/access-tokens.js';
import { hashRefreshToken, REFRESH_REUSE_GRACE_MS } from '../../src/membership/auth-sessions.js';
import { TOKEN_AUDIENCE, TOKEN_ISSUER } from '../../src/services.js';
import { createTestApp, type TestApp } from '../support/app.js';
import { type FakeGoogle, googleUser, startFakeGoogle, TEST_CLIENT_ID, TEST_DESKTOP_CLIENT_ID } from '../support/google.js';

/**
 * Attacks on the identity and access layer beyond the checklist of security.test.ts and auth.test.ts:
 * algorithm confusion, Google tokens at the edges of their validity, role escalation at sign-in,
 * deactivation against remembered tokens, refresh races and the grace window's limits, proxy headers
 * against the rate limit, CORS credentials.
 */

const ADMIN_EMAIL = 'kate.admin@example.com';
const SECOND_ADMIN_EMAIL = 'second.admin@example.com';
const ALLOWED_ORIGIN = 'https://app.example.com';

let google: FakeGoogle;
let t: TestApp;

const googleConfig = () => ({
  googleClientIds: [TEST_CLIENT_ID, TEST_DESKTOP_CLIENT_ID],
  googleCertsUrl: google.certsUrl,
  adminEmails: [ADMIN_EMAIL, SECOND_ADMIN_EMAIL],
  authRateLimitPerMinute: 100_000,
});

beforeAll(async () => {
  google = await startFakeGoogle();
  t = await createTestApp({ env: { CORS_ORIGINS: ALLOWED_ORIGIN }, config: googleConfig() });
});
afterAll(async () => {
  await t?.close();
  await google?.close();
});

type Response = { statusCode: number; headers: Record<string, unknown>; body: string; json: () => unknown };

const expectProblem = (response: Response, status: number, code: string) => {
  expect(response.statusCode, response.body).toBe(status);
  expect(String(response.headers['content-type'])).toMatch(/^application\/problem\+json/);
  expect((response.json() as { code: string }).code).toBe(code);
};

type SignIn = { access_token: string; refresh_token: string; user: { id: string; email: string } };

const signInWith = (app: TestApp, credential: string) => app.app.inject({ method: 'POST', url: '/auth/google', payload: { credential } });

const googleSignIn = async (app: TestApp = t, claims: Record<string, unknown> = googleUser()) => {
  const response = await signInWith(app, await google.idToken({ claims }));
  expect(response.statusCode, response.body).toBe(200);
  return response.json() as SignIn;
};

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const me = (app: TestApp, token: string) => app.app.inject({ method: 'GET', url: '/me', headers: bearer(token) });
const refresh = (app: TestApp, token: string) => app.app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: token } });

/** Our access token's claims, signed however the attacker likes. */
const claimsOf = (userId: string, sessionId: string) =>
  new SignJWT({ email: 'x@example.com', tier: 'enterprise', role: 'admin', sid: sessionId, type: 'access' })
    .setIssuer(TOKEN_ISSUER)
    .setAudience(TOKEN_AUDIENCE)
    .setSubject(userId)
    .setJti(randomUUID())
    .setIssuedAt()
    .setExpirationTime('10m');

describe('access tokens: algorithm and header confusion', () => {
  it.each(['HS384', 'HS512'] as const)('%s with our secret and our kid → 401 invalid_token', async (alg) => {
    const { userId, sessionId } = await t.signIn();
    const token = await claimsOf(userId, sessionId)
      .setProtectedHeader({ alg, typ: 'at+jwt', kid: keyIdOf(t.secrets.access) })
      .sign(new TextEncoder().encode(t.secrets.access));
    expectProblem(await me(t, token), 401, 'invalid_token');
  });

  it.each(['RS256', 'ES256', 'PS256', 'EdDSA'] as const)('an asymmetric %s token claiming our kid → 401 invalid_token', async (alg) => {
    const { userId, sessionId } = await t.signIn();
    const { privateKey } = await generateKeyPair(alg);
    const token = await claimsOf(userId, sessionId).setProtectedHeader({ alg, typ: 'at+jwt', kid: keyIdOf(t.secrets.access) }).sign(privateKey);
    expectProblem(await me(t, token), 401, 'invalid_token');
  });

  it.each([
    ['no typ', { alg: 'HS256' as const, kid: 'ours' }],
    ['no kid', { alg: 'HS256' as const, typ: 'at+jwt' }],
    ['a kid naming an Object prototype property', { alg: 'HS256' as const, typ: 'at+jwt', kid: '__proto__' }],
    ['a kid naming constructor', { alg: 'HS256' as const, typ: 'at+jwt', kid: 'constructor' }],
    ['an unknown critical header', { alg: 'HS256' as const, typ: 'at+jwt', kid: 'ours', crit: ['x-evil'], 'x-evil': true }],
    ['an unencoded payload (b64: false)', { alg: 'HS256' as const, typ: 'at+jwt', kid: 'ours', crit: ['b64'], b64: false }],
  ])('%s, validly signed with our secret → 401 invalid_token', async (_label, header) => {
    const { userId, sessionId } = await t.signIn();
    const protectedHeader = { ...header, ...('kid' in header && header.kid === 'ours' ? { kid: keyIdOf(t.secrets.access) } : {}) };
    let token: string;
    try {
      token = await claimsOf(userId, sessionId).setProtectedHeader(protectedHeader).sign(new TextEncoder().encode(t.secrets.access));
    } catch {
      // jose refuses to produce some of these; build them by hand.
      const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
      token = `${encode(protectedHeader)}.${encode({ sub: userId, sid: sessionId })}.AAAA`;
    }
    expectProblem(await me(t, token), 401, 'invalid_token');
  });

  it.each([
    ['type: refresh', { type: 'refresh' }],
    ['no type', { type: undefined }],
    ['an unknown role', { role: 'root' }],
    ['a sub that is not a uuid', { sub: "x' or '1'='1" }],
    ['a sid that is not a uuid', { sid: 'nope' }],
  ])('a validly signed token with %s → 401 invalid_token', async (_label, override) => {
    const { userId, sessionId } = await t.signIn();
    const payload: Record<string, unknown> = { email: 'x@example.com', tier: 'free', role: 'user', sid: sessionId, type: 'access', sub: userId };
    for (const [name, value] of Object.entries(override)) {
      if (value === undefined) delete payload[name];
      else payload[name] = value;
    }
    const token = await new SignJWT(payload)
      .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: keyIdOf(t.secrets.access) })
      .setIssuer(TOKEN_ISSUER)
      .setAudience(TOKEN_AUDIENCE)
      .setJti(randomUUID())
      .setIssuedAt()
      .setExpirationTime('10m')
      .sign(new TextEncoder().encode(t.secrets.access));
    expectProblem(await me(t, token), 401, 'invalid_token');
  });

  it('a token without exp, validly signed → 401 invalid_token', async () => {
    const { userId, sessionId } = await t.signIn();
    const token = await new SignJWT({ email: 'x@example.com', tier: 'free', role: 'user', sid: sessionId, type: 'access' })
      .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: keyIdOf(t.secrets.access) })
      .setIssuer(TOKEN_ISSUER)
      .setAudience(TOKEN_AUDIENCE)
      .setSubject(userId)
      .setJti(randomUUID())
      .setIssuedAt()
      .sign(new TextEncoder().encode(t.secrets.access));
    expectProblem(await me(t, token), 401, 'invalid_token');
  });

  it('a 64 KB bearer token → 401 invalid_token, not echoed; a scheme other than Bearer → 401', async () => {
    const huge = `${'a'.repeat(32_000)}.${'b'.repeat(32_000)}.c`;
    const response = await me(t, huge);
    expectProblem(response, 401, 'invalid_token');
    expect(response.body.length).toBeLessThan(2000);
    const { token } = await t.signIn();
    expectProblem(await t.app.inject({ method: 'GET', url: '/me', headers: { authorization: `Basic ${token}` } }), 401, 'invalid_token');
    expectProblem(await t.app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${token} ${token}` } }), 401, 'invalid_token');
  });

  it('the scheme name is case-insensitive (RFC 9110 §11.1): bearer and BEARER work like Bearer', async () => {
    const { token } = await t.signIn();
    for (const scheme of ['bearer', 'BEARER', 'bEaReR']) {
      const response = await t.app.inject({ method: 'GET', url: '/me', headers: { authorization: `${scheme} ${token}` } });
      expect(response.statusCode, `${scheme}: ${response.body}`).toBe(200);
    }
  });
});

describe('Google sign-in at the edges', () => {
  it('expired 10 minutes ago → 401; expired 4 minutes ago is inside google-auth-library’s 300 s skew → 200', async () => {
    expectProblem(await signInWith(t, await google.idToken({ issuedAt: -3600 - 600, expiresIn: 3600 })), 401, 'invalid_google_token');
    expect((await signInWith(t, await google.idToken({ issuedAt: -3600 - 240, expiresIn: 3600 }))).statusCode).toBe(200);
  });

  it('issued 10 minutes in the future → 401', async () => {
    expectProblem(await signInWith(t, await google.idToken({ issuedAt: 600 })), 401, 'invalid_google_token');
  });

  it('a tampered payload (signature of another payload) → 401, the token not echoed', async () => {
    const genuine = await google.idToken();
    const [header, , signature] = genuine.split('.') as [string, string, string];
    const now = Math.floor(Date.now() / 1000);
    const forgedPayload = Buffer.from(
      JSON.stringify({ ...googleUser({ email: ADMIN_EMAIL }), iss: 'https://accounts.google.com', aud: TEST_CLIENT_ID, iat: now, exp: now + 600 }),
    ).toString('base64url');
    const response = await signInWith(t, `${header}.${forgedPayload}.${signature}`);
    expectProblem(response, 401, 'invalid_google_token');
    expect(response.body).not.toContain(forgedPayload);
    expect(await t.deps.users.findByEmail(ADMIN_EMAIL)).toBeNull();
  });

  it.each([
    ['an audience list that only contains ours among others', { aud: ['someone-else', TEST_CLIENT_ID] }],
    ['an empty audience', { aud: '' }],
    ['no audience', { aud: undefined }],
    ['a sub that is not a string', { sub: 12345 }],
  ])('%s → 401', async (_label, claims) => {
    expectProblem(await signInWith(t, await google.idToken({ claims: { ...googleUser(), ...claims } })), 401, 'invalid_google_token');
  });

  it('an unverified ADMIN_EMAILS address never signs in, so never becomes admin (nor creates a user)', async () => {
    for (const email of [ADMIN_EMAIL, ADMIN_EMAIL.toUpperCase()]) {
      for (const verified of [false, 'true', 1, undefined]) {
        const response = await signInWith(t, await google.idToken({ claims: googleUser({ email, email_verified: verified }) }));
        expectProblem(response, 401, 'invalid_google_token');
      }
    }
    expect(await t.deps.users.findByEmail(ADMIN_EMAIL)).toBeNull();
  });

  it('an address that only lower-cases to an ADMIN_EMAILS entry through Unicode (Kelvin sign K) is not an admin', async () => {
    // 'K' (U+212A KELVIN SIGN).toLowerCase() is ASCII 'k': a different mailbox must not match an admin's.
    const lookalike = `\u212Aate.admin@example.com`;
    expect(lookalike.toLowerCase()).toBe(ADMIN_EMAIL);
    const body = await googleSignIn(t, googleUser({ email: lookalike }));
    expect((await me(t, body.access_token)).json()).toMatchObject({ role: 'user' });
  });

  it('a look-alike address (Kelvin sign) is never linked to an account created beforehand for the real one', async () => {
    const created = await t.deps.users.create({ email: 'kim.precreated@example.com', role: 'auditor' });
    const response = await signInWith(t, await google.idToken({ claims: googleUser({ email: '\u212Aim.precreated@example.com' }) }));
    expectProblem(response, 403, 'forbidden');
    expect(await t.deps.users.findById(created.id)).toMatchObject({ google_id: null, email: 'kim.precreated@example.com' });
    // The real owner still links.
    const owner = await googleSignIn(t, googleUser({ email: 'Kim.Precreated@example.com' }));
    expect(owner.user.id).toBe(created.id);
  });

  it('an ADMIN_EMAILS address in another case is an admin (case-insensitive, as mail providers treat it)', async () => {
    const body = await googleSignIn(t, googleUser({ email: 'Second.Admin@EXAMPLE.com' }));
    expect((await me(t, body.access_token)).json()).toMatchObject({ role: 'admin' });
  });
});

describe('deactivation, including tokens the server has already verified once', () => {
  it('a token verified (and remembered) before the deactivation is refused on the very next request, on every route', async () => {
    const admin = await t.signIn({ role: 'admin' });
    const identity = googleUser();
    const user = await googleSignIn(t, identity);
    // Use the token a few times first: it is now in the verified-token memory.
    for (let i = 0; i < 3; i += 1) expect((await me(t, user.access_token)).statusCode).toBe(200);
    const off = await t.app.inject({
      method: 'PUT',
      url: `/admin/users/${user.user.id}/active`,
      headers: bearer(admin.token),
      payload: { active: false, reason: 'stolen laptop' },
    });
    expect(off.statusCode).toBe(200);
    expectProblem(await me(t, user.access_token), 401, 'user_inactive');
    expectProblem(await t.app.inject({ method: 'GET', url: '/auth/sessions', headers: bearer(user.access_token) }), 401, 'user_inactive');
    expectProblem(
      await t.app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(user.access_token), payload: { refresh_token: user.refresh_token } }),
      401,
      'user_inactive',
    );
    expectProblem(
      await t.app.inject({ method: 'POST', url: '/credits/spend', headers: { ...bearer(user.access_token), 'idempotency-key': randomUUID() }, payload: { amount: 1 } }),
      401,
      'user_inactive',
    );
    expectProblem(await refresh(t, user.refresh_token), 401, 'user_inactive');
    expectProblem(await signInWith(t, await google.idToken({ claims: identity })), 401, 'user_inactive');
  });

  it('deactivated over HTTP, reactivated with the CLI: the sessions from before stay dead', async () => {
    const admin = await t.signIn({ role: 'admin' });
    const identity = googleUser();
    const user = await googleSignIn(t, identity);
    expect((await me(t, user.access_token)).statusCode).toBe(200);
    const off = await t.app.inject({
      method: 'PUT',
      url: `/admin/users/${user.user.id}/active`,
      headers: bearer(admin.token),
      payload: { active: false, reason: 'abuse' },
    });
    expect(off.statusCode).toBe(200);

    const printed: string[] = [];
    const context = { deps: t.deps, print: (line: string) => printed.push(line) } as unknown as CliContext;
    await usersActivateCommand.run(context, { email: user.user.email }, []);
    expect(printed.join('\n')).toMatch(/is now active/);

    expectProblem(await me(t, user.access_token), 401, 'invalid_token');
    expectProblem(await refresh(t, user.refresh_token), 401, 'invalid_refresh_token');
    // A new sign-in works.
    expect((await me(t, (await googleSignIn(t, identity)).access_token)).statusCode).toBe(200);
  });
});

describe('refresh races and the grace window', () => {
  it('five refreshes of one token at once: all answer 200; once one child is used, every other child is reuse', async () => {
    const body = await googleSignIn();
    const responses = await Promise.all(Array.from({ length: 5 }, () => refresh(t, body.refresh_token)));
    expect(responses.map((response) => response.statusCode)).toEqual([200, 200, 200, 200, 200]);
    const children = responses.map((response) => (response.json() as { refresh_token: string }).refresh_token);
    expect(new Set(children).size).toBe(5);
    const [kept, ...others] = children as [string, ...string[]];
    expect((await refresh(t, kept)).statusCode).toBe(200);
    expectProblem(await refresh(t, others[0] as string), 401, 'refresh_token_reused');
    // The session is gone for everybody now.
    for (const other of others.slice(1)) expect((await refresh(t, other)).statusCode).toBe(401);
  });

  it('a refresh racing with the deactivation of its user never ends in a 500 (no deadlock)', async () => {
    const admin = await t.signIn({ role: 'admin' });
    for (let round = 0; round < 10; round += 1) {
      const user = await googleSignIn();
      const [rotated, deactivated] = await Promise.all([
        refresh(t, user.refresh_token),
        t.app.inject({ method: 'PUT', url: `/admin/users/${user.user.id}/active`, headers: bearer(admin.token), payload: { active: false, reason: 'race' } }),
      ]);
      expect([200, 401]).toContain(rotated.statusCode);
      expect(deactivated.statusCode, deactivated.body).toBe(200);
    }
  });

  it('deactivation takes the session lock before touching refresh tokens, as a refresh does (lock order)', async () => {
    const user = await googleSignIn();
    const sessionId = await t.db.pool.oneFirst(sql.type(z.object({ session_id: z.string() }))`
      select session_id::text from user_tokens where token_hash = ${hashRefreshToken(user.refresh_token)}`);
    let deactivation: Promise<unknown> | undefined;
    // Hold the locks the way a refresh takes them: the session row first, then its token rows.
    await t.db.pool.transaction(async (tx) => {
      await tx.query(sql.unsafe`select id from user_sessions where id = ${sessionId} for update`);
      deactivation = t.deps.accounts.setActive(user.user.id, false, { now: new Date(), reason: 'lock order' });
      // Wait until the deactivation is blocked on a lock we hold.
      for (let i = 0; i < 100; i += 1) {
        const waiting = await tx.oneFirst(sql.type(z.object({ n: z.number() }))`
          select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`);
        if (waiting > 0) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      await tx.query(sql.unsafe`select id from user_tokens where session_id = ${sessionId} for update`);
    });
    await expect(deactivation).resolves.toMatchObject({ is_active: false });
    expectProblem(await refresh(t, user.refresh_token), 401, 'user_inactive');
  });
});

describe('refresh grace window limits (manual clock)', () => {
  let clock: ManualClock;
  let timed: TestApp;
  beforeAll(async () => {
    clock = new ManualClock(new Date());
    timed = await createTestApp({ clock, config: googleConfig() });
  });
  afterAll(async () => {
    await timed?.close();
  });

  it('the window is counted from the first rotation and does not slide with grace re-rotations', async () => {
    const body = await googleSignIn(timed);
    expect((await refresh(timed, body.refresh_token)).statusCode).toBe(200);
    clock.advance(REFRESH_REUSE_GRACE_MS - 2000);
    expect((await refresh(timed, body.refresh_token)).statusCode).toBe(200);
    clock.advance(3000);
    expectProblem(await refresh(timed, body.refresh_token), 401, 'refresh_token_reused');
  });

  it('inside the window, a token whose child was already used is reuse', async () => {
    const body = await googleSignIn(timed);
    const child = (await refresh(timed, body.refresh_token)).json() as { refresh_token: string };
    clock.advance(1000);
    expect((await refresh(timed, child.refresh_token)).statusCode).toBe(200);
    clock.advance(1000);
    expectProblem(await refresh(timed, body.refresh_token), 401, 'refresh_token_reused');
  });

  it('a grace sibling cannot outlive the session, and a logged-out session has no grace', async () => {
    const body = await googleSignIn(timed);
    const child = (await refresh(timed, body.refresh_token)).json() as { access_token: string; refresh_token: string };
    const logout = await timed.app.inject({
      method: 'POST',
      url: '/auth/logout',
      headers: bearer(child.access_token),
      payload: { refresh_token: child.refresh_token },
    });
    expect(logout.statusCode).toBe(204);
    expectProblem(await refresh(timed, body.refresh_token), 401, 'invalid_refresh_token');
    expectProblem(await refresh(timed, child.refresh_token), 401, 'invalid_refresh_token');
  });
});

describe('sessions belong to their user', () => {
  it('listing shows none of another user’s sessions; revoking or logging out theirs fails and leaves them alive', async () => {
    const alice = await googleSignIn();
    const bob = await googleSignIn();
    const bobSessions = (await t.app.inject({ method: 'GET', url: '/auth/sessions', headers: bearer(bob.access_token) })).json() as {
      items: { id: string }[];
    };
    const aliceList = (await t.app.inject({ method: 'GET', url: '/auth/sessions?limit=200', headers: bearer(alice.access_token) })).json() as {
      items: { id: string }[];
    };
    expect(aliceList.items).toHaveLength(1);
    expect(aliceList.items.map((item) => item.id)).not.toContain(bobSessions.items[0]?.id);
    expectProblem(
      await t.app.inject({ method: 'DELETE', url: `/auth/sessions/${bobSessions.items[0]?.id}`, headers: bearer(alice.access_token) }),
      404,
      'not_found',
    );
    expectProblem(
      await t.app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(alice.access_token), payload: { refresh_token: bob.refresh_token } }),
      401,
      'invalid_refresh_token',
    );
    expect((await me(t, bob.access_token)).statusCode).toBe(200);
    expect((await refresh(t, bob.refresh_token)).statusCode).toBe(200);
  });

  it('a session id that is not a uuid → 400, never 500', async () => {
    const alice = await googleSignIn();
    const response = await t.app.inject({ method: 'DELETE', url: "/auth/sessions/1'%20or%20'1'='1", headers: bearer(alice.access_token) });
    expectProblem(response, 400, 'validation_failed');
  });

  it('a revoked session’s access token is refused on a ledger write (not only reads)', async () => {
    const user = await googleSignIn();
    const logout = await t.app.inject({ method: 'POST', url: '/auth/logout', headers: bearer(user.access_token), payload: { refresh_token: user.refresh_token } });
    expect(logout.statusCode).toBe(204);
    expectProblem(
      await t.app.inject({ method: 'POST', url: '/credits/spend', headers: { ...bearer(user.access_token), 'idempotency-key': randomUUID() }, payload: { amount: 1 } }),
      401,
      'invalid_token',
    );
  });
});

describe('rate limit and CORS', () => {
  let limited: TestApp;
  beforeAll(async () => {
    limited = await createTestApp({
      env: { CORS_ORIGINS: ALLOWED_ORIGIN },
      config: { googleClientIds: [TEST_CLIENT_ID], googleCertsUrl: google.certsUrl, authRateLimitPerMinute: 3 },
    });
  });
  afterAll(async () => {
    await limited?.close();
  });

  const attempt = (ip: string, headers: Record<string, string> = {}) =>
    limited.app.inject({ method: 'POST', url: '/auth/refresh', remoteAddress: ip, headers, payload: { refresh_token: 'x' } });

  it('with TRUST_PROXY off, no proxy header (X-Forwarded-For, X-Real-IP, Forwarded) moves a client to a fresh bucket', async () => {
    const ip = '203.0.113.50';
    for (let i = 0; i < 3; i += 1) expect((await attempt(ip)).statusCode).toBe(401);
    for (const headers of [
      { 'x-forwarded-for': '198.51.100.9' },
      { 'x-forwarded-for': '198.51.100.9, 198.51.100.10' },
      { 'x-real-ip': '198.51.100.11' },
      { forwarded: 'for=198.51.100.12' },
      { 'x-client-ip': '198.51.100.13' },
    ] as Record<string, string>[]) {
      expectProblem(await attempt(ip, headers), 429, 'rate_limited');
    }
    // Trailing slash and other /auth routes share the same budget.
    expectProblem(await limited.app.inject({ method: 'POST', url: '/auth/refresh/', remoteAddress: ip, payload: { refresh_token: 'x' } }), 429, 'rate_limited');
    expectProblem(await limited.app.inject({ method: 'GET', url: '/auth/sessions', remoteAddress: ip }), 429, 'rate_limited');
  });

  it('IPv6 clients share one bucket per /64 (rotating the interface id does not help)', async () => {
    for (let i = 1; i <= 3; i += 1) expect((await attempt(`2001:db8:1:2::${i}`)).statusCode).toBe(401);
    expectProblem(await attempt('2001:db8:1:2:ffff::4'), 429, 'rate_limited');
    expect((await attempt('2001:db8:1:3::1')).statusCode).toBe(401);
  });

  it('CORS never allows credentials, nor the null origin, nor a look-alike of an allowed origin', async () => {
    const preflight = (origin: string) =>
      limited.app.inject({
        method: 'OPTIONS',
        url: '/auth/refresh',
        remoteAddress: '203.0.113.99',
        headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
      });
    const good = await preflight(ALLOWED_ORIGIN);
    expect(good.headers['access-control-allow-origin']).toBe(ALLOWED_ORIGIN);
    expect(good.headers['access-control-allow-credentials']).toBeUndefined();
    for (const origin of ['null', `${ALLOWED_ORIGIN}.evil.example`, 'https://evil-app.example.com', ALLOWED_ORIGIN.replace('https', 'http')]) {
      const response = await preflight(origin);
      expect(response.headers['access-control-allow-origin'], origin).toBeUndefined();
      expect(response.headers['access-control-allow-credentials'], origin).toBeUndefined();
    }
  });
});

describe('injection and internal errors', () => {
  it("GET /admin/users?email=' OR 1=1-- is a plain (parameterised) substring filter: no rows, never 500", async () => {
    const admin = await t.signIn({ role: 'admin' });
    const response = await t.app.inject({ method: 'GET', url: `/admin/users?email=${encodeURIComponent("' OR 1=1--")}`, headers: bearer(admin.token) });
    expect(response.statusCode).toBe(200);
    expect((response.json() as { items: unknown[] }).items).toEqual([]);
  });

  it('a database failure on /auth/refresh → 500 with a generic detail naming the request id; the log has the error and reqId', async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    const broken = await createTestApp({
      config: googleConfig(),
      projector: false,
      overrideDeps: (deps) => ({
        logger,
        authSessions: {
          ...deps.authSessions,
          rotate: async () => {
            throw new Error('relation "user_tokens" does not exist (password=hunter2)');
          },
        },
      }),
    });
    try {
      const response = await broken.app.inject({
        method: 'POST',
        url: '/auth/refresh',
        headers: { 'x-request-id': 'db-down-1' },
        payload: { refresh_token: `rt_${'A'.repeat(43)}` },
      });
      expectProblem(response, 500, 'internal_error');
      expect((response.json() as { detail: string }).detail).toContain('db-down-1');
      expect(response.body).not.toMatch(/user_tokens|hunter2|relation|stack/);
      const logged = lines.find((line) => line.reqId === 'db-down-1' && line.level === 50);
      expect(logged?.err).toMatchObject({ message: expect.stringContaining('user_tokens') });
    } finally {
      await broken.close();
    }
  });
});
