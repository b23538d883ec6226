import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../../src/config.js';

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

describe('TRUST_PROXY', () => {
  const trust = (value: string) => loadConfig({ NODE_ENV: 'development', TRUST_PROXY: value }).trustProxy;

  it('takes true/false, a hop count, or addresses and CIDR ranges of trusted proxies', () => {
    expect(trust('false')).toBe(false);
    expect(trust('true')).toBe(true);
    expect(trust('2')).toBe(2);
    expect(trust('10.0.0.1, 10.1.0.0/16,::1,fd00::/8')).toEqual(['10.0.0.1', '10.1.0.0/16', '::1', 'fd00::/8']);
  });

  it.each(['banana', '10.0.0.1,', '10.0.0.0/33', '::1/129', '300.1.1.1', 'yes'])('refuses %j at boot, naming the variable', (value) => {
    expect(() => trust(value)).toThrow(ConfigError);
    expect(() => trust(value)).toThrow(/TRUST_PROXY/);
  });
});
