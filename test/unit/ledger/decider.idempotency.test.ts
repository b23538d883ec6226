import { describe, expect, it } from 'vitest';
import { ledgerEventMetadata } from '../../../src/ledger/commands.js';
import { decide } from '../../../src/ledger/decider.js';
import { evolve, findIdempotentResult, initialState } from '../../../src/ledger/state.js';
import { DEFAULT_TIER_TABLE } from '../../../src/ledger/tiers.js';
import { given, NOW } from './support/decider-specification.js';
import { alloc, bal, DAY, HOUR, MINUTE, plus, purchased, reserved, spent, withKey } from './support/fixtures.js';

const funded = purchased({ lot_id: 'p1', credits: 100, at: plus(NOW, -2 * DAY) }, bal(100));
const firstSpend = withKey(spent({ spend_id: 's1', allocation: alloc(['p1', 10]), at: plus(NOW, -HOUR) }, bal(90)), 'key-1', 'hash-a');

describe('idempotency keys', () => {
  it('the same key and request hash within 24 h is already applied, with the first outcome to replay', () => {
    given([funded, firstSpend])
      .when({ type: 'Spend', spend_id: 's2', amount: 10, idempotency: { key: 'key-1', request_hash: 'hash-a' } })
      .thenAlreadyApplied({
        reason: 'idempotent_replay',
        result: expect.objectContaining({
          key: 'key-1',
          request_hash: 'hash-a',
          first_revision: 1n,
          last_revision: 1n,
          events: [{ type: 'CreditsSpent', data: firstSpend.data }],
        }),
      });
  });

  it('the same key with another request hash is idempotency_key_reused', () => {
    given([funded, firstSpend])
      .when({ type: 'Spend', spend_id: 's2', amount: 11, idempotency: { key: 'key-1', request_hash: 'hash-b' } })
      .thenError({ code: 'idempotency_key_reused', key: 'key-1' });
  });

  it('a key is forgotten 24 h after its outcome', () => {
    const command = { type: 'Spend' as const, spend_id: 's2', amount: 10, idempotency: { key: 'key-1', request_hash: 'hash-b' } };
    given([funded, firstSpend]).when(command, { now: plus(firstSpend.data.at, DAY - 1) }).then('idempotency_key_reused');
    given([funded, firstSpend]).when(command, { now: plus(firstSpend.data.at, DAY) }).events();
  });

  it('another key is a new request', () => {
    given([funded, firstSpend]).when({ type: 'Spend', spend_id: 's2', amount: 10, idempotency: { key: 'key-2', request_hash: 'hash-a' } }).events();
  });

  it('rejects a key that is not 1-255 visible ASCII characters', () => {
    for (const key of ['', 'has space', 'é', 'x'.repeat(256)]) {
      given([funded]).when({ type: 'Spend', spend_id: 's2', amount: 1, idempotency: { key, request_hash: 'h' } }).then('validation_failed');
    }
  });

  it('round trip: decide → stamp with ledgerEventMetadata → evolve → the whole multi-event outcome is found', () => {
    const ctx = { now: new Date(NOW), tiers: DEFAULT_TIER_TABLE };
    let state = initialState();
    state = evolve(state, { ...funded, revision: 0n });
    state = evolve(state, reserved({ reservation_id: 'r1', allocation: alloc(['p1', 20]), expires_at: plus(NOW, MINUTE), at: NOW }, bal(100, 20)));
    const command = { type: 'Settle' as const, reservation_id: 'r1', spend_id: 's1', amount: 5, idempotency: { key: 'settle-1', request_hash: 'h1' } };
    const decision = decide(command, state, ctx);
    if (decision.kind !== 'applied') throw new Error('expected events');
    const metadata = ledgerEventMetadata(command, { request_id: 'req-9' });
    expect(metadata).toEqual({ request_id: 'req-9', schema_version: 1, command: 'Settle', idempotency_key: 'settle-1', request_hash: 'h1' });
    decision.events.forEach((event, i) => {
      state = evolve(state, { ...event, metadata, position: { major: 7n, minor: BigInt(i) } });
    });
    const found = findIdempotentResult(state, 'settle-1', new Date(plus(NOW, MINUTE)));
    expect(found).toMatchObject({
      command: 'Settle',
      first_revision: 2n,
      last_revision: 3n,
      last_position: { major: 7n, minor: 1n },
      events: decision.events.map(({ type, data }) => ({ type, data })),
    });
    const again = decide({ ...command, spend_id: 's-retry' }, state, ctx);
    expect(again).toMatchObject({ kind: 'already_applied', already_applied: { reason: 'idempotent_replay', result: found } });
  });

  it('state keeps only the keys of the last 24 h', () => {
    let state = evolve(initialState(), funded);
    for (let i = 0; i < 200; i++) {
      const at = plus(NOW, i * HOUR);
      state = evolve(state, withKey(spent({ spend_id: `s${i}`, allocation: [], at, counts_api_call: false }, bal(100)), `k${i}`));
    }
    expect(state.idempotency.size).toBe(24);
    expect(findIdempotentResult(state, 'k175', new Date(plus(NOW, 199 * HOUR)))).toBeNull();
    expect(findIdempotentResult(state, 'k176', new Date(plus(NOW, 199 * HOUR)))).not.toBeNull();
  });
});
