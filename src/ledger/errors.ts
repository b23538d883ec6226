/**
 * The decider's errors: values with a stable `code` from API §9. The HTTP layer maps code → status
 * and copies the listed extra fields into the problem+json body; `detail` is a human sentence.
 */

export interface ValidationIssue {
  readonly path: string;
  readonly message: string;
}

export type LedgerError =
  /** 402. `balance` is what is available (balance − reserved). */
  | { readonly code: 'insufficient_credits'; readonly detail: string; readonly balance: number; readonly required: number }
  /** 429 with `Retry-After: retry_after_seconds`. */
  | {
      readonly code: 'quota_exceeded';
      readonly detail: string;
      readonly limit: number;
      readonly used: number;
      readonly window: 'day' | 'month';
      readonly retry_after_seconds: number;
      readonly resets_at: string;
    }
  /** 404. */
  | { readonly code: 'not_found'; readonly detail: string; readonly resource: 'reservation' | 'spend' | 'purchase'; readonly id: string }
  /** 409. The reservation was closed by expiry (its credits are back in `available`). */
  | { readonly code: 'reservation_expired'; readonly detail: string; readonly reservation_id: string; readonly expires_at: string }
  /** 409. The reservation was already settled or released. */
  | {
      readonly code: 'reservation_closed';
      readonly detail: string;
      readonly reservation_id: string;
      readonly status: 'settled' | 'released';
    }
  /** 409. */
  | { readonly code: 'refund_exceeds_spend'; readonly detail: string; readonly refundable: number; readonly requested: number }
  /** 400. */
  | { readonly code: 'validation_failed'; readonly detail: string; readonly errors: readonly ValidationIssue[] }
  /** 422. */
  | { readonly code: 'idempotency_key_reused'; readonly detail: string; readonly key: string };

export type LedgerErrorCode = LedgerError['code'];

export const LEDGER_ERROR_STATUS: Readonly<Record<LedgerErrorCode, number>> = {
  insufficient_credits: 402,
  quota_exceeded: 429,
  not_found: 404,
  reservation_expired: 409,
  reservation_closed: 409,
  refund_exceeds_spend: 409,
  validation_failed: 400,
  idempotency_key_reused: 422,
};

export const validationFailed = (errors: readonly ValidationIssue[]): LedgerError => ({
  code: 'validation_failed',
  detail: errors.map((e) => `${e.path}: ${e.message}`).join('; '),
  errors,
});
