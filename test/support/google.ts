import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type CryptoKey, exportSPKI, generateKeyPair, type JWTPayload, SignJWT } from 'jose';

/**
 * Tests act as Google: a local HTTP server on 127.0.0.1 serves the signing keys in Google's PEM map
 * format (`{ "<kid>": "-----BEGIN PUBLIC KEY-----..." }`, which google-auth-library verifies like a
 * certificate) with `cache-control: public, max-age=3600`, and a jose RS256 signer issues Google-like
 * ID tokens. Point the app at it with `googleCertsUrl: google.certsUrl`.
 */

export const TEST_CLIENT_ID = 'web-client.apps.googleusercontent.com';
export const TEST_DESKTOP_CLIENT_ID = 'desktop-client.apps.googleusercontent.com';
export const TEST_KID = 'test-kid-1';

export interface IdTokenOptions {
  /** Claims to add or override (`undefined` removes one). */
  readonly claims?: Readonly<Record<string, unknown>>;
  /** Sign with a key Google never published (same kid). */
  readonly foreignKey?: boolean;
  readonly kid?: string;
  /** Seconds relative to now. */
  readonly issuedAt?: number;
  readonly expiresIn?: number;
}

export interface FakeGoogle {
  readonly certsUrl: string;
  /** How many times the certificate endpoint was fetched. */
  readonly fetches: number;
  idToken(options?: IdTokenOptions): Promise<string>;
  close(): Promise<void>;
}

let counter = 0;

/** A Google identity with a fresh `sub` and email. */
export const googleUser = (overrides: Record<string, unknown> = {}) => {
  counter += 1;
  const suffix = `${process.pid}-${counter}-${Math.random().toString(36).slice(2, 8)}`;
  return { sub: `g-${suffix}`, email: `google-${suffix}@example.com`, email_verified: true, name: `User ${suffix}`, picture: `https://example.com/${suffix}.png`, ...overrides };
};

export async function startFakeGoogle(): Promise<FakeGoogle> {
  const published = await generateKeyPair('RS256', { extractable: true });
  const foreign = await generateKeyPair('RS256', { extractable: true });
  const pem = await exportSPKI(published.publicKey);
  let fetches = 0;

  const server: Server = createServer((request, response) => {
    if (request.url !== '/oauth2/v1/certs') {
      response.writeHead(404).end();
      return;
    }
    fetches += 1;
    response.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'public, max-age=3600' });
    response.end(JSON.stringify({ [TEST_KID]: pem }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    certsUrl: `http://127.0.0.1:${port}/oauth2/v1/certs`,
    get fetches() {
      return fetches;
    },
    async idToken(options = {}) {
      const now = Math.floor(Date.now() / 1000);
      const payload: JWTPayload = {
        iss: 'https://accounts.google.com',
        aud: TEST_CLIENT_ID,
        azp: TEST_CLIENT_ID,
        ...googleUser(),
        iat: now + (options.issuedAt ?? 0),
        exp: now + (options.issuedAt ?? 0) + (options.expiresIn ?? 3600),
      };
      for (const [name, value] of Object.entries(options.claims ?? {})) {
        if (value === undefined) delete payload[name];
        else payload[name] = value;
      }
      const key: CryptoKey = options.foreignKey ? foreign.privateKey : published.privateKey;
      return new SignJWT(payload).setProtectedHeader({ alg: 'RS256', kid: options.kid ?? TEST_KID, typ: 'JWT' }).sign(key);
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}
