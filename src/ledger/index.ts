/** The account decider (pure, no I/O): events, commands, state, decide/evolve, catalog defaults. */
export * from './commands.js';
export * from './decider.js';
export * from './errors.js';
export * from './events.js';
export * from './state.js';
export * from './tiers.js';
