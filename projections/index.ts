import { activityProjection } from './activity.js';
import { creditsProjection } from './credits.js';
import type { ProjectionDefinition } from './definition.js';
import { tiersProjection } from './tiers.js';

/** Every projection the runner keeps up, by name. */
export const PROJECTIONS: readonly ProjectionDefinition[] = [creditsProjection, activityProjection, tiersProjection];

export const PROJECTION_NAMES = PROJECTIONS.map((p) => p.name);

export const projectionNamed = (name: string): ProjectionDefinition | undefined => PROJECTIONS.find((p) => p.name === name);
