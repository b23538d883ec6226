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
}): Accounts {
  const tiers = options.tiers ?? DEFAULT_TIER_TABLE;
  const appends = options.metrics ? counter(options.metrics, 'ledger_appended_events_total', 'Events appended to account streams') : null;
  const conflicts = options.metrics ? counter(options.metrics, 'ledger_append_conflicts_total', 'Appends refused for a wrong expected revision (then retried)') : null;

  const handler: CommandHandler<LedgerState, LedgerCommand, Decision> = createCommandHandler({
    eventStore: options.eventStore,
    clock: options.clock,
    cacheSize: options.cacheSize,
    onAppend: (_stream, events) => appends?.inc(events),
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
    },
  });

  return {
    tiers,
    execute: (userId, command, context = {}) => {
      const extra: JsonObject = {};
      if (context.requestId) extra.request_id = context.requestId;
      if (context.actorId) extra.actor_id = context.actorId;
      return handler.handle(accountStreamId(userId), command, {
        metadata: ledgerEventMetadata(command, extra),
        idempotencyKey: command.idempotency?.key,
      });
    },
    load: (userId) => handler.load(accountStreamId(userId)),
  };
}

const counter = (registry: Registry, name: string, help: string): Counter =>
  (registry.getSingleMetric(name) as Counter | undefined) ?? new Counter({ name, help, registers: [registry] });
