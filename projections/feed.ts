/**
 * One subscription read by several projection workers: events are fetched and decoded once, then
 * handed to every worker ("branch") from a shared, bounded window. Each branch starts at its own
 * checkpoint, as long as that lies inside the window; otherwise the worker subscribes on its own.
 *
 * The window keeps what the slowest attached branch has not consumed yet; the subscription pauses
 * while the fastest branch is `limits.events` events or `limits.bytes` bytes (events' size hints) ahead
 * of the slowest one. It reads on as soon as both are below again, so one event larger than the byte
 * limit still goes through, alone.
 */
import { comparePositions, type EventStore, eventBytes, type Position, type RecordedEvent } from '../src/core/event-store.js';

export interface FeedLimits {
  /** Events the fastest branch may be ahead of the slowest. Default 20,000. */
  readonly events?: number;
  /**
   * Bytes (size hints, see RecordedEvent) the fastest branch may be ahead of the slowest. Default
   * 64 MiB: 20,000 ledger events (a few hundred bytes each) stay under it, so it only binds for large
   * events such as launcher log batches (up to 1 MiB each), which would otherwise pile up gigabytes.
   */
  readonly bytes?: number;
}

export const DEFAULT_FEED_BYTES = 64 * 1024 * 1024;

/** Consumed events are dropped from the window in chunks (one splice) of this many, or of a quarter of the byte limit. */
const DROP_EVENTS = 4096;

export class SharedFeed {
  private readonly log: RecordedEvent[] = [];
  /** `startBytes[i]`: the bytes pushed before `log[i]` (a running total, so any span's size is one subtraction). */
  private readonly startBytes: number[] = [];
  /** Bytes of every event pushed so far. */
  private pushedBytes = 0;
  /** Global index of `log[0]`. */
  private base = 0;
  /** Position of the last event dropped from the window (null: nothing dropped, the feed's start). */
  private dropped: Position | null;
  private readonly branches = new Set<{ cursor: number }>();
  private wakeScheduled = false;
  private readonly controller = new AbortController();
  private done = false;
  private failure: unknown = null;
  private wakeReaders: (() => void)[] = [];
  private wakePump: (() => void) | null = null;
  private started = false;

  constructor(
    private readonly eventStore: EventStore,
    private readonly start: Position | null,
    limits: FeedLimits = {},
  ) {
    this.dropped = start;
    this.maxAhead = limits.events ?? 20_000;
    this.maxAheadBytes = limits.bytes ?? DEFAULT_FEED_BYTES;
  }

  private readonly maxAhead: number;
  private readonly maxAheadBytes: number;

  get alive(): boolean {
    return !this.done;
  }

  /** Events for a worker whose checkpoint is `from`, or null when the window no longer holds them. */
  branch(from: Position | null, signal: AbortSignal): AsyncIterable<RecordedEvent> | null {
    if (this.done) return null;
    if (this.dropped !== null && (from === null || comparePositions(from, this.dropped) < 0)) return null;
    let cursor = this.base;
    if (from !== null) {
      while (cursor - this.base < this.log.length && comparePositions((this.log[cursor - this.base] as RecordedEvent).position, from) <= 0) cursor++;
    }
    if (!this.started) {
      this.started = true;
      void this.pump();
    }
    const state = { cursor };
    this.branches.add(state);
    return this.iterate(state, from, signal);
  }

  close(): void {
    this.done = true;
    this.controller.abort();
    this.wake();
    this.wakePump?.();
  }

  private async *iterate(state: { cursor: number }, from: Position | null, signal: AbortSignal): AsyncGenerator<RecordedEvent> {
    const onAbort = () => this.wake();
    signal.addEventListener('abort', onAbort, { once: true });
    // A branch may start ahead of what the feed has read so far: skip up to its checkpoint.
    let after = from;
    try {
      while (!signal.aborted) {
        while (state.cursor - this.base < this.log.length) {
          if (signal.aborted) return;
          const event = this.log[state.cursor - this.base] as RecordedEvent;
          state.cursor++;
          if (after !== null) {
            if (comparePositions(event.position, after) <= 0) continue;
            after = null;
          }
          yield event;
        }
        this.release();
        if (this.failure !== null) throw this.failure;
        if (this.done) return;
        await new Promise<void>((resolve) => this.wakeReaders.push(resolve));
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.branches.delete(state);
      this.release();
    }
  }

  /** Wakes the branches once the pump yields to I/O, so they take whole chunks rather than single events. */
  private scheduleWake(): void {
    if (this.wakeScheduled) return;
    this.wakeScheduled = true;
    setImmediate(() => {
      this.wakeScheduled = false;
      this.wake();
    });
  }

  private wake(): void {
    const readers = this.wakeReaders;
    this.wakeReaders = [];
    for (const resolve of readers) resolve();
  }

  /**
   * Global index of the slowest branch's next event. With no branch attached (workers between two
   * subscriptions), the window's start: the window stays bounded until a branch comes (back).
   */
  private slowest(): number {
    if (this.branches.size === 0) return this.base;
    let slowest = this.base + this.log.length;
    for (const branch of this.branches) slowest = Math.min(slowest, branch.cursor);
    return slowest;
  }

  /** Bytes pushed before the event at global index `index`. */
  private bytesBefore(index: number): number {
    return index - this.base < this.log.length ? (this.startBytes[index - this.base] as number) : this.pushedBytes;
  }

  /** Whether the fastest branch may get further ahead of the one at `slowest`. */
  private hasRoom(slowest: number): boolean {
    return this.base + this.log.length - slowest < this.maxAhead && this.pushedBytes - this.bytesBefore(slowest) < this.maxAheadBytes;
  }

  /** Drops what every branch has consumed and lets the pump go on when the window has room. */
  private release(): void {
    if (this.branches.size === 0) return;
    const slowest = this.slowest();
    const consumed = slowest - this.base;
    if (
      consumed > 0 &&
      (consumed > DROP_EVENTS || consumed === this.log.length || this.bytesBefore(slowest) - (this.startBytes[0] as number) >= this.maxAheadBytes / 4)
    ) {
      this.dropped = (this.log[consumed - 1] as RecordedEvent).position;
      this.log.splice(0, consumed);
      this.startBytes.splice(0, consumed);
      this.base = slowest;
    }
    if (this.wakePump && this.hasRoom(slowest)) {
      const wake = this.wakePump;
      this.wakePump = null;
      wake();
    }
  }

  private async pump(): Promise<void> {
    try {
      const source = this.eventStore.subscribeToAll({ ...(this.start ? { fromPosition: this.start } : {}), signal: this.controller.signal });
      for await (const event of source) {
        this.log.push(event);
        this.startBytes.push(this.pushedBytes);
        this.pushedBytes += eventBytes(event);
        if (!this.hasRoom(this.slowest())) {
          this.wake();
          await new Promise<void>((resolve) => (this.wakePump = resolve));
        } else {
          this.scheduleWake();
        }
        if (this.done) break;
      }
    } catch (error) {
      if (!this.done) this.failure = error;
    } finally {
      this.done = true;
      this.wake();
    }
  }
}
