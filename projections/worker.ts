/**
 * One projection generation kept up with the event store: subscribe from the stored checkpoint, take
 * what the subscription has delivered (up to a batch), apply it and move the checkpoint in one
 * transaction, repeat. A failing batch is retried with backoff and never skipped; an event that
 * fails deterministically stops the generation (status `failed`).
 */
import type { Logger } from 'pino';
import type { DatabasePool } from '../src/adapters/postgres/pool.js';
import { type EventStore, eventBytes, type Position, type RecordedEvent } from '../src/core/event-store.js';
import { FENCED_SQLSTATE, PoisonEventError, type ProjectionDefinition, schemaOf } from './definition.js';
import { batchStatement, type CheckpointStatus, loadCheckpoint, markFailed } from './store.js';

export interface CommittedBatch {
  readonly name: string;
  readonly generation: number;
  readonly position: Position;
  readonly events: readonly RecordedEvent[];
}

export interface WorkerHooks {
  /** Runs inside the batch's transaction after the read model was written, before commit (fault injection in tests). */
  beforeCommit?(batch: { name: string; generation: number; events: readonly RecordedEvent[] }): Promise<void> | void;
}

export interface WorkerOptions {
  readonly pool: DatabasePool;
  readonly eventStore: EventStore;
  readonly definition: ProjectionDefinition;
  readonly generation: number;
  /** The status the checkpoint row must keep for this worker to write (`running`, or `rebuilding` for a rebuild). */
  readonly status: CheckpointStatus;
  readonly logger: Logger;
  readonly signal: AbortSignal;
  readonly batchSize?: number;
  /**
   * Bytes (events' size hints) a batch stops at, unless that leaves it empty: one event larger than
   * this is a batch of its own. The worker buffers up to 4 batches' worth, in events and in bytes.
   * Default 8 MiB: 2,000 ledger events stay under it (count-bound as before), while 1 MiB log batches
   * go 8 at a time, not 2,000 (gigabytes in memory, and one statement's parameters beyond V8's
   * longest string).
   */
  readonly batchBytes?: number;
  /** Attempts of a batch that fails with a non-transient error before it is narrowed down / declared poison. */
  readonly maxAttempts?: number;
  readonly backoffMs?: { readonly initial: number; readonly max: number };
  /** How long to wait for events before calling `onIdle`. */
  readonly idleMs?: number;
  readonly hooks?: WorkerHooks;
  /**
   * Where the events after a checkpoint come from; null (or no `source`) means a subscription of its
   * own. The runner passes a branch of one shared subscription, so several projections read once.
   */
  source?(from: Position | null, signal: AbortSignal): AsyncIterable<RecordedEvent> | null;
  onCommit?(batch: CommittedBatch): void;
  /**
   * Called after every committed batch and when no event arrived for `idleMs`; return true to stop.
   * Runs between batches (nothing of this worker is in flight).
   */
  onProgress?(position: Position | null, idle: boolean): Promise<boolean> | boolean;
}

export type WorkerOutcome =
  | { readonly kind: 'stopped'; readonly position: Position | null }
  /** The checkpoint row moved or changed status under this worker (another writer, a retired generation). */
  | { readonly kind: 'fenced' }
  | { readonly kind: 'failed'; readonly error: string };

class FencedError extends Error {
  override readonly name = 'FencedError';
}

class AbortedError extends Error {
  override readonly name = 'AbortedError';
}

/** Postgres SQLSTATE classes/codes that say "try again", not "this batch is wrong". */
const TRANSIENT_SQLSTATE = /^(08|53|57P|40001|40P01|55P03|57014|58)/;

const sqlStateOf = (error: unknown): string | null => {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current && typeof current === 'object'; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
    current = (current as { cause?: unknown }).cause;
  }
  return null;
};

/** Connection loss, timeouts, serialization failures, a stopping server: retried without limit. */
export const isTransientError = (error: unknown): boolean => {
  const state = sqlStateOf(error);
  if (state !== null) return TRANSIENT_SQLSTATE.test(state);
  const name = (error as { name?: unknown })?.name;
  if (typeof name === 'string' && /Connection|Timeout|BackendTerminated|StatementCancelled|StatementTimeout/.test(name)) return true;
  const code = (error as { code?: unknown })?.code;
  return typeof code === 'string' && /^(ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT|ENOTFOUND|EAI_AGAIN)$/.test(code);
};

const describe = (error: unknown): string => (error instanceof Error ? error.message : String(error));

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new AbortedError());
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(new AbortedError());
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });

export const DEFAULT_BATCH_BYTES = 8 * 1024 * 1024;

/**
 * Buffers a subscription so the applier can take "everything delivered so far" as one batch while the
 * subscription keeps reading (catch-up reads overlap with writes). Bounded in events and in bytes
 * (events' size hints): the pump waits when either is reached, after taking at least one event.
 */
export class EventBuffer {
  private readonly items: RecordedEvent[] = [];
  private head = 0;
  /** Bytes of the buffered events (from `head`). */
  private bytes = 0;
  private done = false;
  private failure: unknown = null;
  private wakeTaker: (() => void) | null = null;
  private wakePump: (() => void) | null = null;

  constructor(
    source: AsyncIterable<RecordedEvent>,
    private readonly highWater: number,
    private readonly highWaterBytes = Number.POSITIVE_INFINITY,
  ) {
    void this.pump(source);
  }

  private get size(): number {
    return this.items.length - this.head;
  }

  private get full(): boolean {
    return this.size >= this.highWater || this.bytes >= this.highWaterBytes;
  }

  private async pump(source: AsyncIterable<RecordedEvent>): Promise<void> {
    try {
      for await (const event of source) {
        this.items.push(event);
        this.bytes += eventBytes(event);
        this.wakeTaker?.();
        if (this.full) await new Promise<void>((resolve) => (this.wakePump = resolve));
        if (this.done) break;
      }
    } catch (error) {
      this.failure = error;
    } finally {
      this.done = true;
      this.wakeTaker?.();
    }
  }

  /**
   * Up to `max` buffered events, and no more than `maxBytes` of them unless that is one event; waits up
   * to `idleMs` when none are buffered; [] after an idle wait.
   */
  async take(max: number, idleMs: number, maxBytes = Number.POSITIVE_INFINITY): Promise<RecordedEvent[]> {
    if (this.size === 0 && !this.done) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, idleMs);
        this.wakeTaker = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wakeTaker = null;
    }
    if (this.size > 0) {
      const last = Math.min(this.items.length, this.head + max);
      let end = this.head + 1;
      let bytes = eventBytes(this.items[this.head] as RecordedEvent);
      for (; end < last; end++) {
        const next = eventBytes(this.items[end] as RecordedEvent);
        if (bytes + next > maxBytes) break;
        bytes += next;
      }
      const batch = this.items.slice(this.head, end);
      this.head = end;
      this.bytes -= bytes;
      if (this.head > 4096 && this.head * 2 > this.items.length) {
        this.items.splice(0, this.head);
        this.head = 0;
      }
      if (!this.full && this.wakePump) {
        const wake = this.wakePump;
        this.wakePump = null;
        wake();
      }
      return batch;
    }
    if (this.failure !== null) throw this.failure;
    if (this.done) throw new Error('the subscription ended');
    return [];
  }

  close(): void {
    this.done = true;
    this.wakePump?.();
  }
}

export class ProjectionWorker {
  private readonly batchSize: number;
  private readonly batchBytes: number;
  private readonly maxAttempts: number;
  private readonly backoff: { initial: number; max: number };
  private readonly idleMs: number;
  private readonly schema: string;

  constructor(private readonly options: WorkerOptions) {
    this.batchSize = options.batchSize ?? 2000;
    this.batchBytes = options.batchBytes ?? DEFAULT_BATCH_BYTES;
    this.maxAttempts = options.maxAttempts ?? 5;
    this.backoff = { initial: options.backoffMs?.initial ?? 100, max: options.backoffMs?.max ?? 5000 };
    this.idleMs = options.idleMs ?? 500;
    this.schema = schemaOf(options.definition.name, options.generation);
  }

  private get log(): Logger {
    return this.options.logger;
  }

  private delay(attempt: number): number {
    return Math.min(this.backoff.max, this.backoff.initial * 2 ** Math.max(0, attempt - 1));
  }

  async run(): Promise<WorkerOutcome> {
    const { pool, definition, generation, signal } = this.options;
    let subscriptionFailures = 0;
    while (!signal.aborted) {
      let checkpoint;
      try {
        checkpoint = await loadCheckpoint(pool, definition.name, generation);
      } catch (error) {
        if (signal.aborted) break;
        subscriptionFailures++;
        this.log.warn({ err: error, projection: definition.name }, 'projection: cannot read its checkpoint; retrying');
        if (!(await this.pause(subscriptionFailures))) break;
        continue;
      }
      if (!checkpoint || checkpoint.status !== this.options.status) return { kind: 'fenced' };
      const outcome = await this.follow(checkpoint.position);
      if (outcome.kind === 'resubscribe') {
        subscriptionFailures++;
        this.log.warn({ err: outcome.error, projection: definition.name }, 'projection: subscription dropped; resubscribing');
        if (!(await this.pause(subscriptionFailures))) break;
        continue;
      }
      return outcome;
    }
    return { kind: 'stopped', position: null };
  }

  private async pause(attempt: number): Promise<boolean> {
    try {
      await sleep(this.delay(attempt), this.options.signal);
      return true;
    } catch {
      return false;
    }
  }

  /** Follows the subscription from `start` until stopped, fenced, failed, or the subscription drops. */
  private async follow(start: Position | null): Promise<WorkerOutcome | { kind: 'resubscribe'; error: unknown }> {
    const { eventStore, signal } = this.options;
    const subscription = new AbortController();
    const stop = () => subscription.abort();
    signal.addEventListener('abort', stop, { once: true });
    const source =
      this.options.source?.(start, subscription.signal) ??
      eventStore.subscribeToAll({ ...(start ? { fromPosition: start } : {}), signal: subscription.signal });
    const buffer = new EventBuffer(source, this.batchSize * 4, this.batchBytes * 4);
    let position = start;
    try {
      while (!signal.aborted) {
        let batch: RecordedEvent[];
        try {
          batch = await buffer.take(this.batchSize, this.idleMs, this.batchBytes);
        } catch (error) {
          if (signal.aborted) break;
          return { kind: 'resubscribe', error };
        }
        if (signal.aborted) break;
        if (batch.length === 0) {
          if (this.options.onProgress && (await this.options.onProgress(position, true))) return { kind: 'stopped', position };
          continue;
        }
        const result = await this.commitWithRetry(batch, position);
        if (result.kind !== 'committed') return result;
        position = result.position;
        if (this.options.onProgress && (await this.options.onProgress(position, false))) return { kind: 'stopped', position };
      }
      return { kind: 'stopped', position };
    } catch (error) {
      if (error instanceof AbortedError) return { kind: 'stopped', position };
      throw error;
    } finally {
      signal.removeEventListener('abort', stop);
      subscription.abort();
      buffer.close();
    }
  }

  private async commit(batch: readonly RecordedEvent[], from: Position | null): Promise<Position> {
    const { pool, definition, generation, status, hooks } = this.options;
    const last = batch[batch.length - 1] as RecordedEvent;
    const write = definition.plan(this.schema, batch);
    const statement = batchStatement({ name: definition.name, generation, status }, from, last.position, batch.length, write);
    try {
      if (hooks?.beforeCommit) {
        await pool.transaction(async (tx) => {
          await tx.query(statement);
          await hooks.beforeCommit?.({ name: definition.name, generation, events: batch });
        });
      } else {
        await pool.query(statement);
      }
    } catch (error) {
      if (sqlStateOf(error) === FENCED_SQLSTATE) throw new FencedError(`checkpoint of ${definition.name} g${generation} moved`);
      throw error;
    }
    this.options.onCommit?.({ name: definition.name, generation, position: last.position, events: batch });
    return last.position;
  }

  private async commitWithRetry(
    batch: readonly RecordedEvent[],
    from: Position | null,
  ): Promise<{ kind: 'committed'; position: Position } | WorkerOutcome> {
    const { definition, signal } = this.options;
    let failures = 0;
    for (;;) {
      if (signal.aborted) throw new AbortedError();
      try {
        return { kind: 'committed', position: await this.commit(batch, from) };
      } catch (error) {
        if (error instanceof FencedError) return { kind: 'fenced' };
        if (error instanceof AbortedError) throw error;
        if (signal.aborted) throw new AbortedError();
        if (isTransientError(error)) {
          failures++;
          this.log.warn({ err: error, projection: definition.name, attempt: failures }, 'projection: batch failed (transient); retrying');
          await sleep(this.delay(failures), signal);
          continue;
        }
        failures++;
        // A statement can also fail because its generation was retired and dropped meanwhile: that is a fence, not poison.
        if (!(await this.stillCurrent())) return { kind: 'fenced' };
        const poison = error instanceof PoisonEventError;
        if (batch.length > 1 && (poison || failures >= this.maxAttempts)) {
          // Narrow down: commit the events one at a time, so everything before the bad one lands.
          this.log.warn({ err: error, projection: definition.name, events: batch.length }, 'projection: batch keeps failing; applying its events one by one');
          return this.commitOneByOne(batch, from);
        }
        if (poison || failures >= this.maxAttempts) return this.fail(error, batch[0] as RecordedEvent);
        this.log.warn({ err: error, projection: definition.name, attempt: failures }, 'projection: batch failed; retrying');
        await sleep(this.delay(failures), signal);
      }
    }
  }

  /** Whether this worker's checkpoint row still has the status it writes under (true when that cannot be read now). */
  private async stillCurrent(): Promise<boolean> {
    try {
      const checkpoint = await loadCheckpoint(this.options.pool, this.options.definition.name, this.options.generation);
      return checkpoint !== null && checkpoint.status === this.options.status;
    } catch {
      return true;
    }
  }

  private async commitOneByOne(
    batch: readonly RecordedEvent[],
    from: Position | null,
  ): Promise<{ kind: 'committed'; position: Position } | WorkerOutcome> {
    let position = from;
    for (const event of batch) {
      const result = await this.commitWithRetry([event], position);
      if (result.kind !== 'committed') return result;
      position = result.position;
    }
    return { kind: 'committed', position: position as Position };
  }

  private async fail(error: unknown, event: RecordedEvent): Promise<WorkerOutcome> {
    const { pool, definition, generation } = this.options;
    const culprit = error instanceof PoisonEventError ? error.event : event;
    const message = describe(error);
    this.log.error(
      {
        err: error,
        projection: definition.name,
        generation,
        event_id: culprit.id,
        event_type: culprit.type,
        stream_id: culprit.streamId,
      },
      `projection ${definition.name} STOPPED on a poison event: ${message}`,
    );
    for (let attempt = 1; ; attempt++) {
      try {
        await markFailed(pool, definition.name, generation, {
          error: message,
          eventId: culprit.id,
          eventType: culprit.type,
          position: culprit.position,
        });
        break;
      } catch (markError) {
        if (this.options.signal.aborted || attempt >= 10) {
          this.log.error({ err: markError }, 'projection: could not record the failure');
          break;
        }
        await sleep(this.delay(attempt), this.options.signal).catch(() => {});
      }
    }
    return { kind: 'failed', error: message };
  }
}
