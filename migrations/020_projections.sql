-- Projections (projections/): read models kept in step with the event store.
--
-- Each projection (credits, activity, tiers) lives in generations: generation N of projection P is the
-- schema proj_<P>_g<N> holding P's tables. The API reads the views in `public` (user_credits,
-- credit_transactions, credit_lots, activity_logs, user_tiers), which point at the active generation.
-- A rebuild fills generation N+1 from position zero while N keeps serving, then switches the views and
-- the `projections` pointer in one transaction (blue/green, no downtime).
--
-- Every generation has one checkpoint row. The projector commits each batch of read-model changes
-- together with a compare-and-set of that row (the fence: a second writer, or a writer of a retired
-- generation, finds the row moved and rolls back).

create table projections (
  name text primary key,
  active_generation integer not null,
  switched_at timestamptz not null default now()
);

create table projection_checkpoints (
  name text not null,
  generation integer not null check (generation > 0),
  -- Position of the last event this generation processed (null: none yet). Positions are uint64
  -- pairs (Postgres: transaction id, global position; EventStoreDB: commit, prepare).
  position_major numeric(20, 0),
  position_minor numeric(20, 0),
  events_processed bigint not null default 0,
  -- running: projected by the leader; rebuilding: filled by a rebuild, not served yet;
  -- failed: stopped on a poison event (see error / failed_*); retired: replaced by a newer generation.
  status text not null check (status in ('running', 'rebuilding', 'failed', 'retired')),
  error text,
  failed_event_id text,
  failed_event_type text,
  failed_position text,
  failed_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (name, generation),
  check ((position_major is null) = (position_minor is null))
);

-- Fails the statement it is part of (with the given SQLSTATE) when the condition holds; true otherwise.
-- A projection batch is one statement: its checkpoint compare-and-set and its integrity checks end it
-- this way, so nothing of it commits.
create function projection_fail_if(p_condition boolean, p_sqlstate text, p_message text) returns boolean
language plpgsql
as $$
begin
  if p_condition then
    raise exception using errcode = p_sqlstate, message = p_message;
  end if;
  return true;
end;
$$;

-- The tables of one generation. Changing a read model's shape = a new migration that replaces this
-- function, then `npm run ledger -- projections rebuild <name>`.
create function projection_create_generation(p_name text, p_generation integer) returns text
language plpgsql
as $$
declare
  s text := format('proj_%s_g%s', p_name, p_generation);
begin
  if p_name !~ '^[a-z][a-z0-9_]{0,30}$' then
    raise exception 'bad projection name %', p_name using errcode = '22023';
  end if;
  execute format('create schema %I', s);
  if p_name = 'credits' then
    execute format($ddl$
      create table %1$I.user_credits (
        user_id text primary key,
        balance bigint not null,
        reserved bigint not null,
        total_purchased bigint not null,
        total_used bigint not null,
        total_bonus bigint not null,
        total_refunded bigint not null,
        total_expired bigint not null,
        -- net admin adjustments (signed) and purchase clawbacks: with the totals above they explain the balance:
        -- balance = purchased + bonus + adjusted + refunded - used - expired - clawed_back
        total_adjusted bigint not null,
        total_clawed_back bigint not null,
        created_at timestamptz not null,
        updated_at timestamptz not null,
        last_event_id uuid not null,
        last_position_major numeric(20, 0) not null,
        last_position_minor numeric(20, 0) not null
      );
      -- One row per balance-moving event: `id` is the event's id (unique, the idempotency key of the
      -- insert); `event_id` repeats it under its own name for readers joining with the event store.
      create table %1$I.credit_transactions (
        id uuid primary key,
        event_id uuid not null check (event_id = id),
        user_id text not null,
        type text not null check (type in ('purchase', 'use', 'refund', 'bonus', 'expire', 'admin')),
        amount bigint not null,
        balance_before bigint not null,
        balance_after bigint not null,
        description text,
        metadata jsonb,
        reference_type text,
        reference_id text,
        event_type text not null,
        stream_revision bigint not null,
        created_at timestamptz not null,
        position_major numeric(20, 0) not null,
        position_minor numeric(20, 0) not null
      );
      create index on %1$I.credit_transactions (user_id, position_major desc, position_minor desc);
      create index on %1$I.credit_transactions (user_id, type, position_major desc, position_minor desc);
      create table %1$I.credit_lots (
        user_id text not null,
        lot_id text not null,
        kind text not null,
        original bigint not null,
        remaining bigint not null check (remaining >= 0),
        held bigint not null check (held >= 0 and held <= remaining),
        expires_at timestamptz,
        priority integer not null,
        purchase_id text,
        clawed_back boolean not null,
        created_at timestamptz not null,
        updated_at timestamptz not null,
        last_position_major numeric(20, 0) not null,
        last_position_minor numeric(20, 0) not null,
        primary key (user_id, lot_id)
      );
      create index on %1$I.credit_lots (user_id, expires_at) where remaining > 0;
    $ddl$, s);
  elsif p_name = 'activity' then
    execute format($ddl$
      -- `id`: the event's id, or UUIDv5(event id, entry index) for the entries of a launcher log batch.
      create table %1$I.activity_logs (
        id uuid primary key,
        user_id text,
        action text not null,
        resource_type text,
        resource_id text,
        metadata jsonb,
        ip_address text,
        user_agent text,
        client_ts text,
        created_at timestamptz not null,
        event_id uuid not null,
        event_type text not null,
        entry_index integer not null,
        position_major numeric(20, 0) not null,
        position_minor numeric(20, 0) not null
      );
      create index on %1$I.activity_logs (user_id, position_major desc, position_minor desc, entry_index desc);
      create index on %1$I.activity_logs (user_id, action, position_major desc, position_minor desc, entry_index desc);
    $ddl$, s);
  elsif p_name = 'tiers' then
    execute format($ddl$
      create table %1$I.user_tiers (
        user_id text primary key,
        tier text not null check (tier in ('free', 'basic', 'pro', 'enterprise')),
        tier_expires_at timestamptz,
        tier_changed_at timestamptz,
        -- API calls counted in the UTC day `api_calls_day` (YYYY-MM-DD) and month `api_calls_month_window` (YYYY-MM)
        api_calls_day text,
        api_calls_today integer not null,
        api_calls_month_window text,
        api_calls_month integer not null,
        last_api_call_at timestamptz,
        created_at timestamptz not null,
        updated_at timestamptz not null,
        last_position_major numeric(20, 0) not null,
        last_position_minor numeric(20, 0) not null
      );
    $ddl$, s);
  else
    raise exception 'unknown projection %', p_name using errcode = '22023';
  end if;
  return s;
end;
$$;

-- Points the public views of a projection at one of its generations (drop + create, so a new
-- generation may change columns). Callers run it inside the switching transaction.
create function projection_point_views(p_name text, p_generation integer) returns void
language plpgsql
as $$
declare
  s text := format('proj_%s_g%s', p_name, p_generation);
  t text;
  tables text[];
begin
  tables := case p_name
    when 'credits' then array['user_credits', 'credit_transactions', 'credit_lots']
    when 'activity' then array['activity_logs']
    when 'tiers' then array['user_tiers']
  end;
  if tables is null then
    raise exception 'unknown projection %', p_name using errcode = '22023';
  end if;
  foreach t in array tables loop
    execute format('drop view if exists public.%I', t);
    execute format('create view public.%I as select * from %I.%I', t, s, t);
  end loop;
end;
$$;

do $$
declare
  n text;
begin
  foreach n in array array['credits', 'activity', 'tiers'] loop
    perform projection_create_generation(n, 1);
    perform projection_point_views(n, 1);
    insert into projections (name, active_generation) values (n, 1);
    insert into projection_checkpoints (name, generation, status) values (n, 1, 'running');
  end loop;
end;
$$;

-- Launcher log batches (POST /logs/batch) accepted so far, so a repeated batch_id is accepted once
-- whichever event store is configured. Command-side state, not a read model: never rebuilt.
create table log_batches (
  user_id uuid not null,
  batch_id text not null,
  event_id uuid not null,
  request_hash text not null,
  -- The revision the append expects the activity stream at (null before the first attempt); a retry
  -- appends at the same revision, which every event store deduplicates.
  expected_revision bigint,
  accepted integer not null,
  position text,
  created_at timestamptz not null default now(),
  completed_at timestamptz,
  primary key (user_id, batch_id)
);
