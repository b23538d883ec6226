import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { REPLAYED_HEADER } from '../idempotency.js';
import { ApiError, PROBLEMS, type ProblemCode, problemDocument } from '../problem.js';

/**
 * One place that turns every failure into problem+json. 5xx never show internals: the full error
 * is logged with the request id, the client gets only that id.
 */

export function sendProblem(
  reply: FastifyReply,
  code: ProblemCode,
  detail?: string,
  extra: Readonly<Record<string, unknown>> = {},
  headers: Readonly<Record<string, string>> = {},
) {
  for (const [name, value] of Object.entries(headers)) reply.header(name, value);
  const body = problemDocument(code, withRequestId(reply, code, detail), extra);
  return reply.code(body.status).type('application/problem+json; charset=utf-8').send(body);
}

/**
 * A 5xx's detail names the request id (API §1), whichever route raised it. A replayed answer
 * (`Idempotent-Replayed: true`) is left as first sent: a replay repeats the first body.
 */
function withRequestId(reply: FastifyReply, code: ProblemCode, detail: string | undefined): string | undefined {
  const id = reply.request.id;
  if (PROBLEMS[code][0] < 500 || reply.getHeader(REPLAYED_HEADER) !== undefined) return detail;
  const text = detail ?? PROBLEMS[code][1];
  return text.includes(id) ? text : `${text} Request id: ${id}.`;
}

const part = (segment: string) => (/^\d+$/.test(segment) ? `[${segment}]` : segment);

/** `/amount` → `amount`, `/logs/3/action` → `logs[3].action`. */
const pathOf = (instancePath: string, where: string) => {
  const segments = instancePath.split('/').filter(Boolean);
  const path = segments.map(part).join('.').replace(/\.\[/g, '[');
  return where === 'body' ? path : path ? `${where}.${path}` : where;
};

function mapError(error: FastifyError & { validationContext?: string }, request: FastifyRequest, reply: FastifyReply) {
  if (error instanceof ApiError) {
    return sendProblem(reply, error.code, error.detail, error.extra, error.headers);
  }
  if (hasZodFastifySchemaValidationErrors(error)) {
    const where = error.validationContext ?? 'body';
    const errors = error.validation.map((issue) => ({
      path: pathOf(issue.instancePath, where),
      message: issue.message,
    }));
    return sendProblem(reply, 'validation_failed', `The ${where} is not valid.`, { errors });
  }
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return sendProblem(reply, 'payload_too_large', 'The request body is larger than this endpoint accepts.');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return sendProblem(reply, 'unsupported_media_type', 'Send the body as application/json.');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return sendProblem(reply, 'validation_failed', 'The body is not valid JSON.', {
        errors: [{ path: '', message: 'body must be valid JSON' }],
      });
  }
  if (error instanceof SyntaxError || error.code === 'FST_ERR_CTP_INVALID_CONTENT_LENGTH') {
    return sendProblem(reply, 'validation_failed', 'The body is not valid JSON.', {
      errors: [{ path: '', message: 'body must be valid JSON' }],
    });
  }
  if (error.statusCode === 429) {
    return sendProblem(reply, 'rate_limited', 'Too many requests; retry later.');
  }
  const status = error.statusCode ?? 500;
  if (status >= 400 && status < 500) {
    request.log.info({ err: error }, 'client error');
    const code: ProblemCode = status === 404 ? 'not_found' : status === 405 ? 'method_not_allowed' : status === 415 ? 'unsupported_media_type' : status === 413 ? 'payload_too_large' : 'validation_failed';
    return sendProblem(reply, code, code === 'validation_failed' ? 'The request is not valid.' : undefined, code === 'validation_failed' ? { errors: [{ path: '', message: 'request is not valid' }] } : {});
  }
  request.log.error({ err: error }, 'request failed');
  return sendProblem(reply, 'internal_error', `Something went wrong on our side. Request id: ${request.id}.`);
}

/**
 * Failures the router meets before any hook runs (a malformed percent-escape, a path parameter past
 * the router's length limit): Fastify would answer them with its own JSON and no request id.
 */
export function frameworkError(error: FastifyError, request: FastifyRequest, reply: FastifyReply) {
  reply.header('x-request-id', request.id);
  if (error.code === 'FST_ERR_BAD_URL' || error.code === 'FST_ERR_MAX_PARAM_LENGTH') {
    return sendProblem(reply, 'validation_failed', 'The URL is not valid.', { errors: [{ path: 'url', message: 'is not a valid URL path' }] });
  }
  request.log.error({ err: error }, 'request failed in the router');
  return sendProblem(reply, 'internal_error', `Something went wrong on our side. Request id: ${request.id}.`);
}

export const errorsPlugin = fp(async (app: FastifyInstance) => {
  app.setErrorHandler((error: FastifyError, request, reply) => mapError(error, request, reply));
  app.setNotFoundHandler((request, reply) =>
    sendProblem(reply, 'not_found', `No route ${request.method} ${request.url.split('?')[0]}.`),
  );
});
