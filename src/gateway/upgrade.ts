import type { IncomingMessage } from 'node:http';
import type { FastifyRequest } from 'fastify';

/**
 * Whether a request is a WebSocket upgrade, in any hook. @fastify/websocket sets `req.ws` in its
 * own onRequest hook, so hooks that run before it (admission control, authentication, the
 * GraphiQL page's choice) see `req.ws` still false; Node.js's own flag says it from the start (the
 * request came by the server's 'upgrade' event).
 */
export function isUpgrade(req: FastifyRequest): boolean {
  return req.ws || (req.raw as IncomingMessage & { upgrade?: boolean }).upgrade === true;
}
