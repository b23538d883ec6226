-- Several streams' appends in one statement and one commit (group commit across streams): used by
-- src/adapters/postgres-multi-append when concurrent commands on different streams are waiting.
--
-- Each append keeps exactly the semantics of append_to_stream (migrations/001_event_store.sql), which
-- does the work; each gets its own outcome (one stream's conflict does not affect the others).
--
-- Ordering: every stream's advisory lock is taken first, in one fixed order (sorted lock keys, so two
-- batches cannot deadlock), BEFORE anything is written. The transaction id is assigned at the first
-- insert, while all the locks are held; so for every stream in the batch, earlier writers of that
-- stream got smaller transaction ids and later ones get larger: (transaction_id, global_position) order
-- stays revision order within each stream, as the readers of the global log require.
create function append_to_streams(
  p_stream_ids text[],
  p_expected_kinds text[],
  p_expected_revisions bigint[],
  p_counts integer[],
  p_event_ids uuid[],
  p_types text[],
  p_data jsonb[],
  p_metadata jsonb[]
) returns table (idx integer, outcome text, revision bigint, transaction_id xid8, global_position bigint)
language plpgsql
as $$
declare
  n integer := coalesce(cardinality(p_stream_ids), 0);
  total integer := coalesce(cardinality(p_event_ids), 0);
  v_stream text;
  v_from integer := 1;
  v_to integer;
  r record;
begin
  if n = 0 then
    raise exception 'append_to_streams: no appends' using errcode = '22023';
  end if;
  if cardinality(p_expected_kinds) <> n or cardinality(p_expected_revisions) <> n or cardinality(p_counts) <> n then
    raise exception 'append_to_streams: append arrays differ in length' using errcode = '22023';
  end if;
  if (select coalesce(sum(c), 0) from unnest(p_counts) as c) <> total
     or cardinality(p_types) <> total or cardinality(p_data) <> total or cardinality(p_metadata) <> total then
    raise exception 'append_to_streams: event arrays do not match the counts' using errcode = '22023';
  end if;

  -- In the order of the lock keys, not of the stream ids: two streams whose ids hash alike share a
  -- lock, and ordering by id could then take the same two locks in opposite orders.
  for v_stream in select s from (select distinct s from unnest(p_stream_ids) as s) as d order by hashtext(s), s loop
    perform pg_advisory_xact_lock(7461002, hashtext(v_stream));
  end loop;

  for i in 1..n loop
    v_to := v_from + p_counts[i] - 1;
    select a.outcome, a.revision, a.transaction_id, a.global_position into r
    from append_to_stream(
      p_stream_ids[i], p_expected_kinds[i], p_expected_revisions[i],
      p_event_ids[v_from:v_to], p_types[v_from:v_to], p_data[v_from:v_to], p_metadata[v_from:v_to]
    ) as a;
    idx := i;
    outcome := r.outcome;
    revision := r.revision;
    transaction_id := r.transaction_id;
    global_position := r.global_position;
    return next;
    v_from := v_to + 1;
  end loop;
end;
$$;
