import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { Histogram } from 'prom-client';

/** HTTP latency histogram on the app's own registry (no global registry: tests build many apps). */
export const metricsPlugin = fp(async (app: FastifyInstance) => {
  const registry = app.deps.metrics;
  const existing = registry.getSingleMetric('http_request_duration_seconds');
  const histogram =
    (existing as Histogram<'method' | 'route' | 'status_code'> | undefined) ??
    new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP request latency by route',
      labelNames: ['method', 'route', 'status_code'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    });
  app.addHook('onResponse', async (request, reply) => {
    histogram.observe(
      { method: request.method, route: request.routeOptions.url ?? 'unmatched', status_code: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
  });
});
