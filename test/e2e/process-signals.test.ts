import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * The service's and the projector's shutdown (src/process.ts) as a real process sees it: a Ctrl-C in a
 * terminal signals the whole process group, and npm and tsx relay the signal once more, so a second
 * SIGINT during the shutdown is ordinary; it must not cut the shutdown short.
 */
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const runChild = (signals: NodeJS.Signals[]) =>
  new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string }>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/support/signal-child.ts'], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => {
      const first = stdout === '';
      stdout += chunk.toString();
      if (first && stdout.includes('ready')) {
        for (const [index, signal] of signals.entries()) {
          setTimeout(() => child.kill(signal), index * 100);
        }
      }
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve({ code, signal, stdout }));
  });

describe('shutdown on signals', () => {
  it('finishes its steps and exits 0 on SIGTERM', async () => {
    const result = await runChild(['SIGTERM']);
    expect(result).toMatchObject({ code: 0, signal: null });
    expect(result.stdout).toContain('step done');
  });

  it('a second SIGINT while shutting down does not kill the process: the steps finish, exit 0', async () => {
    const result = await runChild(['SIGINT', 'SIGINT']);
    expect(result).toMatchObject({ code: 0, signal: null });
    expect(result.stdout).toContain('step done');
  });
});
