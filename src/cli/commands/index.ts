import type { CliCommand } from '../context.js';
import {
  migrateCommand,
  tokenCommand,
  usersActivateCommand,
  usersCreateCommand,
  usersDeactivateCommand,
  usersRoleCommand,
} from './identity.js';

/** Every CLI command (API §12). */
export const commands: readonly CliCommand[] = [
  migrateCommand,
  usersCreateCommand,
  usersRoleCommand,
  usersActivateCommand,
  usersDeactivateCommand,
  tokenCommand,
];
