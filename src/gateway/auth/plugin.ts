import rateLimit, { normalizeIP } from '@fastify/rate-limit';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isUpgrade } from '../upgrade.js';
import type { IncomingMessage } from 'node:http';
import type { WebSocket } from 'ws';
import type { NexusMetrics } from '../../core/metrics.js';
import { ClientMistakes } from '../client-log.js';
import { wantsGraphiql } from '../graphql/graphiql.js';
import { accessOf, type Access } from './access.js';
import type { Authenticator, FailureReason, Principal } from './authenticator.js';
import { CLOSE_UNAUTHORIZED, LiveSessions } from './sessions.js';

export type AuthMode = 'none' | 'token' | 'oidc';

export interface RateLimits {
  /** Requests a minute per token or OIDC subject (AUTH_MODE=none: per address); 0: no limit. */
  readonly perMinute: number;
  /** Requests a minute per client address without valid credentials; 0: no limit. */
  readonly anonPerMinute: number;
}

export type AuthOptions = (
  | { readonly mode: 'none' }
  | { readonly mode: 'token' | 'oidc'; readonly authenticator: Authenticator }
) & {
  /** METRICS_AUTH: /metrics needs the read scope. */
  readonly metricsAuth: boolean;
  readonly rateLimit: RateLimits;
  /** How often open WebSocket connections' credentials are checked again (default 5 s). */
  readonly recheckMs?: number;
  /**
   * How long a GraphQL subscription connection opened without a token has to send one in
   * connection_init before it is closed with 4401 (default 10 s).
   */
  readonly initTimeoutMs?: number;
};

/** A route and who may use it. */
export interface RouteAccess {
  readonly method: string;
  readonly url: string;
  readonly access: Access;
}

export interface GatewayAuth {
  /** Every route of the gateway with the access it needs, as routes are added. */
  readonly routes: readonly RouteAccess[];
  /**
   * For GraphQL subscriptions (mercurius's onConnect): accepts the connection when its upgrade
   * carried a valid token, or when connection_init's payload carries one as
   * `{"authorization": "Bearer <token>"}`; otherwise closes it with 4401 (4403 without the read
   * scope). Undefined when AUTH_MODE=none.
   */
  readonly subscriptionConnect:
    | ((request: FastifyRequest, socket: WebSocket, payload: unknown) => Promise<boolean>)
    | undefined;
}

/** The WebSocket subprotocol that carries a token, for browsers (which cannot set headers). */
export const BEARER_PROTOCOL = 'bearer.';

/**
 * Which offered WebSocket subprotocol the server selects: the first that is not a token. A
 * `bearer.<token>` is never selected (so never echoed back); with none other, none is selected.
 */
export function selectProtocol(protocols: Set<string>): string | false {
  for (const p of protocols) if (!p.startsWith(BEARER_PROTOCOL)) return p;
  return false;
}

const REALM = 'Bearer realm="nexus"';

type Credential =
  | { readonly kind: 'none' }
  | { readonly kind: 'malformed' }
  | { readonly kind: 'bearer'; readonly value: string };

/** The bearer credential of a request: the Authorization header, or a `bearer.` subprotocol. */
function credentialOf(req: FastifyRequest): Credential {
  const header = req.headers.authorization;
  if (header !== undefined) {
    const m = /^Bearer +([^\s]+) *$/i.exec(header);
    return m?.[1] === undefined ? { kind: 'malformed' } : { kind: 'bearer', value: m[1] };
  }
  if (isUpgrade(req)) {
    const offered = req.headers['sec-websocket-protocol'];
    if (typeof offered === 'string') {
      for (const p of offered.split(',')) {
        const t = p.trim();
        if (t.startsWith(BEARER_PROTOCOL) && t.length > BEARER_PROTOCOL.length)
          return { kind: 'bearer', value: t.slice(BEARER_PROTOCOL.length) };
      }
    }
  }
  return { kind: 'none' };
}

/** The bearer token of a graphql-ws connection_init payload: `{"authorization": "Bearer <t>"}`. */
function payloadCredential(payload: unknown): Credential {
  if (typeof payload !== 'object' || payload === null) return { kind: 'none' };
  const p = payload as Record<string, unknown>;
  const headers = (typeof p.headers === 'object' && p.headers !== null ? p.headers : {}) as Record<
    string,
    unknown
  >;
  const v = p.authorization ?? p.Authorization ?? headers.authorization ?? headers.Authorization;
  if (v === undefined) return { kind: 'none' };
  if (typeof v !== 'string') return { kind: 'malformed' };
  const m = /^Bearer +([^\s]+) *$/i.exec(v);
  return m?.[1] === undefined ? { kind: 'malformed' } : { kind: 'bearer', value: m[1] };
}

const MESSAGES: Readonly<Record<'missing' | 'malformed', string>> = {
  missing:
    'this API needs a bearer token: send "Authorization: Bearer <token>" (nexus token create --scope read makes one)',
  malformed: 'the Authorization header must be "Bearer <token>"',
};

/**
 * Authentication, authorization and rate limits of the gateway (AUTH_MODE, docs/api.md
 * "Authentication"): one onRequest hook, before every other hook that does work for a request.
 * Open routes (health, pages and their static files, see access.ts) pass untouched. Any other
 * request needs a bearer token (header, or a `bearer.<token>` WebSocket subprotocol) granting
 * the route's scope: 401 without a valid one, 403 without the scope. Requests are limited per
 * token (RATE_LIMIT_PER_MINUTE) and, without a valid token, per client address
 * (RATE_LIMIT_ANON_PER_MINUTE): 429 with Retry-After. Refusals are counted
 * (nexus_auth_failures_total{reason}) and logged at warn, sampled, never with the token.
 * Register before any route: the route list is collected as routes are added.
 */
export async function registerAuth(
  app: FastifyInstance,
  o: AuthOptions,
  deps: { readonly metrics?: NexusMetrics | undefined },
): Promise<GatewayAuth> {
  const routes: RouteAccess[] = [];
  // A WebSocket upgrade refused here (401, 403, 429) is answered before @fastify/websocket's own
  // hooks have seen it, so they do not close its socket: close it once the answer is sent.
  app.addHook('onResponse', (req, reply, done) => {
    if (reply.statusCode !== 101 && !req.ws && isUpgrade(req)) req.raw.socket.destroy();
    done();
  });
  app.addHook('onRoute', (r) => {
    const access = accessOf(r, o.metricsAuth);
    r.config = { ...r.config, access };
    for (const method of typeof r.method === 'string' ? [r.method] : r.method)
      routes.push({ method, url: r.url, access });
  });
  await app.register(rateLimit, { global: false, cache: 10_000 });
  const perPrincipal = new WeakMap<FastifyRequest, Principal>();
  const limiter = (max: number, key: (req: FastifyRequest) => string) =>
    max <= 0
      ? undefined
      : app.createRateLimit({ max, timeWindow: 60_000, keyGenerator: key, skipOnError: true });
  const byAddress = (req: FastifyRequest): string => `address:${normalizeIP(req.ip)}`;
  const anonLimit = limiter(
    o.mode === 'none' ? o.rateLimit.perMinute : o.rateLimit.anonPerMinute,
    byAddress,
  );
  const principalLimit = limiter(
    o.rateLimit.perMinute,
    (req) => perPrincipal.get(req)?.id ?? byAddress(req),
  );
  const log = new ClientMistakes(app.log, 10, 'warn');
  const metrics = deps.metrics;

  /** Sends 429 when `limit` says the request is one too many; true when it did. */
  const overLimit = async (
    limit: ReturnType<typeof limiter>,
    req: FastifyRequest,
    reply: FastifyReply,
    who: string,
  ): Promise<boolean> => {
    if (limit === undefined) return false;
    const r = await limit(req);
    if (r.isAllowed || !r.isExceeded) return false;
    metrics?.httpRefused.inc({ reason: 'rate_limit' });
    const retry = Math.max(1, r.ttlInSeconds);
    await reply
      .code(429)
      .header('retry-after', String(retry))
      .send({
        error: `too many requests from ${who}: at most ${r.max} a minute; retry in ${retry} s`,
        code: 'RATE_LIMITED',
        statusCode: 429,
      });
    return true;
  };

  const noteFailure = (
    req: FastifyRequest,
    reason: FailureReason,
    message: string,
    principal?: string,
  ): void => {
    metrics?.authFailures.inc({ reason });
    log.note(
      {
        reason,
        address: req.ip,
        method: req.method,
        route: req.routeOptions.url ?? 'unmatched',
        ...(principal === undefined ? {} : { principal }),
        why: message,
      },
      'request refused: not authenticated or not authorized',
    );
  };

  const unauthorized = async (
    req: FastifyRequest,
    reply: FastifyReply,
    reason: FailureReason,
    message: string,
  ): Promise<void> => {
    noteFailure(req, reason, message);
    if (await overLimit(anonLimit, req, reply, `${req.ip} without a valid token`)) return;
    await reply
      .code(401)
      .header('www-authenticate', REALM)
      .send({ error: message, code: 'UNAUTHORIZED', statusCode: 401 });
  };

  if (o.mode === 'none') {
    app.addHook('onRequest', async (req, reply) => {
      if (openRequest(req)) return;
      await overLimit(anonLimit, req, reply, req.ip);
    });
    return { routes, subscriptionConnect: undefined };
  }

  const authenticator = o.authenticator;
  const sessions = new LiveSessions(authenticator, app.log, o.recheckMs ?? 5000);
  /** Upgrades that carried a valid credential: their sockets are watched for revocation. */
  const upgrades = new WeakMap<IncomingMessage, string>();
  /** Subscription upgrades without a token yet (it may come in connection_init). */
  const pending = new WeakSet<FastifyRequest>();
  const pendingRaw = new WeakSet<IncomingMessage>();
  /** Their sockets, each closed unless a token comes in time. */
  const unproven = new WeakMap<WebSocket, NodeJS.Timeout>();
  const initTimeoutMs = o.initTimeoutMs ?? 10_000;
  app.addHook('onReady', (done) => {
    if (!app.hasDecorator('websocketServer')) {
      done();
      return;
    }
    app.websocketServer.on('connection', (socket: WebSocket, raw: IncomingMessage) => {
      const credential = upgrades.get(raw);
      if (credential !== undefined) sessions.watch(socket, credential);
      else if (pendingRaw.has(raw)) {
        const timer = setTimeout(() => {
          socket.close(
            CLOSE_UNAUTHORIZED,
            `no token: send connection_init with {"authorization": "Bearer <token>"} within ${Math.round(initTimeoutMs / 1000)} s`,
          );
        }, initTimeoutMs);
        unproven.set(socket, timer);
        socket.once('close', () => clearTimeout(timer));
      }
    });
    done();
  });
  app.addHook('onClose', (_app, done) => {
    sessions.stop();
    void authenticator.close().then(
      () => done(),
      () => done(),
    );
  });

  app.addHook('onRequest', async (req, reply) => {
    if (openRequest(req)) return;
    const access = req.routeOptions.config.access ?? 'read';
    const credential = credentialOf(req);
    if (credential.kind === 'none' && isUpgrade(req) && req.routeOptions.url === '/graphql') {
      // graphql-ws may carry the token in connection_init: subscriptionConnect decides then.
      pending.add(req);
      pendingRaw.add(req.raw);
      await overLimit(anonLimit, req, reply, `${req.ip} without a valid token`);
      return;
    }
    if (credential.kind !== 'bearer') {
      const reason = credential.kind === 'none' ? 'missing' : 'malformed';
      await unauthorized(req, reply, reason, MESSAGES[reason]);
      return;
    }
    const verdict = await authenticator.verify(credential.value);
    if (!verdict.ok) {
      await unauthorized(req, reply, verdict.reason, verdict.message);
      return;
    }
    const { principal } = verdict;
    perPrincipal.set(req, principal);
    if (await overLimit(principalLimit, req, reply, principal.id)) return;
    const need = access === 'admin' || access === 'write' ? access : 'read';
    if (!principal.scopes.has(need)) {
      const message = `this needs the ${need} scope, which ${principal.id} does not have`;
      noteFailure(req, 'forbidden', message, principal.id);
      await reply.code(403).send({ error: message, code: 'FORBIDDEN', statusCode: 403 });
      return;
    }
    if (isUpgrade(req)) upgrades.set(req.raw, credential.value);
  });
  // Only a subscription connection goes on without a token (to connection_init): checked again
  // once @fastify/websocket has said whether this is one.
  app.addHook('preValidation', async (req, reply) => {
    if (!pending.has(req) || req.ws) return;
    await unauthorized(req, reply, 'missing', MESSAGES.missing);
  });

  const subscriptionConnect = async (
    request: FastifyRequest,
    socket: WebSocket,
    payload: unknown,
  ): Promise<boolean> => {
    if (upgrades.has(request.raw)) return true;
    const refuse = (reason: FailureReason, message: string): false => {
      noteFailure(request, reason, message);
      socket.close(reason === 'forbidden' ? 4403 : CLOSE_UNAUTHORIZED, message.slice(0, 120));
      return false;
    };
    const credential = payloadCredential(payload);
    if (credential.kind === 'none')
      return refuse(
        'missing',
        'send the token in connection_init: {"authorization": "Bearer <token>"}',
      );
    if (credential.kind === 'malformed')
      return refuse('malformed', 'connection_init: "authorization" must be "Bearer <token>"');
    const verdict = await authenticator.verify(credential.value).catch(() => undefined);
    if (verdict === undefined) {
      socket.close(1013, 'tokens cannot be checked now; retry shortly');
      return false;
    }
    if (!verdict.ok) return refuse(verdict.reason, verdict.message);
    if (!verdict.principal.scopes.has('read'))
      return refuse('forbidden', `this needs the read scope`);
    clearTimeout(unproven.get(socket));
    sessions.watch(socket, credential.value);
    return true;
  };
  return { routes, subscriptionConnect };
}

/** Requests that need no credentials: open routes, unknown routes (404), GraphiQL's page. */
function openRequest(req: FastifyRequest): boolean {
  if (req.routeOptions.url === undefined) return true;
  const access = req.routeOptions.config.access ?? 'read';
  if (access === 'open') return true;
  return req.routeOptions.url === '/graphql' && wantsGraphiql(req);
}
