import pg from 'pg';
import { z } from 'zod';
import { type DatabasePool, prepared, sql } from '../postgres/pool.js';

/**
 * Wake-ups for live subscriptions. A notification only tells a subscriber "look again"; what it reads is
 * decided by the query alone, so a lost, late or duplicated wake-up costs latency, never correctness.
 */

/** One subscription's alarm clock: woken by notifications, by its poll interval, or by its signal. */
export class Waker {
  private pending = false;
  private failure: Error | null = null;
  private resolveWait: (() => void) | null = null;

  wake(): void {
    this.pending = true;
    this.resolveWait?.();
  }

  fail(error: Error): void {
    this.failure ??= error;
    this.resolveWait?.();
  }

  /** Call just before reading: a wake-up that arrives during the read makes the next `sleep` return at once. */
  arm(): void {
    if (this.failure) throw this.failure;
    this.pending = false;
  }

  /** Until a wake-up (or one that came since `arm`), `ms`, or the signal; throws what `fail` was given. */
  async sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (!this.pending && !this.failure && !signal?.aborted) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', done);
          this.resolveWait = null;
          resolve();
        };
        const timer = setTimeout(done, ms);
        signal?.addEventListener('abort', done, { once: true });
        this.resolveWait = done;
      });
    }
    if (this.failure) throw this.failure;
  }
}

/**
 * The dedicated LISTEN connection, opened for the first subscriber and closed after the last. If it
 * fails, every subscriber attached to it fails (their iterators throw); the next subscriber opens a new one.
 */
export class NotificationListener {
  private connecting: Promise<pg.Client> | null = null;
  /** The client `connecting` resolves to. */
  private current: pg.Client | null = null;
  private readonly wakers = new Set<Waker>();
  private readonly closing = new Set<Promise<void>>();
  /** Clients ended on purpose, whose 'end' is no failure. */
  private readonly retired = new WeakSet<pg.Client>();

  constructor(
    private readonly url: string,
    private readonly channel: string,
  ) {}

  async attach(waker: Waker): Promise<void> {
    this.wakers.add(waker);
    try {
      this.connecting ??= this.connect();
      await this.connecting;
    } catch (error) {
      this.wakers.delete(waker);
      throw error;
    }
  }

  detach(waker: Waker): void {
    this.wakers.delete(waker);
    if (this.wakers.size === 0) this.disconnect();
  }

  async close(): Promise<void> {
    this.wakers.clear();
    this.disconnect();
    await Promise.all(this.closing);
  }

  private async connect(): Promise<pg.Client> {
    const client = new pg.Client({
      connectionString: this.url,
      application_name: 'event-store-listener',
      keepAlive: true,
    });
    this.current = client;
    const forget = () => {
      this.retired.add(client);
      if (this.current !== client) return;
      this.current = null;
      this.connecting = null;
    };
    const lost = (error: Error) => {
      if (this.retired.has(client)) return;
      forget();
      for (const waker of this.wakers) waker.fail(error);
      this.wakers.clear();
      client.end().catch(() => {});
    };
    client.on('error', (error) => lost(new Error(`event store listener connection failed: ${error.message}`, { cause: error })));
    client.on('end', () => lost(new Error('event store listener connection ended')));
    client.on('notification', (message) => {
      if (message.channel !== this.channel) return;
      for (const waker of this.wakers) waker.wake();
    });
    try {
      await client.connect();
      await client.query(`listen ${client.escapeIdentifier(this.channel)}`);
    } catch (error) {
      forget();
      client.end().catch(() => {});
      throw error;
    }
    return client;
  }

  private disconnect(): void {
    const connecting = this.connecting;
    if (this.current) this.retired.add(this.current);
    this.connecting = null;
    this.current = null;
    if (!connecting) return;
    const ending = connecting
      .then((client) => client.end())
      .catch(() => {})
      .finally(() => this.closing.delete(ending));
    this.closing.add(ending);
  }
}

const notified = z.object({ sent: z.boolean() });

/**
 * Tells other processes' listeners that appends committed, *after* the commit, and at most one NOTIFY in
 * flight per store: appends that commit meanwhile are covered by one more NOTIFY when it returns.
 *
 * Why not NOTIFY inside the append transaction: at commit, a transaction that notified takes a
 * cluster-wide heavyweight lock ("database 0", PreCommit_Notify in src/backend/commands/async.c) and holds
 * it until its commit is flushed, so every notifying append would commit one at a time, defeating group
 * commit. Here the lock is only ever taken by one tiny transaction per process.
 */
export class CommitNotifier {
  private running: Promise<void> | null = null;
  private again = false;
  private closed = false;

  constructor(
    private readonly pool: DatabasePool,
    private readonly channel: string,
  ) {}

  notify(): void {
    if (this.closed) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.run();
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.running;
  }

  private async run(): Promise<void> {
    try {
      do {
        this.again = false;
        // A failed wake-up is only latency: subscribers still poll. Never let it fail an append.
        await this.pool.one(prepared(sql.type(notified)`select true as sent from pg_notify(${this.channel}, '')`)).catch(() => {});
      } while (this.again && !this.closed);
    } finally {
      this.running = null;
    }
  }
}
