import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';

/**
 * Outside production, secrets that were not configured are generated once and kept under the data
 * directory, so tokens survive a restart and the CLI signs tokens the service accepts.
 */

const secretsFile = z.object({ jwt_access_secret: z.string().min(43), jwt_refresh_secret: z.string().min(43) });
export type DevSecrets = z.infer<typeof secretsFile>;

export async function loadOrCreateDevSecrets(dataDir: string): Promise<DevSecrets> {
  const file = path.join(path.resolve(dataDir), 'secrets.json');
  if (existsSync(file)) {
    const parsed = secretsFile.safeParse(JSON.parse(await readFile(file, 'utf8')));
    if (parsed.success) return parsed.data;
  }
  await mkdir(path.dirname(file), { recursive: true });
  const secrets: DevSecrets = {
    jwt_access_secret: randomBytes(32).toString('base64url'),
    jwt_refresh_secret: randomBytes(32).toString('base64url'),
  };
  try {
    // 'wx': if another process wrote it first, keep theirs.
    await writeFile(file, JSON.stringify(secrets, null, 2), { mode: 0o600, flag: 'wx' });
    return secrets;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return secretsFile.parse(JSON.parse(await readFile(file, 'utf8')));
  }
}
