import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../support/app.js';
import { fund, post, problemOf, storedBalance, streamEvents } from '../support/ledger-http.js';
import { chargeRefundedEvent, checkoutCompletedEvent, type FakeStripe, signStripePayload, startFakeStripe } from '../support/stripe.js';

/**
 * Attacks on the Stripe webhook (API §5): events out of order, a second payment for one purchase,
 * checkouts of a payment already clawed back, and signed events of a shape the service does not expect.
 * Each payment must take effect at most once, and nothing may answer 5xx for a permanent condition.
 */

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

const deliver = (event: unknown) => {
  const payload = JSON.stringify(event);
  return t.app.inject({
    method: 'POST',
    url: '/webhooks/stripe',
    payload,
    headers: { 'content-type': 'application/json', 'stripe-signature': signStripePayload(payload) },
  });
};
const ofType = async (userId: string, type: string) => (await streamEvents(t, userId)).filter((e) => e.type === type);

describe('Stripe events out of order', () => {
  it('a refund that arrives before its checkout: 503 (retry later), then credited, then the redelivered refund claws it back', async () => {
    const caller = await t.signIn();
    const { purchase_id } = (await post(t, '/credits/purchases', caller, { package_id: 'starter' })).json();
    const paymentIntent = `pi_${randomUUID()}`;
    stripe.paymentIntents.set(paymentIntent, { user_id: caller.userId, package_id: 'starter', purchase_id });
    const refund = chargeRefundedEvent({ paymentIntent, amount: 500 });
    const early = await deliver(refund);
    expect(early.statusCode).toBe(503);
    expect(problemOf(early).code).toBe('unavailable');
    expect(await streamEvents(t, caller.userId)).toHaveLength(0);
    const checkout = checkoutCompletedEvent({ userId: caller.userId, packageId: 'starter', amountTotal: 500, purchaseId: purchase_id, paymentIntent });
    expect((await deliver(checkout)).json()).toMatchObject({ outcome: 'credited' });
    expect((await deliver(refund)).json()).toMatchObject({ outcome: 'clawed_back' });
    expect((await deliver(refund)).json()).toMatchObject({ outcome: 'duplicate' });
    // The checkout redelivered, or its async twin, after the clawback: nothing comes back.
    expect((await deliver(checkout)).json()).toMatchObject({ outcome: 'duplicate' });
    const twin = checkoutCompletedEvent({
      userId: caller.userId,
      packageId: 'starter',
      amountTotal: 500,
      purchaseId: purchase_id,
      paymentIntent,
      sessionId: checkout.data.object.id,
      type: 'checkout.session.async_payment_succeeded',
    });
    expect((await deliver(twin)).json()).toMatchObject({ outcome: 'duplicate' });
    expect(await ofType(caller.userId, 'CreditsPurchased')).toHaveLength(1);
    expect(await ofType(caller.userId, 'PurchaseRefunded')).toHaveLength(1);
    expect(await storedBalance(t, caller.userId)).toEqual({ balance: 0, reserved: 0 });
  });

  it('a refund of a purchase whose credits are partly held: the unheld part goes now, the held part when the hold ends', async () => {
    const caller = await t.signIn();
    const paymentIntent = `pi_${randomUUID()}`;
    expect((await deliver(checkoutCompletedEvent({ userId: caller.userId, packageId: 'starter', amountTotal: 500, paymentIntent }))).json()).toMatchObject({
      outcome: 'credited',
    });
    const { reservation_id } = (await post(t, '/credits/reservations', caller, { amount: 60 }, { 'idempotency-key': randomUUID() })).json();
    expect((await deliver(chargeRefundedEvent({ paymentIntent, amount: 500 }))).json()).toMatchObject({ outcome: 'clawed_back' });
    expect(await storedBalance(t, caller.userId)).toEqual({ balance: 60, reserved: 60 });
    // Nothing spendable meanwhile.
    const spend = await post(t, '/credits/spend', caller, { amount: 1 }, { 'idempotency-key': randomUUID() });
    expect(problemOf(spend)).toMatchObject({ code: 'insufficient_credits', balance: 0 });
    const settle = await post(t, `/credits/reservations/${reservation_id}/settle`, caller, { amount: 20 }, { 'idempotency-key': randomUUID() });
    expect(settle.json()).toMatchObject({ credits_used: 20, released: 40, balance_remaining: 0 });
    expect(await storedBalance(t, caller.userId)).toEqual({ balance: 0, reserved: 0 });
    const clawed = await ofType(caller.userId, 'PurchaseRefunded');
    expect(clawed.map((e) => e.data.amount)).toEqual([40, 40]);
  });
});

describe('one purchase, two payments', () => {
  it('a second paid session for the same purchase is rejected (200, logged), not credited again', async () => {
    const caller = await t.signIn();
    const { purchase_id } = (await post(t, '/credits/purchases', caller, { package_id: 'basic' })).json();
    const first = checkoutCompletedEvent({ userId: caller.userId, packageId: 'basic', amountTotal: 2000, purchaseId: purchase_id });
    expect((await deliver(first)).json()).toMatchObject({ outcome: 'credited' });
    const second = checkoutCompletedEvent({ userId: caller.userId, packageId: 'basic', amountTotal: 2000, purchaseId: purchase_id });
    const response = await deliver(second);
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ outcome: 'rejected' });
    expect(await ofType(caller.userId, 'CreditsPurchased')).toHaveLength(1);
    expect((await storedBalance(t, caller.userId)).balance).toBe(500);
  });

  it('the refund of a refused second payment is acknowledged and ignored (not 503 for ever); the first payment still claws back', async () => {
    const caller = await t.signIn();
    const { purchase_id } = (await post(t, '/credits/purchases', caller, { package_id: 'basic' })).json();
    const firstIntent = `pi_${randomUUID()}`;
    const secondIntent = `pi_${randomUUID()}`;
    stripe.paymentIntents.set(secondIntent, { user_id: caller.userId, package_id: 'basic', purchase_id });
    const first = checkoutCompletedEvent({ userId: caller.userId, packageId: 'basic', amountTotal: 2000, purchaseId: purchase_id, paymentIntent: firstIntent });
    expect((await deliver(first)).json()).toMatchObject({ outcome: 'credited' });
    const second = checkoutCompletedEvent({ userId: caller.userId, packageId: 'basic', amountTotal: 2000, purchaseId: purchase_id, paymentIntent: secondIntent });
    expect((await deliver(second)).json()).toMatchObject({ outcome: 'rejected' });
    // The buyer paid twice; the second payment gets refunded in Stripe. Nothing was credited for it.
    const secondRefund = await deliver(chargeRefundedEvent({ paymentIntent: secondIntent, amount: 2000, metadata: { user_id: caller.userId } }));
    expect(secondRefund.statusCode).toBe(200);
    expect(secondRefund.json()).toMatchObject({ outcome: 'ignored' });
    expect((await storedBalance(t, caller.userId)).balance).toBe(500);
    expect(await ofType(caller.userId, 'PurchaseRefunded')).toHaveLength(0);
    // A checkout with the wrong amount for an already paid purchase: refused, and so is its refund.
    const wrongIntent = `pi_${randomUUID()}`;
    const wrong = checkoutCompletedEvent({ userId: caller.userId, packageId: 'basic', amountTotal: 1, purchaseId: purchase_id, paymentIntent: wrongIntent });
    expect((await deliver(wrong)).json()).toMatchObject({ outcome: 'rejected' });
    const wrongRefund = await deliver(chargeRefundedEvent({ paymentIntent: wrongIntent, amount: 1, metadata: { user_id: caller.userId } }));
    expect(wrongRefund.statusCode).toBe(200);
    expect(wrongRefund.json()).toMatchObject({ outcome: 'ignored' });
    // The payment that was credited is still clawed back by its refund.
    expect((await deliver(chargeRefundedEvent({ paymentIntent: firstIntent, amount: 2000 }))).json()).toMatchObject({ outcome: 'clawed_back' });
    expect((await storedBalance(t, caller.userId)).balance).toBe(0);
  });

  it('one payment named by checkouts of two users credits one account only (the ledger dedups payments per account)', async () => {
    const alice = await t.signIn();
    const mallory = await t.signIn();
    const paymentIntent = `pi_${randomUUID()}`;
    expect((await deliver(checkoutCompletedEvent({ userId: alice.userId, packageId: 'starter', amountTotal: 500, paymentIntent }))).json()).toMatchObject({
      outcome: 'credited',
    });
    const second = await deliver(checkoutCompletedEvent({ userId: mallory.userId, packageId: 'starter', amountTotal: 500, paymentIntent }));
    expect(second.statusCode).toBe(200);
    expect(second.json()).toMatchObject({ outcome: 'rejected' });
    expect((await storedBalance(t, alice.userId)).balance).toBe(100);
    expect(await streamEvents(t, mallory.userId)).toHaveLength(0);
    // Its refund still claws back from the account that got the credits.
    expect((await deliver(chargeRefundedEvent({ paymentIntent, amount: 500 }))).json()).toMatchObject({ outcome: 'clawed_back' });
    expect((await storedBalance(t, alice.userId)).balance).toBe(0);
  });

  it('the same, delivered concurrently: exactly one account is credited', async () => {
    const users = await Promise.all(Array.from({ length: 4 }, () => t.signIn()));
    const paymentIntent = `pi_${randomUUID()}`;
    const results = await Promise.all(
      users.map((u) => deliver(checkoutCompletedEvent({ userId: u.userId, packageId: 'starter', amountTotal: 500, paymentIntent }))),
    );
    expect(results.every((r) => r.statusCode === 200)).toBe(true);
    expect(results.filter((r) => r.json().outcome === 'credited')).toHaveLength(1);
    let total = 0;
    for (const u of users) total += (await storedBalance(t, u.userId)).balance;
    expect(total).toBe(100);
  });
});

describe('signed events of an unexpected shape', () => {
  const signed = (type: string, object: unknown) => ({ id: `evt_${randomUUID()}`, object: 'event', type, created: Math.floor(Date.now() / 1000), data: { object } });

  it.each([
    ['checkout with no object', 'checkout.session.completed', null],
    ['checkout without ids', 'checkout.session.completed', { payment_status: 'paid', amount_total: 500, currency: 'usd', metadata: { package_id: 'starter' } }],
    ['checkout with metadata that is not an object', 'checkout.session.completed', { id: 'cs_x', payment_status: 'paid', amount_total: 500, currency: 'usd', metadata: 'x' }],
    ['checkout with a string amount', 'checkout.session.completed', { id: 'cs_y', payment_status: 'paid', amount_total: '500', currency: 'usd', metadata: { user_id: randomUUID(), package_id: 'starter' } }],
    ['refund with no object', 'charge.refunded', null],
    ['refund without ids', 'charge.refunded', { refunded: true }],
  ])('%s → 200 rejected or ignored (never 5xx), nothing credited', async (_name, type, object) => {
    const caller = await t.signIn();
    await fund(t, caller.userId, 5);
    const patched = object && typeof object === 'object' && 'metadata' in object && typeof object.metadata === 'object' ? { ...object, metadata: { ...object.metadata, user_id: caller.userId } } : object;
    const response = await deliver(signed(type, patched));
    // Acknowledged (Stripe would redeliver a non-2xx for days), with an outcome that credits nothing.
    expect(response.statusCode).toBe(200);
    expect(['rejected', 'ignored']).toContain(response.json().outcome);
    expect(await storedBalance(t, caller.userId)).toEqual({ balance: 5, reserved: 0 });
  });
});
