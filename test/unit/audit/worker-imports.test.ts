/**
 * The verify worker loads only what it needs to read and verify events: slonik (the pool, the read
 * models) stays on the coordinating thread, which judges the chunks (src/audit/judge.ts). Loading
 * slonik cost each worker about half a second of CPU before it read a row.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const src = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../src');

/** Packages a module loads, following its relative imports (type-only imports are erased, so skipped). */
function packagesLoadedBy(entry: string): Set<string> {
  const packages = new Set<string>();
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = readFileSync(file, 'utf8');
    for (const match of text.matchAll(/^(?:import|export)\s+(type\s+)?[^'"]*?from\s+'([^']+)'/gm)) {
      if (match[1]) continue;
      const specifier = match[2] as string;
      if (specifier.startsWith('.')) visit(path.resolve(path.dirname(file), specifier.replace(/\.js$/, '.ts')));
      else packages.add(specifier);
    }
  };
  visit(path.join(src, entry));
  return packages;
}

describe('the audit verify worker', () => {
  it('loads neither slonik nor the pool', () => {
    const packages = packagesLoadedBy('audit/verify-worker.ts');
    expect(packages.has('pg')).toBe(true);
    expect([...packages].filter((name) => name.startsWith('slonik'))).toEqual([]);
  });

  it('the check sees slonik where it is loaded', () => {
    expect(packagesLoadedBy('audit/judge.ts').has('slonik')).toBe(true);
  });
});
