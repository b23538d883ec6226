/**
 * Every error the API answers with is an RFC 9457 problem document with a stable `code` (API §9).
 * Status and title are decided here, once; handlers throw `ApiError`s or return domain errors
 * that are mapped to one.
 */

export const PROBLEMS = {
  validation_failed: [400, 'Validation failed'],
  unknown_model: [400, 'Unknown model'],
  invalid_signature: [400, 'Invalid signature'],
  idempotency_key_missing: [400, 'Idempotency-Key header missing'],
  missing_token: [401, 'Missing access token'],
  invalid_token: [401, 'Invalid access token'],
  token_expired: [401, 'Access token expired'],
  invalid_google_token: [401, 'Invalid Google token'],
  invalid_refresh_token: [401, 'Invalid refresh token'],
  refresh_token_reused: [401, 'Refresh token reused'],
  user_inactive: [401, 'User inactive'],
  insufficient_credits: [402, 'Insufficient credits'],
  forbidden: [403, 'Forbidden'],
  upgrade_required: [403, 'Upgrade required'],
  plan_limit_reached: [403, 'Plan limit reached'],
  not_found: [404, 'Not found'],
  method_not_allowed: [405, 'Method not allowed'],
  concurrency_conflict: [409, 'Concurrency conflict'],
  reservation_expired: [409, 'Reservation expired'],
  reservation_closed: [409, 'Reservation closed'],
  refund_exceeds_spend: [409, 'Refund exceeds spend'],
  payload_too_large: [413, 'Payload too large'],
  unsupported_media_type: [415, 'Unsupported media type'],
  idempotency_key_reused: [422, 'Idempotency key reused'],
  rate_limited: [429, 'Too many requests'],
  quota_exceeded: [429, 'Quota exceeded'],
  internal_error: [500, 'Internal server error'],
  upstream_failed: [502, 'Upstream failed'],
  projection_lagging: [503, 'Projection lagging'],
  payments_not_configured: [503, 'Payments not configured'],
  unavailable: [503, 'Service unavailable'],
} as const satisfies Record<string, readonly [number, string]>;

export type ProblemCode = keyof typeof PROBLEMS;

export interface ProblemDocument {
  readonly type: string;
  readonly title: string;
  readonly status: number;
  readonly detail: string;
  readonly code: ProblemCode;
  /** Repeats `title`: the seed's clients read `error`. */
  readonly error: string;
  readonly [extra: string]: unknown;
}

export class ApiError extends Error {
  readonly status: number;
  readonly title: string;
  constructor(
    readonly code: ProblemCode,
    readonly detail?: string,
    /** Extra problem fields (e.g. `balance`, `required`), and headers to send. */
    readonly extra: Readonly<Record<string, unknown>> = {},
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(detail ?? PROBLEMS[code][1]);
    this.name = 'ApiError';
    this.status = PROBLEMS[code][0];
    this.title = PROBLEMS[code][1];
  }
}

export const problemType = (code: ProblemCode) => `urn:credit-ledger:problem:${code}`;

export function problemDocument(
  code: ProblemCode,
  detail?: string,
  extra: Readonly<Record<string, unknown>> = {},
): ProblemDocument {
  const [status, title] = PROBLEMS[code];
  return { ...extra, type: problemType(code), title, status, detail: detail ?? title, code, error: title };
}
