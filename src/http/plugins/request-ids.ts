import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyRequest, RawServerDefault } from 'fastify';
import fp from 'fastify-plugin';
import type { IncomingMessage } from 'node:http';

const VALID_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Echo a well-formed incoming x-request-id, else mint one. */
export const genReqId = (request: IncomingMessage): string => {
  const incoming = request.headers['x-request-id'];
  return typeof incoming === 'string' && VALID_REQUEST_ID.test(incoming) ? incoming : randomUUID();
};

export const requestIdsPlugin = fp(async (app: FastifyInstance<RawServerDefault>) => {
  app.addHook('onRequest', async (request: FastifyRequest, reply) => {
    reply.header('x-request-id', request.id);
  });
});
