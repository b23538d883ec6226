/**
 * One subscription read by several projection workers: events are fetched and decoded once, then
 * handed to every worker ("branch") from a shared, bounded window. Each branch starts at its own
 * checkpoint, as long as that lies inside the window; otherwise the worker subscribes on its own.
 *
 * The window keeps what the slowest attached branch has not consumed yet; the subscription pauses
 * while the fastest branch is `maxAhead` events ahead of the slowest one.
 */
import { comparePositions, type EventStore, type Position, type RecordedEvent } from '../src/core/event-store.js';

export class SharedFeed {
  private readonly log: RecordedEvent[] = [];
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
    private readonly maxAhead = 20_000,
  ) {
    this.dropped = start;
  }

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

  /** Drops what every branch has consumed and lets the pump go on when the window has room. */
  private release(): void {
    if (this.branches.size === 0) return;
    let slowest = Number.POSITIVE_INFINITY;
    for (const branch of this.branches) slowest = Math.min(slowest, branch.cursor);
    const consumed = slowest - this.base;
    if (consumed > 4096 || (consumed > 0 && consumed === this.log.length)) {
      this.dropped = (this.log[consumed - 1] as RecordedEvent).position;
      this.log.splice(0, consumed);
      this.base = slowest;
    }
    if (this.wakePump && this.log.length - (slowest - this.base) < this.maxAhead) {
      const wake = this.wakePump;
      this.wakePump = null;
      wake();
    }
  }

  private lagOfSlowest(): number {
    let slowest = Number.POSITIVE_INFINITY;
    for (const branch of this.branches) slowest = Math.min(slowest, branch.cursor);
    return slowest === Number.POSITIVE_INFINITY ? 0 : this.base + this.log.length - slowest;
  }

  private async pump(): Promise<void> {
    try {
      const source = this.eventStore.subscribeToAll({ ...(this.start ? { fromPosition: this.start } : {}), signal: this.controller.signal });
      for await (const event of source) {
        this.log.push(event);
        if (this.lagOfSlowest() >= this.maxAhead) {
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
