/**
 * What the API (and the CLI) know about the projections: status and lag (GET /admin/projections,
 * `projections status`, Prometheus gauges) and read-your-writes (`?min_position=`): wait until the
 * projections a read needs have passed a position.
 *
 * Waiting does not poll in a tight loop: the projector NOTIFYs on every committed batch (the
 * notification is part of the batch's transaction, so it arrives only once the rows are visible), a
 * projector in the same process reports directly (`observe`), and one shared 250 ms re-read covers a
 * missed notification.
 */
import pg from 'pg';
import { Gauge, type Registry } from 'prom-client';
import type { DatabasePool } from '../src/adapters/postgres/pool.js';
import type { Clock } from '../src/core/clock.js';
import { comparePositions, type EventStore, formatPosition, type Position, parsePosition } from '../src/core/event-store.js';
import { createLagMeter, type LagMeter } from './lag.js';
import { leaderAlive } from './leader.js';
import { CHECKPOINT_CHANNEL, type Checkpoint, loadActiveCheckpoints, loadAllCheckpoints } from './store.js';

export const DEFAULT_WAIT_MS = 2000;
const FALLBACK_POLL_MS = 250;

export type ProjectionHealth = 'running' | 'stopped' | 'failed';

export interface ProjectionStatus {
  readonly name: string;
  readonly generation: number;
  readonly checkpoint: string | null;
  readonly head: string | null;
  readonly lag_events: number;
  readonly lag_ms: number;
  /** `running` (a leader projects it), `stopped` (no projector process holds the leader lock), `failed` (poison event). */
  readonly status: ProjectionHealth;
  readonly events_processed: number;
  readonly updated_at: string;
  readonly error: {
    readonly message: string;
    readonly event_id: string | null;
    readonly event_type: string | null;
    readonly position: string | null;
    readonly at: string | null;
  } | null;
  /** A rebuild in progress (or one that failed), not served yet. */
  readonly rebuild: { readonly generation: number; readonly checkpoint: string | null; readonly status: string } | null;
}

interface Waiter {
  readonly names: readonly string[];
  readonly target: Position;
  resolve(reached: boolean): void;
}

export class ProjectionReader {
  private readonly lagMeter: LagMeter;
  /** Highest known checkpoint per `name:generation`. */
  private readonly known = new Map<string, Position>();
  /** Active generation per projection. */
  private readonly active = new Map<string, number>();
  private readonly waiters = new Set<Waiter>();
  private listener: pg.Client | null = null;
  private listening: Promise<void> | null = null;
  private poller: NodeJS.Timeout | null = null;
  private closed = false;
  private statusCache: { at: number; value: Promise<ProjectionStatus[]> } | null = null;

  constructor(
    private readonly deps: { pool: DatabasePool; eventStore: EventStore; clock: Clock; metrics?: Registry },
  ) {
    this.lagMeter = createLagMeter(deps);
    if (deps.metrics) this.registerGauges(deps.metrics);
  }

  // ------------------------------------------------------------------------------------------
  // status

  async statuses(): Promise<ProjectionStatus[]> {
    const { pool, eventStore, clock } = this.deps;
    const [active, all, head, alive] = await Promise.all([
      loadActiveCheckpoints(pool),
      loadAllCheckpoints(pool),
      eventStore.headPosition(),
      leaderAlive(pool),
    ]);
    const now = clock.now();
    return Promise.all(
      active.map(async (checkpoint) => {
        this.learn(checkpoint);
        const lag = await this.lagMeter.lag(checkpoint.position, head, now);
        const rebuild = all
          .filter((c) => c.name === checkpoint.name && c.generation > checkpoint.generation && c.status !== 'retired')
          .sort((a, b) => b.generation - a.generation)[0];
        return {
          name: checkpoint.name,
          generation: checkpoint.generation,
          checkpoint: checkpoint.position ? formatPosition(checkpoint.position) : null,
          head: head ? formatPosition(head) : null,
          lag_events: lag.events,
          lag_ms: lag.ms,
          status: checkpoint.status === 'failed' ? 'failed' : alive ? 'running' : 'stopped',
          events_processed: checkpoint.eventsProcessed,
          updated_at: checkpoint.updatedAt.toISOString(),
          error:
            checkpoint.status === 'failed'
              ? {
                  message: checkpoint.error ?? 'unknown',
                  event_id: checkpoint.failedEventId,
                  event_type: checkpoint.failedEventType,
                  position: checkpoint.failedPosition,
                  at: checkpoint.failedAt?.toISOString() ?? null,
                }
              : null,
          rebuild: rebuild
            ? {
                generation: rebuild.generation,
                checkpoint: rebuild.position ? formatPosition(rebuild.position) : null,
                status: rebuild.status,
              }
            : null,
        } satisfies ProjectionStatus;
      }),
    );
  }

  private cachedStatuses(): Promise<ProjectionStatus[]> {
    const now = Date.now();
    if (!this.statusCache || now - this.statusCache.at > 1000) {
      const value = this.statuses();
      value.catch(() => {
        this.statusCache = null;
      });
      this.statusCache = { at: now, value };
    }
    return this.statusCache.value;
  }

  private registerGauges(registry: Registry): void {
    if (registry.getSingleMetric('projection_lag_events')) return;
    const reader = this;
    const gauge = (name: string, help: string, value: (s: ProjectionStatus) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['projection'],
        registers: [registry],
        async collect() {
          try {
            for (const status of await reader.cachedStatuses()) this.set({ projection: status.name }, value(status));
          } catch {
            // the scrape still answers; these gauges keep their last values
          }
        },
      });
    gauge('projection_lag_events', 'Events recorded but not yet projected', (s) => s.lag_events);
    gauge('projection_lag_ms', 'Age of the oldest event not yet projected, in milliseconds', (s) => s.lag_ms);
    gauge('projection_events_processed', 'Events the active generation has processed', (s) => s.events_processed);
    gauge('projection_generation', 'Active generation of the projection', (s) => s.generation);
    gauge('projection_failed', '1 when the projection stopped on a poison event', (s) => (s.status === 'failed' ? 1 : 0));
  }

  // ------------------------------------------------------------------------------------------
  // read-your-writes

  /** Reports a committed batch of an in-process projector (no round trip through NOTIFY). */
  observe(name: string, generation: number, position: Position): void {
    this.observePosition(`${name}:${generation}`, position);
    this.check();
  }

  /**
   * Resolves true once every named projection's active generation has processed `target`, false
   * after `timeoutMs`.
   */
  async waitFor(names: readonly string[], target: Position, timeoutMs = DEFAULT_WAIT_MS): Promise<boolean> {
    if (this.reachedInCache(names, target)) return true;
    await this.listen().catch(() => {});
    if (await this.refresh().then(() => this.reachedInCache(names, target)).catch(() => false)) return true;
    if (timeoutMs <= 0 || this.closed) return false;
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => finish(false), timeoutMs);
      const waiter: Waiter = { names, target, resolve: (reached) => finish(reached) };
      const finish = (reached: boolean) => {
        if (!this.waiters.delete(waiter)) return;
        clearTimeout(timer);
        if (this.waiters.size === 0) this.stopPolling();
        resolve(reached);
      };
      this.waiters.add(waiter);
      this.startPolling();
    });
  }

  private reachedInCache(names: readonly string[], target: Position): boolean {
    return names.every((name) => {
      const generation = this.active.get(name);
      if (generation === undefined) return false;
      const position = this.known.get(`${name}:${generation}`);
      return position !== undefined && comparePositions(position, target) >= 0;
    });
  }

  private learn(checkpoint: Checkpoint): void {
    this.active.set(checkpoint.name, checkpoint.generation);
    if (checkpoint.position) this.observePosition(`${checkpoint.name}:${checkpoint.generation}`, checkpoint.position);
  }

  private observePosition(key: string, position: Position): void {
    const previous = this.known.get(key);
    if (!previous || comparePositions(position, previous) > 0) this.known.set(key, position);
  }

  private async refresh(): Promise<void> {
    for (const checkpoint of await loadActiveCheckpoints(this.deps.pool)) this.learn(checkpoint);
  }

  private check(): void {
    for (const waiter of [...this.waiters]) {
      if (this.reachedInCache(waiter.names, waiter.target)) waiter.resolve(true);
    }
  }

  private startPolling(): void {
    if (this.poller) return;
    this.poller = setInterval(() => {
      this.refresh().then(
        () => this.check(),
        () => {},
      );
    }, FALLBACK_POLL_MS);
    this.poller.unref();
  }

  private stopPolling(): void {
    if (this.poller) clearInterval(this.poller);
    this.poller = null;
  }

  private listen(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.listening) return this.listening;
    const client = new pg.Client({
      connectionString: this.deps.pool.configuration.connectionUri,
      keepAlive: true,
      application_name: 'ledger-projection-waiter',
    });
    const reset = () => {
      if (this.listener === client) this.listener = null;
      this.listening = null;
      client.removeAllListeners('end');
      void client.end().catch(() => {});
    };
    client.on('error', reset);
    client.on('end', reset);
    client.on('notification', (message) => {
      if (message.channel !== CHECKPOINT_CHANNEL || !message.payload) return;
      this.onNotification(message.payload);
    });
    this.listener = client;
    this.listening = (async () => {
      await client.connect();
      await client.query(`listen ${CHECKPOINT_CHANNEL}`);
    })().catch((error) => {
      reset();
      throw error;
    });
    return this.listening;
  }

  private onNotification(payload: string): void {
    const parts = payload.split(':');
    if (parts[0] === 'swap' && parts.length === 3) {
      const generation = Number(parts[2]);
      if (Number.isInteger(generation)) this.active.set(parts[1] as string, generation);
    } else if (parts.length === 3) {
      const generation = Number(parts[1]);
      const position = parsePosition(parts[2] as string);
      if (!Number.isInteger(generation) || !position) return;
      this.observePosition(`${parts[0]}:${generation}`, position);
    }
    this.check();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.stopPolling();
    for (const waiter of [...this.waiters]) waiter.resolve(false);
    const client = this.listener;
    this.listener = null;
    this.listening = null;
    if (client) {
      client.removeAllListeners('end');
      client.on('error', () => {});
      await client.end().catch(() => {});
    }
  }
}
