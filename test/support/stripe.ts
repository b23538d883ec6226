import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Stripe from 'stripe';

/**
 * A local fake of the parts of the Stripe API the service calls (Checkout Sessions, PaymentIntents),
 * and helpers that sign webhook payloads exactly as Stripe does.
 */

export const STRIPE_TEST_SECRET_KEY = 'sk_test_fake_ledger';
export const STRIPE_TEST_WEBHOOK_SECRET = 'whsec_test_ledger_secret';

export interface FakeStripeSession {
  readonly id: string;
  readonly url: string;
  readonly params: Record<string, string>;
  readonly idempotencyKey: string | undefined;
}

export interface FakeStripe {
  readonly url: string;
  readonly sessions: FakeStripeSession[];
  /** Metadata returned for GET /v1/payment_intents/:id. */
  readonly paymentIntents: Map<string, Record<string, string>>;
  /** Answer 500 to checkout session creation. */
  failCheckout: boolean;
  /** The env a test app needs to talk to this fake. */
  env(): Record<string, string>;
  close(): Promise<void>;
}

export async function startFakeStripe(): Promise<FakeStripe> {
  const sessions: FakeStripeSession[] = [];
  const paymentIntents = new Map<string, Record<string, string>>();
  const byIdempotencyKey = new Map<string, FakeStripeSession>();
  const state = { failCheckout: false };
  const server: Server = createServer(async (request, response) => {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const params = Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString('utf8')));
    const send = (status: number, body: unknown) => {
      response.writeHead(status, { 'content-type': 'application/json', 'request-id': `req_${sessions.length}` });
      response.end(JSON.stringify(body));
    };
    const auth = request.headers.authorization;
    if (auth !== `Bearer ${STRIPE_TEST_SECRET_KEY}`) return send(401, { error: { type: 'invalid_request_error', message: 'bad key' } });
    if (request.method === 'POST' && request.url === '/v1/checkout/sessions') {
      if (state.failCheckout) return send(500, { error: { type: 'api_error', message: 'boom' } });
      const key = request.headers['idempotency-key'] as string | undefined;
      const earlier = key ? byIdempotencyKey.get(key) : undefined;
      const session =
        earlier ??
        (() => {
          const id = `cs_test_${sessions.length + 1}_${Math.random().toString(36).slice(2, 8)}`;
          const created = { id, url: `https://checkout.stripe.test/c/pay/${id}`, params, idempotencyKey: key };
          sessions.push(created);
          if (key) byIdempotencyKey.set(key, created);
          return created;
        })();
      return send(200, { id: session.id, object: 'checkout.session', url: session.url, payment_status: 'unpaid', status: 'open' });
    }
    const intent = /^\/v1\/payment_intents\/([^/?]+)/.exec(request.url ?? '');
    if (request.method === 'GET' && intent) {
      const metadata = paymentIntents.get(decodeURIComponent(intent[1] as string));
      if (!metadata) return send(404, { error: { type: 'invalid_request_error', message: 'No such payment_intent' } });
      return send(200, { id: intent[1], object: 'payment_intent', metadata });
    }
    return send(404, { error: { type: 'invalid_request_error', message: `unknown ${request.method} ${request.url}` } });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    sessions,
    paymentIntents,
    get failCheckout() {
      return state.failCheckout;
    },
    set failCheckout(value: boolean) {
      state.failCheckout = value;
    },
    env: () => ({ STRIPE_SECRET_KEY: STRIPE_TEST_SECRET_KEY, STRIPE_WEBHOOK_SECRET: STRIPE_TEST_WEBHOOK_SECRET, STRIPE_API_URL: url }),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A `Stripe-Signature` header for `payload`, as Stripe computes it. */
export const signStripePayload = (payload: string, options: { secret?: string; timestamp?: number } = {}): string =>
  Stripe.webhooks.generateTestHeaderString({
    payload,
    secret: options.secret ?? STRIPE_TEST_WEBHOOK_SECRET,
    ...(options.timestamp === undefined ? {} : { timestamp: options.timestamp }),
  });

let counter = 0;
const nextId = (prefix: string) => `${prefix}_${Date.now().toString(36)}${(counter++).toString(36)}`;

/** A `checkout.session.completed` event as Stripe sends it (the fields the service reads, and a few more). */
export function checkoutCompletedEvent(input: {
  userId: string;
  packageId: string;
  amountTotal: number;
  currency?: string;
  paymentIntent?: string;
  sessionId?: string;
  purchaseId?: string;
  paymentStatus?: 'paid' | 'unpaid' | 'no_payment_required';
  eventId?: string;
  type?: 'checkout.session.completed' | 'checkout.session.async_payment_succeeded';
}) {
  const sessionId = input.sessionId ?? nextId('cs_test');
  return {
    id: input.eventId ?? nextId('evt'),
    object: 'event',
    api_version: '2025-10-29.clover',
    created: Math.floor(Date.now() / 1000),
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    type: input.type ?? 'checkout.session.completed',
    data: {
      object: {
        id: sessionId,
        object: 'checkout.session',
        mode: 'payment',
        status: 'complete',
        payment_status: input.paymentStatus ?? 'paid',
        amount_total: input.amountTotal,
        amount_subtotal: input.amountTotal,
        currency: input.currency ?? 'usd',
        client_reference_id: input.userId,
        payment_intent: input.paymentIntent ?? nextId('pi'),
        metadata: { user_id: input.userId, package_id: input.packageId, ...(input.purchaseId ? { purchase_id: input.purchaseId } : {}) },
      },
    },
  };
}

/** A `charge.refunded` event for a payment intent. */
export function chargeRefundedEvent(input: {
  paymentIntent: string;
  amount: number;
  amountRefunded?: number;
  metadata?: Record<string, string>;
  eventId?: string;
}) {
  return {
    id: input.eventId ?? nextId('evt'),
    object: 'event',
    api_version: '2025-10-29.clover',
    created: Math.floor(Date.now() / 1000),
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    type: 'charge.refunded',
    data: {
      object: {
        id: nextId('ch'),
        object: 'charge',
        amount: input.amount,
        amount_refunded: input.amountRefunded ?? input.amount,
        refunded: (input.amountRefunded ?? input.amount) >= input.amount,
        currency: 'usd',
        payment_intent: input.paymentIntent,
        metadata: input.metadata ?? {},
      },
    },
  };
}
