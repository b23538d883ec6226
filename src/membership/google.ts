import { OAuth2Client } from 'google-auth-library';

/**
 * Google ID-token verification (API §3) with google-auth-library. One client per app: it caches
 * Google's certificates for as long as their `Cache-Control: max-age` says.
 *
 * The library's defaults are looser than we want, so both `audience` (every configured client id:
 * web and desktop) and the issuers are passed explicitly — its default issuer list also accepts
 * `googleapis.com`, and without `audience` it does not check `aud` at all. It does not check
 * `email_verified`; we do. Its error messages embed the raw token, so they are never logged or
 * echoed: failures become a `GoogleVerificationError` with a fixed, token-free message.
 */

export const GOOGLE_ISSUERS: readonly string[] = ['accounts.google.com', 'https://accounts.google.com'];

/** How long one certificate fetch may take before sign-in answers 503. */
const CERTS_TIMEOUT_MS = 5_000;

export interface GoogleIdentity {
  /** Google's stable user id (`sub`). */
  readonly googleId: string;
  readonly email: string;
  readonly name: string | null;
  readonly picture: string | null;
}

/**
 * - `invalid`: the credential is not a valid ID token for us (signature, expiry, audience, issuer,
 *   unverified email, missing claims, garbage).
 * - `unavailable`: Google's certificates could not be fetched, or no client id is configured.
 */
export type GoogleVerificationFailure = 'invalid' | 'unavailable';

export class GoogleVerificationError extends Error {
  constructor(
    readonly reason: GoogleVerificationFailure,
    /** Token-free, safe to log. */
    readonly hint: string,
  ) {
    super(hint);
    this.name = 'GoogleVerificationError';
  }
}

export interface GoogleVerifier {
  /** Resolves to the identity, or rejects with a `GoogleVerificationError`. */
  verify(credential: string): Promise<GoogleIdentity>;
}

export interface GoogleVerifierOptions {
  /** Accepted `aud` values: the web and desktop OAuth client ids. */
  readonly clientIds: readonly string[];
  /** Overrides Google's PEM certificate endpoint (`{ "<kid>": "-----BEGIN CERTIFICATE-----..." }`). */
  readonly certsUrl?: string | undefined;
}

const CERTS_FAILURE = 'Failed to retrieve verification certificates';

/** A short, token-free description of why the library refused, for logs. */
const hintOf = (error: unknown): string => {
  const message = error instanceof Error ? error.message : '';
  if (message.startsWith('Wrong number of segments')) return 'malformed token';
  if (message.startsWith("Can't parse")) return 'malformed token';
  if (message.startsWith('No pem found')) return 'unknown signing key';
  if (message.startsWith('Invalid token signature')) return 'bad signature';
  if (message.startsWith('No issue time') || message.startsWith('No expiration time')) return 'missing iat/exp';
  if (message.includes('field using invalid format')) return 'bad iat/exp';
  if (message.startsWith('Expiration time too far')) return 'lifetime too long';
  if (message.startsWith('Token used too early')) return 'not yet valid';
  if (message.startsWith('Token used too late')) return 'expired';
  if (message.startsWith('Invalid issuer')) return 'wrong issuer';
  if (message.startsWith('Wrong recipient')) return 'wrong audience';
  return 'rejected';
};

export function createGoogleVerifier(options: GoogleVerifierOptions): GoogleVerifier {
  const audience = [...options.clientIds];
  const client = new OAuth2Client({
    endpoints: options.certsUrl ? { oauth2FederatedSignonPemCertsUrl: options.certsUrl } : {},
    issuers: [...GOOGLE_ISSUERS],
    transporterOptions: { timeout: CERTS_TIMEOUT_MS },
  });

  return {
    async verify(credential) {
      if (audience.length === 0) throw new GoogleVerificationError('unavailable', 'GOOGLE_CLIENT_ID is not configured');
      let payload;
      try {
        const ticket = await client.verifyIdToken({ idToken: credential, audience });
        payload = ticket.getPayload();
      } catch (error) {
        const message = error instanceof Error ? error.message : '';
        if (message.startsWith(CERTS_FAILURE)) throw new GoogleVerificationError('unavailable', 'Google certificates unreachable');
        throw new GoogleVerificationError('invalid', hintOf(error));
      }
      if (!payload || typeof payload.sub !== 'string' || payload.sub.length === 0 || payload.sub.length > 255) {
        throw new GoogleVerificationError('invalid', 'missing sub');
      }
      if (typeof payload.email !== 'string' || payload.email.length === 0 || payload.email.length > 320) {
        throw new GoogleVerificationError('invalid', 'missing email');
      }
      // Only a verified address may identify (or be linked to) an account.
      if (payload.email_verified !== true) throw new GoogleVerificationError('invalid', 'email not verified');
      return {
        googleId: payload.sub,
        email: payload.email,
        name: typeof payload.name === 'string' && payload.name.length > 0 ? payload.name.slice(0, 255) : null,
        picture: typeof payload.picture === 'string' && payload.picture.length > 0 ? payload.picture.slice(0, 2048) : null,
      };
    },
  };
}
