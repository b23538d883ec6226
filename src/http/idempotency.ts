import { createHash } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { JsonObject, JsonValue } from '../core/event-store.js';
import { canonicalJsonFast } from '../core/canonical.js';
import type { IdempotencyStamp } from '../ledger/commands.js';
import { ApiError } from './problem.js';

/**
 * `Idempotency-Key` (API §1).
 *
 * The key and a hash of the request travel with the command into the account stream: the decider
 * records them in the metadata of the events it decides (`ledgerEventMetadata`), rebuilds the record
 * from the stream on every load, and answers a repeated key itself — same hash within 24 h →
 * `already_applied` with the recorded events (the route rebuilds the first response from them, adds
 * `Idempotent-Replayed: true`, appends nothing); other hash → `idempotency_key_reused`. So the record
 * is exactly as durable as the effect, on either event store, and concurrent duplicates are decided one
 * after the other on one stream (in-process queue, then the expected revision across processes): the
 * second always sees the first one's record. Rejections (402, 404, 409, 429) append nothing and are not
 * recorded: a retry with the same key after a top-up may succeed.
 */

export const IDEMPOTENCY_KEY_HEADER = 'idempotency-key';
export const REPLAYED_HEADER = 'idempotent-replayed';

const VISIBLE_ASCII = /^[\x21-\x7e]{1,255}$/;

/** The request's key: undefined when absent and optional; 400 when malformed or absent and required. */
export function idempotencyKeyOf(request: FastifyRequest, options: { required: boolean }): string | undefined {
  const raw = request.headers[IDEMPOTENCY_KEY_HEADER];
  if (raw === undefined) {
    if (options.required) {
      throw new ApiError('idempotency_key_missing', 'This request changes credits: send an Idempotency-Key header (1-255 visible ASCII characters).');
    }
    return undefined;
  }
  if (typeof raw !== 'string' || !VISIBLE_ASCII.test(raw)) {
    throw new ApiError('validation_failed', 'The Idempotency-Key header must be one value of 1-255 visible ASCII characters.', {
      errors: [{ path: 'headers.idempotency-key', message: 'must be 1-255 visible ASCII characters' }],
    });
  }
  return raw;
}

export const sha256Hex = (text: string): string => createHash('sha256').update(text).digest('hex');

/**
 * SHA-256 of the canonical JSON (keys sorted at every depth) of what identifies the request: method,
 * route template, path parameters, the validated body and the acting principal. Property order and
 * whitespace do not matter; any other difference does.
 */
export function requestHash(input: {
  method: string;
  route: string;
  params?: unknown;
  body?: unknown;
  actorId?: string | null;
}): string {
  const identity: JsonObject = {
    method: input.method.toUpperCase(),
    route: input.route,
    params: toJson(input.params ?? {}),
    body: toJson(input.body ?? null),
    actor: input.actorId ?? null,
  };
  return sha256Hex(canonicalJsonFast(identity));
}

/** Plain JSON of a validated value (drops undefined members, as JSON would). */
const toJson = (value: unknown): JsonValue => JSON.parse(JSON.stringify(value ?? null)) as JsonValue;

/**
 * The idempotency stamp of a request for a command on an account stream. `namespace` keeps keys of
 * different principals apart on one stream: an admin's key on a user's account is stored as
 * `adm:<admin id>:<sha256 of the key>`, so it can never collide with the user's own keys.
 */
export function idempotencyStamp(
  request: FastifyRequest,
  options: { required: boolean; actorId: string; namespace?: 'admin' },
): IdempotencyStamp | undefined {
  const key = idempotencyKeyOf(request, { required: options.required });
  if (key === undefined) return undefined;
  const hash = requestHash({
    method: request.method,
    route: request.routeOptions.url ?? request.url,
    params: request.params,
    body: request.body,
    actorId: options.actorId,
  });
  return { key: options.namespace === 'admin' ? `adm:${options.actorId}:${sha256Hex(key)}` : key, request_hash: hash };
}

/** A key derived from another for a later step of the same request (e.g. the settle of an AI call). */
export const derivedKey = (purpose: string, key: string): string => `${purpose}:${sha256Hex(key)}`;

export function markReplayed(reply: FastifyReply): void {
  reply.header(REPLAYED_HEADER, 'true');
}
