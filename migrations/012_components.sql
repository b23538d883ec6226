-- A user's own components (the built-in catalog lives in code). `source` is 'user' (POST /components)
-- or 'ai' (POST /components/ai-generate); an AI-generated component remembers the Idempotency-Key of
-- its charged generation, so a replayed request returns the same component instead of storing another.
create table components (
  id uuid primary key,
  owner_id uuid not null references users (id) on delete cascade,
  name text not null check (char_length(name) between 1 and 200),
  definition jsonb not null check (jsonb_typeof(definition) = 'object'),
  size_bytes integer not null check (size_bytes >= 0),
  source text not null check (source in ('user', 'ai')),
  idempotency_key text,
  created_at timestamptz not null,
  updated_at timestamptz not null
);
create index components_owner_idx on components (owner_id, created_at desc, id desc);
create unique index components_owner_idempotency_key on components (owner_id, idempotency_key) where idempotency_key is not null;
