import type { CliCommand } from '../context.js';
import {
  migrateCommand,
  tokenCommand,
  usersActivateCommand,
  usersCreateCommand,
  usersDeactivateCommand,
  usersRoleCommand,
} from './identity.js';
import { projectionsRebuildCommand, projectionsStatusCommand } from './projections.js';
import { creditsGrantCommand } from './credits.js';
import { seedDemoCommand } from './seed-demo.js';
import { auditExportCommand, auditVerifyCommand } from './audit.js';

/** Every CLI command (API §12). */
export const commands: readonly CliCommand[] = [
  migrateCommand,
  usersCreateCommand,
  usersRoleCommand,
  usersActivateCommand,
  usersDeactivateCommand,
  tokenCommand,
  projectionsStatusCommand,
  projectionsRebuildCommand,
  creditsGrantCommand,
  seedDemoCommand,
  auditVerifyCommand,
  auditExportCommand,
];
