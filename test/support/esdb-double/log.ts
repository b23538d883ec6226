/**
 * An in-memory model of EventStoreDB's transaction log and stream index: no gRPC here.
 *
 * Semantics mirror the server (kurrent-io/KurrentDB, read for this double):
 * - every appended event is a self-committed prepare record; its `$all` position is
 *   (commit, prepare) = (its log position, its log position), and positions are byte offsets, so
 *   they grow strictly but not contiguously (`StorageWriterService.WritePrepares`, `ResolvedEvent`);
 * - an append's result position is the last written event's position (`CommitAck` of the last prepare);
 * - the expected-version check, including idempotent re-appends, follows `IndexWriter.CheckCommit`;
 * - `$all` reads forwards include the start position, backwards they take records whose end
 *   (post-position) is at or before it (`AllReader`), subscriptions take events strictly after their
 *   checkpoint (`Enumerator.AllSubscription`).
 */

/** Expected versions as the server encodes them internally (`ExpectedVersion`). */
export const EXPECTED_ANY = -2n;
export const EXPECTED_NO_STREAM = -1n;
export const EXPECTED_STREAM_EXISTS = -4n;

export interface ProposedEvent {
  /** Canonical lower-case UUID. */
  readonly id: string;
  readonly type: string;
  readonly isJson: boolean;
  readonly data: Uint8Array;
  readonly metadata: Uint8Array;
}

export interface LoggedEvent extends ProposedEvent {
  readonly streamId: string;
  readonly revision: bigint;
  /** Pre-position of the record: commit and prepare position of a self-committed event. */
  readonly logPosition: bigint;
  /** First byte after the record. */
  readonly postPosition: bigint;
  /** .NET ticks (100 ns) since the Unix epoch, as the server stamps `created`. */
  readonly created: bigint;
}

/** A transaction-file position, compared as (commit, prepare) like the server's `TFPos`. */
export interface TfPos {
  readonly commit: bigint;
  readonly prepare: bigint;
}

/** The position before the first record (`TFPos.HeadOfTf` when used as a subscription checkpoint). */
export const BEFORE_FIRST: TfPos = { commit: -1n, prepare: -1n };

export const compareTfPos = (a: TfPos, b: TfPos): number =>
  a.commit === b.commit ? (a.prepare === b.prepare ? 0 : a.prepare < b.prepare ? -1 : 1) : a.commit < b.commit ? -1 : 1;

export const positionOf = (event: LoggedEvent): TfPos => ({ commit: event.logPosition, prepare: event.logPosition });

export type AppendOutcome =
  | {
      readonly kind: 'committed';
      /** True when the events were already there and nothing was written. */
      readonly idempotent: boolean;
      /** Revision of the last event the append covers; -1 when the stream still does not exist. */
      readonly lastRevision: bigint;
      readonly position: bigint;
    }
  | { readonly kind: 'wrong_expected_version'; readonly currentVersion: bigint };

export type EventPredicate = (event: LoggedEvent) => boolean;

// Rough size of a v2 prepare record: length prefix and suffix, fixed header, then the variable parts.
const RECORD_OVERHEAD = 8n + 83n;
const EMPTY_WRITE_RECORD_SIZE = RECORD_OVERHEAD + 16n;

const utf8Length = (text: string): bigint => BigInt(Buffer.byteLength(text, 'utf8'));

/** Server default of the committed-events cache (`ESConsts.CommittedEventsMemCacheLimit`). */
export const COMMITTED_EVENTS_CACHE_BYTES = 8 * 1024 * 1024;
/** What the server's cache charges an entry: Guid key, event number, pointer, and the stream id (UTF-16). */
const committedEventCost = (event: LoggedEvent): number => 16 + 4 + 8 + 2 * event.streamId.length;

type CommitCheck =
  | { readonly decision: 'ok'; readonly currentVersion: bigint }
  | { readonly decision: 'idempotent'; readonly lastRevision: bigint; readonly position: bigint }
  | { readonly decision: 'wrong_expected_version'; readonly currentVersion: bigint };

export class TransactionLog {
  readonly #records: LoggedEvent[] = [];
  readonly #streams = new Map<string, LoggedEvent[]>();
  /**
   * The server keeps recently committed event ids in a cache bounded by memory (`_committedEvents`, a
   * `BoundedCache` of `ESConsts.CommittedEventsMemCacheLimit` = 8 MiB, entries costed at
   * 16 + 4 + pointer + stream id, oldest evicted first: IndexWriter.cs) that the `any`/`stream_exists`
   * idempotency check relies on. Bounded the same way here, so that tests can see ids fall out of it.
   */
  readonly #committedEvents = new Map<string, LoggedEvent>();
  #committedEventsBytes = 0;
  readonly #listeners = new Set<(event: LoggedEvent) => void>();
  #writerCheckpoint = 0n;
  #lastIndexedPosition = -1n;

  constructor(
    private readonly nowTicks: () => bigint = () => BigInt(Date.now()) * 10_000n,
    private readonly committedEventsCacheBytes: number = COMMITTED_EVENTS_CACHE_BYTES,
  ) {}

  /** Post-position of the last record written: where the next one starts (`WriterCheckpoint`). */
  get writerCheckpoint(): bigint {
    return this.#writerCheckpoint;
  }

  /** Pre-position of the last committed record, -1 before the first (`LastIndexedPosition`). */
  get lastIndexedPosition(): bigint {
    return this.#lastIndexedPosition;
  }

  /** Last revision of the stream, -1 when it has no events. */
  streamVersion(streamId: string): bigint {
    const events = this.#streams.get(streamId);
    return events && events.length > 0 ? BigInt(events.length - 1) : -1n;
  }

  append(streamId: string, expectedVersion: bigint, events: readonly ProposedEvent[]): AppendOutcome {
    const check = this.#checkCommit(streamId, expectedVersion, events);
    switch (check.decision) {
      case 'wrong_expected_version':
        return { kind: 'wrong_expected_version', currentVersion: check.currentVersion };
      case 'idempotent':
        return { kind: 'committed', idempotent: true, lastRevision: check.lastRevision, position: check.position };
      case 'ok':
        return this.#write(streamId, check.currentVersion, events);
      default: {
        const unreachable: never = check;
        throw new Error(`unknown commit decision ${JSON.stringify(unreachable)}`);
      }
    }
  }

  /** Events of one stream with revision ≥ `fromRevision`, ascending. */
  readStreamForwards(streamId: string, fromRevision: bigint, maxCount: bigint): LoggedEvent[] {
    const events = this.#streams.get(streamId) ?? [];
    return take(
      events.filter((event) => event.revision >= fromRevision),
      maxCount,
    );
  }

  /** Events of one stream with revision ≤ `fromRevision` (null: the last one), descending. */
  readStreamBackwards(streamId: string, fromRevision: bigint | null, maxCount: bigint): LoggedEvent[] {
    const events = this.#streams.get(streamId) ?? [];
    return take(
      events.filter((event) => fromRevision === null || event.revision <= fromRevision).reverse(),
      maxCount,
    );
  }

  /** `$all` forwards: events at or after `from`, ascending. */
  readAllForwards(from: TfPos, maxCount: bigint, allowed: EventPredicate = () => true): LoggedEvent[] {
    return take(
      this.#records.filter((event) => compareTfPos(positionOf(event), from) >= 0 && allowed(event)),
      maxCount,
    );
  }

  /** `$all` backwards: events that end at or before `from` (null: the end of the log), descending. */
  readAllBackwards(from: TfPos | null, maxCount: bigint, allowed: EventPredicate = () => true): LoggedEvent[] {
    const bound = from ?? { commit: this.#writerCheckpoint, prepare: this.#writerCheckpoint };
    const ended = (event: LoggedEvent) =>
      compareTfPos({ commit: event.postPosition, prepare: event.postPosition }, bound) <= 0;
    return take(
      this.#records.filter((event) => ended(event) && allowed(event)).reverse(),
      maxCount,
    );
  }

  /** Events strictly after a subscription checkpoint, ascending. */
  eventsAfter(checkpoint: TfPos): LoggedEvent[] {
    return this.#records.filter((event) => compareTfPos(positionOf(event), checkpoint) > 0);
  }

  /** Called synchronously for every event as it is committed, in log order. */
  onCommitted(listener: (event: LoggedEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #checkCommit(streamId: string, expectedVersion: bigint, events: readonly ProposedEvent[]): CommitCheck {
    const currentVersion = this.streamVersion(streamId);
    const wrong = { decision: 'wrong_expected_version', currentVersion } as const;

    if (expectedVersion === EXPECTED_STREAM_EXISTS && currentVersion < 0n) return wrong;

    if (expectedVersion === EXPECTED_ANY || expectedVersion === EXPECTED_STREAM_EXISTS) {
      // Best effort on the server: ids looked up in the committed-events cache only.
      let last: LoggedEvent | undefined;
      for (const [index, proposed] of events.entries()) {
        const known = this.#committedEvents.get(proposed.id);
        if (!known || known.streamId !== streamId) {
          return index === 0 ? { decision: 'ok', currentVersion } : wrong; // CorruptedIdempotency
        }
        last = known;
      }
      if (!last) return { decision: 'ok', currentVersion };
      return { decision: 'idempotent', lastRevision: last.revision, position: last.logPosition };
    }

    if (expectedVersion < currentVersion) {
      // Writing earlier than the end: only an exact replay of what follows `expected` is accepted.
      const stream = this.#streams.get(streamId) ?? [];
      let revision = expectedVersion;
      for (const proposed of events) {
        revision += 1n;
        const existing = stream[Number(revision)];
        if (!existing || existing.id !== proposed.id) return wrong; // first: WrongExpectedVersion, later: CorruptedIdempotency
      }
      const last = stream[Number(revision)];
      if (events.length === 0 || !last) return wrong;
      return { decision: 'idempotent', lastRevision: revision, position: last.logPosition };
    }

    if (expectedVersion > currentVersion) return wrong;
    // expected == current (including no_stream on a missing stream): a normal write, ids unchecked.
    return { decision: 'ok', currentVersion };
  }

  #remember(event: LoggedEvent): void {
    const previous = this.#committedEvents.get(event.id);
    if (previous) {
      this.#committedEvents.delete(event.id);
      this.#committedEventsBytes -= committedEventCost(previous);
    }
    this.#committedEvents.set(event.id, event);
    this.#committedEventsBytes += committedEventCost(event);
    for (const [id, oldest] of this.#committedEvents) {
      if (this.#committedEventsBytes <= this.committedEventsCacheBytes) break;
      this.#committedEvents.delete(id);
      this.#committedEventsBytes -= committedEventCost(oldest);
    }
  }

  #write(streamId: string, currentVersion: bigint, events: readonly ProposedEvent[]): AppendOutcome {
    if (events.length === 0) {
      // The server still writes an empty, data-less prepare: it moves the log but is never read back.
      const position = this.#writerCheckpoint;
      this.#writerCheckpoint += EMPTY_WRITE_RECORD_SIZE + utf8Length(streamId);
      this.#lastIndexedPosition = position;
      return { kind: 'committed', idempotent: false, lastRevision: currentVersion, position };
    }
    const created = this.nowTicks();
    const stream = this.#streams.get(streamId) ?? [];
    this.#streams.set(streamId, stream);
    const written: LoggedEvent[] = [];
    for (const [index, proposed] of events.entries()) {
      const logPosition = this.#writerCheckpoint;
      const size =
        RECORD_OVERHEAD +
        utf8Length(streamId) +
        utf8Length(proposed.type) +
        BigInt(proposed.data.byteLength) +
        BigInt(proposed.metadata.byteLength);
      const event: LoggedEvent = {
        ...proposed,
        streamId,
        revision: currentVersion + 1n + BigInt(index),
        logPosition,
        postPosition: logPosition + size,
        created,
      };
      this.#writerCheckpoint = event.postPosition;
      written.push(event);
    }
    for (const event of written) {
      stream.push(event);
      this.#records.push(event);
      this.#remember(event);
    }
    const last = written[written.length - 1] as LoggedEvent;
    this.#lastIndexedPosition = last.logPosition;
    for (const event of written) for (const listener of this.#listeners) listener(event);
    return { kind: 'committed', idempotent: false, lastRevision: last.revision, position: last.logPosition };
  }
}

const take = <T>(items: T[], maxCount: bigint): T[] =>
  maxCount >= BigInt(items.length) ? items : items.slice(0, Number(maxCount));
