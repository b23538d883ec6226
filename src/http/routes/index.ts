import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { healthRoutes } from './health.js';
import { meRoutes } from './me.js';

/** Every route plugin, in registration order. */
export const routes: readonly FastifyPluginAsyncZod[] = [healthRoutes, meRoutes];
