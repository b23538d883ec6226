-- The event store (src/adapters/postgres-event-store), after Emmett's PostgreSQL scheme.
--
-- Every event row carries the id of the transaction that wrote it. Readers of the global log order by
-- (transaction_id, global_position) and take only rows with transaction_id < pg_snapshot_xmin(pg_current_snapshot()):
-- every transaction below that horizon has finished, so no row can later appear before a position a
-- reader has passed, however out of order transactions commit. That pair is the event's global Position.

create table streams (
  stream_id text primary key,
  -- Revision (0-based) of the stream's last event.
  revision bigint not null check (revision >= 0)
);

create table events (
  global_position bigint generated always as identity,
  transaction_id xid8 not null default pg_current_xact_id(),
  stream_id text not null,
  stream_revision bigint not null check (stream_revision >= 0),
  event_id uuid not null,
  type text not null,
  data jsonb not null check (jsonb_typeof(data) = 'object'),
  metadata jsonb not null default '{}'::jsonb check (jsonb_typeof(metadata) = 'object'),
  recorded_at timestamptz not null default now(),
  primary key (stream_id, stream_revision),
  -- An event id is written at most once per stream: the idempotency check looks ids up here, and a
  -- retry that lands after the stream moved on fails instead of storing the event twice.
  constraint events_stream_event_id_key unique (stream_id, event_id)
);

-- readAll, subscribeToAll and headPosition walk this index in both directions.
create index events_transaction_position_idx on events (transaction_id, global_position);

-- One round trip per append. Returns one row:
--   outcome 'appended'   revision = the stream's new last revision, position of the last event written;
--   outcome 'idempotent' the same event ids already follow the expected revision: their original result;
--   outcome 'conflict'   revision = the stream's actual last revision (null: no stream); nothing written.
-- p_expected_kind is 'any', 'no_stream', 'stream_exists' or 'exact' (then p_expected_revision is the
-- revision of the stream's last event). Semantics follow EventStoreDB, except that an event id is never
-- stored twice in one stream (EventStoreDB would, kurrent-io/KurrentDB#1898): that is a conflict.
--
-- Call it in READ COMMITTED and before the transaction writes anything else (see the lock below).
create function append_to_stream(
  p_stream_id text,
  p_expected_kind text,
  p_expected_revision bigint,
  p_event_ids uuid[],
  p_types text[],
  p_data jsonb[],
  p_metadata jsonb[]
) returns table (outcome text, revision bigint, transaction_id xid8, global_position bigint)
language plpgsql
as $$
#variable_conflict use_column
declare
  v_count bigint := coalesce(cardinality(p_event_ids), 0);
  v_current bigint;    -- revision of the stream's last event; null when the stream does not exist
  v_expected bigint;   -- for 'no_stream' / 'exact': the revision the new events must follow
  v_found bigint;      -- how many of the given ids the stream already holds
  v_first bigint;      -- revision of the first of them
  v_matched bigint;    -- how many of them sit, in order, at v_first, v_first + 1, ...
  v_tx xid8;
  v_last_position bigint;
begin
  if v_count = 0 then
    raise exception 'append_to_stream: no events' using errcode = '22023';
  end if;
  if cardinality(p_types) <> v_count or cardinality(p_data) <> v_count or cardinality(p_metadata) <> v_count then
    raise exception 'append_to_stream: event arrays differ in length' using errcode = '22023';
  end if;
  if p_expected_kind not in ('any', 'no_stream', 'stream_exists', 'exact')
     or (p_expected_kind = 'exact' and (p_expected_revision is null or p_expected_revision < 0)) then
    raise exception 'append_to_stream: bad expected revision % %', p_expected_kind, p_expected_revision
      using errcode = '22023';
  end if;

  -- Serialises appends to one stream. An advisory lock, unlike a row lock, does not assign this
  -- transaction an xid, so the winner's xid is assigned while it holds the lock and a waiter's only
  -- after: within a stream, (transaction_id, global_position) order is revision order. The key space
  -- (7461002, hash) is ours; a hash collision only makes two streams take turns.
  perform pg_advisory_xact_lock(7461002, hashtext(p_stream_id));

  select s.revision into v_current from streams s where s.stream_id = p_stream_id;

  if p_expected_kind = 'stream_exists' and v_current is null then
    return query select 'conflict'::text, null::bigint, null::xid8, null::bigint;
    return;
  end if;

  if p_expected_kind in ('no_stream', 'exact') then
    v_expected := case when p_expected_kind = 'no_stream' then -1 else p_expected_revision end;
    if coalesce(v_current, -1) > v_expected then
      -- A retry of an append that already happened: the same ids at v_expected + 1, ... (durably, unlike
      -- EventStoreDB's cache for 'any'). Anything else, including a partial match, is a conflict.
      select count(*) into v_matched
      from unnest(p_event_ids) with ordinality as n(id, ord)
      join events e on e.stream_id = p_stream_id and e.stream_revision = v_expected + n.ord and e.event_id = n.id;
      if v_matched = v_count then
        return query
          select 'idempotent'::text, e.stream_revision, e.transaction_id, e.global_position
          from events e where e.stream_id = p_stream_id and e.stream_revision = v_expected + v_count;
      else
        return query select 'conflict'::text, v_current, null::xid8, null::bigint;
      end if;
      return;
    end if;
    if coalesce(v_current, -1) < v_expected then
      return query select 'conflict'::text, v_current, null::xid8, null::bigint;
      return;
    end if;
  end if;

  -- The stream is where the caller expects it (or the caller accepts any revision). Ids it already holds
  -- make this a retry ('any' / 'stream_exists': all of them, in order, is the original result) or a conflict.
  select count(*), min(e.stream_revision) into v_found, v_first
  from events e where e.stream_id = p_stream_id and e.event_id = any (p_event_ids);
  if v_found > 0 then
    if p_expected_kind in ('any', 'stream_exists') and v_found = v_count then
      select count(*) into v_matched
      from unnest(p_event_ids) with ordinality as n(id, ord)
      join events e on e.stream_id = p_stream_id and e.stream_revision = v_first + n.ord - 1 and e.event_id = n.id;
      if v_matched = v_count then
        return query
          select 'idempotent'::text, e.stream_revision, e.transaction_id, e.global_position
          from events e where e.stream_id = p_stream_id and e.stream_revision = v_first + v_count - 1;
        return;
      end if;
    end if;
    return query select 'conflict'::text, v_current, null::xid8, null::bigint;
    return;
  end if;

  v_tx := pg_current_xact_id();
  with inserted as (
    insert into events (transaction_id, stream_id, stream_revision, event_id, type, data, metadata)
    select v_tx, p_stream_id, coalesce(v_current, -1) + n.ord, n.id, n.type, n.data, n.metadata
    from unnest(p_event_ids, p_types, p_data, p_metadata) with ordinality as n(id, type, data, metadata, ord)
    order by n.ord
    returning events.global_position
  )
  select max(i.global_position) into v_last_position from inserted i;

  if v_current is null then
    insert into streams (stream_id, revision) values (p_stream_id, v_count - 1);
  else
    update streams s set revision = v_current + v_count where s.stream_id = p_stream_id and s.revision = v_current;
    if not found then
      raise exception 'append_to_stream: % moved while locked', p_stream_id using errcode = '40001';
    end if;
  end if;

  return query select 'appended'::text, coalesce(v_current, -1) + v_count, v_tx, v_last_position;
end;
$$;
