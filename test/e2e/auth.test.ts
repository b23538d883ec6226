import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeProtectedHeader, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { sql } from '../../src/adapters/postgres/pool.js';
import { ManualClock } from '../../src/core/clock.js';
import { accountStreamId } from '../../src/ledger/events.js';
import { createAccessTokens, keyIdOf } from '../../src/membership/access-tokens.js';
import { REFRESH_REUSE_GRACE_MS } from '../../src/membership/auth-sessions.js';
import { TOKEN_AUDIENCE, TOKEN_ISSUER } from '../../src/services.js';
import { createTestApp, type TestApp, testSecret } from '../support/app.js';
import { type FakeGoogle, googleUser, startFakeGoogle, TEST_CLIENT_ID, TEST_DESKTOP_CLIENT_ID } from '../support/google.js';

const ADMIN_EMAIL = 'boss@example.com';

let google: FakeGoogle;
let t: TestApp;

const googleConfig = () => ({
  googleClientIds: [TEST_CLIENT_ID, TEST_DESKTOP_CLIENT_ID],
  googleCertsUrl: google.certsUrl,
  adminEmails: [ADMIN_EMAIL],
  // The rate limit has its own test (security.test.ts); here it would only get in the way.
  authRateLimitPerMinute: 100_000,
});

beforeAll(async () => {
  google = await startFakeGoogle();
  t = await createTestApp({ config: googleConfig() });
});
afterAll(async () => {
  await t?.close();
  await google?.close();
});

interface Problem {
  code: string;
  status: number;
  detail: string;
}
const problemOf = (response: { headers: Record<string, unknown>; json: () => unknown }) => {
  expect(String(response.headers['content-type'])).toMatch(/^application\/problem\+json/);
  return response.json() as Problem;
};

type SignIn = {
  access_token: string;
  refresh_token: string;
  token_type: string;
  expires_in: number;
  is_new_user: boolean;
  user: { id: string; email: string; name: string | null; profile_image: string | null; tier: string };
};

const signInWith = (app: TestApp, credential: string, extra: Record<string, unknown> = {}) =>
  app.app.inject({ method: 'POST', url: '/auth/google', payload: { credential, ...extra }, headers: { 'user-agent': 'vitest-launcher/1.0' } });

const googleSignIn = async (app: TestApp = t, claims: Record<string, unknown> = googleUser()) => {
  const response = await signInWith(app, await google.idToken({ claims }));
  expect(response.statusCode, response.body).toBe(200);
  return response.json() as SignIn;
};

const refresh = (app: TestApp, refreshToken: string) =>
  app.app.inject({ method: 'POST', url: '/auth/refresh', payload: { refresh_token: refreshToken } });

const me = (app: TestApp, accessToken: string) =>
  app.app.inject({ method: 'GET', url: '/me', headers: { authorization: `Bearer ${accessToken}` } });

const readStream = async (app: TestApp, stream: string) => {
  const events = [];
  for await (const event of app.eventStore.readStream(stream)) events.push(event);
  return events;
};

describe('POST /auth/google', () => {
  it('creates the user on first sign-in, then signs the same Google account in again', async () => {
    const identity = googleUser();
    const first = await signInWith(t, await google.idToken({ claims: identity }), { device_info: { os: 'windows', version: '1.4.2' } });
    expect(first.statusCode).toBe(200);
    const body = first.json() as SignIn;
    expect(Object.keys(body).sort()).toEqual(['access_token', 'expires_in', 'is_new_user', 'refresh_token', 'token_type', 'user']);
    expect(body).toMatchObject({
      token_type: 'Bearer',
      expires_in: 3600,
      is_new_user: true,
      user: { email: identity.email, name: identity.name, profile_image: identity.picture, tier: 'free' },
    });
    expect(Object.keys(body.user).sort()).toEqual(['email', 'id', 'name', 'profile_image', 'tier']);
    expect(body.refresh_token).toMatch(/^rt_[A-Za-z0-9_-]{43}$/);
    expect((await me(t, body.access_token)).json()).toMatchObject({ id: body.user.id, email: identity.email, role: 'user' });

    const again = await signInWith(t, await google.idToken({ claims: { ...identity, name: 'Renamed', picture: 'https://example.com/new.png' } }));
    expect(again.statusCode).toBe(200);
    const second = again.json() as SignIn;
    expect(second.is_new_user).toBe(false);
    expect(second.user).toMatchObject({ id: body.user.id, name: 'Renamed', profile_image: 'https://example.com/new.png' });
    expect(second.refresh_token).not.toBe(body.refresh_token);

    const activity = await readStream(t, `activity-${body.user.id}`);
    expect(activity.map((event) => event.type)).toEqual(['UserSignedUp', 'UserSignedIn']);
    expect(activity[0]?.data).toMatchObject({
      method: 'google',
      ip: '127.0.0.1',
      user_agent: 'vitest-launcher/1.0',
      device_info: { os: 'windows', version: '1.4.2' },
    });
    expect(activity[1]?.data).toMatchObject({ method: 'google', device_info: null });
    expect(typeof activity[0]?.data.at).toBe('string');
  });

  it('accepts the desktop client id as audience too', async () => {
    const response = await signInWith(t, await google.idToken({ claims: { aud: TEST_DESKTOP_CLIENT_ID } }));
    expect(response.statusCode).toBe(200);
  });

  it('fetched Google’s certificates once for all sign-ins (one shared, caching client)', () => {
    expect(google.fetches).toBe(1);
  });

  const now = () => Math.floor(Date.now() / 1000);
  const refused: [string, () => Promise<string>][] = [
    ['an expired token', () => google.idToken({ issuedAt: -7200, expiresIn: 3600 })],
    ['a wrong audience', () => google.idToken({ claims: { aud: 'someone-else.apps.googleusercontent.com' } })],
    ['the issuer googleapis.com', () => google.idToken({ claims: { iss: 'googleapis.com' } })],
    ['another issuer', () => google.idToken({ claims: { iss: 'https://evil.example' } })],
    ['an unverified email', () => google.idToken({ claims: { email_verified: false } })],
    ['email_verified as the string "true"', () => google.idToken({ claims: { email_verified: 'true' } })],
    ['no email', () => google.idToken({ claims: { email: undefined } })],
    ['a signature by another key', () => google.idToken({ foreignKey: true })],
    ['an unknown kid', () => google.idToken({ kid: 'other-kid' })],
    ['a lifetime over 24 h', () => google.idToken({ expiresIn: 2 * 86_400 })],
    ['a garbage string', async () => 'not-a-token'],
    ['three garbage segments', async () => 'aaa.bbb.ccc'],
    [
      'alg none',
      async () => {
        const header = Buffer.from(JSON.stringify({ alg: 'none', kid: 'test-kid-1' })).toString('base64url');
        const payload = Buffer.from(
          JSON.stringify({ ...googleUser(), iss: 'https://accounts.google.com', aud: TEST_CLIENT_ID, iat: now(), exp: now() + 600 }),
        ).toString('base64url');
        return `${header}.${payload}.`;
      },
    ],
  ];

  it.each(refused)('%s → 401 invalid_google_token, without echoing the token', async (_label, make) => {
    const credential = await make();
    const response = await signInWith(t, credential);
    expect(response.statusCode).toBe(401);
    expect(problemOf(response).code).toBe('invalid_google_token');
    expect(response.body).not.toContain(credential.split('.')[1] || credential);
    expect(response.headers['x-request-id']).toBeTruthy();
  });

  it.each([
    ['no credential', {}],
    ['a numeric credential', { credential: 12 }],
    ['a 20 KB credential', { credential: 'a'.repeat(20_000) }],
    ['an unknown property', { credential: 'x', user_id: 'someone' }],
    ['nested device_info', { credential: 'x', device_info: { os: { name: 'x' } } }],
  ])('%s → 400 validation_failed', async (_label, payload) => {
    const response = await t.app.inject({ method: 'POST', url: '/auth/google', payload });
    expect(response.statusCode).toBe(400);
    expect(problemOf(response).code).toBe('validation_failed');
  });

  it('ADMIN_EMAILS makes the user an admin at sign-in', async () => {
    const body = await googleSignIn(t, googleUser({ email: ADMIN_EMAIL.toUpperCase() }));
    expect((await me(t, body.access_token)).json()).toMatchObject({ role: 'admin' });
  });

  it('links an account created beforehand (CLI) by its verified email', async () => {
    const created = await t.deps.users.create({ email: 'precreated@example.com', role: 'auditor' });
    const body = await googleSignIn(t, googleUser({ email: 'precreated@example.com' }));
    expect(body.is_new_user).toBe(false);
    expect(body.user.id).toBe(created.id);
    expect((await me(t, body.access_token)).json()).toMatchObject({ role: 'auditor' });
  });

  it('a second Google account with an email already linked to another → 403 forbidden', async () => {
    const email = `taken-${Date.now()}@example.com`;
    const owner = await googleSignIn(t, googleUser({ email }));
    const response = await signInWith(t, await google.idToken({ claims: googleUser({ email }) }));
    expect(response.statusCode).toBe(403);
    expect(problemOf(response).code).toBe('forbidden');
    expect((await me(t, owner.access_token)).json()).toMatchObject({ email });
  });

  it('refuses a deactivated user → 401 user_inactive', async () => {
    const identity = googleUser();
    const body = await googleSignIn(t, identity);
    await t.deps.users.setActive(body.user.id, false);
    const response = await signInWith(t, await google.idToken({ claims: identity }));
    expect(response.statusCode).toBe(401);
    expect(problemOf(response).code).toBe('user_inactive');
  });

  it('reports the tier from the ledger, in the response and the token', async () => {
    const identity = googleUser();
    const body = await googleSignIn(t, identity);
    await t.eventStore.appendToStream(
      accountStreamId(body.user.id),
      [
        {
          id: crypto.randomUUID(),
          type: 'TierChanged',
          data: { at: new Date().toISOString(), tier: 'pro', previous_tier: 'free', expires_at: null, reason: 'test', actor_id: null },
        },
      ],
      { expectedRevision: 'any' },
    );
    const again = await googleSignIn(t, identity);
    expect(again.user.tier).toBe('pro');
    expect((await t.deps.accessTokens.verify(again.access_token)).tier).toBe('pro');
    const refreshed = await refresh(t, body.refresh_token);
    expect((await t.deps.accessTokens.verify(refreshed.json().access_token)).tier).toBe('pro');
  });

  it('answers 503 unavailable when Google’s certificates cannot be fetched', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const offline = await createTestApp({ config: { ...googleConfig(), googleCertsUrl: `http://127.0.0.1:${port}/certs` } });
    try {
      const response = await signInWith(offline, await google.idToken());
      expect(response.statusCode).toBe(503);
      expect(problemOf(response).code).toBe('unavailable');
    } finally {
      await offline.close();
    }
  });
});

describe('POST /auth/refresh', () => {
  it('rotates: a new pair, the old refresh token used up, only SHA-256 hashes stored', async () => {
    const body = await googleSignIn();
    const response = await refresh(t, body.refresh_token);
    expect(response.statusCode).toBe(200);
    const pair = response.json();
    expect(Object.keys(pair).sort()).toEqual(['access_token', 'expires_in', 'refresh_token', 'token_type']);
    expect(pair.refresh_token).not.toBe(body.refresh_token);
    expect((await me(t, pair.access_token)).statusCode).toBe(200);

    const hashes = await t.db.pool.anyFirst(sql.type(z.object({ token_hash: z.string() }))`
      select token_hash from user_tokens where user_id = ${body.user.id}`);
    const sha = (token: string) => createHash('sha256').update(token).digest('hex');
    expect([...hashes].sort()).toEqual([sha(body.refresh_token), sha(pair.refresh_token)].sort());
  });

  it('a rotated token presented again → 401 refresh_token_reused; the session and all its tokens die', async () => {
    const body = await googleSignIn();
    const first = (await refresh(t, body.refresh_token)).json();
    const second = (await refresh(t, first.refresh_token)).json();
    expect((await me(t, second.access_token)).statusCode).toBe(200);

    const replay = await refresh(t, body.refresh_token);
    expect(replay.statusCode).toBe(401);
    expect(problemOf(replay).code).toBe('refresh_token_reused');

    const newest = await refresh(t, second.refresh_token);
    expect(newest.statusCode).toBe(401);
    expect(problemOf(newest).code).toBe('invalid_refresh_token');
    const access = await me(t, second.access_token);
    expect(access.statusCode).toBe(401);
    expect(problemOf(access).code).toBe('invalid_token');
  });

  it('unknown, malformed or access-token input → 401 invalid_refresh_token', async () => {
    const body = await googleSignIn();
    for (const token of [`rt_${'A'.repeat(43)}`, 'garbage', body.access_token]) {
      const response = await refresh(t, token);
      expect(response.statusCode).toBe(401);
      expect(problemOf(response).code).toBe('invalid_refresh_token');
    }
  });

  it('a deactivated user → 401 user_inactive', async () => {
    const body = await googleSignIn();
    await t.deps.users.setActive(body.user.id, false);
    const response = await refresh(t, body.refresh_token);
    expect(response.statusCode).toBe(401);
    expect(problemOf(response).code).toBe('user_inactive');
  });

  it('two refreshes at once (grace window): both succeed, the session lives on, the discarded sibling is dead', async () => {
    const body = await googleSignIn();
    const [a, b] = await Promise.all([refresh(t, body.refresh_token), refresh(t, body.refresh_token)]);
    expect(a.statusCode).toBe(200);
    expect(b.statusCode).toBe(200);
    const kept = a.json().refresh_token as string;
    const discarded = b.json().refresh_token as string;
    expect(kept).not.toBe(discarded);

    const next = await refresh(t, kept);
    expect(next.statusCode).toBe(200);
    // The client kept `kept`; anyone presenting the other sibling now holds a token nobody should have.
    const stale = await refresh(t, discarded);
    expect(stale.statusCode).toBe(401);
    expect(problemOf(stale).code).toBe('refresh_token_reused');
    expect((await refresh(t, next.json().refresh_token)).statusCode).toBe(401);
  });
});

describe('refresh timing (manual clock)', () => {
  let clock: ManualClock;
  let timed: TestApp;
  beforeAll(async () => {
    clock = new ManualClock(new Date());
    timed = await createTestApp({ clock, config: googleConfig() });
  });
  afterAll(async () => {
    await timed?.close();
  });

  it('past the grace window, presenting a rotated token is reuse', async () => {
    const body = await googleSignIn(timed);
    const child = await refresh(timed, body.refresh_token);
    expect(child.statusCode).toBe(200);
    clock.advance(REFRESH_REUSE_GRACE_MS + 1000);
    const late = await refresh(timed, body.refresh_token);
    expect(late.statusCode).toBe(401);
    expect(problemOf(late).code).toBe('refresh_token_reused');
    expect((await refresh(timed, child.json().refresh_token)).statusCode).toBe(401);
  });

  it('rotation never extends the session: 30 days after sign-in refresh fails', async () => {
    const body = await googleSignIn(timed);
    let token = body.refresh_token;
    for (let day = 0; day < 3; day += 1) {
      clock.advance(10 * 86_400_000 - 60_000);
      const response = await refresh(timed, token);
      expect(response.statusCode, `day ${(day + 1) * 10}`).toBe(200);
      token = response.json().refresh_token;
    }
    const expiries = await timed.db.pool.anyFirst(sql.type(z.object({ expires_at: z.date() }))`
      select distinct t.expires_at from user_tokens t where t.user_id = ${body.user.id}`);
    expect(expiries).toHaveLength(1);
    clock.advance(86_400_000);
    const response = await refresh(timed, token);
    expect(response.statusCode).toBe(401);
    expect(problemOf(response).code).toBe('invalid_refresh_token');
  });
});

describe('logout and sessions', () => {
  it('POST /auth/logout revokes the session: its refresh and access tokens stop working', async () => {
    const body = await googleSignIn();
    const auth = { authorization: `Bearer ${body.access_token}` };
    const response = await t.app.inject({ method: 'POST', url: '/auth/logout', headers: auth, payload: { refresh_token: body.refresh_token } });
    expect(response.statusCode).toBe(204);
    expect(response.body).toBe('');
    const again = await refresh(t, body.refresh_token);
    expect(problemOf(again).code).toBe('invalid_refresh_token');
    const access = await me(t, body.access_token);
    expect(access.statusCode).toBe(401);
    expect(problemOf(access).code).toBe('invalid_token');
  });

  it('logout with someone else’s refresh token → 401 invalid_refresh_token, their session untouched', async () => {
    const mine = await googleSignIn();
    const theirs = await googleSignIn();
    const response = await t.app.inject({
      method: 'POST',
      url: '/auth/logout',
      headers: { authorization: `Bearer ${mine.access_token}` },
      payload: { refresh_token: theirs.refresh_token },
    });
    expect(response.statusCode).toBe(401);
    expect(problemOf(response).code).toBe('invalid_refresh_token');
    expect((await me(t, theirs.access_token)).statusCode).toBe(200);
  });

  it('logout needs an access token', async () => {
    const body = await googleSignIn();
    const response = await t.app.inject({ method: 'POST', url: '/auth/logout', payload: { refresh_token: body.refresh_token } });
    expect(response.statusCode).toBe(401);
    expect(problemOf(response).code).toBe('missing_token');
  });

  it('GET /auth/sessions lists own live sessions with the current one flagged; DELETE revokes one', async () => {
    const identity = googleUser();
    const laptop = await googleSignIn(t, identity);
    const phone = (await signInWith(t, await google.idToken({ claims: identity }), { device_info: { os: 'android' } })).json() as SignIn;
    const other = await googleSignIn();

    const list = await t.app.inject({ method: 'GET', url: '/auth/sessions', headers: { authorization: `Bearer ${laptop.access_token}` } });
    expect(list.statusCode).toBe(200);
    const { items, next_cursor } = list.json();
    expect(next_cursor).toBeNull();
    expect(items).toHaveLength(2);
    expect(items[0]).toMatchObject({ device_info: { os: 'android' }, ip: '127.0.0.1', current: false });
    expect(items[1]).toMatchObject({ device_info: null, current: true });
    expect(Object.keys(items[0]).sort()).toEqual(['created_at', 'current', 'device_info', 'expires_at', 'id', 'ip', 'last_used_at']);

    const paged = await t.app.inject({ method: 'GET', url: '/auth/sessions?limit=1', headers: { authorization: `Bearer ${laptop.access_token}` } });
    expect(paged.json().items).toHaveLength(1);
    const rest = await t.app.inject({
      method: 'GET',
      url: `/auth/sessions?limit=1&cursor=${paged.json().next_cursor}`,
      headers: { authorization: `Bearer ${laptop.access_token}` },
    });
    expect(rest.json().items.map((item: { id: string }) => item.id)).toEqual([items[1].id]);
    expect(rest.json().next_cursor).toBeNull();

    const phoneSession = items[0].id as string;
    const foreign = await t.app.inject({ method: 'DELETE', url: `/auth/sessions/${phoneSession}`, headers: { authorization: `Bearer ${other.access_token}` } });
    expect(foreign.statusCode).toBe(404);
    expect(problemOf(foreign).code).toBe('not_found');
    expect((await me(t, phone.access_token)).statusCode).toBe(200);

    const revoked = await t.app.inject({ method: 'DELETE', url: `/auth/sessions/${phoneSession}`, headers: { authorization: `Bearer ${laptop.access_token}` } });
    expect(revoked.statusCode).toBe(204);
    expect((await me(t, phone.access_token)).statusCode).toBe(401);
    expect(problemOf(await refresh(t, phone.refresh_token)).code).toBe('invalid_refresh_token');
    const after = await t.app.inject({ method: 'GET', url: '/auth/sessions', headers: { authorization: `Bearer ${laptop.access_token}` } });
    expect(after.json().items.map((item: { id: string }) => item.id)).toEqual([items[1].id]);
  });

  it('rejects a cursor this API did not issue → 400', async () => {
    const body = await googleSignIn();
    const response = await t.app.inject({ method: 'GET', url: '/auth/sessions?cursor=nope!', headers: { authorization: `Bearer ${body.access_token}` } });
    expect(response.statusCode).toBe(400);
    expect(problemOf(response).code).toBe('validation_failed');
  });
});

describe('access-token secret rotation', () => {
  it('verifies tokens signed with a previous secret (JWT_ACCESS_SECRET_PREVIOUS) and signs with the current one', async () => {
    const previous = testSecret();
    const rotated = await createTestApp({ env: { JWT_ACCESS_SECRET_PREVIOUS: `${testSecret()},${previous}` } });
    try {
      const { userId, sessionId, token: current } = await rotated.signIn();
      expect(decodeProtectedHeader(current).kid).toBe(keyIdOf(rotated.secrets.access));
      const old = createAccessTokens({ secrets: [previous], issuer: TOKEN_ISSUER, audience: TOKEN_AUDIENCE, ttlSeconds: 600, clock: rotated.deps.clock });
      const oldToken = await old.sign({ userId, email: 'x@example.com', tier: 'free', role: 'user', sessionId });
      expect((await me(rotated, oldToken)).statusCode).toBe(200);

      // Once retired (removed from the list) it is refused.
      const retired = await me(t, oldToken);
      expect(retired.statusCode).toBe(401);
      expect(problemOf(retired).code).toBe('invalid_token');

      // A previous secret verifies only; a token claiming an unknown kid is refused.
      const forged = await new SignJWT({ email: 'x@example.com', tier: 'free', role: 'user', sid: sessionId, type: 'access' })
        .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: 'unknown-kid' })
        .setIssuer(TOKEN_ISSUER)
        .setAudience(TOKEN_AUDIENCE)
        .setSubject(userId)
        .setJti('j')
        .setIssuedAt()
        .setExpirationTime('10m')
        .sign(new TextEncoder().encode(previous));
      expect((await me(rotated, forged)).statusCode).toBe(401);
    } finally {
      await rotated.close();
    }
  });

  it('refuses a previous secret shorter than 32 bytes at boot', async () => {
    const { loadConfig } = await import('../../src/config.js');
    expect(() => loadConfig({ NODE_ENV: 'test', JWT_ACCESS_SECRET_PREVIOUS: 'short' })).toThrow(/JWT_ACCESS_SECRET_PREVIOUS/);
  });
});

describe('OpenAPI', () => {
  it('documents every route of issue 6 with tags, a summary and its problem responses, with no dangling $ref', async () => {
    const document = (await t.app.inject({ method: 'GET', url: '/openapi.json' })).json();
    const expected: [string, string][] = [
      ['post', '/auth/google'],
      ['post', '/auth/refresh'],
      ['post', '/auth/logout'],
      ['get', '/auth/sessions'],
      ['delete', '/auth/sessions/{id}'],
      ['get', '/flows'],
      ['post', '/flows'],
      ['get', '/flows/{id}'],
      ['put', '/flows/{id}'],
      ['delete', '/flows/{id}'],
      ['get', '/components'],
      ['post', '/components'],
      ['get', '/components/{id}'],
      ['delete', '/components/{id}'],
      ['post', '/components/ai-generate'],
      ['put', '/admin/users/{id}/active'],
    ];
    for (const [method, path] of expected) {
      const operation = document.paths[path]?.[method];
      expect(operation, `${method} ${path}`).toBeDefined();
      expect(operation.tags?.length, `${method} ${path}`).toBeGreaterThan(0);
      expect(operation.summary, `${method} ${path}`).toBeTruthy();
      expect(Object.keys(operation.responses).some((status) => Number(status) >= 400), `${method} ${path}`).toBe(true);
      const refs = JSON.stringify(operation).match(/"\$ref":"#\/components\/schemas\/[^"]+"/g) ?? [];
      for (const ref of refs) {
        const name = ref.split('/').pop()?.replace('"', '') as string;
        expect(document.components?.schemas?.[name], `${method} ${path} ${ref}`).toBeDefined();
      }
    }
  });
});
