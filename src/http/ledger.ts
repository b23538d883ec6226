import type { FastifyBaseLogger } from 'fastify';
import type { Accounts } from '../core/accounts.js';
import { ConcurrencyConflictError } from '../core/command-handler.js';
import { formatPosition } from '../core/event-store.js';
import {
  InvalidLedgerEventError,
  type LedgerCommand,
  type LedgerError,
  type LedgerEvent,
  LedgerReplayError,
  type LedgerState,
} from '../ledger/index.js';
import { ApiError } from './problem.js';

/**
 * HTTP ↔ ledger: runs one command on an account and hands back what a response is built from — the
 * events of the outcome and its position — whether the outcome was decided now or replayed from the
 * idempotency record. Routes build their bodies from those events only, so a replay is byte-for-byte
 * the first response.
 */

export type OutcomeEvent = { readonly type: LedgerEvent['type']; readonly data: LedgerEvent['data'] };

export interface CommandOutcome {
  readonly events: readonly OutcomeEvent[];
  /** API `position` of the outcome's last event. */
  readonly position: string;
  /** Answered from the idempotency record: nothing was appended. */
  readonly replayed: boolean;
}

export interface RunOptions {
  readonly requestId?: string;
  readonly actorId?: string | null;
  readonly log: FastifyBaseLogger;
}

/** Runs the command; throws an ApiError for every outcome other than applied / idempotent replay. */
export async function runAccountCommand(
  accounts: Accounts,
  userId: string,
  command: LedgerCommand,
  options: RunOptions,
): Promise<CommandOutcome & { state: LedgerState }> {
  const result = await executeOrExplain(accounts, userId, command, options);
  const { decision } = result;
  switch (decision.kind) {
    case 'applied': {
      if (!result.position) throw new Error('ledger: an applied decision without a position');
      return { events: decision.events, position: formatPosition(result.position), replayed: false, state: result.state };
    }
    case 'already_applied': {
      const already = decision.already_applied;
      if (already.reason !== 'idempotent_replay') {
        throw new Error(`ledger: unexpected already_applied (${already.reason}) for ${command.type}`);
      }
      const position = already.result.last_position ?? result.state.position;
      if (!position) throw new Error('ledger: a replayed outcome without a position');
      return { events: already.result.events, position: formatPosition(position), replayed: true, state: result.state };
    }
    case 'rejected':
      throw ledgerApiError(decision.error);
    default: {
      const unreachable: never = decision;
      throw new Error(`ledger: unknown decision ${String(unreachable)}`);
    }
  }
}

/** `accounts.execute`, with store failures turned into the API's 409 / 503. */
export async function executeOrExplain(accounts: Accounts, userId: string, command: LedgerCommand, options: RunOptions) {
  try {
    return await accounts.execute(userId, command, {
      ...(options.requestId === undefined ? {} : { requestId: options.requestId }),
      actorId: options.actorId ?? null,
    });
  } catch (error) {
    if (error instanceof ConcurrencyConflictError) {
      throw new ApiError('concurrency_conflict', 'The account changed under this request too often; retry it (with the same Idempotency-Key).', {}, { 'retry-after': '1' });
    }
    if (error instanceof LedgerReplayError || error instanceof InvalidLedgerEventError) throw error;
    // The append may or may not have happened. Nothing is lost: a retry with the same key replays the
    // outcome if it did, and decides afresh if it did not.
    options.log.error({ err: error, userId, command: command.type }, 'account command failed in the event store');
    throw new ApiError(
      'unavailable',
      `The ledger could not confirm this request. Retry it with the same Idempotency-Key: it takes effect at most once. Request id: ${options.requestId ?? 'unknown'}.`,
      {},
      { 'retry-after': '1' },
    );
  }
}

/** The problem for a decider error, with the extra fields API §5/§6/§9 list. */
export function ledgerApiError(error: LedgerError): ApiError {
  switch (error.code) {
    case 'insufficient_credits':
      return new ApiError('insufficient_credits', error.detail, { balance: error.balance, required: error.required });
    case 'quota_exceeded':
      return new ApiError(
        'quota_exceeded',
        error.detail,
        { limit: error.limit, used: error.used, window: error.window, resets_at: error.resets_at },
        { 'retry-after': String(error.retry_after_seconds) },
      );
    case 'not_found':
      return new ApiError('not_found', error.detail, { resource: error.resource, id: error.id });
    case 'reservation_expired':
      return new ApiError('reservation_expired', error.detail, { reservation_id: error.reservation_id, expires_at: error.expires_at });
    case 'reservation_closed':
      return new ApiError('reservation_closed', error.detail, { reservation_id: error.reservation_id, status: error.status });
    case 'refund_exceeds_spend':
      return new ApiError('refund_exceeds_spend', error.detail, { refundable: error.refundable, requested: error.requested });
    case 'validation_failed':
      return new ApiError('validation_failed', error.detail, { errors: error.errors });
    case 'idempotency_key_reused':
      return new ApiError('idempotency_key_reused', 'This Idempotency-Key was already used with a different request (within the last 24 h).');
    default: {
      const unreachable: never = error;
      throw new Error(`ledger: unknown error ${String((unreachable as { code: string }).code)}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Reading an outcome's events

/** The first event of a type in the outcome (the decision's own event; sweeps come before it). */
export function eventOf<T extends LedgerEvent['type']>(events: readonly OutcomeEvent[], type: T): DataOf<T> {
  const event = events.find((candidate) => candidate.type === type);
  if (!event) throw new Error(`ledger: the outcome has no ${type} event`);
  return event.data as DataOf<T>;
}

type DataOf<T extends LedgerEvent['type']> = Extract<LedgerEvent, { type: T }> extends { data: infer D } ? D : never;

/** Balance and reserved after the whole outcome (its last event that carries them). */
export function balanceAfter(events: readonly OutcomeEvent[]): { balance: number; reserved: number; available: number } | null {
  for (let i = events.length - 1; i >= 0; i--) {
    const data = (events[i] as OutcomeEvent).data as { balance_after?: number; reserved_after?: number };
    if (typeof data.balance_after === 'number' && typeof data.reserved_after === 'number') {
      return { balance: data.balance_after, reserved: data.reserved_after, available: data.balance_after - data.reserved_after };
    }
  }
  return null;
}

/** Like balanceAfter, for outcomes that always carry a balance. */
export function requireBalanceAfter(events: readonly OutcomeEvent[]): { balance: number; reserved: number; available: number } {
  const balance = balanceAfter(events);
  if (!balance) throw new Error('ledger: the outcome carries no balance');
  return balance;
}
