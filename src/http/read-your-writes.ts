import type { FastifyInstance } from 'fastify';
import { parsePosition } from '../core/event-store.js';
import { ApiError } from './problem.js';

/**
 * `?min_position=P` (API §1): wait (up to 2 s) until the projections a read is served from have
 * processed P, else `503 projection_lagging` with `Retry-After: 1`.
 */
export async function awaitProjections(app: FastifyInstance, names: readonly string[], minPosition: string | undefined): Promise<void> {
  if (minPosition === undefined) return;
  const target = parsePosition(minPosition);
  if (!target) throw new ApiError('validation_failed', 'The query is not valid.', { errors: [{ path: 'querystring.min_position', message: 'must be a position returned by the API' }] });
  if (await app.deps.projections.waitFor(names, target)) return;
  throw new ApiError(
    'projection_lagging',
    `The read model has not caught up with position ${minPosition} yet; retry shortly.`,
    { min_position: minPosition },
    { 'retry-after': '1' },
  );
}

/** Opaque keyset cursors over (position, entry) tuples: base64url of a JSON array of digit strings. */
export const encodePositionCursor = (parts: readonly (string | number)[]): string =>
  Buffer.from(JSON.stringify(parts.map(String))).toString('base64url');

export const decodePositionCursor = (text: string, length: number): string[] => {
  const invalid = () =>
    new ApiError('validation_failed', 'The query is not valid.', { errors: [{ path: 'querystring.cursor', message: 'is not a cursor this API issued' }] });
  if (!/^[A-Za-z0-9_-]{1,512}$/.test(text)) throw invalid();
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    throw invalid();
  }
  if (!Array.isArray(value) || value.length !== length || !value.every((part) => typeof part === 'string' && /^\d{1,20}$/.test(part))) {
    throw invalid();
  }
  return value as string[];
};
