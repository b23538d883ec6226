-- Sessions (one per sign-in, the family of its rotating refresh tokens) and the refresh tokens
-- themselves (only their SHA-256 is stored). Access tokens carry the session id (`sid`), so revoking
-- a session stops its access tokens on the next request.
create table user_sessions (
  id uuid primary key,
  user_id uuid not null references users (id) on delete cascade,
  device_info jsonb,
  ip text,
  user_agent text,
  created_at timestamptz not null default now(),
  last_used_at timestamptz not null default now(),
  expires_at timestamptz not null,
  revoked_at timestamptz,
  revoke_reason text
);
create index user_sessions_user_idx on user_sessions (user_id, created_at desc);

create table user_tokens (
  id uuid primary key,
  user_id uuid not null references users (id) on delete cascade,
  session_id uuid not null references user_sessions (id) on delete cascade,
  token_type text not null default 'refresh' check (token_type in ('refresh')),
  token_hash text not null unique,
  parent_id uuid references user_tokens (id),
  device_info jsonb,
  ip_address text,
  user_agent text,
  issued_at timestamptz not null default now(),
  expires_at timestamptz not null,
  used_at timestamptz,
  revoked_at timestamptz
);
create index user_tokens_session_idx on user_tokens (session_id);
