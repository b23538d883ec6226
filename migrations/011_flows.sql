-- The seed's flows ("projects"), owned by a user. `size_bytes` is the UTF-8 size of the stored JSON
-- definition; the sum over a user's flows and components is their storage (max_storage_mb).
create table flows (
  id uuid primary key,
  owner_id uuid not null references users (id) on delete cascade,
  name text not null check (char_length(name) between 1 and 200),
  definition jsonb not null check (jsonb_typeof(definition) = 'object'),
  size_bytes integer not null check (size_bytes >= 0),
  created_at timestamptz not null,
  updated_at timestamptz not null
);
create index flows_owner_idx on flows (owner_id, created_at desc, id desc);
