import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { adminUserRoutes } from './admin-users.js';
import { authRoutes } from './auth.js';
import { componentRoutes } from './components.js';
import { flowRoutes } from './flows.js';
import { healthRoutes } from './health.js';
import { meRoutes } from './me.js';
import { adminCreditRoutes } from './admin-credits.js';
import { aiRoutes } from './ai.js';
import { catalogRoutes } from './catalog.js';
import { creditRoutes } from './credits.js';
import { purchaseRoutes } from './purchases.js';
import { activityRoutes } from './activity.js';
import { adminProjectionRoutes } from './admin-projections.js';
import { creditsQueryRoutes } from './credits-queries.js';
import { usageRoutes } from './usage.js';
import { auditRoutes } from './audit.js';

/** Every route plugin, in registration order. */
export const routes: readonly FastifyPluginAsyncZod[] = [healthRoutes, meRoutes, authRoutes, flowRoutes, componentRoutes, adminUserRoutes,
  catalogRoutes, creditRoutes, adminCreditRoutes, aiRoutes, purchaseRoutes,
  creditsQueryRoutes, activityRoutes, usageRoutes, adminProjectionRoutes, auditRoutes];
