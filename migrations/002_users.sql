-- Identity: the seed's users table plus a role. Tier and usage columns are projected from the
-- account stream (TierChanged, API-call counts) by the projections; the ledger is their source of truth.
create table users (
  id uuid primary key,
  google_id text unique,
  email text not null,
  name text,
  profile_image text,
  role text not null default 'user' check (role in ('user', 'admin', 'auditor')),
  tier text not null default 'free' check (tier in ('free', 'basic', 'pro', 'enterprise')),
  tier_expires_at timestamptz,
  api_calls_today integer not null default 0,
  api_calls_month integer not null default 0,
  last_api_call_at timestamptz,
  is_active boolean not null default true,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  last_login_at timestamptz
);

create unique index users_email_lower_key on users (lower(email));
create index users_created_at_idx on users (created_at desc, id desc);
