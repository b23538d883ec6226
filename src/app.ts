import cors from '@fastify/cors';
import helmet from '@fastify/helmet';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import {
  jsonSchemaTransform,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import type { AppDeps } from './http/deps.js';
import { authPlugin } from './http/plugins/auth.js';
import { errorsPlugin, frameworkError } from './http/plugins/errors.js';
import { metricsPlugin } from './http/plugins/metrics.js';
import { genReqId, requestIdsPlugin } from './http/plugins/request-ids.js';
import { routes } from './http/routes/index.js';
import { hasUnstorableText } from './http/storable-text.js';
import { type JsonViolation, textViolation, valueViolation } from './http/json-input.js';
import { ApiError } from './http/problem.js';
import { assertStrictRouteSchema } from './http/schemas.js';

/** Default JSON body limit; routes that take more (log batches) raise it themselves. */
export const BODY_LIMIT_BYTES = 64 * 1024;

/** A hop count becomes "trust the nearest N proxies"; Fastify's types take only the other forms. */
const trustProxyOption = (value: boolean | number | string[]) =>
  typeof value === 'number' ? (_address: string, hop: number) => hop < value : value;

/**
 * Builds the Fastify app from injected dependencies. Never listens (src/main.ts does), holds no
 * globals, so tests build as many as they like and drive them with `inject`.
 */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    genReqId,
    requestIdHeader: false,
    bodyLimit: BODY_LIMIT_BYTES,
    trustProxy: trustProxyOption(deps.config.trustProxy),
    return503OnClosing: true,
    frameworkErrors: frameworkError,
    routerOptions: { ignoreTrailingSlash: true },
  }).withTypeProvider<ZodTypeProvider>();

  // JSON bodies: Fastify's own parser (prototype poisoning refused), after the escaped-key check.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = body as string;
    const refuse = ({ path, message }: JsonViolation) => done(new ApiError('validation_failed', message, { errors: [{ path, message }] }), undefined);
    const before = textViolation(text);
    if (before !== null) return refuse(before);
    parseJson(request, text, (error, value) => {
      const after = error ? null : valueViolation(text, value);
      if (after !== null) return refuse(after);
      done(error, value);
    });
  });
  // Query strings and path parameters, decoded: the same rule as JSON bodies (a `%00` would reach SQL).
  app.addHook('preValidation', async (request) => {
    const where = hasUnstorableText(request.query) ? 'querystring' : hasUnstorableText(request.params) ? 'params' : null;
    if (where === null) return;
    const message = 'must not contain U+0000 or lone UTF-16 surrogates (they cannot be stored)';
    throw new ApiError('validation_failed', `The ${where} is not valid.`, { errors: [{ path: where, message }] });
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.decorate('deps', deps);
  app.addHook('onRoute', (route) => assertStrictRouteSchema(route));

  await app.register(errorsPlugin);
  await app.register(requestIdsPlugin);
  await app.register(metricsPlugin);
  await app.register(helmet, { contentSecurityPolicy: false });
  await app.register(cors, {
    origin: deps.config.corsOrigins.length > 0 ? [...deps.config.corsOrigins] : false,
    exposedHeaders: ['x-request-id', 'idempotent-replayed', 'retry-after'],
  });
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Credit ledger API',
        version: '1.0.0',
        description: 'Event-sourced credit ledger: commands append events; reads come from projections.',
      },
      components: { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
    },
    transform: jsonSchemaTransform,
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  await app.register(authPlugin);

  for (const plugin of routes) await app.register(plugin);

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  return app;
}
