import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../support/app.js';
import { fund, post, problemOf, storedBalance, streamEvents } from '../support/ledger-http.js';
import { chargeRefundedEvent, checkoutCompletedEvent, type FakeStripe, signStripePayload, startFakeStripe } from '../support/stripe.js';

/** POST /credits/purchases and POST /webhooks/stripe (API §5) against a local fake of Stripe. */

let t: TestApp;
let stripe: FakeStripe;

beforeAll(async () => {
  stripe = await startFakeStripe();
  t = await createTestApp({ env: stripe.env() });
});
afterAll(async () => {
  await t?.close();
  await stripe?.close();
});

const deliver = (event: unknown, options: { signature?: string; raw?: string } = {}) => {
  const payload = options.raw ?? JSON.stringify(event);
  return t.app.inject({
    method: 'POST',
    url: '/webhooks/stripe',
    payload,
    headers: { 'content-type': 'application/json; charset=utf-8', 'stripe-signature': options.signature ?? signStripePayload(payload) },
  });
};
const purchasesOf = async (userId: string) => (await streamEvents(t, userId)).filter((e) => e.type === 'CreditsPurchased');

describe('POST /credits/purchases', () => {
  it('opens a Stripe Checkout Session for the package with the user, package and purchase in the metadata', async () => {
    const caller = await t.signIn();
    const response = await post(t, '/credits/purchases', caller, { package_id: 'basic' });
    expect(response.statusCode).toBe(201);
    const body = response.json();
    expect(body).toEqual({ purchase_id: expect.any(String), checkout_url: expect.stringMatching(/^https:\/\/checkout\.stripe\.test\//) });
    const session = stripe.sessions.at(-1);
    expect(session?.params).toMatchObject({
      mode: 'payment',
      'line_items[0][quantity]': '1',
      'line_items[0][price_data][currency]': 'usd',
      'line_items[0][price_data][unit_amount]': '2000',
      'metadata[user_id]': caller.userId,
      'metadata[package_id]': 'basic',
      'metadata[purchase_id]': body.purchase_id,
      'payment_intent_data[metadata][user_id]': caller.userId,
      client_reference_id: caller.userId,
    });
    // Nothing is credited before Stripe says the payment went through.
    expect(await streamEvents(t, caller.userId)).toHaveLength(0);
  });

  it('an Idempotency-Key gives the same checkout again', async () => {
    const caller = await t.signIn();
    const key = randomUUID();
    const first = await post(t, '/credits/purchases', caller, { package_id: 'starter' }, { 'idempotency-key': key });
    const again = await post(t, '/credits/purchases', caller, { package_id: 'starter' }, { 'idempotency-key': key });
    expect(again.statusCode).toBe(201);
    expect(again.json()).toEqual(first.json());
    expect(again.headers['idempotent-replayed']).toBe('true');
    const other = await post(t, '/credits/purchases', caller, { package_id: 'pro' }, { 'idempotency-key': key });
    expect(other.statusCode).toBe(422);
  });

  it('an unknown package → 400; Stripe down → 502; not configured → 503 payments_not_configured', async () => {
    const caller = await t.signIn();
    const unknown = await post(t, '/credits/purchases', caller, { package_id: 'platinum' });
    expect(unknown.statusCode).toBe(400);
    expect(problemOf(unknown)).toMatchObject({ code: 'validation_failed', errors: [{ path: 'package_id' }] });
    expect((await post(t, '/credits/purchases', caller, { package_id: 7 })).statusCode).toBe(400);
    stripe.failCheckout = true;
    try {
      const down = await post(t, '/credits/purchases', caller, { package_id: 'pro' });
      expect(down.statusCode).toBe(502);
      expect(problemOf(down).code).toBe('upstream_failed');
    } finally {
      stripe.failCheckout = false;
    }
    const bare = await createTestApp();
    try {
      const someone = await bare.signIn();
      const response = await bare.app.inject({
        method: 'POST',
        url: '/credits/purchases',
        headers: { authorization: `Bearer ${someone.token}`, 'content-type': 'application/json' },
        payload: { package_id: 'pro' },
      });
      expect(response.statusCode).toBe(503);
      expect(problemOf(response).code).toBe('payments_not_configured');
      const hook = await bare.app.inject({ method: 'POST', url: '/webhooks/stripe', payload: '{}', headers: { 'content-type': 'application/json' } });
      expect(hook.statusCode).toBe(503);
    } finally {
      await bare.close();
    }
  });
});

describe('POST /webhooks/stripe', () => {
  it('a paid checkout adds one purchase lot; replayed deliveries and a second event for the same payment add nothing', async () => {
    const caller = await t.signIn();
    const { purchase_id } = (await post(t, '/credits/purchases', caller, { package_id: 'basic' })).json();
    const event = checkoutCompletedEvent({ userId: caller.userId, packageId: 'basic', amountTotal: 2000, purchaseId: purchase_id, paymentIntent: `pi_${randomUUID()}` });
    const first = await deliver(event);
    expect(first.statusCode).toBe(200);
    expect(first.json()).toMatchObject({ received: true, outcome: 'credited' });
    for (let i = 0; i < 3; i++) {
      const replay = await deliver(event);
      expect(replay.statusCode).toBe(200);
      expect(replay.json()).toMatchObject({ outcome: 'duplicate' });
    }
    // Another event (async_payment_succeeded) for the same payment
    const second = { ...checkoutCompletedEvent({ userId: caller.userId, packageId: 'basic', amountTotal: 2000, purchaseId: purchase_id, paymentIntent: event.data.object.payment_intent, sessionId: event.data.object.id, type: 'checkout.session.async_payment_succeeded' }) };
    expect((await deliver(second)).json()).toMatchObject({ outcome: 'duplicate' });
    const purchases = await purchasesOf(caller.userId);
    expect(purchases).toHaveLength(1);
    expect(purchases[0]?.data).toMatchObject({ purchase_id, credits: 500, amount_cents: 2000, currency: 'usd', package_id: 'basic', provider_event_id: event.id, payment_id: event.data.object.payment_intent });
    expect(await storedBalance(t, caller.userId)).toEqual({ balance: 500, reserved: 0 });
  });

  it('concurrent deliveries of one event add credits once', async () => {
    const caller = await t.signIn();
    const event = checkoutCompletedEvent({ userId: caller.userId, packageId: 'starter', amountTotal: 500 });
    const results = await Promise.all(Array.from({ length: 10 }, () => deliver(event)));
    expect(results.every((r) => r.statusCode === 200)).toBe(true);
    expect(results.filter((r) => r.json().outcome === 'credited')).toHaveLength(1);
    expect(await purchasesOf(caller.userId)).toHaveLength(1);
    expect((await storedBalance(t, caller.userId)).balance).toBe(100);
  });

  it('metadata alone (no checkout opened here) is enough: user_id + package_id', async () => {
    const caller = await t.signIn();
    const response = await deliver(checkoutCompletedEvent({ userId: caller.userId, packageId: 'enterprise', amountTotal: 20000 }));
    expect(response.json()).toMatchObject({ outcome: 'credited' });
    expect((await storedBalance(t, caller.userId)).balance).toBe(10000);
  });

  it.each([
    ['a lower amount', { amountTotal: 1 }],
    ['a higher amount', { amountTotal: 20001 }],
    ['another currency', { currency: 'eur' }],
  ])('%s than the package → rejected (200, logged), nothing added', async (_name, override) => {
    const caller = await t.signIn();
    const { purchase_id } = (await post(t, '/credits/purchases', caller, { package_id: 'enterprise' })).json();
    const event = checkoutCompletedEvent({ userId: caller.userId, packageId: 'enterprise', amountTotal: 20000, purchaseId: purchase_id, ...override });
    const response = await deliver(event);
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ received: true, outcome: 'rejected' });
    expect(await streamEvents(t, caller.userId)).toHaveLength(0);
    // … and its refund later is ignored (nothing was credited)
    const refund = await deliver(chargeRefundedEvent({ paymentIntent: event.data.object.payment_intent, amount: event.data.object.amount_total }));
    expect(refund.json()).toMatchObject({ outcome: 'ignored' });
  });

  it('a checkout naming a package the recorded purchase was not for, an unknown user or an unknown package → rejected, nothing added', async () => {
    const caller = await t.signIn();
    const { purchase_id } = (await post(t, '/credits/purchases', caller, { package_id: 'starter' })).json();
    const swapped = checkoutCompletedEvent({ userId: caller.userId, packageId: 'enterprise', amountTotal: 500, purchaseId: purchase_id });
    expect((await deliver(swapped)).json()).toMatchObject({ outcome: 'rejected' });
    const ghost = randomUUID();
    expect((await deliver(checkoutCompletedEvent({ userId: ghost, packageId: 'starter', amountTotal: 500 }))).json()).toMatchObject({ outcome: 'rejected' });
    expect((await deliver(checkoutCompletedEvent({ userId: caller.userId, packageId: 'mega', amountTotal: 500 }))).json()).toMatchObject({ outcome: 'rejected' });
    expect(await streamEvents(t, caller.userId)).toHaveLength(0);
    expect(await streamEvents(t, ghost)).toHaveLength(0);
  });

  it('an unpaid checkout and other event types are acknowledged and ignored', async () => {
    const caller = await t.signIn();
    expect((await deliver(checkoutCompletedEvent({ userId: caller.userId, packageId: 'starter', amountTotal: 500, paymentStatus: 'unpaid' }))).json()).toMatchObject({ outcome: 'ignored' });
    expect((await deliver({ id: 'evt_x', object: 'event', type: 'customer.created', data: { object: { id: 'cus_1', object: 'customer' } } })).json()).toMatchObject({ outcome: 'ignored' });
    expect(await streamEvents(t, caller.userId)).toHaveLength(0);
  });

  it('a bad, missing or stale signature → 400 invalid_signature, nothing added', async () => {
    const caller = await t.signIn();
    const event = checkoutCompletedEvent({ userId: caller.userId, packageId: 'starter', amountTotal: 500 });
    const payload = JSON.stringify(event);
    const forged = await deliver(event, { signature: signStripePayload(payload, { secret: 'whsec_attacker' }) });
    expect(forged.statusCode).toBe(400);
    expect(problemOf(forged).code).toBe('invalid_signature');
    const tampered = await deliver(event, { raw: payload.replace('"amount_total":500', '"amount_total":5000'), signature: signStripePayload(payload) });
    expect(problemOf(tampered).code).toBe('invalid_signature');
    const stale = await deliver(event, { signature: signStripePayload(payload, { timestamp: Math.floor(Date.now() / 1000) - 301 }) });
    expect(problemOf(stale).code).toBe('invalid_signature');
    const missing = await t.app.inject({ method: 'POST', url: '/webhooks/stripe', payload, headers: { 'content-type': 'application/json' } });
    expect(problemOf(missing).code).toBe('invalid_signature');
    // The same bytes re-serialised (whitespace) are not what was signed.
    const reformatted = await deliver(event, { raw: JSON.stringify(event, null, 2), signature: signStripePayload(payload) });
    expect(problemOf(reformatted).code).toBe('invalid_signature');
    expect(await streamEvents(t, caller.userId)).toHaveLength(0);
  });

  it('charge.refunded claws back what is left of the purchase lot, once, however often delivered', async () => {
    const caller = await t.signIn();
    await fund(t, caller.userId, 50);
    const { purchase_id } = (await post(t, '/credits/purchases', caller, { package_id: 'starter' })).json();
    const checkout = checkoutCompletedEvent({ userId: caller.userId, packageId: 'starter', amountTotal: 500, purchaseId: purchase_id });
    await deliver(checkout);
    // 120 spent: bonus credits burn first (50), then 70 of the purchase → 30 left in the purchase lot
    const spent = await post(t, '/credits/spend', caller, { amount: 120 }, { 'idempotency-key': randomUUID() });
    expect(spent.json().balance_remaining).toBe(30);
    const refund = chargeRefundedEvent({ paymentIntent: checkout.data.object.payment_intent, amount: 500 });
    const first = await deliver(refund);
    expect(first.json()).toMatchObject({ outcome: 'clawed_back' });
    expect(await storedBalance(t, caller.userId)).toEqual({ balance: 0, reserved: 0 });
    expect((await deliver(refund)).json()).toMatchObject({ outcome: 'duplicate' });
    const another = chargeRefundedEvent({ paymentIntent: checkout.data.object.payment_intent, amount: 500 });
    expect((await deliver(another)).json()).toMatchObject({ outcome: 'duplicate' });
    const clawbacks = (await streamEvents(t, caller.userId)).filter((e) => e.type === 'PurchaseRefunded');
    expect(clawbacks).toHaveLength(1);
    expect(clawbacks[0]?.data).toMatchObject({ purchase_id, amount: 30, provider_event_id: refund.id });
  });

  it('a refund finds its user through the payment intent when the payment is not recorded here', async () => {
    const caller = await t.signIn();
    const paymentIntent = `pi_${randomUUID()}`;
    await deliver(checkoutCompletedEvent({ userId: caller.userId, packageId: 'starter', amountTotal: 500, paymentIntent }));
    // Forget our payment → user record: the refund must still find the account.
    await t.db.pool.query((await import('../../src/adapters/postgres/pool.js')).sql.unsafe`delete from stripe_checkouts where payment_id = ${paymentIntent}`);
    stripe.paymentIntents.set(paymentIntent, { user_id: caller.userId, package_id: 'starter' });
    const response = await deliver(chargeRefundedEvent({ paymentIntent, amount: 500 }));
    expect(response.json()).toMatchObject({ outcome: 'clawed_back' });
    expect((await storedBalance(t, caller.userId)).balance).toBe(0);
    // A refund for a payment nobody knows is acknowledged and ignored.
    expect((await deliver(chargeRefundedEvent({ paymentIntent: `pi_${randomUUID()}`, amount: 100 }))).json()).toMatchObject({ outcome: 'ignored' });
  });
});
