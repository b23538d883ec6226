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
