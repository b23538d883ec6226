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

/** Whether a parsed JSON value nests at most `max` objects/arrays deep; walked without recursion. */
export const nestsWithin = (value: unknown, max: number): boolean => {
  const pending: [unknown, number][] = [[value, 0]];
  for (let next = pending.pop(); next; next = pending.pop()) {
    const [item, depth] = next;
    if (item === null || typeof item !== 'object') continue;
    if (depth + 1 > max) return false;
    for (const child of Object.values(item)) pending.push([child, depth + 1]);
  }
  return true;
};
