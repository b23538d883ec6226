import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/config.js';

/** API §11: configuration comes from the environment, and the only place that reads it is src/config.ts. */

const root = join(import.meta.dirname, '..', '..', '..');

const sourceFiles = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });

describe('the environment (API §11)', () => {
  it('is read by src/config.ts only', () => {
    const readers = [...sourceFiles(join(root, 'src')), ...sourceFiles(join(root, 'projections'))]
      .filter((file) => /process\.env\b/.test(readFileSync(file, 'utf8')))
      .map((file) => relative(root, file).split('\\').join('/'));
    expect(readers).toEqual(['src/config.ts']);
  });

  it('LOG_LEVEL wins over a caller default, which wins over the built-in one', () => {
    expect(loadConfig({ NODE_ENV: 'development' }).logLevel).toBe('info');
    expect(loadConfig({ NODE_ENV: 'development' }, { logLevel: 'warn' }).logLevel).toBe('warn');
    expect(loadConfig({ NODE_ENV: 'development', LOG_LEVEL: 'debug' }, { logLevel: 'warn' }).logLevel).toBe('debug');
  });
});
