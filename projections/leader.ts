/**
 * Leader election among projector processes: a session-level `pg_try_advisory_lock` held on a
 * connection of its own (never a pooled one, whose reset would drop it). The process holding it
 * projects; the others retry every second. When the leader dies its connection closes, Postgres
 * drops the lock, and a follower takes over. The checkpoint compare-and-set stays the fence for the
 * moments two processes might both believe they lead (a leader that has not yet noticed its
 * connection is gone).
 */
import pg from 'pg';
import { z } from 'zod';
import { type DatabasePool, sql } from '../src/adapters/postgres/pool.js';

/** `pg_try_advisory_lock(LEADER_LOCK_CLASS, LEADER_LOCK_ID)`; the first key is the app's advisory-lock space. */
export const LEADER_LOCK_CLASS = 7_461_020;
export const LEADER_LOCK_ID = 1;
/** A rebuild of projection N holds `(REBUILD_LOCK_CLASS, hashtext(N))`, so two rebuilds never race. */
export const REBUILD_LOCK_CLASS = 7_461_021;

/** Whether some session currently holds the leader lock (i.e. a projector is alive and leading). */
export async function leaderAlive(pool: DatabasePool): Promise<boolean> {
  return pool.oneFirst(sql.type(z.object({ alive: z.boolean() }))`
    select exists (
      select 1 from pg_locks
      where locktype = 'advisory' and granted
        and database = (select oid from pg_database where datname = current_database())
        and classid = ${LEADER_LOCK_CLASS}::int::oid and objid = ${LEADER_LOCK_ID}::int::oid and objsubid = 2
    ) as alive`);
}

/** A dedicated connection that holds (or tries to hold) the leader lock. */
export class LeaderLock {
  private client: pg.Client | null = null;
  private lostHandlers: (() => void)[] = [];

  constructor(private readonly connectionString: string) {}

  /** Connects if needed and tries the lock once. */
  async tryAcquire(): Promise<boolean> {
    if (!this.client) {
      const client = new pg.Client({ connectionString: this.connectionString, keepAlive: true, application_name: 'ledger-projector' });
      client.on('error', () => this.lost());
      client.on('end', () => this.lost());
      await client.connect();
      this.client = client;
    }
    const result = await this.client.query<{ locked: boolean }>('select pg_try_advisory_lock($1, $2) as locked', [
      LEADER_LOCK_CLASS,
      LEADER_LOCK_ID,
    ]);
    return result.rows[0]?.locked === true;
  }

  /** Round trip on the lock's connection; throws when the connection (and so the lock) is gone. */
  async check(timeoutMs: number): Promise<void> {
    const client = this.client;
    if (!client) throw new Error('the leader lock connection is closed');
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        client.query('select 1'),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error('the leader lock connection does not answer')), timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  onLost(handler: () => void): () => void {
    this.lostHandlers.push(handler);
    return () => {
      this.lostHandlers = this.lostHandlers.filter((h) => h !== handler);
    };
  }

  private lost(): void {
    const client = this.client;
    this.client = null;
    if (client) client.removeAllListeners('end');
    for (const handler of this.lostHandlers) handler();
    void client?.end().catch(() => {});
  }

  /** Releases the lock by closing the connection. */
  async release(): Promise<void> {
    const client = this.client;
    this.client = null;
    if (!client) return;
    client.removeAllListeners('end');
    client.removeAllListeners('error');
    client.on('error', () => {});
    try {
      await client.query('select pg_advisory_unlock_all()');
    } catch {
      // the connection is going away anyway
    }
    await client.end().catch(() => {});
  }

  /** Test hook: drops the connection the way a crash would (no unlock, no goodbye). */
  destroy(): void {
    const client = this.client as (pg.Client & { connection?: { stream?: { destroy(): void } } }) | null;
    client?.connection?.stream?.destroy();
  }
}
