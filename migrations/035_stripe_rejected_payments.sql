-- Stripe payments the webhook refused to credit: a second payment for a purchase already paid, a
-- checkout whose amount or currency does not match the package, a purchase the ledger refused. Nothing
-- was credited for them, so when such a payment is refunded in Stripe, its `charge.refunded` is
-- acknowledged and ignored instead of being answered 503 (and redelivered) for days. Consulted only
-- when the ledger holds no purchase for the payment: a payment credited after all is still clawed back.
create table stripe_rejected_payments (
  payment_id text primary key,
  -- As the event named them (informational: a refused event may name no real user or purchase).
  user_id text,
  purchase_id text,
  reason text not null,
  created_at timestamptz not null default now()
);
