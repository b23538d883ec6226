-- Command-side tables of the ledger's HTTP commands (not read models: never rebuilt from events).

-- The answer of an /ai/generate call made with an Idempotency-Key, so a retry can replay the first
-- response without calling the provider again. The charge itself lives in the account stream
-- (reservation, settle or release stamped with the key); this only keeps the text. Pruned after 25 h
-- (keys live 24 h) by the sweeper.
create table ai_generations (
  user_id uuid not null,
  reservation_id uuid not null,
  status text not null check (status in ('succeeded', 'failed')),
  model text not null,
  provider text not null,
  response text,
  problem jsonb,
  created_at timestamptz not null default now(),
  primary key (user_id, reservation_id)
);
create index ai_generations_created_at_idx on ai_generations (created_at);

-- Stripe Checkout purchases: who bought which package at which price, and the payment that paid for
-- it, so a webhook (checkout.session.completed, charge.refunded) leads back to the user and the
-- purchase. Credits are only ever added by the account stream's CreditsPurchased.
create table stripe_checkouts (
  purchase_id uuid primary key,
  user_id uuid not null references users (id),
  package_id text not null,
  credits integer not null check (credits > 0),
  amount_cents integer not null check (amount_cents >= 0),
  currency text not null,
  checkout_session_id text unique,
  checkout_url text,
  payment_id text unique,
  status text not null default 'open' check (status in ('open', 'completed', 'rejected')),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create index stripe_checkouts_user_idx on stripe_checkouts (user_id, created_at desc);
