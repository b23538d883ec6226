/**
 * Replaying a 100,000-event account stream through `evolve` (what a cold cache, the projections'
 * checks and the audit do), against a baseline in the same run: a plain loop over the same events
 * that only sums their amounts. Reported as events/s and as a ratio to that baseline.
 */
import type { LedgerEvent } from '../src/ledger/events.js';
import { balanceOf, evolve, initialState } from '../src/ledger/state.js';
import { alloc, bal, plus, purchased, spent, withKey } from '../test/unit/ledger/support/fixtures.js';

export function runReplayBench(n = 100_000): Record<string, number> {
  const start = '2026-01-01T00:00:00.000Z';
  const events: LedgerEvent[] = [purchased({ lot_id: 'p1', credits: n, at: start }, bal(n))];
  for (let i = 0; i < n; i++) {
    const event = spent({ spend_id: `spend-${i}`, allocation: alloc(['p1', 1]), at: plus(start, i * 1000), metadata: { model: 'gpt-4' } }, bal(n - i - 1));
    events.push(i % 2 === 0 ? withKey(event, `key-${i}`) : event);
  }
  let replayMs = Number.POSITIVE_INFINITY;
  let baselineMs = Number.POSITIVE_INFINITY;
  for (let run = 0; run < 3; run++) {
    let t0 = performance.now();
    let state = initialState();
    for (const event of events) state = evolve(state, event);
    replayMs = Math.min(replayMs, performance.now() - t0);
    if (balanceOf(state) !== 0) throw new Error('replay bench: wrong final balance');
    t0 = performance.now();
    let sum = 0;
    for (const event of events) sum += (event.data as { amount?: number }).amount ?? 0;
    baselineMs = Math.min(baselineMs, performance.now() - t0);
    if (sum < 0) throw new Error('unreachable');
  }
  return {
    replay_events_per_s: Math.round(events.length / (replayMs / 1000)),
    replay_100k_ms: Math.round(replayMs),
    replay_vs_plain_loop_ratio: Number((replayMs / Math.max(baselineMs, 0.001)).toFixed(1)),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(JSON.stringify(runReplayBench(), null, 2));
}
