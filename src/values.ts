/**
 * The plain values every layer speaks of: JSON as events carry it, and the global position of an
 * event in the log. The ledger (the ground floor) and the event-store port both build on these, so
 * the pure domain imports nothing above it.
 */

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/**
 * Opaque, totally ordered global position.
 * Postgres: (transaction id, global sequence). EventStoreDB: (commit, prepare).
 */
export interface Position {
  readonly major: bigint;
  readonly minor: bigint;
}

/**
 * The top-level member (`name`, or `[index]` in an array) under which a parsed JSON value nests deeper
 * than `max` objects/arrays, '' when the value itself is too deep for any (max < 1), null when it is
 * within. Walked without recursion, so any depth can be checked.
 */
export const memberNestedBeyond = (value: unknown, max: number): string | null => {
  if (value === null || typeof value !== 'object') return null;
  if (max < 1) return '';
  const array = Array.isArray(value);
  const pending: [unknown, number, string][] = Object.entries(value).map(([key, item]) => [item, 1, array ? `[${key}]` : key]);
  for (let next = pending.pop(); next; next = pending.pop()) {
    const [item, depth, member] = next;
    if (item === null || typeof item !== 'object') continue;
    if (depth + 1 > max) return member;
    for (const child of Object.values(item)) pending.push([child, depth + 1, member]);
  }
  return null;
};

/** Whether a parsed JSON value nests at most `max` objects/arrays deep. */
export const nestsWithin = (value: unknown, max: number): boolean => memberNestedBeyond(value, max) === null;
