/**
 * The projector: in the service by default (src/main.ts) or on its own (`npm run projector`,
 * src/projector-main.ts). Every process runs one; the one holding the leader lock projects, one
 * worker per projection on that projection's active generation.
 *
 * - A worker fenced out of its checkpoint (a rebuild switched generations, or another leader moved it)
 *   re-reads the active generation and carries on from there.
 * - A projection that fails on a poison event stays stopped (status `failed`, the reason in
 *   GET /admin/projections and the log) until the next leader takes over — the natural moment after a
 *   fix is deployed — which gives it another try.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { DatabasePool } from '../src/adapters/postgres/pool.js';
import { comparePositions, type EventStore, type Position, type RecordedEvent } from '../src/core/event-store.js';
import type { ProjectionDefinition } from './definition.js';
import { type FeedLimits, SharedFeed } from './feed.js';
import { PROJECTIONS } from './index.js';
import { LeaderLock } from './leader.js';
import { activeGeneration, loadActiveCheckpoints, loadCheckpoint, resetFailed } from './store.js';
import { type CommittedBatch, ProjectionWorker, type WorkerHooks } from './worker.js';

export interface ProjectorOptions {
  readonly pool: DatabasePool;
  readonly eventStore: EventStore;
  readonly logger: Logger;
  readonly metrics?: Registry;
  readonly projections?: readonly ProjectionDefinition[];
  /** How often a follower tries the leader lock. */
  readonly lockRetryMs?: number;
  /** How often the leader checks its lock connection. */
  readonly heartbeatMs?: number;
  readonly batchSize?: number;
  /** See WorkerOptions.batchBytes. */
  readonly batchBytes?: number;
  /** How far (events, bytes) the fastest projection may read ahead of the slowest (the shared feed's window). */
  readonly feedLimits?: FeedLimits;
  readonly maxAttempts?: number;
  readonly backoffMs?: { readonly initial: number; readonly max: number };
  readonly hooks?: WorkerHooks;
  /** Told about every committed batch (the in-process read-your-writes waiters listen here). */
  onCommit?(batch: CommittedBatch): void;
}

export type WorkerState = 'starting' | 'running' | 'failed' | 'stopped';

export interface ProjectorStatus {
  readonly instanceId: string;
  readonly leader: boolean;
  readonly projections: readonly { name: string; generation: number | null; state: WorkerState; position: Position | null; error: string | null }[];
}

interface Metrics {
  readonly events: Counter<'projection'>;
  readonly batches: Counter<'projection'>;
  readonly failures: Counter<'projection'>;
  readonly eventLag: Histogram<'projection'>;
  readonly leader: Gauge;
}

const metricsOn = (registry: Registry): Metrics => {
  const existing = <T>(name: string): T | undefined => registry.getSingleMetric(name) as T | undefined;
  return {
    events:
      existing<Counter<'projection'>>('projection_events_total') ??
      new Counter({ name: 'projection_events_total', help: 'Events applied by the projector', labelNames: ['projection'], registers: [registry] }),
    batches:
      existing<Counter<'projection'>>('projection_batches_total') ??
      new Counter({ name: 'projection_batches_total', help: 'Batches committed by the projector', labelNames: ['projection'], registers: [registry] }),
    failures:
      existing<Counter<'projection'>>('projection_failures_total') ??
      new Counter({ name: 'projection_failures_total', help: 'Projections stopped on a poison event', labelNames: ['projection'], registers: [registry] }),
    eventLag:
      existing<Histogram<'projection'>>('projection_event_lag_seconds') ??
      new Histogram({
        name: 'projection_event_lag_seconds',
        help: 'Time from an event being recorded to its batch being committed to the read model',
        labelNames: ['projection'],
        buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
        registers: [registry],
      }),
    leader:
      existing<Gauge>('projection_leader') ??
      new Gauge({ name: 'projection_leader', help: '1 when this process holds the projector leader lock', registers: [registry] }),
  };
};

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

export class ProjectorRunner {
  readonly instanceId = randomUUID();
  private readonly projections: readonly ProjectionDefinition[];
  private readonly lock: LeaderLock;
  private readonly metrics: Metrics | null;
  private stopController = new AbortController();
  private loop: Promise<void> | null = null;
  private leading = false;
  private readonly states = new Map<string, { generation: number | null; state: WorkerState; position: Position | null; error: string | null }>();
  private readonly listeners = new Set<(batch: CommittedBatch) => void>();

  constructor(private readonly options: ProjectorOptions) {
    this.projections = options.projections ?? PROJECTIONS;
    this.lock = new LeaderLock(options.pool.configuration.connectionUri);
    this.metrics = options.metrics ? metricsOn(options.metrics) : null;
    for (const p of this.projections) this.states.set(p.name, { generation: null, state: 'stopped', position: null, error: null });
  }

  get isLeader(): boolean {
    return this.leading;
  }

  get isStarted(): boolean {
    return this.loop !== null;
  }

  /** Subscribes to committed batches; returns the unsubscribe function. */
  onCommit(listener: (batch: CommittedBatch) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  status(): ProjectorStatus {
    return {
      instanceId: this.instanceId,
      leader: this.leading,
      projections: [...this.states.entries()].map(([name, s]) => ({ name, ...s })),
    };
  }

  /** Starts the election loop; resolves once the first attempt at the lock is done (won or not). */
  async start(): Promise<void> {
    if (this.loop) return;
    this.stopController = new AbortController();
    let firstAttempt!: () => void;
    const attempted = new Promise<void>((resolve) => (firstAttempt = resolve));
    this.loop = this.elect(firstAttempt).catch((error) => {
      this.options.logger.error({ err: error }, 'projector: election loop crashed');
    });
    await attempted;
  }

  /** Stops projecting, releases the lock; in-flight batches finish or roll back. */
  async stop(): Promise<void> {
    if (!this.loop) return;
    this.stopController.abort();
    await this.loop;
    this.loop = null;
  }

  /** Test hook: behave like a crashed process (drop the lock connection without unlocking). */
  async crash(): Promise<void> {
    this.lock.destroy();
    await this.stop();
  }

  private async elect(firstAttempt: () => void): Promise<void> {
    const { logger } = this.options;
    const stop = this.stopController.signal;
    const retryMs = this.options.lockRetryMs ?? 1000;
    let failures = 0;
    while (!stop.aborted) {
      let acquired = false;
      try {
        acquired = await this.lock.tryAcquire();
        failures = 0;
      } catch (error) {
        failures++;
        if (failures === 1 || failures % 30 === 0) logger.warn({ err: error }, 'projector: cannot reach Postgres for the leader lock');
        await this.lock.release();
      }
      firstAttempt();
      if (acquired) {
        await this.lead();
        await this.lock.release();
      } else {
        await sleep(retryMs, stop);
      }
    }
    await this.lock.release();
  }

  /** Runs the workers while the lock holds. */
  private async lead(): Promise<void> {
    const { logger } = this.options;
    const stop = this.stopController.signal;
    const leadership = new AbortController();
    const endLeadership = () => leadership.abort();
    stop.addEventListener('abort', endLeadership, { once: true });
    const unsubscribe = this.lock.onLost(() => {
      if (!leadership.signal.aborted) logger.warn('projector: lost the leader lock connection; stepping down');
      leadership.abort();
    });
    this.leading = true;
    this.metrics?.leader.set(1);
    logger.info({ instance: this.instanceId }, 'projector: leading');
    const heartbeat = this.heartbeat(leadership);
    const feeds: { current: SharedFeed | null } = { current: null };
    try {
      feeds.current = await this.openFeed();
      const source = (from: Position | null, signal: AbortSignal) => {
        if (feeds.current?.alive === false) feeds.current = new SharedFeed(this.options.eventStore, from, this.options.feedLimits);
        return feeds.current?.branch(from, signal) ?? null;
      };
      await Promise.all(this.projections.map((definition) => this.supervise(definition, leadership.signal, source)));
    } finally {
      leadership.abort();
      feeds.current?.close();
      await heartbeat;
      unsubscribe();
      stop.removeEventListener('abort', endLeadership);
      this.leading = false;
      this.metrics?.leader.set(0);
      logger.info({ instance: this.instanceId }, 'projector: no longer leading');
    }
  }

  private async heartbeat(leadership: AbortController): Promise<void> {
    const interval = this.options.heartbeatMs ?? 1000;
    while (!leadership.signal.aborted) {
      await sleep(interval, leadership.signal);
      if (leadership.signal.aborted) return;
      try {
        await this.lock.check(Math.max(2000, interval * 3));
      } catch (error) {
        this.options.logger.warn({ err: error }, 'projector: leader lock connection failed; stepping down');
        leadership.abort();
      }
    }
  }

  /** One subscription for every projection, from the earliest of their checkpoints (null: each reads alone). */
  private async openFeed(): Promise<SharedFeed | null> {
    try {
      const names = new Set(this.projections.map((p) => p.name));
      const checkpoints = (await loadActiveCheckpoints(this.options.pool)).filter((c) => names.has(c.name));
      let start: Position | null | undefined;
      for (const checkpoint of checkpoints) {
        if (start === undefined || checkpoint.position === null || (start !== null && comparePositions(checkpoint.position, start) < 0)) {
          start = checkpoint.position;
        }
      }
      return new SharedFeed(this.options.eventStore, start ?? null, this.options.feedLimits);
    } catch (error) {
      this.options.logger.warn({ err: error }, 'projector: cannot read the checkpoints; projections subscribe on their own');
      return null;
    }
  }

  /** Keeps one projection's active generation projected until the leadership ends. */
  private async supervise(
    definition: ProjectionDefinition,
    signal: AbortSignal,
    source: (from: Position | null, signal: AbortSignal) => AsyncIterable<RecordedEvent> | null,
  ): Promise<void> {
    const { pool, logger } = this.options;
    const state = this.states.get(definition.name)!;
    let retriedFailure = false;
    let errors = 0;
    while (!signal.aborted) {
      let generation: number;
      try {
        generation = await activeGeneration(pool, definition.name);
        const checkpoint = await loadCheckpoint(pool, definition.name, generation);
        if (checkpoint?.status === 'failed') {
          if (retriedFailure) {
            state.state = 'failed';
            state.error = checkpoint.error;
            await sleep(2000, signal);
            continue;
          }
          logger.warn({ projection: definition.name, error: checkpoint.error }, 'projector: retrying a failed projection');
          await resetFailed(pool, definition.name, generation, 'running');
        }
        retriedFailure = true;
        errors = 0;
        state.generation = generation;
        state.position = checkpoint?.position ?? null;
      } catch (error) {
        if (signal.aborted) break;
        errors++;
        logger.warn({ err: error, projection: definition.name }, 'projector: cannot read the projection state; retrying');
        await sleep(Math.min(5000, 100 * 2 ** errors), signal);
        continue;
      }
      state.state = 'running';
      state.error = null;
      let lastStatusCheck = Date.now();
      const worker = new ProjectionWorker({
        pool,
        eventStore: this.options.eventStore,
        definition,
        generation,
        status: 'running',
        logger,
        signal,
        ...(this.options.batchSize !== undefined ? { batchSize: this.options.batchSize } : {}),
        ...(this.options.batchBytes !== undefined ? { batchBytes: this.options.batchBytes } : {}),
        ...(this.options.maxAttempts !== undefined ? { maxAttempts: this.options.maxAttempts } : {}),
        ...(this.options.backoffMs !== undefined ? { backoffMs: this.options.backoffMs } : {}),
        ...(this.options.hooks !== undefined ? { hooks: this.options.hooks } : {}),
        source,
        onCommit: (batch) => this.committed(batch),
        // While idle, notice a generation switch (rebuild) without waiting for the next event.
        onProgress: async (_position, idle) => {
          if (!idle || Date.now() - lastStatusCheck < 2000) return false;
          lastStatusCheck = Date.now();
          try {
            const current = await loadCheckpoint(pool, definition.name, generation);
            return current?.status !== 'running';
          } catch {
            return false;
          }
        },
      });
      const outcome = await worker.run();
      if (outcome.kind === 'failed') {
        state.state = 'failed';
        state.error = outcome.error;
        this.metrics?.failures.inc({ projection: definition.name });
        continue; // parks in the failed branch above until the leadership ends
      }
      if (outcome.kind === 'fenced' || (outcome.kind === 'stopped' && !signal.aborted)) {
        logger.info({ projection: definition.name, generation }, 'projector: checkpoint moved or generation switched; reloading');
        await sleep(50, signal);
      }
    }
    state.state = 'stopped';
  }

  private committed(batch: CommittedBatch): void {
    const state = this.states.get(batch.name);
    if (state && state.generation === batch.generation) state.position = batch.position;
    if (this.metrics) {
      const now = Date.now();
      this.metrics.events.inc({ projection: batch.name }, batch.events.length);
      this.metrics.batches.inc({ projection: batch.name });
      // The batch's oldest event waited longest: its lag is the batch's.
      const first = batch.events[0];
      if (first) this.metrics.eventLag.observe({ projection: batch.name }, Math.max(0, now - first.recordedAt.getTime()) / 1000);
    }
    this.options.onCommit?.(batch);
    for (const listener of this.listeners) listener(batch);
  }
}
