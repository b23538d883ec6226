import { describe, expect, it } from 'vitest';
import { AccessTokenError, createAccessTokens } from '../../../src/membership/access-tokens.js';

/** The verified-token memory (src/membership/access-tokens.ts): it may only save work, never change an answer. */

const SECRET = 'a'.repeat(32);
const subject = { userId: '00000000-0000-4000-8000-000000000001', email: 'a@example.com', tier: 'free', role: 'user', sessionId: '00000000-0000-4000-8000-000000000002' } as const;

function setup(ttlSeconds = 60) {
  let now = Date.parse('2026-01-01T00:00:00Z');
  const clock = { now: () => new Date(now) };
  const tokens = createAccessTokens({ secrets: [SECRET], issuer: 'iss', audience: 'aud', ttlSeconds, clock, clockToleranceSeconds: 5 });
  return { tokens, advance: (ms: number) => (now += ms) };
}

const failure = async (promise: Promise<unknown>) => {
  try {
    await promise;
  } catch (error) {
    return error instanceof AccessTokenError ? error.code : 'other';
  }
  return 'none';
};

describe('access tokens seen again', () => {
  it('answer the same claims while the token lives', async () => {
    const { tokens, advance } = setup();
    const token = await tokens.sign(subject);
    const first = await tokens.verify(token);
    advance(30_000);
    expect(await tokens.verify(token)).toEqual(first);
  });

  it('expire exactly when jose would say so (exp <= now - tolerance), also after a hit', async () => {
    const { tokens, advance } = setup(60);
    const token = await tokens.sign(subject);
    await tokens.verify(token);
    advance(64_999); // exp + 4.999 s: inside the 5 s tolerance
    await expect(tokens.verify(token)).resolves.toMatchObject({ userId: subject.userId });
    advance(1); // exp + 5 s
    expect(await failure(tokens.verify(token))).toBe('token_expired');
    expect(await failure(tokens.verify(token))).toBe('token_expired');
  });

  it('a token differing only in its signature is checked, not remembered', async () => {
    const { tokens } = setup();
    const token = await tokens.sign(subject);
    await tokens.verify(token);
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const flipped = `${header}.${payload}.${signature.slice(0, -2)}${signature.endsWith('AA') ? 'BA' : 'AA'}`;
    expect(await failure(tokens.verify(flipped))).toBe('invalid_token');
    // The real one still verifies after the forgery was refused.
    await expect(tokens.verify(token)).resolves.toMatchObject({ sessionId: subject.sessionId });
  });

  it('a token from another secret is refused even when a valid one with the same claims is remembered', async () => {
    const { tokens } = setup();
    const other = createAccessTokens({ secrets: ['b'.repeat(32)], issuer: 'iss', audience: 'aud', ttlSeconds: 60, clock: { now: () => new Date('2026-01-01T00:00:00Z') } });
    await tokens.verify(await tokens.sign(subject));
    expect(await failure(tokens.verify(await other.sign(subject)))).toBe('invalid_token');
  });
});
