/**
 * The event-store port. Every adapter (Postgres, EventStoreDB) implements exactly this,
 * and one contract suite (test/contract/event-store.contract.ts) holds them to it.
 *
 * Semantics follow EventStoreDB:
 * - stream revisions are 0-based; `nextExpectedRevision` is the revision of the last event written;
 * - positions are global, opaque and totally ordered; a `fromPosition` is exclusive;
 * - re-appending the same event ids with the same expected revision is an idempotent no-op that
 *   returns the original result; any other mismatch is a WrongExpectedRevisionError. Durably so only
 *   for an exact revision or `no_stream`: with `any` / `stream_exists` EventStoreDB finds the ids only
 *   in a bounded cache of recent events and otherwise writes them again, so a retry that must not
 *   double-write states an exact revision (notes/event-sourcing.md §1).
 */

import type { JsonObject, Position } from '../values.js';

export type { JsonObject, JsonValue, Position } from '../values.js';

/** `any`, `no_stream`, `stream_exists`, or the revision of the stream's last event. */
export type ExpectedRevision = 'any' | 'no_stream' | 'stream_exists' | bigint;

/** What the stream actually held when a conflict was detected. */
export type ActualRevision = 'no_stream' | bigint;

export interface NewEvent {
  /** UUID. Deterministic ids (e.g. UUIDv5 of a command id) make retries idempotent. */
  readonly id: string;
  readonly type: string;
  readonly data: JsonObject;
  readonly metadata?: JsonObject;
}

export interface RecordedEvent {
  readonly id: string;
  readonly type: string;
  readonly streamId: string;
  readonly revision: bigint;
  readonly position: Position;
  readonly data: JsonObject;
  readonly metadata: JsonObject;
  readonly recordedAt: Date;
  /**
   * About how large `data` + `metadata` are as JSON text (UTF-16 code units, bytes for ASCII), when the
   * adapter learns it for free while decoding: a hint for memory bounds (the projector's shared feed
   * and buffers), never exact and never part of the event. Absent: count it as DEFAULT_EVENT_BYTES.
   */
  readonly sizeHint?: number;
}

/** What an event without a `sizeHint` counts as: more than a typical ledger event, far less than a log batch. */
export const DEFAULT_EVENT_BYTES = 1024;

/** The bytes an event counts for in memory bounds. */
export const eventBytes = (event: RecordedEvent): number => event.sizeHint ?? DEFAULT_EVENT_BYTES;

export interface AppendResult {
  readonly nextExpectedRevision: bigint;
  /** Position of the last event written. */
  readonly position: Position;
  /**
   * Every appended event's position, in order, when the adapter learns them with the append (the
   * Postgres batch append does). Absent otherwise, e.g. for an idempotent re-append: read the stream.
   */
  readonly positions?: readonly Position[];
}

export type Direction = 'forwards' | 'backwards';

export interface ReadStreamOptions {
  /** Inclusive. Default: 0 forwards, the last event backwards. */
  readonly fromRevision?: bigint;
  readonly maxCount?: number;
  readonly direction?: Direction;
}

export interface ReadAllOptions {
  /** Exclusive. Default: the very start (forwards) or the end (backwards). */
  readonly fromPosition?: Position;
  readonly maxCount?: number;
  readonly direction?: Direction;
}

export interface SubscribeOptions {
  /** Exclusive. Default: the very start. */
  readonly fromPosition?: Position;
  /** Aborting ends the iteration cleanly. */
  readonly signal?: AbortSignal;
}

export interface EventStore {
  readonly name: 'postgres' | 'eventstoredb';
  appendToStream(
    streamId: string,
    events: readonly NewEvent[],
    options: { expectedRevision: ExpectedRevision },
  ): Promise<AppendResult>;
  /** A stream that does not exist reads as empty. */
  readStream(streamId: string, options?: ReadStreamOptions): AsyncIterable<RecordedEvent>;
  /** Only events that a subscriber may safely consider final (never one that could be followed by an earlier position). */
  readAll(options?: ReadAllOptions): AsyncIterable<RecordedEvent>;
  /** Catches up from `fromPosition`, then follows live appends, in position order, never skipping. */
  subscribeToAll(options?: SubscribeOptions): AsyncIterable<RecordedEvent>;
  /** Position of the last event a subscriber can currently see, or null for an empty store. */
  headPosition(): Promise<Position | null>;
  /** Reachability check for /readyz. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export class WrongExpectedRevisionError extends Error {
  readonly code = 'wrong_expected_revision' as const;
  constructor(
    readonly streamId: string,
    readonly expected: ExpectedRevision,
    readonly actual: ActualRevision,
  ) {
    super(`wrong expected revision on ${streamId}: expected ${String(expected)}, actual ${String(actual)}`);
    this.name = 'WrongExpectedRevisionError';
  }
}

export const comparePositions = (a: Position, b: Position): number =>
  a.major === b.major ? (a.minor === b.minor ? 0 : a.minor < b.minor ? -1 : 1) : a.major < b.major ? -1 : 1;

const POSITION_PATTERN = /^(\d{1,20})-(\d{1,20})$/;
const UINT64_MAX = (1n << 64n) - 1n;

/** The API's `position` string. */
export const formatPosition = (p: Position): string => `${p.major}-${p.minor}`;

/** Parses an API `position` string; returns null when it is not one. */
export const parsePosition = (text: string): Position | null => {
  const match = POSITION_PATTERN.exec(text);
  if (!match) return null;
  const major = BigInt(match[1] as string);
  const minor = BigInt(match[2] as string);
  if (major > UINT64_MAX || minor > UINT64_MAX) return null;
  return { major, minor };
};
