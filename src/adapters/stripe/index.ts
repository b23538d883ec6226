import Stripe from 'stripe';

/**
 * The Stripe adapter: Checkout Sessions for credit packages and webhook verification. The rest of the
 * service never sees the Stripe SDK.
 */

/** Webhook signatures older than this are refused (Stripe's default, API §5). */
export const WEBHOOK_TOLERANCE_SECONDS = 300;

export interface CheckoutRequest {
  readonly purchaseId: string;
  readonly userId: string;
  readonly email: string | null;
  readonly packageId: string;
  readonly packageName: string;
  readonly credits: number;
  readonly amountCents: number;
  readonly currency: string;
}

export interface CheckoutSession {
  readonly id: string;
  readonly url: string;
}

export interface StripeCheckout {
  createCheckoutSession(request: CheckoutRequest): Promise<CheckoutSession>;
  /** `metadata` of a PaymentIntent (the webhook's last resort to find a payment's user); null when Stripe has no such intent. */
  paymentIntentMetadata(paymentIntentId: string): Promise<Record<string, string> | null>;
}

export interface Payments {
  /** Null when STRIPE_SECRET_KEY is not set (`POST /credits/purchases` → 503 payments_not_configured). */
  readonly checkout: StripeCheckout | null;
  /** Null when STRIPE_WEBHOOK_SECRET is not set. */
  readonly webhookSecret: string | null;
  /** Verifies `Stripe-Signature` over the raw bytes and parses the event; throws on a bad signature. */
  verifyWebhook(rawBody: Buffer, signature: string | string[] | undefined): Stripe.Event;
}

export class StripeSignatureError extends Error {
  override name = 'StripeSignatureError';
}

export interface StripeOptions {
  readonly secretKey?: string | undefined;
  readonly webhookSecret?: string | undefined;
  /** Where the API is (tests: a local fake). Default Stripe's. */
  readonly apiUrl?: string | undefined;
  readonly successUrl: string;
  readonly cancelUrl: string;
  /** The receiving time for the signature's timestamp check, in ms since the epoch (the app's clock). */
  readonly now?: () => number;
}

export function createPayments(options: StripeOptions): Payments {
  const stripe = options.secretKey ? new Stripe(options.secretKey, clientOptions(options.apiUrl)) : null;
  const webhookSecret = options.webhookSecret ?? null;

  const checkout: StripeCheckout | null = stripe
    ? {
        async createCheckoutSession(request) {
          const metadata = { user_id: request.userId, package_id: request.packageId, purchase_id: request.purchaseId };
          const session = await stripe.checkout.sessions.create(
            {
              mode: 'payment',
              line_items: [
                {
                  quantity: 1,
                  price_data: {
                    currency: request.currency,
                    unit_amount: request.amountCents,
                    product_data: { name: `${request.packageName} — ${request.credits} credits` },
                  },
                },
              ],
              client_reference_id: request.userId,
              ...(request.email ? { customer_email: request.email } : {}),
              // On the session (checkout.session.completed) and on the payment intent, whose charges
              // a later charge.refunded names: either leads back to the user and the purchase.
              metadata,
              payment_intent_data: { metadata },
              success_url: options.successUrl,
              cancel_url: options.cancelUrl,
            },
            // Stripe replays the same session for a retried purchase id (24 h).
            { idempotencyKey: `checkout-${request.purchaseId}` },
          );
          if (!session.url) throw new Error(`Stripe returned checkout session ${session.id} without a url`);
          return { id: session.id, url: session.url };
        },
        async paymentIntentMetadata(paymentIntentId) {
          try {
            const intent = await stripe.paymentIntents.retrieve(paymentIntentId);
            return intent.metadata ?? null;
          } catch (error) {
            // Not a payment of this account: nothing to find. Anything else is worth a retry.
            if ((error as { statusCode?: number }).statusCode === 404) return null;
            throw error;
          }
        },
      }
    : null;

  return {
    checkout,
    webhookSecret,
    verifyWebhook(rawBody, signature) {
      if (!webhookSecret) throw new Error('STRIPE_WEBHOOK_SECRET is not set');
      if (typeof signature !== 'string' || signature.length === 0) throw new StripeSignatureError('missing Stripe-Signature');
      try {
        return Stripe.webhooks.constructEvent(
          rawBody,
          signature,
          webhookSecret,
          WEBHOOK_TOLERANCE_SECONDS,
          undefined,
          options.now?.(),
        );
      } catch (error) {
        throw new StripeSignatureError(error instanceof Error ? error.message : 'invalid signature');
      }
    },
  };
}

const clientOptions = (apiUrl: string | undefined): Stripe.StripeConfig => {
  const base: Stripe.StripeConfig = { maxNetworkRetries: 2, timeout: 15_000 };
  if (!apiUrl) return base;
  const url = new URL(apiUrl);
  const protocol = url.protocol === 'http:' ? 'http' : 'https';
  return {
    ...base,
    host: url.hostname,
    port: url.port ? Number(url.port) : protocol === 'http' ? 80 : 443,
    protocol,
  };
};

export type { Stripe };
