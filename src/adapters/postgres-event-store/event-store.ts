import { z } from 'zod';
import type {
  EventStore,
  Position,
  ReadAllOptions,
  ReadStreamOptions,
  RecordedEvent,
  SubscribeOptions,
} from '../../core/event-store.js';
import { type DatabasePool, sql } from '../postgres/pool.js';
import { appendInTransaction } from './append.js';
import { clampToInt8, eventColumns, eventRow, INT8_MAX, positionRow, toPosition, toRecordedEvent, XID8_MAX } from './rows.js';
import { CommitNotifier, NotificationListener, Waker } from './wake.js';

export { appendInTransaction } from './append.js';

export interface PostgresEventStoreOptions {
  /** Shared pool (src/adapters/postgres/pool.ts); the store never ends it. */
  readonly pool: DatabasePool;
  /**
   * Where the dedicated LISTEN connection of live subscriptions goes. Default: the pool's own URI.
   * `false`: no LISTEN; live subscriptions wake on this process's appends and on their poll interval.
   */
  readonly notifyUrl?: string | false;
  /**
   * How often a caught-up live subscription looks again without being woken. Wake-ups come from appends
   * (this store's directly, other processes' through NOTIFY), and a subscription that knows committed
   * events are being held back by a transaction in flight re-reads on a short backoff; so this only
   * bounds the delay after what neither sees: an append made through `appendInTransaction`, a lost
   * notification. Default 500 ms.
   */
  readonly pollIntervalMs?: number;
  /** Rows per read query; reads stream batch by batch. Default 500. */
  readonly batchSize?: number;
  /** LISTEN/NOTIFY channel. Default `event_store`. */
  readonly channel?: string;
}

const START: Position = { major: 0n, minor: 0n };
const END: Position = { major: XID8_MAX, minor: INT8_MAX };

const countLimit = (maxCount: number | undefined): number => {
  if (maxCount === undefined) return Number.POSITIVE_INFINITY;
  if (!Number.isInteger(maxCount) || maxCount < 0) throw new RangeError(`maxCount must be a whole number >= 0, got ${maxCount}`);
  return maxCount;
};

const pingRow = z.object({ ok: z.literal(1) });
const unreadRow = z.object({ unread: z.literal(true) });
const MIN_RETRY_MS = 5;

/**
 * The default event store. Positions are (transaction id, global position); reads of the global log
 * stop below the oldest transaction still in flight (see migrations/001_event_store.sql), so a
 * subscriber never passes an event that could still commit before it.
 */
/** The Postgres event store: the port, plus what a writer that commits events itself needs. */
export interface PostgresEventStore extends EventStore {
  readonly name: 'postgres';
  /**
   * After a commit that wrote events without `appendToStream` (the group-committed batch append): wakes
   * this store's live subscriptions at once and tells other processes (NOTIFY), as an append does.
   */
  announceCommit(): void;
}

export const isPostgresEventStore = (store: EventStore): store is PostgresEventStore =>
  store.name === 'postgres' && typeof (store as Partial<PostgresEventStore>).announceCommit === 'function';

export function createPostgresEventStore(options: PostgresEventStoreOptions): PostgresEventStore {
  const { pool } = options;
  const pollIntervalMs = options.pollIntervalMs ?? 500;
  const batchSize = options.batchSize ?? 500;
  const channel = options.channel ?? 'event_store';
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batchSize must be a whole number >= 1, got ${batchSize}`);
  const listenUrl = options.notifyUrl === false ? null : (options.notifyUrl ?? pool.configuration.connectionUri);
  const listener = listenUrl === null ? null : new NotificationListener(listenUrl, channel);
  const notifier = new CommitNotifier(pool, channel);
  /** Every live subscription of this store: woken directly by its appends, ended by `close`. */
  const subscriptions = new Map<Waker, AbortController>();
  let closed = false;

  const assertOpen = () => {
    if (closed) throw new Error('the event store is closed');
  };

  const readAllBatch = (direction: 'forwards' | 'backwards', after: Position, limit: number) => {
    const major = after.major.toString();
    const minor = clampToInt8(after.minor);
    return direction === 'forwards'
      ? pool.any(sql.type(eventRow)`
          select ${eventColumns} from events e
          where (e.transaction_id, e.global_position) > (${major}::xid8, ${minor}::bigint)
            and e.transaction_id < pg_snapshot_xmin(pg_current_snapshot())
          order by e.transaction_id, e.global_position
          limit ${limit}`)
      : pool.any(sql.type(eventRow)`
          select ${eventColumns} from events e
          where (e.transaction_id, e.global_position) < (${major}::xid8, ${minor}::bigint)
            and e.transaction_id < pg_snapshot_xmin(pg_current_snapshot())
          order by e.transaction_id desc, e.global_position desc
          limit ${limit}`);
  };

  async function* readStream(streamId: string, options: ReadStreamOptions = {}): AsyncGenerator<RecordedEvent> {
    assertOpen();
    const forwards = (options.direction ?? 'forwards') === 'forwards';
    let remaining = countLimit(options.maxCount);
    if (options.fromRevision !== undefined && options.fromRevision < 0n) {
      throw new RangeError(`fromRevision must be >= 0, got ${options.fromRevision}`);
    }
    let from = clampToInt8(options.fromRevision ?? (forwards ? 0n : INT8_MAX)); // inclusive
    while (remaining > 0) {
      const limit = Math.min(batchSize, remaining);
      const rows = forwards
        ? await pool.any(sql.type(eventRow)`
            select ${eventColumns} from events e
            where e.stream_id = ${streamId} and e.stream_revision >= ${from}::bigint
            order by e.stream_revision
            limit ${limit}`)
        : await pool.any(sql.type(eventRow)`
            select ${eventColumns} from events e
            where e.stream_id = ${streamId} and e.stream_revision <= ${from}::bigint
            order by e.stream_revision desc
            limit ${limit}`);
      for (const row of rows) {
        from = forwards ? row.stream_revision + 1n : row.stream_revision - 1n;
        yield toRecordedEvent(row);
      }
      remaining -= rows.length;
      if (rows.length < limit || from < 0n) return;
    }
  }

  async function* readAll(options: ReadAllOptions = {}): AsyncGenerator<RecordedEvent> {
    assertOpen();
    const direction = options.direction ?? 'forwards';
    let remaining = countLimit(options.maxCount);
    let cursor = options.fromPosition ?? (direction === 'forwards' ? START : END);
    while (remaining > 0) {
      const limit = Math.min(batchSize, remaining);
      const rows = await readAllBatch(direction, cursor, limit);
      for (const row of rows) {
        const event = toRecordedEvent(row);
        cursor = event.position;
        yield event;
      }
      remaining -= rows.length;
      if (rows.length < limit) return;
    }
  }

  /**
   * Whether committed events after `after` exist, visible to the log or not yet: after a short read that
   * means a transaction in flight (any writer in the cluster, not only an append) held them back, and
   * its end may announce nothing; or that they became visible since the read.
   */
  const hasUnread = async (after: Position) =>
    // ORDER BY + LIMIT rather than EXISTS: that keeps the planner on the index (EXISTS chose a seq scan).
    (await pool.maybeOne(sql.type(unreadRow)`
      select true as unread from events e
      where (e.transaction_id, e.global_position) > (${after.major.toString()}::xid8, ${clampToInt8(after.minor)}::bigint)
      order by e.transaction_id, e.global_position
      limit 1`)) !== null;

  async function* subscribeToAll(options: SubscribeOptions = {}): AsyncGenerator<RecordedEvent> {
    assertOpen();
    const stop = new AbortController();
    const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
    const waker = new Waker();
    subscriptions.set(waker, stop);
    try {
      if (signal.aborted) return;
      // Listening before the first read: nothing that commits after that read can go unannounced.
      await listener?.attach(waker);
      let cursor = options.fromPosition ?? START;
      let retryMs = 0;
      while (!signal.aborted) {
        waker.arm();
        const rows = await readAllBatch('forwards', cursor, batchSize);
        for (const row of rows) {
          if (signal.aborted) return;
          const event = toRecordedEvent(row);
          cursor = event.position;
          yield event;
        }
        // A full batch means more is (probably) there already: catching up, read on at once.
        if (rows.length === batchSize || signal.aborted) continue;
        // Held back: look again soon, backing off, rather than wait for a wake-up that may never come.
        retryMs = (await hasUnread(cursor)) ? Math.min(Math.max(retryMs * 2, MIN_RETRY_MS), pollIntervalMs) : 0;
        await waker.sleep(retryMs || pollIntervalMs, signal);
      }
    } finally {
      subscriptions.delete(waker);
      listener?.detach(waker);
    }
  }

  const announceCommit = () => {
    for (const waker of subscriptions.keys()) waker.wake();
    notifier.notify();
  };

  return {
    name: 'postgres',
    announceCommit,

    async appendToStream(streamId, events, { expectedRevision }) {
      assertOpen();
      const result = await appendInTransaction(pool, streamId, events, expectedRevision);
      announceCommit();
      return result;
    },

    readStream,
    readAll,
    subscribeToAll,

    async headPosition() {
      assertOpen();
      const row = await pool.maybeOne(sql.type(positionRow)`
        select e.transaction_id::text as transaction_id, e.global_position from events e
        where e.transaction_id < pg_snapshot_xmin(pg_current_snapshot())
        order by e.transaction_id desc, e.global_position desc
        limit 1`);
      return row === null ? null : toPosition(row);
    },

    async ping() {
      await pool.one(sql.type(pingRow)`select 1 as ok`);
    },

    async close() {
      if (closed) return;
      closed = true;
      for (const stop of subscriptions.values()) stop.abort();
      await Promise.all([listener?.close(), notifier.close()]);
    },
  };
}
