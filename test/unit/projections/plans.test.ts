/**
 * The pure halves of the projections: how a batch of recorded events folds into rows and deltas.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { activityStreamId, LAUNCHER_LOGS_RECORDED, USER_SIGNED_IN } from '../../../src/activity/events.js';
import { uuidV5 } from '../../../src/activity/record.js';
import type { JsonObject, Position, RecordedEvent } from '../../../src/core/event-store.js';
import { accountStreamId, evolve, initialState, LEDGER_EVENT_TYPES, type LedgerEvent } from '../../../src/ledger/index.js';
import { planActivity } from '../../../projections/activity.js';
import { planCredits, transactionOf } from '../../../projections/credits.js';
import { PoisonEventError } from '../../../projections/definition.js';
import { planTiers } from '../../../projections/tiers.js';
import { alloc, bal, granted, purchased, spent } from '../ledger/support/fixtures.js';

const USER = 'b3a1c7de-0000-4000-8000-000000000001';
let seq = 0;
const recorded = (event: { type: string; data: unknown }, streamId = accountStreamId(USER), metadata: JsonObject = {}): RecordedEvent => {
  seq++;
  return {
    id: `00000000-0000-4000-8000-${String(seq).padStart(12, '0')}`,
    type: event.type,
    streamId,
    revision: BigInt(seq),
    position: { major: 100n, minor: BigInt(seq) } satisfies Position,
    data: event.data as JsonObject,
    metadata,
    recordedAt: new Date('2026-11-25T10:00:00.000Z'),
  };
};

describe('credits plan', () => {
  it('maps every ledger event type explicitly (a row or deliberately none)', () => {
    const withRows = LEDGER_EVENT_TYPES.filter((type) => !['CreditsReserved', 'ReservationSettled', 'ReservationReleased', 'ReservationExpired', 'TierChanged'].includes(type));
    expect(withRows.sort()).toEqual(['CreditsAdjusted', 'CreditsExpired', 'CreditsGranted', 'CreditsPurchased', 'CreditsRefunded', 'CreditsSpent', 'PurchaseRefunded']);
  });

  it('folds several events of one account in one batch: last balance, summed totals, lot deltas, one row each', () => {
    const events = [
      recorded(granted({ lot_id: 'g', amount: 100 }, bal(100))),
      recorded(purchased({ lot_id: 'p', credits: 50 }, bal(150))),
      recorded(spent({ spend_id: 's1', allocation: alloc(['g', 30]) }, bal(120))),
      recorded(spent({ spend_id: 's2', allocation: alloc(['g', 70], ['p', 5]) }, bal(45))),
    ];
    const plan = planCredits(events);
    expect(plan.transactions.map((t) => [t.type, t.amount, t.balance_before, t.balance_after])).toEqual([
      ['bonus', 100, 0, 100],
      ['purchase', 50, 100, 150],
      ['use', -30, 150, 120],
      ['use', -75, 120, 45],
    ]);
    const account = plan.accounts.get(USER)!;
    expect(account).toMatchObject({ balance: 45, reserved: 0, totals: { bonus: 100, purchased: 50, used: 105 } });
    expect(account.first_position).toEqual(['100', String(seq - 3)]);
    expect(account.last_position).toEqual(['100', String(seq)]);
    const lots = [...plan.lots.values()].map((l) => [l.lot_id, l.created?.original ?? null, l.remaining_delta, l.held_delta]);
    expect(lots).toEqual([
      ['g', 100, -100, 0],
      ['p', 50, -5, 0],
    ]);
  });

  it('agrees with evolve on the transaction of every balance event (signed amount explains balance_after)', () => {
    const state = initialState();
    const events: LedgerEvent[] = [
      granted({ lot_id: 'g', amount: 100 }, bal(100)),
      spent({ spend_id: 's', allocation: alloc(['g', 40]) }, bal(60)),
    ];
    let before = 0;
    for (const event of events) {
      evolve(state, event);
      const row = transactionOf(event)!;
      expect(before + row.amount).toBe(state.balance);
      before = state.balance;
    }
  });

  it('skips events of other streams and unknown types; an unreadable ledger event is a poison event naming it', () => {
    expect(planCredits([recorded({ type: 'Whatever', data: {} }), recorded({ type: 'CreditsSpent', data: {} }, 'other-1')]).transactions).toEqual([]);
    const bad = recorded({ type: 'CreditsSpent', data: { at: 'yesterday' } });
    expect(() => planCredits([bad])).toThrow(PoisonEventError);
    try {
      planCredits([bad]);
    } catch (error) {
      expect((error as PoisonEventError).event.id).toBe(bad.id);
    }
  });
});

describe('tiers plan', () => {
  it('counts calls like the decider: a later window restarts at 1, an earlier one is ignored (property)', () => {
    const instant = fc.integer({ min: Date.parse('2026-11-28T00:00:00.000Z'), max: Date.parse('2026-12-03T23:59:59.999Z') }).map((ms) => new Date(ms).toISOString());
    fc.assert(
      fc.property(fc.array(fc.array(instant, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 5 }), (batches) => {
        // evolve's counter vs. the batch fold merged like the SQL upsert merges it
        const state = initialState();
        let stored: { day: string | null; today: number; month: string | null; monthCount: number } = { day: null, today: 0, month: null, monthCount: 0 };
        for (const batch of batches) {
          const events = batch.map((at, index) =>
            recorded(spent({ spend_id: `s-${seq}-${index}`, allocation: [], at, counts_api_call: true }, bal(0)), accountStreamId(USER)),
          );
          for (const event of events) {
            // amount 0 with an empty allocation: only the counter matters here
            evolve(state, { type: 'CreditsSpent', data: { ...(event.data as object), amount: 0 } as never });
          }
          const change = planTiers(events.map((e) => ({ ...e, data: { ...e.data, amount: 0 } }))).get(USER)!;
          const merge = (window: string | null, count: number, incoming: { window: string; count: number } | null) => {
            if (!incoming) return { window, count };
            if (window === null || incoming.window > window) return { window: incoming.window, count: incoming.count };
            if (incoming.window === window) return { window, count: count + incoming.count };
            return { window, count };
          };
          const day = merge(stored.day, stored.today, change.day);
          const month = merge(stored.month, stored.monthCount, change.month);
          stored = { day: day.window, today: day.count, month: month.window, monthCount: month.count };
        }
        expect(stored).toEqual({ day: state.api_calls.day, today: state.api_calls.day_count, month: state.api_calls.month, monthCount: state.api_calls.month_count });
      }),
    );
  });
});

describe('activity plan', () => {
  it('one row per log entry with ids derived from the event, sign-ins as login, ledger events by name', () => {
    const logs = recorded(
      { type: LAUNCHER_LOGS_RECORDED, data: { at: '2026-11-25T10:00:00.000Z', batch_id: 'b', ip: '192.0.2.1', user_agent: 'l', entries: [{ action: 'a' }, { action: 'b', metadata: { x: 1 } }] } },
      activityStreamId(USER),
    );
    const signIn = recorded({ type: USER_SIGNED_IN, data: { at: '2026-11-25T10:00:01.000Z', method: 'google', ip: null, user_agent: null } }, activityStreamId(USER));
    const ledger = recorded(granted({ lot_id: 'g', amount: 5 }, bal(5)), accountStreamId(USER), { ip: '192.0.2.9' });
    const rows = planActivity([logs, signIn, ledger]);
    expect(rows.map((r) => [r.action, r.entry_index, r.ip_address])).toEqual([
      ['a', 0, '192.0.2.1'],
      ['b', 1, '192.0.2.1'],
      ['login', 0, null],
      ['credits_granted', 0, '192.0.2.9'],
    ]);
    expect(rows[0]?.id).toBe(uuidV5(`${logs.id}:0`, 'c7d4b0a2-61e3-4f0b-8d5c-2a9e4f3b7c18'));
    expect(rows[2]?.id).toBe(signIn.id);
    expect(rows[3]).toMatchObject({ id: ledger.id, resource_type: 'lot', resource_id: 'g', metadata: { amount: 5, balance_after: 5 } });
    // Same events, same rows (a rebuild writes identical rows).
    expect(planActivity([logs, signIn, ledger])).toEqual(rows);
  });
});

describe('uuidV5', () => {
  it('matches the RFC test vector', () => {
    expect(uuidV5('www.example.com', '6ba7b810-9dad-11d1-80b4-00c04fd430c8')).toBe('2ed6657d-e927-568b-95e1-2665a8aea6a2');
  });
});
