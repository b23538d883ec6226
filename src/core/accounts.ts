import type { Registry } from 'prom-client';
import { Counter } from 'prom-client';
import {
  accountStreamId,
  DEFAULT_TIER_TABLE,
  type Decision,
  decide,
  evolve,
  initialState,
  isLedgerEventType,
  type LedgerCommand,
  ledgerEventMetadata,
  type LedgerEvent,
  type LedgerState,
  type TierTable,
} from '../ledger/index.js';
import type { Clock } from './clock.js';
import { type CommandHandler, createCommandHandler, type HandleResult } from './command-handler.js';
import type { EventStore, JsonObject } from './event-store.js';

/**
 * The ledger's application service: the pure account decider bound to the event store through the
 * command handler. One stream per account (`account-<userId>`).
 */

export type AccountResult = HandleResult<LedgerState, Decision>;

export interface Accounts {
  execute(userId: string, command: LedgerCommand, context?: { requestId?: string; actorId?: string | null }): Promise<AccountResult>;
  /** The account's current state (caught up with the store). Read it; do not keep or change it. */
  load(userId: string): Promise<{ state: LedgerState; revision: bigint }>;
  readonly tiers: TierTable;
}

export function createAccounts(options: {
  eventStore: EventStore;
  clock: Clock;
  tiers?: TierTable;
  metrics?: Registry;
  cacheSize?: number;
  /**
   * Called with an account's state after every command and load (e.g. the sweeper's expiry tracker).
   * Runs synchronously, before anything else can change the state: read it, do not keep it.
   */
  observe?: (userId: string, state: LedgerState) => void;
}): Accounts {
  const tiers = options.tiers ?? DEFAULT_TIER_TABLE;
  const appends = options.metrics ? counter(options.metrics, 'ledger_appended_events_total', 'Events appended to account streams') : null;
  const conflicts = options.metrics ? counter(options.metrics, 'ledger_append_conflicts_total', 'Appends refused for a wrong expected revision (then retried)') : null;
  const appendCalls = options.metrics ? counter(options.metrics, 'ledger_appends_total', 'Appends (commits) to account streams') : null;
  const appendedCommands = options.metrics ? counter(options.metrics, 'ledger_appended_commands_total', 'Commands whose events were appended (several per append under load)') : null;

  const handler: CommandHandler<LedgerState, LedgerCommand, Decision> = createCommandHandler({
    eventStore: options.eventStore,
    clock: options.clock,
    cacheSize: options.cacheSize,
    onAppend: (_stream, events, commands) => {
      appends?.inc(events);
      appendCalls?.inc();
      appendedCommands?.inc(commands);
    },
    onConflict: () => conflicts?.inc(),
    decider: {
      initialState,
      // Stored events were validated when they were decided; evolve counts unknown types and skips them.
      evolve: (state, event) =>
        isLedgerEventType(event.type)
          ? evolve(state, { ...(event as unknown as LedgerEvent), metadata: event.metadata, revision: event.revision, position: event.position })
          : evolve(state, { type: event.type, data: event.data, metadata: event.metadata, revision: event.revision, position: event.position } as never),
      decide: (command, state, now) => decide(command, state, { now, tiers }),
      eventsOf: (decision) => (decision.kind === 'applied' ? (decision.events as unknown as { type: string; data: JsonObject }[]) : []),
      // Events decided in a round were evolved before the store gave them positions: stamp them now on
      // the state and on the idempotency records (a replayed answer carries its first `position`).
      recorded: (state, events) => {
        for (const event of events) {
          const key = event.metadata.idempotency_key;
          if (typeof key !== 'string') continue;
          const record = state.idempotency.get(key);
          if (record && record.last_revision === event.revision) record.last_position = event.position;
        }
        const last = events[events.length - 1];
        if (last && state.revision === last.revision) state.position = last.position;
      },
    },
  });

  const observe = options.observe;
  return {
    tiers,
    execute: async (userId, command, context = {}) => {
      const extra: JsonObject = {};
      if (context.requestId) extra.request_id = context.requestId;
      if (context.actorId) extra.actor_id = context.actorId;
      const result = await handler.handle(accountStreamId(userId), command, {
        metadata: ledgerEventMetadata(command, extra),
        idempotencyKey: command.idempotency?.key,
      });
      observe?.(userId, result.state);
      return result;
    },
    load: async (userId) => {
      const loaded = await handler.load(accountStreamId(userId));
      observe?.(userId, loaded.state);
      return loaded;
    },
  };
}

const counter = (registry: Registry, name: string, help: string): Counter =>
  (registry.getSingleMetric(name) as Counter | undefined) ?? new Counter({ name, help, registers: [registry] });
