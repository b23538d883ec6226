#!/usr/bin/env node
// The package's `ledger` bin: runs the TypeScript CLI through tsx.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
