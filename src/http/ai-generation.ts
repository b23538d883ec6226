import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import { z } from 'zod';
import { AiProviderError, type AiProvider } from '../adapters/ai/index.js';
import { type DatabasePool, sql } from '../adapters/postgres/pool.js';
import type { ModelPrices } from '../config.js';
import type { Accounts } from '../core/accounts.js';
import type { Clock } from '../core/clock.js';
import { formatPosition } from '../core/event-store.js';
import { findIdempotentResult, type IdempotencyStamp } from '../ledger/index.js';
import type { AiGeneration, AiGenerationInput, AiGenerationResult } from '../membership/ports.js';
import { derivedKey, REPLAYED_HEADER, requestHash } from './idempotency.js';
import { balanceAfter, eventOf, runAccountCommand } from './ledger.js';
import { ApiError, type ProblemCode } from './problem.js';
import { toStorableText } from './storable-text.js';

/**
 * A charged AI generation (API §7), shared by `POST /ai/generate` and `POST /components/ai-generate`:
 *
 *   Reserve(price) → provider → Settle(price)  (counts the one API call)
 *                             ↘ Release         → 502 upstream_failed, nothing charged
 *
 * With an Idempotency-Key the three steps are stamped with the key (Reserve) and keys derived from it
 * (`ai-settle:…`, `ai-release:…`), all with the request's hash, so a retry finds in the account stream
 * how far the first attempt got — and never calls the provider a second time:
 * - settled → the first 200 again (the answer text is kept in `ai_generations` for 24 h);
 * - released → the first failure again;
 * - still open → 409 concurrency_conflict (the first attempt is still running; retry shortly);
 * - expired (the first attempt died between reserve and settle) → 502, nothing was charged.
 * A crash at any point leaves at worst an open reservation, which the sweeper expires (no charge).
 */

/**
 * Held long enough for the provider's timeout plus the settle (at least 2 min, at most the ledger's
 * 1 h); if the process dies in between, the sweeper releases it after that.
 */
export const aiReservationTtlSeconds = (providerTimeoutMs: number): number =>
  Math.min(3600, Math.max(120, Math.ceil(providerTimeoutMs / 1000) + 60));

/**
 * Matches the membership port (src/membership/ports.ts `AiGeneration`), with optional extras: the
 * request id for the events' metadata, `max_tokens`, and the route the key belongs to.
 */
export interface AiGenerateInput extends AiGenerationInput {
  readonly maxTokens?: number | undefined;
  readonly requestId?: string | undefined;
  /** Route the key belongs to (part of the request hash): default `/ai/generate`. */
  readonly route?: string | undefined;
  /** Anything else that identifies the request (part of the hash), e.g. a component name. */
  readonly extra?: Record<string, unknown> | undefined;
  readonly log?: FastifyBaseLogger | undefined;
}

export interface AiGenerateResult extends AiGenerationResult {
  readonly replayed: boolean;
}

export interface AiGenerationService extends AiGeneration {
  /** Throws ApiError: unknown_model (400), insufficient_credits (402), quota_exceeded (429), upstream_failed (502), … */
  generate(input: AiGenerateInput): Promise<AiGenerateResult>;
  /** The configured provider's name. */
  readonly provider: string;
}

/** The `POST /ai/generate` body of a result. */
export const aiGenerateBody = (result: AiGenerateResult) => ({
  result: { response: result.response, model: result.model, provider: result.provider },
  credits_used: result.credits_used,
  balance_remaining: result.balance_remaining,
  position: result.position,
});

const storedRow = z.object({
  status: z.enum(['succeeded', 'failed']),
  model: z.string(),
  provider: z.string(),
  response: z.string().nullable(),
  problem: z.object({ code: z.string(), detail: z.string() }).nullable(),
});

export function createAiGeneration(options: {
  accounts: Accounts;
  provider: AiProvider;
  modelPrices: ModelPrices;
  pool: DatabasePool;
  clock: Clock;
  logger: FastifyBaseLogger;
  /** The provider's timeout, which the reservation must outlive. Default 30 s. */
  providerTimeoutMs?: number;
}): AiGenerationService {
  const { accounts, provider, modelPrices, pool, clock } = options;
  const ttlSeconds = aiReservationTtlSeconds(options.providerTimeoutMs ?? 30_000);

  const store = (userId: string, reservationId: string, row: z.infer<typeof storedRow>) =>
    pool.query(sql.unsafe`
      insert into ai_generations (user_id, reservation_id, status, model, provider, response, problem)
      values (${userId}, ${reservationId}, ${row.status}, ${row.model}, ${row.provider}, ${row.response},
              ${row.problem === null ? null : JSON.stringify(row.problem)}::jsonb)
      on conflict (user_id, reservation_id) do nothing`);

  const stored = (userId: string, reservationId: string) =>
    pool.maybeOne(sql.type(storedRow)`
      select status, model, provider, response, problem from ai_generations
      where user_id = ${userId} and reservation_id = ${reservationId}`);

  return {
    provider: provider.name,
    async generate(input) {
      const log = input.log ?? options.logger;
      const price = Object.hasOwn(modelPrices, input.model) ? modelPrices[input.model] : undefined;
      if (price === undefined) {
        throw new ApiError('unknown_model', `Unknown model ${JSON.stringify(input.model)}. Known models: ${Object.keys(modelPrices).join(', ')}.`, {
          model: input.model,
          models: Object.keys(modelPrices),
        });
      }
      const run = { requestId: input.requestId, actorId: input.userId, log };
      const key = input.idempotencyKey;
      const hash = key
        ? requestHash({
            method: 'POST',
            route: input.route ?? '/ai/generate',
            body: { model: input.model, prompt: input.prompt, max_tokens: input.maxTokens, ...(input.extra ?? {}) },
            actorId: input.userId,
          })
        : undefined;
      const stamp = (purpose: string | null): IdempotencyStamp | undefined =>
        key && hash ? { key: purpose ? derivedKey(purpose, key) : key, request_hash: hash } : undefined;

      // 1. Reserve the model's price.
      const reserved = await runAccountCommand(
        accounts,
        input.userId,
        {
          type: 'Reserve',
          reservation_id: randomUUID(),
          amount: price,
          ttl_seconds: ttlSeconds,
          description: `AI generation (${input.model})`,
          idempotency: stamp(null),
        },
        run,
      );
      const reservationId = eventOf(reserved.events, 'CreditsReserved').reservation_id;

      if (reserved.replayed && key) {
        // Read the state now, before anything else can change it.
        const now = clock.now();
        // Only the steps of this very request: a derived key is an ordinary key string, so a client may
        // have used it for a request of its own (then its hash is another request's).
        const ownStep = (purpose: string) => {
          const record = findIdempotentResult(reserved.state, derivedKey(purpose, key), now);
          return record !== null && record.request_hash === hash ? record : null;
        };
        const settled = ownStep('ai-settle');
        const released = ownStep('ai-release');
        const status = reserved.state.reservations.get(reservationId)?.status ?? null;
        if (settled) {
          const row = await stored(input.userId, reservationId);
          const spent = eventOf(settled.events, 'CreditsSpent');
          const position = settled.last_position;
          return {
            replayed: true,
            response: row?.response ?? '',
            model: row?.model ?? input.model,
            provider: row?.provider ?? provider.name,
            credits_used: spent.amount,
            balance_remaining: balanceAfter(settled.events)?.balance ?? 0,
            position: position ? formatPosition(position) : reserved.position,
          };
        }
        if (released) {
          const row = await stored(input.userId, reservationId);
          const problem = row?.problem ?? { code: 'upstream_failed', detail: 'The AI provider failed; nothing was charged.' };
          throw new ApiError(problem.code as ProblemCode, problem.detail, {}, { [REPLAYED_HEADER]: 'true' });
        }
        if (status === 'open') {
          throw new ApiError('concurrency_conflict', 'A request with this Idempotency-Key is still in progress; retry shortly.', {}, { 'retry-after': '1' });
        }
        throw new ApiError('upstream_failed', `The first request with this Idempotency-Key did not complete; nothing was charged. Use a new key to try again. Request id: ${input.requestId ?? 'unknown'}.`, {}, {
          [REPLAYED_HEADER]: 'true',
        });
      }

      const fail = async (failure: ApiError, release: boolean): Promise<never> => {
        if (key) {
          const problem = { code: failure.code, detail: failure.detail ?? failure.title };
          await pool
            .query(sql.unsafe`
              insert into ai_generations (user_id, reservation_id, status, model, provider, response, problem)
              values (${input.userId}, ${reservationId}, 'failed', ${input.model}, ${provider.name}, null, ${JSON.stringify(problem)}::jsonb)
              on conflict (user_id, reservation_id) do update set status = 'failed', response = null, problem = excluded.problem`)
            .catch((error: unknown) => log.error({ err: error }, 'ai: could not record the failed generation'));
        }
        if (release) {
          try {
            await runAccountCommand(accounts, input.userId, { type: 'Release', reservation_id: reservationId, idempotency: stamp('ai-release') }, run);
          } catch (error) {
            // The reservation expires on its own (after ttlSeconds): still no charge.
            log.warn({ err: error, reservationId }, 'ai: release after a failure did not go through');
          }
        }
        throw failure;
      };

      // 2. Call the provider.
      let response: string;
      try {
        // Storable as answered: the text is kept for replays (and in AI components), so the first answer
        // and every replay are the same text.
        response = toStorableText((await provider.complete({ model: input.model, prompt: input.prompt, maxTokens: input.maxTokens })).response);
      } catch (error) {
        log.warn({ err: error, model: input.model, provider: provider.name }, 'ai: provider failed');
        const detail = error instanceof AiProviderError ? error.detail : 'the AI provider failed';
        return fail(new ApiError('upstream_failed', `Generation failed: ${detail}. Nothing was charged. Request id: ${input.requestId ?? 'unknown'}.`), true);
      }

      // 3. Keep the answer for replays, then settle.
      if (key) await store(input.userId, reservationId, { status: 'succeeded', model: input.model, provider: provider.name, response, problem: null });
      let settled;
      try {
        settled = await runAccountCommand(
          accounts,
          input.userId,
          {
            type: 'Settle',
            reservation_id: reservationId,
            spend_id: randomUUID(),
            amount: price,
            description: `AI generation (${input.model})`,
            metadata: { model: input.model, provider: provider.name },
            reference_type: 'ai_generation',
            reference_id: reservationId,
            idempotency: stamp('ai-settle'),
          },
          run,
        );
      } catch (error) {
        if (error instanceof ApiError && error.code === 'reservation_expired') {
          return fail(new ApiError('upstream_failed', `Generation took longer than its reservation; nothing was charged. Request id: ${input.requestId ?? 'unknown'}.`), false);
        }
        if (error instanceof ApiError && error.status < 500 && error.code !== 'concurrency_conflict') {
          // e.g. quota_exceeded by concurrent calls: nothing charged, the hold goes back.
          return fail(error, true);
        }
        throw error;
      }
      const spent = eventOf(settled.events, 'CreditsSpent');
      return {
        replayed: settled.replayed,
        response,
        model: input.model,
        provider: provider.name,
        credits_used: spent.amount,
        balance_remaining: balanceAfter(settled.events)?.balance ?? 0,
        position: settled.position,
      };
    },
  };
}
