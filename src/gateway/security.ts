import cors from '@fastify/cors';
import helmet from '@fastify/helmet';
import Fastify, { type FastifyInstance } from 'fastify';
import type { IncomingMessage } from 'node:http';
import { corsOrigins } from './cors-origins.js';

/**
 * The gateway's security headers (@fastify/helmet) and CORS (@fastify/cors), docs/api.md
 * "Security headers" and "CORS".
 *
 * One Content-Security-Policy for every page the gateway serves (the dashboard, Swagger UI,
 * GraphiQL), all of whose scripts and styles are files of the gateway itself: no inline script,
 * no eval, no other origin. Browsers check it on the HTML pages; on the API's JSON it costs a
 * header and does nothing.
 */

/** A Host header that can be written into the policy (a name or an address, and a port). */
const HOST = /^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$/;

/**
 * The live sockets of the page's own host (ws: and wss:), with a leading space, or nothing for a
 * Host that is not a plain host[:port]. CSP level 3 browsers already count them as 'self'; older
 * ones (Safari before 15.4) need them named.
 */
function sameHostSockets(host: string | undefined): string {
  return host !== undefined && HOST.test(host) ? ` ws://${host} wss://${host}` : '';
}

/** The host the policy is worked out for once; each answer names its own instead. */
const PROBE_HOST = 'nexus-probe.invalid:1';
const PROBE_SOCKETS = sameHostSockets(PROBE_HOST);

/** The policy's directives; `upgrade-insecure-requests` only over TLS (over http it breaks the page). */
export function cspDirectives(tls: boolean) {
  return {
    'default-src': ["'self'"],
    'base-uri': ["'self'"],
    'script-src': ["'self'"],
    'script-src-attr': ["'none'"],
    'style-src': ["'self'"],
    'img-src': ["'self'", 'data:'],
    'font-src': ["'self'", 'data:'],
    'connect-src': ["'self'", (req: IncomingMessage) => sameHostSockets(req.headers.host).trim()],
    'object-src': ["'none'"],
    'frame-ancestors': ["'none'"],
    'form-action': ["'self'"],
    ...(tls ? { 'upgrade-insecure-requests': [] } : {}),
  };
}

/** Headers of Fastify's own, not helmet's. */
const NOT_HELMET = new Set(['content-type', 'content-length', 'date', 'connection', 'keep-alive']);

/**
 * The headers @fastify/helmet sends with these options, worked out once on a private instance:
 * the plugin builds helmet's middleware again for every request. Measured on a bare route (one
 * process, 10 connections): 64,000 answers a second without security headers, 34,000 with the
 * plugin, 48,000 with this table (what remains is the cost of the 700 bytes of headers).
 */
async function helmetHeaders(tls: boolean): Promise<Record<string, string>> {
  const probe = Fastify();
  try {
    await probe.register(helmet, {
      contentSecurityPolicy: { useDefaults: false, directives: cspDirectives(tls) },
      strictTransportSecurity: tls ? { maxAge: 31_536_000, includeSubDomains: false } : false,
      xFrameOptions: { action: 'deny' },
      referrerPolicy: { policy: 'no-referrer' },
    });
    probe.get('/', (_req, reply) => {
      void reply.send('');
    });
    const res = await probe.inject({ url: '/', headers: { host: PROBE_HOST } });
    const out: Record<string, string> = {};
    for (const [name, value] of Object.entries(res.headers))
      if (!NOT_HELMET.has(name) && typeof value === 'string') out[name] = value;
    return out;
  } finally {
    await probe.close();
  }
}

/**
 * Security headers on every answer (@fastify/helmet's): the CSP above, X-Frame-Options DENY,
 * nosniff, Referrer-Policy no-referrer, Cross-Origin-Opener/Resource-Policy same-origin, and over
 * TLS only, Strict-Transport-Security (a year; this host only: the gateway vouches for no other
 * name; not for localhost). The policy names the live sockets of the Host each request was sent to.
 */
export async function registerSecurityHeaders(
  app: FastifyInstance,
  o: { readonly tls: boolean },
): Promise<void> {
  const {
    'content-security-policy': policy = '',
    'strict-transport-security': hsts,
    ...fixed
  } = await helmetHeaders(o.tls);
  const at = policy.indexOf(PROBE_SOCKETS);
  if (at < 0) throw new Error(`the policy names no live socket: ${policy}`);
  const before = policy.slice(0, at);
  const after = policy.slice(at + PROBE_SOCKETS.length);
  // A callback hook: no promise per request.
  app.addHook('onRequest', (req, reply, done) => {
    const host = req.headers.host;
    void reply
      .headers(fixed)
      .header('content-security-policy', before + sameHostSockets(host) + after);
    if (hsts !== undefined && !isLocalhost(host))
      void reply.header('strict-transport-security', hsts);
    done();
  });
}

/**
 * `localhost` (and names under it): no HSTS for it, or a browser would refuse plain HTTP to every
 * other server on localhost, whatever its port, for a year. (Browsers ignore HSTS from an address.)
 */
function isLocalhost(host: string | undefined): boolean {
  const name = (host ?? '').replace(/:\d+$/, '').toLowerCase();
  return name === 'localhost' || name.endsWith('.localhost');
}

/**
 * CORS for the origins listed (none: no CORS header at all, and browsers keep other sites' pages
 * from reading the API). Requests carry their token in Authorization, never in cookies, so no
 * credentials; the headers a script needs to read are exposed.
 */
export async function registerCors(
  app: FastifyInstance,
  o: { readonly enabled: boolean; readonly origins: readonly string[] },
): Promise<void> {
  const origins = corsOrigins(o.origins);
  if (!o.enabled || origins.length === 0) return;
  await app.register(cors, {
    origin: origins === '*' ? '*' : [...origins],
    methods: ['GET', 'POST', 'OPTIONS'],
    exposedHeaders: ['x-request-id', 'retry-after', 'www-authenticate'],
    maxAge: 600,
  });
}
