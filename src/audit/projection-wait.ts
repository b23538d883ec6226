import type { CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import { sql } from '../adapters/postgres/pool.js';
import { comparePositions, type Position } from '../core/event-store.js';

/**
 * Where the credits projection stands (its active generation's checkpoint, migrations/020_projections.sql).
 * The audit compares replays with read models only once the projector has processed the events
 * replayed, so a lagging projector is reported as lagging, never as a mismatch.
 */

export const CREDITS_PROJECTION = 'credits';

export interface ProjectionProgress {
  readonly position: Position | null;
  readonly status: string;
  readonly error: string | null;
}

const progressRow = z.object({
  major: z.string().nullable(),
  minor: z.string().nullable(),
  status: z.string(),
  error: z.string().nullable(),
});

export async function projectionProgress(db: CommonQueryMethods, name = CREDITS_PROJECTION): Promise<ProjectionProgress | null> {
  const row = await db.maybeOne(sql.type(progressRow)`
    select c.position_major::text as major, c.position_minor::text as minor, c.status, c.error
    from projections p
    join projection_checkpoints c on c.name = p.name and c.generation = p.active_generation
    where p.name = ${name}`);
  if (!row) return null;
  return {
    position: row.major === null || row.minor === null ? null : { major: BigInt(row.major), minor: BigInt(row.minor) },
    status: row.status,
    error: row.error,
  };
}

export class ProjectionLaggingError extends Error {
  readonly code = 'projection_lagging' as const;
  constructor(
    readonly target: Position,
    readonly progress: ProjectionProgress | null,
  ) {
    super(
      progress?.status === 'failed'
        ? `the ${CREDITS_PROJECTION} projection has stopped on a failed event${progress.error ? `: ${progress.error}` : ''}`
        : `the ${CREDITS_PROJECTION} projection has not yet processed the account's last event`,
    );
    this.name = 'ProjectionLaggingError';
  }
}

export const reached = (progress: ProjectionProgress | null, target: Position): boolean =>
  progress?.position != null && comparePositions(progress.position, target) >= 0;

/** Resolves true once the credits projection has processed `target`, false after `timeoutMs` (e.g. `ProjectionReader.waitFor`). */
export type ProjectionWaiter = (target: Position, timeoutMs: number) => Promise<boolean>;

/**
 * Waits until the credits projection has processed `target`; throws ProjectionLaggingError after
 * `timeoutMs` or when the projection has failed. With a `waiter` (the app's notification-driven
 * ProjectionReader) it waits on that; otherwise it polls the checkpoint.
 */
export async function waitForProjection(
  db: CommonQueryMethods,
  target: Position,
  timeoutMs: number,
  waiter?: ProjectionWaiter,
  pollMs = 25,
): Promise<void> {
  if (waiter) {
    if (await waiter(target, timeoutMs)) return;
    throw new ProjectionLaggingError(target, await projectionProgress(db));
  }
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const progress = await projectionProgress(db);
    if (reached(progress, target)) return;
    if (progress?.status === 'failed' || Date.now() >= deadline) throw new ProjectionLaggingError(target, progress);
    await new Promise((resolve) => setTimeout(resolve, Math.min(pollMs, Math.max(1, deadline - Date.now()))));
  }
}
