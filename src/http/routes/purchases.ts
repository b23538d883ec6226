import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { Counter } from 'prom-client';
import { UniqueIntegrityConstraintViolationError } from 'slonik';
import { z } from 'zod';
import { sql } from '../../adapters/postgres/pool.js';
import { type Stripe, StripeSignatureError } from '../../adapters/stripe/index.js';
import { formatPosition } from '../../core/event-store.js';
import { isUuid, uuidV5 } from '../../core/ids.js';
import { idempotencyKeyOf, markReplayed } from '../idempotency.js';
import { executeOrExplain } from '../ledger.js';
import { sendProblem } from '../plugins/errors.js';
import { principalOf } from '../plugins/auth.js';
import { ApiError } from '../problem.js';
import { bearerSecurity, errorResponses } from '../schemas.js';
import { findPackage } from './catalog.js';

/**
 * Purchases through Stripe Checkout (API §5).
 *
 * `POST /credits/purchases` opens a Checkout Session for a package and records the purchase in
 * `stripe_checkouts` (user, package, price at that moment). The session and its payment intent carry
 * `metadata { user_id, package_id, purchase_id }`. Nothing is credited until Stripe says the payment
 * went through.
 *
 * `POST /webhooks/stripe` (public; the `Stripe-Signature` over the raw bytes is the authentication):
 * - `checkout.session.completed` / `checkout.session.async_payment_succeeded` with
 *   `payment_status: "paid"` → one `CreditsPurchased` lot. The purchase is found by
 *   `metadata.purchase_id` / the session id in `stripe_checkouts`, else by `metadata.user_id` +
 *   `metadata.package_id`. `amount_total` and `currency` must equal the purchase's price, otherwise the
 *   event is **rejected: logged at error level, counted in `stripe_webhook_events_total{outcome="rejected"}`,
 *   nothing credited, and answered 200 `{ outcome: "rejected" }`** — a mismatch is permanent, and a
 *   non-2xx would only make Stripe redeliver it for days.
 * - `charge.refunded` → `PurchaseRefunded` (claws back what is left of that purchase's lot). The
 *   payment's user is found through `stripe_checkouts.payment_id`, else the charge's metadata, else
 *   the payment intent's metadata (fetched from Stripe).
 * - Each Stripe event id and each payment takes effect once: the account stream records both (the
 *   decider answers a repeat as already applied → 200 `{ outcome: "duplicate" }`), and a payment
 *   already recorded for another account (`stripe_checkouts.payment_id` is unique) is rejected.
 * - A failure to record (event store down) → 503, so Stripe delivers the event again.
 */

const checkoutRow = z.object({
  purchase_id: z.string(),
  user_id: z.string(),
  package_id: z.string(),
  credits: z.number(),
  amount_cents: z.number(),
  currency: z.string(),
  checkout_session_id: z.string().nullable(),
  checkout_url: z.string().nullable(),
  payment_id: z.string().nullable(),
  status: z.enum(['open', 'completed', 'rejected']),
});
type CheckoutRow = z.infer<typeof checkoutRow>;
const checkoutColumns = sql.fragment`purchase_id::text as purchase_id, user_id::text as user_id, package_id, credits, amount_cents, currency,
  checkout_session_id, checkout_url, payment_id, status`;

/** Namespace of the ids derived from Stripe ids (purchase and lot ids). */
const STRIPE_NAMESPACE = '3c5b1d8e-9f0a-4b6c-8e2d-7a1f4c9b0e35';

const WEBHOOK_OUTCOMES = ['credited', 'clawed_back', 'duplicate', 'ignored', 'rejected'] as const;
type WebhookOutcome = (typeof WEBHOOK_OUTCOMES)[number];

const webhookResponse = z.object({
  received: z.literal(true),
  outcome: z.enum(WEBHOOK_OUTCOMES),
  detail: z.string().optional(),
  position: z.string().optional(),
});

/** A Stripe id, or the id of an expanded object; null for anything else. */
const idOf = (value: unknown): string | null => {
  if (typeof value === 'string') return value;
  const id = value !== null && typeof value === 'object' ? (value as { id?: unknown }).id : undefined;
  return typeof id === 'string' ? id : null;
};

export const purchaseRoutes: FastifyPluginAsyncZod = async (app) => {
  const { pool } = app.deps;
  const webhookEvents =
    (app.deps.metrics.getSingleMetric('stripe_webhook_events_total') as Counter<'type' | 'outcome'> | undefined) ??
    new Counter({
      name: 'stripe_webhook_events_total',
      help: 'Stripe webhook events by type and outcome',
      labelNames: ['type', 'outcome'] as const,
      registers: [app.deps.metrics],
    });

  app.post(
    '/credits/purchases',
    {
      preHandler: app.authenticate,
      schema: {
        tags: ['credits'],
        summary: 'Buy a credit package through Stripe Checkout (Idempotency-Key optional)',
        security: bearerSecurity,
        body: z.strictObject({ package_id: z.string().min(1).max(64) }),
        response: {
          201: z.object({ purchase_id: z.string(), checkout_url: z.string() }),
          ...errorResponses(400, 401, 422, 502, 503),
        },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const pkg = findPackage(app.deps.catalog, request.body.package_id);
      if (!pkg) {
        throw new ApiError('validation_failed', `Unknown package ${JSON.stringify(request.body.package_id)}.`, {
          errors: [{ path: 'package_id', message: `must be one of ${app.deps.catalog.packages.map((p) => p.id).join(', ')}` }],
        });
      }
      const checkout = app.deps.payments.checkout;
      if (!checkout) throw new ApiError('payments_not_configured', `Payments are not configured on this server. Request id: ${request.id}.`);

      const key = idempotencyKeyOf(request, { required: false });
      const purchaseId = key ? uuidV5(`purchase:${principal.userId}:${key}`, STRIPE_NAMESPACE) : randomUUID();
      const existing = await pool.maybeOne(sql.type(checkoutRow)`select ${checkoutColumns} from stripe_checkouts where purchase_id = ${purchaseId}`);
      if (existing) {
        if (existing.user_id !== principal.userId || existing.package_id !== pkg.id) {
          throw new ApiError('idempotency_key_reused', 'This Idempotency-Key was already used with a different request.');
        }
        if (existing.checkout_url) {
          markReplayed(reply);
          return reply.code(201).send({ purchase_id: existing.purchase_id, checkout_url: existing.checkout_url });
        }
      } else {
        await pool.query(sql.unsafe`
          insert into stripe_checkouts (purchase_id, user_id, package_id, credits, amount_cents, currency)
          values (${purchaseId}, ${principal.userId}, ${pkg.id}, ${pkg.credits}, ${pkg.price_cents}, ${pkg.currency})
          on conflict (purchase_id) do nothing`);
      }

      let session;
      try {
        session = await checkout.createCheckoutSession({
          purchaseId,
          userId: principal.userId,
          email: principal.email,
          packageId: pkg.id,
          packageName: pkg.name,
          credits: pkg.credits,
          amountCents: pkg.price_cents,
          currency: pkg.currency,
        });
      } catch (error) {
        request.log.error({ err: error }, 'stripe: creating the checkout session failed');
        throw new ApiError('upstream_failed', `The payment provider could not open a checkout; nothing was charged. Retry later. Request id: ${request.id}.`);
      }
      await pool.query(sql.unsafe`
        update stripe_checkouts set checkout_session_id = ${session.id}, checkout_url = ${session.url}, updated_at = now()
        where purchase_id = ${purchaseId}`);
      return reply.code(201).send({ purchase_id: purchaseId, checkout_url: session.url });
    },
  );

  // The webhook reads its body as raw bytes: the signature is over them, byte for byte.
  await app.register(async (webhook) => {
    webhook.removeAllContentTypeParsers();
    webhook.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: 1024 * 1024 }, (_request, body, done) => done(null, body));

    webhook.post(
      '/webhooks/stripe',
      {
        config: { looseBody: true },
        schema: {
          tags: ['credits'],
          summary: 'Stripe webhook (public; verified by Stripe-Signature)',
          response: { 200: webhookResponse, ...errorResponses(400, 503) },
        },
      },
      async (request, reply) => {
        const payments = app.deps.payments;
        if (!payments.webhookSecret) return sendProblem(reply, 'payments_not_configured', `Stripe webhooks are not configured on this server. Request id: ${request.id}.`);
        const raw = request.body;
        if (!Buffer.isBuffer(raw)) return sendProblem(reply, 'invalid_signature', 'The webhook body is missing.');
        let event: Stripe.Event;
        try {
          event = payments.verifyWebhook(raw, request.headers['stripe-signature']);
        } catch (error) {
          if (error instanceof StripeSignatureError) {
            request.log.warn({ reason: error.message }, 'stripe webhook: bad signature');
            return sendProblem(reply, 'invalid_signature', 'The Stripe-Signature header does not match the body (or is too old).');
          }
          throw error;
        }
        const log = request.log.child({ stripe_event_id: event.id, stripe_event_type: event.type });
        const result = await handleStripeEvent(app, event, log, request.id);
        webhookEvents.inc({ type: event.type, outcome: result.outcome });
        return { received: true as const, ...result };
      },
    );
  });
};

interface HandledEvent {
  outcome: WebhookOutcome;
  detail?: string;
  position?: string;
}

async function handleStripeEvent(app: FastifyInstance, event: Stripe.Event, log: FastifyBaseLogger, requestId: string): Promise<HandledEvent> {
  switch (event.type) {
    case 'checkout.session.completed':
    case 'checkout.session.async_payment_succeeded':
    case 'charge.refunded': {
      // Signed, yet not of the shape Stripe documents: permanent, so acknowledged (a 5xx would only
      // make Stripe redeliver it) and logged, never credited.
      const object: unknown = (event as { data?: { object?: unknown } }).data?.object;
      if (typeof event.id !== 'string' || idOf(object) === null) {
        return rejected(log, 'the event has no id or no object with an id', { type: event.type });
      }
      return event.type === 'charge.refunded'
        ? clawBack(app, event, event.data.object, log, requestId)
        : creditCheckout(app, event, event.data.object, log, requestId);
    }
    default:
      return { outcome: 'ignored', detail: `event type ${event.type} is not used` };
  }
}

const rejected = (log: FastifyBaseLogger, detail: string, context: Record<string, unknown>): HandledEvent => {
  log.error(context, `stripe webhook rejected: ${detail}`);
  return { outcome: 'rejected', detail };
};

async function creditCheckout(
  app: FastifyInstance,
  event: Stripe.Event,
  session: Stripe.Checkout.Session,
  log: FastifyBaseLogger,
  requestId: string,
): Promise<HandledEvent> {
  const { pool, users, catalog } = app.deps;
  if (session.payment_status !== 'paid') return { outcome: 'ignored', detail: `payment_status is ${session.payment_status}` };
  const metadata = session.metadata ?? {};
  const paymentId = idOf(session.payment_intent) ?? session.id;

  // Which purchase: our own record first (the price as it was offered), else the metadata.
  const recorded = isUuid(metadata.purchase_id)
    ? await pool.maybeOne(sql.type(checkoutRow)`select ${checkoutColumns} from stripe_checkouts where purchase_id = ${metadata.purchase_id}`)
    : await pool.maybeOne(sql.type(checkoutRow)`select ${checkoutColumns} from stripe_checkouts where checkout_session_id = ${session.id}`);
  if (!recorded && metadata.user_id === undefined && metadata.package_id === undefined && metadata.purchase_id === undefined) {
    return { outcome: 'ignored', detail: 'not a credit purchase (no purchase metadata)' };
  }
  let expected: Pick<CheckoutRow, 'purchase_id' | 'user_id' | 'package_id' | 'credits' | 'amount_cents' | 'currency'>;
  if (recorded) {
    if (metadata.user_id !== undefined && metadata.user_id !== recorded.user_id) {
      return rejected(log, 'metadata.user_id differs from the recorded purchase', { purchase_id: recorded.purchase_id });
    }
    if (metadata.package_id !== undefined && metadata.package_id !== recorded.package_id) {
      return rejected(log, 'metadata.package_id differs from the recorded purchase', { purchase_id: recorded.purchase_id });
    }
    expected = recorded;
  } else {
    if (!isUuid(metadata.user_id) || !(await users.findById(metadata.user_id))) {
      return rejected(log, 'metadata.user_id names no user', { user_id: metadata.user_id ?? null, session_id: session.id });
    }
    const pkg = typeof metadata.package_id === 'string' ? findPackage(catalog, metadata.package_id) : undefined;
    if (!pkg) return rejected(log, 'metadata.package_id names no package', { package_id: metadata.package_id ?? null, session_id: session.id });
    expected = {
      purchase_id: uuidV5(`checkout:${session.id}`, STRIPE_NAMESPACE),
      user_id: metadata.user_id,
      package_id: pkg.id,
      credits: pkg.credits,
      amount_cents: pkg.price_cents,
      currency: pkg.currency,
    };
  }

  const currency = (session.currency ?? '').toLowerCase();
  if (session.amount_total !== expected.amount_cents || currency !== expected.currency) {
    await recordCheckout(app, expected, session.id, paymentId, 'rejected', log);
    await rememberRefused(app, paymentId, expected, 'amount or currency does not match the package');
    return rejected(log, `paid ${session.amount_total} ${currency}, the package costs ${expected.amount_cents} ${expected.currency}`, {
      purchase_id: expected.purchase_id,
      user_id: expected.user_id,
      package_id: expected.package_id,
      amount_total: session.amount_total,
      currency,
    });
  }
  await recordCheckout(app, expected, session.id, paymentId, 'completed', log);
  // A payment is credited once, to one account: the ledger refuses a repeated payment id only within
  // an account, so a payment already recorded for another user is refused here (payment_id is unique).
  const owner = await pool.maybeOne(sql.type(z.object({ user_id: z.string() }))`
    select user_id::text as user_id from stripe_checkouts where payment_id = ${paymentId}`);
  if (owner && owner.user_id !== expected.user_id) {
    return rejected(log, 'the payment is already recorded for another account', { payment_id: paymentId, user_id: expected.user_id });
  }

  const result = await executeOrExplain(
    app.deps.ledger,
    expected.user_id,
    {
      type: 'Purchase',
      purchase_id: expected.purchase_id,
      lot_id: uuidV5(`lot:${paymentId}`, STRIPE_NAMESPACE),
      payment_id: paymentId,
      package_id: expected.package_id,
      credits: expected.credits,
      amount_cents: expected.amount_cents,
      currency: expected.currency,
      provider_event_id: event.id,
    },
    { requestId, actorId: null, log },
  );
  const decision = result.decision;
  if (decision.kind === 'applied') {
    log.info({ user_id: expected.user_id, purchase_id: expected.purchase_id, credits: expected.credits }, 'stripe: purchase credited');
    return { outcome: 'credited', ...(result.position ? { position: formatPosition(result.position) } : {}) };
  }
  if (decision.kind === 'already_applied') return { outcome: 'duplicate', detail: decision.already_applied.reason };
  await rememberRefused(app, paymentId, expected, `the ledger refused the purchase: ${decision.error.code}`);
  return rejected(log, `the ledger refused the purchase: ${decision.error.detail}`, { code: decision.error.code });
}

/** A payment nothing was credited for (see migrations/035_stripe_rejected_payments.sql); the first reason stays. */
async function rememberRefused(
  app: FastifyInstance,
  paymentId: string,
  purchase: Pick<CheckoutRow, 'purchase_id' | 'user_id'>,
  reason: string,
): Promise<void> {
  await app.deps.pool.query(sql.unsafe`
    insert into stripe_rejected_payments (payment_id, user_id, purchase_id, reason)
    values (${paymentId}, ${purchase.user_id}, ${purchase.purchase_id}, ${reason})
    on conflict (payment_id) do nothing`);
}

/** Keeps payment → user/purchase for later refunds (and marks rejected payments, whose refunds are ignored). */
async function recordCheckout(
  app: FastifyInstance,
  purchase: Pick<CheckoutRow, 'purchase_id' | 'user_id' | 'package_id' | 'credits' | 'amount_cents' | 'currency'>,
  sessionId: string,
  paymentId: string,
  status: 'completed' | 'rejected',
  log: FastifyBaseLogger,
): Promise<void> {
  try {
    await app.deps.pool.query(sql.unsafe`
      insert into stripe_checkouts (purchase_id, user_id, package_id, credits, amount_cents, currency, checkout_session_id, payment_id, status)
      values (${purchase.purchase_id}, ${purchase.user_id}, ${purchase.package_id}, ${purchase.credits}, ${purchase.amount_cents},
              ${purchase.currency}, ${sessionId}, ${paymentId}, ${status})
      on conflict (purchase_id) do update
        set checkout_session_id = coalesce(stripe_checkouts.checkout_session_id, excluded.checkout_session_id),
            payment_id = coalesce(stripe_checkouts.payment_id, excluded.payment_id),
            status = case when stripe_checkouts.status = 'completed' then 'completed' else excluded.status end,
            updated_at = now()`);
  } catch (error) {
    // Another purchase already claims this session or payment: the payment's owner (checked by the
    // caller) and the ledger's payment id check decide.
    if (!(error instanceof UniqueIntegrityConstraintViolationError)) throw error;
    log.warn({ err: error, purchase_id: purchase.purchase_id }, 'stripe: payment already recorded for another purchase');
  }
}

async function clawBack(
  app: FastifyInstance,
  event: Stripe.Event,
  charge: Stripe.Charge,
  log: FastifyBaseLogger,
  requestId: string,
): Promise<HandledEvent> {
  const { pool, payments } = app.deps;
  const paymentId = idOf(charge.payment_intent) ?? charge.id;
  const recorded = await pool.maybeOne(sql.type(checkoutRow)`select ${checkoutColumns} from stripe_checkouts where payment_id = ${paymentId}`);
  if (recorded?.status === 'rejected') return { outcome: 'ignored', detail: 'the payment was rejected; nothing was credited' };

  let userId: string | null = recorded?.user_id ?? (isUuid(charge.metadata?.user_id) ? charge.metadata.user_id : null);
  if (!userId && payments.checkout && typeof charge.payment_intent === 'string') {
    try {
      const metadata = await payments.checkout.paymentIntentMetadata(charge.payment_intent);
      if (isUuid(metadata?.user_id)) userId = metadata.user_id;
    } catch (error) {
      log.warn({ err: error, payment_id: paymentId }, 'stripe: could not read the payment intent of a refunded charge');
      throw new ApiError('unavailable', `Could not look up the refunded payment; deliver again later. Request id: ${requestId}.`, {}, { 'retry-after': '60' });
    }
  }
  if (!userId) {
    log.warn({ payment_id: paymentId }, 'stripe: refund of a payment that is not a credit purchase');
    return { outcome: 'ignored', detail: 'no credit purchase for this payment' };
  }
  if (!charge.refunded) {
    // A partial refund: API §5 claws back what is left of the purchase's lot all the same.
    log.warn({ payment_id: paymentId, amount_refunded: charge.amount_refunded, amount: charge.amount }, 'stripe: partial refund claws back the whole lot');
  }

  const result = await executeOrExplain(
    app.deps.ledger,
    userId,
    { type: 'RefundPurchase', payment_id: paymentId, provider_event_id: event.id },
    { requestId, actorId: null, log },
  );
  const decision = result.decision;
  if (decision.kind === 'applied') {
    log.info({ user_id: userId, payment_id: paymentId }, 'stripe: purchase clawed back');
    return { outcome: 'clawed_back', ...(result.position ? { position: formatPosition(result.position) } : {}) };
  }
  if (decision.kind === 'already_applied') return { outcome: 'duplicate', detail: decision.already_applied.reason };
  if (decision.error.code === 'not_found') {
    // Refused when its checkout arrived (e.g. a second payment for a purchase already paid): nothing
    // was credited for it, so there is nothing to claw back, now or later.
    const refused = await pool.maybeOne(sql.type(z.object({ reason: z.string() }))`
      select reason from stripe_rejected_payments where payment_id = ${paymentId}`);
    if (refused) {
      log.warn({ user_id: userId, payment_id: paymentId, reason: refused.reason }, 'stripe: refund of a payment that was refused; nothing to claw back');
      return { outcome: 'ignored', detail: 'the payment was refused when it arrived; nothing was credited for it' };
    }
    // The purchase is not in the ledger (yet): its checkout event may still be on its way. Let Stripe retry.
    log.warn({ user_id: userId, payment_id: paymentId }, 'stripe: refund of a purchase not recorded yet');
    throw new ApiError('unavailable', `The refunded purchase is not recorded yet; deliver again later. Request id: ${requestId}.`, {}, { 'retry-after': '60' });
  }
  return rejected(log, `the ledger refused the refund: ${decision.error.detail}`, { code: decision.error.code });
}
