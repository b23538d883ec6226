/** The stream verifier on hand-made streams: what each kind of damage looks like in its report. */
import { describe, expect, it } from 'vitest';
import { eventMismatch } from '../../../src/audit/verify.js';
import { EMPTY_DIGEST, StreamVerifier } from '../../../src/audit/verifier.js';
import type { RecordedEvent } from '../../../src/core/event-store.js';
import { GENESIS_HASH } from '../../../src/core/hash-chain.js';
import { alloc, bal, granted, spent } from '../ledger/support/fixtures.js';
import { recordAccount } from './support.js';

const USER = '11111111-1111-4111-8111-111111111111';
const history = () =>
  recordAccount(USER, [
    granted({ lot_id: 'a', amount: 100 }, bal(100)),
    spent({ spend_id: 's1', allocation: alloc(['a', 10]) }, bal(90)),
    spent({ spend_id: 's2', allocation: alloc(['a', 20]) }, bal(70)),
    granted({ lot_id: 'b', amount: 5, kind: 'promotional' }, bal(75)),
  ]);

const verify = (events: readonly RecordedEvent[]) => {
  const verifier = new StreamVerifier(USER);
  for (const event of events) verifier.add(event);
  return verifier.report();
};

describe('StreamVerifier', () => {
  it('passes an intact stream and replays its figures', () => {
    const report = verify(history());
    expect(report).toMatchObject({ events: 4, revision: 3, hash_chain_ok: true, chain_break: null, replay_failure: null, entry_mismatch: null });
    expect(report.replayed).toMatchObject({ balance: 75, total_bonus: 105, total_used: 30, lots: { count: 2, remaining: 75, held: 0 } });
    expect(report.replayed.transactions).toMatchObject({ count: 4, sum: 75, last_balance_after: 75 });
    expect(report.last_hash).toBe(history()[3]?.metadata.hash);
    expect(eventMismatch(report)).toBeNull();
  });

  it('an empty stream is intact, at genesis', () => {
    const report = verify([]);
    expect(report).toMatchObject({ events: 0, revision: -1, hash_chain_ok: true, last_hash: GENESIS_HASH });
    expect(report.replayed.transactions.digest).toBe(EMPTY_DIGEST);
  });

  it('edited data: hash mismatch at that revision (and only there)', () => {
    const events = history();
    events[1] = { ...(events[1] as RecordedEvent), data: { ...(events[1] as RecordedEvent).data, description: 'edited' } };
    const report = verify(events);
    expect(report.chain_break).toMatchObject({ revision: 1, problem: 'hash_mismatch' });
    expect(report.chain_breaks).toBe(1);
  });

  it('a missing event: a gap at the first missing revision', () => {
    const events = history();
    events.splice(2, 1);
    const report = verify(events);
    expect(report.chain_break).toMatchObject({ revision: 2, problem: 'revision_gap', expected: 'revision 2', actual: 'revision 3' });
    expect(eventMismatch(report)).toMatchObject({ revision: 2, field: 'hash_chain' });
  });

  it('a missing first event: a gap at revision 0', () => {
    const report = verify(history().slice(1));
    expect(report.chain_break).toMatchObject({ revision: 0, problem: 'revision_gap' });
  });

  it('reordered events', () => {
    const events = history();
    [events[1], events[2]] = [events[2] as RecordedEvent, events[1] as RecordedEvent];
    expect(verify(events).chain_break).toMatchObject({ revision: 1, problem: 'revision_gap' });
  });

  it('a missing hash, and a missing tail the store still records', () => {
    const events = history();
    const { hash: _dropped, ...metadata } = (events[3] as RecordedEvent).metadata;
    events[3] = { ...(events[3] as RecordedEvent), metadata };
    expect(verify(events).chain_break).toMatchObject({ revision: 3, problem: 'missing_hash' });

    const verifier = new StreamVerifier(USER);
    for (const event of history().slice(0, 2)) verifier.add(event);
    verifier.expectHead(3n);
    expect(verifier.report().chain_break).toMatchObject({ revision: 2, problem: 'missing_tail', expected: 'revision 3' });
  });

  it('a self-contradicting stream stops the replay where it contradicts itself', () => {
    const events = recordAccount(USER, [
      granted({ lot_id: 'a', amount: 10 }, bal(10)),
      spent({ spend_id: 's1', allocation: alloc(['a', 50]) }, bal(-40)),
    ]);
    const report = verify(events);
    expect(report.hash_chain_ok).toBe(true);
    expect(report.replay_failure).toMatchObject({ revision: 1 });
    expect(eventMismatch(report)).toMatchObject({ revision: 1, field: 'replay' });
  });

  it('an entry whose balance_after disagrees with the replay', () => {
    const events = recordAccount(USER, [granted({ lot_id: 'a', amount: 10 }, bal(10)), spent({ spend_id: 's1', allocation: alloc(['a', 4]) }, bal(5))]);
    expect(verify(events).entry_mismatch).toEqual({ revision: 1, field: 'balance_after', expected: 6, actual: 5 });
  });

  it('data that does not match its schema, and a foreign event type', () => {
    const events = history();
    events[1] = { ...(events[1] as RecordedEvent), data: { ...(events[1] as RecordedEvent).data, amount: '10' } };
    expect(verify(events).replay_failure).toMatchObject({ revision: 1, problem: 'invalid_event' });
    const foreign = history();
    foreign[2] = { ...(foreign[2] as RecordedEvent), type: 'SomethingElse' };
    expect(verify(foreign).replay_failure).toMatchObject({ revision: 2, problem: 'unknown_event_type' });
  });

  it('reports the first problem by revision, the chain first on a tie', () => {
    const events = history();
    events[2] = { ...(events[2] as RecordedEvent), data: { ...(events[2] as RecordedEvent).data, balance_after: 1 } };
    const report = verify(events);
    expect(report.entry_mismatch).toMatchObject({ revision: 2 });
    expect(eventMismatch(report)).toMatchObject({ revision: 2, field: 'hash_chain', problem: 'hash_mismatch' });
  });

  it('keeps going after a report (incremental)', () => {
    const verifier = new StreamVerifier(USER);
    const events = history();
    for (const event of events.slice(0, 2)) verifier.add(event);
    expect(verifier.report().replayed.balance).toBe(90);
    for (const event of events.slice(2)) verifier.add(event);
    expect(verifier.report()).toMatchObject({ hash_chain_ok: true, replayed: { balance: 75 } });
    expect(verifier.report().replayed.transactions.digest).toBe(verify(history()).replayed.transactions.digest);
  });
});
