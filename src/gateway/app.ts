import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import underPressure from '@fastify/under-pressure';
import websocket from '@fastify/websocket';
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import { randomUUID } from 'node:crypto';
import type { Logger } from '../core/logger.js';
import type { LiveFeed } from '../registry/feed.js';
import type { FleetRegistry } from '../registry/types.js';
import type { TelemetryReader } from '../store/reader.js';
import { NexusError } from '../core/errors.js';
import { Admission, installAdmission, type AdmissionLimits } from './admission.js';
import { registerAuth, selectProtocol, type AuthOptions, type GatewayAuth } from './auth/plugin.js';
import { ClientMistakes, isPeerError } from './client-log.js';
import { registerCompression } from './compression.js';
import { installErrorHandling } from './errors.js';
import { exportFleetGauges, exportIdleGauge, instrumentHttp } from './instrumentation.js';
import type { NexusMetrics } from '../core/metrics.js';
import { registerGraphql, type GraphqlLimits } from './graphql/plugin.js';
import { LiveHub } from './live/hub.js';
import { eventRoutes } from './routes/events.js';
import { fleetRoutes } from './routes/fleet.js';
import { heatmapRoutes } from './routes/heatmap.js';
import { deadLetterRoutes, type DeadLetterQueue } from './routes/dead-letters.js';
import { healthRoutes, readinessOf, type HealthCheck } from './routes/health.js';
import { registerCors, registerSecurityHeaders } from './security.js';
import { overviewRoutes, type QueueGauge } from './routes/overview.js';
import type { Simulation } from './schemas/overview.js';
import { usageRoutes } from './routes/usage.js';
import { DEFAULT_FLEET_SETTINGS, type FleetSettings } from './usage.js';
import { telemetryRoutes } from './routes/telemetry.js';
import { ErrorBody } from './schemas/common.js';
import { Cluster, Gpu, Host, MigInstance, SearchHit } from './schemas/fleet.js';
import { searchRoutes } from './routes/search.js';
import { Reading, Series, SeriesColumns, TelemetryResult } from './schemas/telemetry.js';
import { remoteWriteRoutes, type RemoteWriteOptions } from './remote-write/plugin.js';
import { ConnectionLimiter } from './ws/connections.js';
import { SharedBacklog, liveSocketRoutes, type SocketLimits } from './ws/live-socket.js';
import {
  EVENT_POLLER_DEFAULTS,
  EventPoller,
  type EventPollerOptions,
} from './live/event-poller.js';

/**
 * Swagger UI's start script for /swagger/index.html (see buildGateway). BaseLayout: the standalone
 * layout's top bar (a URL box and a logo whose inline <style> the CSP refuses) is not drawn; no
 * validator badge (it would send the document's address to validator.swagger.io).
 */
const SWAGGER_START = `window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: new URL('json', window.location.href).href,
    dom_id: '#swagger-ui',
    deepLinking: true,
    docExpansion: 'list',
    presets: [SwaggerUIBundle.presets.apis],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: 'BaseLayout',
    validatorUrl: null,
    // The token the dashboard keeps for this browser tab, on every request (the document too).
    requestInterceptor: function (req) {
      var token = null;
      try { token = window.sessionStorage.getItem('nexus.token'); } catch (e) { token = null; }
      if (token && !req.headers.Authorization) req.headers.Authorization = 'Bearer ' + token;
      return req;
    },
  });
};
`;

/** What the OpenAPI document says of the APIs it does not describe, as far as they are served. */
function liveApis(o: Pick<GatewayOptions, 'graphql' | 'websocket' | 'feed'>): string {
  const apis = [
    ...(o.graphql
      ? [`GraphQL at /graphql${o.feed === undefined ? '' : ' (with subscriptions)'}`]
      : []),
    ...(o.websocket && o.feed !== undefined ? ['live readings on WebSocket /ws'] : []),
  ];
  return apis.length === 0 ? '' : ` Also: ${apis.join('; ')} (docs/api.md).`;
}

/** Fastify's trustProxy from TRUST_PROXY. */
function trustProxyOption(
  v: string,
): boolean | string[] | ((addr: string, hop: number) => boolean) {
  const s = v.trim();
  if (s === '' || s === 'false') return false;
  if (s === 'true') return true;
  if (/^\d+$/.test(s)) {
    const hops = Number(s);
    return (_addr, hop) => hop < hops;
  }
  return s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
}

/**
 * Load shedding (@fastify/under-pressure): past the event-loop delay or heap bounds, requests are
 * answered 503 with Retry-After, except health and metrics, which must answer under load.
 */
async function registerPressure(
  app: FastifyInstance,
  p: GatewayOptions['pressure'],
  metrics: NexusMetrics | undefined,
): Promise<void> {
  if (p.maxEventLoopDelayMs <= 0 && p.maxHeapUsedBytes <= 0) return;
  await app.register(underPressure, {
    ...(p.maxEventLoopDelayMs > 0 ? { maxEventLoopDelay: p.maxEventLoopDelayMs } : {}),
    ...(p.maxHeapUsedBytes > 0 ? { maxHeapUsedBytes: p.maxHeapUsedBytes } : {}),
    pressureHandler: (req, _reply, type, value) => {
      if (EXEMPT.has(req.routeOptions.url ?? '')) return undefined;
      metrics?.httpRefused.inc({ reason: 'pressure' });
      throw new NexusError(
        'OVERLOADED',
        `the gateway is overloaded (${pressureOf(type, value, p)}); retry shortly`,
      );
    },
  });
}

/**
 * What is over its bound, in an operator's words. A loop held through a whole sample has no
 * measured delay (under-pressure reports Infinity): it is at least the sample interval (1 s).
 */
export function pressureOf(
  type: string,
  value: number | undefined,
  p: GatewayOptions['pressure'],
): string {
  const v = value ?? 0;
  if (type === 'eventLoopDelay')
    return `event-loop delay ${Number.isFinite(v) ? `${Math.round(v)} ms` : 'over 1000 ms'}, MAX_EVENT_LOOP_DELAY ${p.maxEventLoopDelayMs} ms`;
  if (type === 'heapUsedBytes')
    return `heap used ${mib(v)}, MAX_HEAP_USED ${mib(p.maxHeapUsedBytes)}`;
  return `${type} ${Number.isFinite(v) ? Math.round(v) : v}`;
}

function mib(bytes: number): string {
  return bytes < 1048576 ? `${bytes} bytes` : `${Math.round(bytes / 1048576)} MiB`;
}

/** Routes that answer whatever the load. */
const EXEMPT = new Set(['/healthz', '/readyz', '/health', '/metrics']);

/** What a client's x-request-id must look like to be used (and echoed) as the request's id. */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Query parameters that take a comma-separated list (docs/api.md): repeated, their values add up. */
const LIST_PARAMETERS = new Set([
  'host_id',
  'gpu_id',
  'uuid',
  'metric',
  'metrics',
  'gpu_instance',
  'type',
]);

/**
 * A query string's repeated parameters (`?metric=A&metric=B`, which the parser gives as an array):
 * a list parameter's values joined as if comma-separated; any other is a bad request saying so (the
 * schema would only say "must be string").
 */
function repeatedParameters(query: unknown): NexusError | undefined {
  if (typeof query !== 'object' || query === null) return undefined;
  const q = query as Record<string, unknown>;
  for (const [name, value] of Object.entries(q)) {
    if (!Array.isArray(value)) continue;
    if (!LIST_PARAMETERS.has(name))
      return new NexusError(
        'BAD_REQUEST',
        `query parameter "${name}" is given ${value.length} times; give it once`,
      );
    q[name] = value.join(',');
  }
  return undefined;
}

export interface GatewayOptions {
  readonly reader: TelemetryReader;
  /** The live events' poll (EVENT_POLLER_DEFAULTS otherwise): tests poll faster. */
  readonly eventPoller?: Partial<Omit<EventPollerOptions, 'logger'>>;
  /** Who may use what (AUTH_MODE, rate limits): src/gateway/auth/plugin.ts. */
  readonly auth: AuthOptions;
  /** Dead letters through the API (admin scope), where the gateway shares the pipeline's queue. */
  readonly deadLetters?: DeadLetterQueue;
  readonly registry?: FleetRegistry;
  /** The commit feed; without it there is no live push. */
  readonly feed?: LiveFeed;
  readonly checks: readonly HealthCheck[];
  readonly logger: Logger;
  readonly version: string;
  readonly graphql: boolean;
  readonly websocket: boolean;
  /** CORS for the origins listed (`*`: any); none, or not enabled: no CORS (security.ts). */
  readonly cors: { readonly enabled: boolean; readonly origins: readonly string[] };
  /** Serve HTTPS with this certificate chain and key (PEM); without it, plain HTTP. */
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer };
  /** Largest number of points a series query may return. */
  readonly maxPoints: number;
  readonly socket: SocketLimits;
  /** Largest request body accepted (bytes). */
  readonly bodyLimit: number;
  /** Admission control of the API (/api/v1, /graphql). */
  readonly api: AdmissionLimits;
  readonly graphqlLimits: Pick<GraphqlLimits, 'maxCost' | 'timeoutMs' | 'maxAnswerBytes'>;
  /** Load shedding: 503 with Retry-After past these (0: off); health and metrics always answer. */
  readonly pressure: { readonly maxEventLoopDelayMs: number; readonly maxHeapUsedBytes: number };
  /** TRUST_PROXY: '' (the peer's address), 'true', a hop count, or addresses/CIDRs. */
  readonly trustProxy: string;
  /** Queue depth for the overview (the embedded queue, or the etcd queue read-only). */
  readonly queueStats?: () => Promise<QueueGauge>;
  /** The simulated fleet this process streams (nexus up without a CSV): the overview says so. */
  readonly simulation?: Simulation;
  /** Prometheus metrics of this process; /metrics serves them. */
  readonly metrics?: NexusMetrics;
  /** Idle GPUs and usage (docs/fleet.md): IDLE_UTIL, IDLE_FOR, prices; defaults without. */
  readonly fleet?: FleetSettings;
  /** Export each GPU's latest readings as gauges (for the fleet alerts). */
  readonly fleetMetrics?: boolean;
  /** The per-GPU gauges only while the fleet has at most this many live GPUs (default 10,000). */
  readonly fleetGaugesMaxGpus?: number;
  /**
   * With a feed, serve latest values from memory kept current by the feed (0: always read the
   * store). Memory reconciles with the store a slice of the fleet every min(this, 1 s) ms, the
   * whole fleet every 5 minutes (default 10 s).
   */
  readonly latestReloadMs?: number;
  /** Prometheus remote_write at POST /api/v1/write (ENABLE_REMOTE_WRITE), publishing to the queue. */
  readonly remoteWrite?: Omit<RemoteWriteOptions, 'logger' | 'metrics'>;
  /** Extra plugins (the dashboard) registered last. */
  readonly extensions?: readonly ((app: FastifyInstance) => Promise<void>)[];
}

export interface Gateway {
  readonly app: FastifyInstance;
  /** Every route with the access it needs, and the subscriptions' connection check. */
  readonly auth: GatewayAuth;
  readonly hub: LiveHub | undefined;
  /** Unsent live telemetry held for WebSocket clients, in bytes (each message counted once). */
  liveBacklogBytes(): number;
  /** Readiness false from now on (shutdown begins). */
  drain(): void;
}

/**
 * The gateway as a Fastify application (only the CLI listens): REST with its OpenAPI document,
 * GraphQL, live WebSocket, health. Every route is declared with a schema; the same schemas give
 * validation, serialisation and /openapi.json.
 */
export async function buildGateway(o: GatewayOptions): Promise<Gateway> {
  let draining = false;
  const log: FastifyBaseLogger = o.logger.child({ component: 'gateway' });
  const app = Fastify({
    https: o.tls === undefined ? null : { cert: o.tls.cert, key: o.tls.key },
    loggerInstance: log,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: o.bodyLimit,
    // A client's x-request-id becomes the request's id (logs, traces, the answer's header) only
    // when it looks like an id: at most 128 characters of [A-Za-z0-9._:-]. Otherwise a new one.
    requestIdHeader: false,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 300 },
    // The router's own refusals (a malformed URL, a path segment over 300 characters) in the
    // API's error shape, without echoing the path back.
    frameworkErrors: (err: FastifyError, _req: FastifyRequest, reply: FastifyReply) => {
      void reply.status(400).send({
        error:
          err.code === 'FST_ERR_MAX_PARAM_LENGTH'
            ? 'a path segment is longer than 300 characters'
            : 'the URL is malformed',
        code: 'BAD_REQUEST',
        statusCode: 400,
      });
    },
    trustProxy: trustProxyOption(o.trustProxy),
    ajv: {
      customOptions: {
        coerceTypes: 'array',
        removeAdditional: false,
        allErrors: false,
        // With strictNumbers (Ajv's default), a query string's "Infinity" or "1e400" is coerced
        // to Infinity and then skips minimum/maximum (checked only for finite numbers), so it
        // passed `limit <= 10000`. Without it, the range keywords refuse it.
        strictNumbers: false,
      },
    },
  });
  // Callback hooks, not async ones: no promise per request.
  app.addHook('preValidation', (req, _reply, done) => {
    done(repeatedParameters(req.query));
  });
  app.addHook('onSend', (req, reply, payload, done) => {
    reply.header('x-request-id', req.id);
    done(null, payload);
  });
  app.addHook('onResponse', (req, reply, done) => {
    req.log.debug(
      {
        method: req.method,
        url: req.url,
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime),
      },
      'request',
    );
    done();
  });
  installErrorHandling(app, o.logger);
  await registerSecurityHeaders(app, { tls: o.tls !== undefined });
  // CORS before authentication: its hook answers preflights (they carry no credentials) and puts
  // its headers on every answer, so that a listed origin's page can read a 401 and ask for a token.
  await registerCors(app, o.cors);
  // Then, before any route and any hook that works for a request: 401, 403 and 429 cost nothing.
  const auth = await registerAuth(app, o.auth, { metrics: o.metrics });
  // Before any route (/metrics is the first): the plugin adds its hook to each route declared.
  await registerCompression(app);
  instrumentHttp(app, o.metrics);
  const mistakes = new ClientMistakes(log);
  await registerPressure(app, o.pressure, o.metrics);
  installAdmission(app, new Admission(o.api, o.metrics));
  if (o.metrics !== undefined && o.fleetMetrics !== false) {
    exportFleetGauges(o.metrics, o.reader, o.fleetGaugesMaxGpus);
    const fleetSettings = o.fleet ?? DEFAULT_FLEET_SETTINGS;
    exportIdleGauge(
      o.metrics,
      o.reader,
      { utilPercent: fleetSettings.idleUtil, forMs: fleetSettings.idleForMs },
      o.fleetGaugesMaxGpus,
    );
  }
  // The schemas referenced by $ref (ref()), named in the OpenAPI document.
  for (const s of [
    ErrorBody,
    Cluster,
    Host,
    Gpu,
    MigInstance,
    SearchHit,
    Reading,
    Series,
    SeriesColumns,
    TelemetryResult,
  ])
    app.addSchema(s);
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Nexus API',
        version: o.version,
        description: `GPU telemetry: the fleet (clusters, hosts, GPUs), stored readings, downsampled series, latest values.${liveApis(o)}`,
      },
      tags: [
        { name: 'fleet', description: 'Clusters, hosts and GPUs' },
        { name: 'telemetry', description: 'Readings, series and latest values' },
        { name: 'health', description: 'Liveness and readiness' },
        { name: 'admin', description: 'Changes to the pipeline (admin scope)' },
        ...(o.remoteWrite === undefined
          ? []
          : [{ name: 'ingest', description: 'Telemetry sent to Nexus (write scope)' }]),
      ],
      components: {
        securitySchemes: {
          bearer: {
            type: 'http',
            scheme: 'bearer',
            description: 'A token of nexus token create (or a JWT with AUTH_MODE=oidc)',
          },
        },
      },
      ...(o.auth.mode === 'none' ? {} : { security: [{ bearer: [] }] }),
    },
    refResolver: {
      buildLocalReference: (json, _base, _fragment, i) =>
        typeof json.$id === 'string' ? json.$id : `def-${i}`,
    },
  });
  await app.register(swaggerUi, {
    routePrefix: '/swagger',
    uiConfig: { docExpansion: 'list', deepLinking: true, layout: 'BaseLayout' },
  });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  // The product description's address of the UI. @fastify/swagger-ui's page finds its document
  // at `<page>/json` (it treats the page's address as a folder), which from /swagger/index.html is
  // /swagger/index.html/json: a 404 and "Failed to load API definition". The same page here loads
  // a start script that resolves the document relative to the page: /swagger/json.
  let swaggerPage: string | undefined;
  app.get('/swagger/index.html', { schema: { hide: true } }, async (_req, reply) => {
    swaggerPage ??= (await app.inject({ method: 'GET', url: '/swagger/' })).body.replace(
      './static/swagger-initializer.js',
      './nexus-swagger.js',
    );
    return reply.type('text/html; charset=utf-8').send(swaggerPage);
  });
  app.get('/swagger/nexus-swagger.js', { schema: { hide: true } }, async (_req, reply) =>
    reply.type('application/javascript; charset=utf-8').send(SWAGGER_START),
  );

  // With a feed, readiness also says whether live push works (listening, the feed watched).
  // And, with latest values kept in memory, whether the fleet state's first load is done (the
  // requests would wait for it: seconds at 100,000 GPUs).
  const feed = o.feed;
  const reloadMs = o.latestReloadMs ?? 10_000;
  const fleet = o.fleet ?? DEFAULT_FLEET_SETTINGS;
  const tracker =
    o.feed !== undefined && reloadMs > 0
      ? o.reader.trackLatest?.({
          reloadMs,
          idle: { utilPercent: fleet.idleUtil, forMs: fleet.idleForMs },
        })
      : undefined;
  const checks: readonly HealthCheck[] =
    feed === undefined
      ? o.checks
      : [
          ...o.checks,
          {
            name: 'live',
            check: async () => {
              const problem = feed.status();
              if (problem !== undefined) throw new NexusError('NOT_READY', problem);
            },
          },
          {
            name: 'fleet-state',
            check: async () => {
              const loading = tracker?.warming();
              if (loading !== undefined) throw new NexusError('NOT_READY', loading);
            },
          },
        ];
  const health = { checks, draining: () => draining, checkTimeoutMs: 2000 };
  await app.register(healthRoutes, { ...health, version: o.version });
  const metrics = o.metrics;
  metrics?.onScrape(async () => {
    metrics.ready.set({ component: 'gateway' }, (await readinessOf(health)).ready ? 1 : 0);
  });
  // The fleet state's reads, counted by the reader: the counters follow on scrape.
  const counted = { rows: new Map<string, number>(), reloads: new Map<string, number>() };
  metrics?.onScrape(async () => {
    const now = o.reader.fleetCounters?.();
    if (now === undefined) return;
    const follow = (
      seen: Map<string, number>,
      values: Readonly<Record<string, number>>,
      inc: (label: string, by: number) => void,
    ): void => {
      for (const [label, v] of Object.entries(values)) {
        const by = v - (seen.get(label) ?? 0);
        if (by > 0) inc(label, by);
        seen.set(label, v);
      }
    };
    follow(counted.rows, now.rowsRead, (source, by) => metrics.fleetRowsRead.inc({ source }, by));
    follow(counted.reloads, now.reloads, (kind, by) => metrics.fleetReloads.inc({ kind }, by));
    await Promise.resolve();
  });
  await app.register(fleetRoutes, { reader: o.reader, maxPoints: o.maxPoints });
  await app.register(heatmapRoutes, { reader: o.reader });
  await app.register(eventRoutes, { reader: o.reader });
  await app.register(searchRoutes, { reader: o.reader });
  await app.register(usageRoutes, { reader: o.reader, settings: fleet });
  await app.register(telemetryRoutes, {
    reader: o.reader,
    maxPoints: o.maxPoints,
    ...(o.metrics === undefined ? {} : { metrics: o.metrics }),
  });

  // Latest values in memory: subscribed to the feed first, then loaded, so nothing falls between.
  let stopTracking: (() => Promise<void>) | undefined;
  if (o.feed !== undefined && tracker !== undefined) {
    stopTracking = await o.feed.subscribe(
      '*',
      (b) => tracker.committed(b.cluster_id, b.records),
      () => {
        o.logger.info('commit feed may have missed readings: latest values read again');
        tracker.resync();
      },
    );
    tracker.start();
  }

  // The hub also measures the ingest rate for the overview, so it runs whenever there is a feed.
  const hub = o.feed !== undefined ? new LiveHub(o.feed, o.logger, o.metrics) : undefined;
  if (hub !== undefined) await hub.start();
  if (o.deadLetters !== undefined) await app.register(deadLetterRoutes, { queue: o.deadLetters });
  const remoteWrite = o.remoteWrite;
  if (remoteWrite !== undefined) {
    await app.register(async (child) =>
      remoteWriteRoutes(child, {
        ...remoteWrite,
        logger: o.logger,
        ...(o.metrics === undefined ? {} : { metrics: o.metrics }),
      }),
    );
  }
  await app.register(overviewRoutes, {
    reader: o.reader,
    registry: o.registry,
    hub,
    queueStats: o.queueStats,
    simulation: o.simulation,
    idle: { utilPercent: fleet.idleUtil, forMs: fleet.idleForMs },
  });
  if (o.websocket || o.graphql) {
    await app.register(websocket, {
      // A `bearer.<token>` subprotocol (browsers' way to send a token) is never selected.
      options: { maxPayload: 64 * 1024, handleProtocols: selectProtocol },
      // A peer's protocol errors (a bad frame, a reset) are its mistakes: ws closes the socket
      // with the right code (1007, 1009, ...); log them sampled. Anything else is ours.
      errorHandler: (err, socket, req) => {
        if (isPeerError(err)) {
          mistakes.note({ address: req.ip, err: err.message }, 'WebSocket peer error');
        } else {
          req.log.error({ err }, 'WebSocket handler failed');
          socket.terminate();
        }
      },
    });
    new ConnectionLimiter(
      {
        maxConnections: o.socket.maxConnections,
        maxPerAddress: o.socket.maxConnectionsPerAddress,
      },
      mistakes,
      o.metrics,
    ).install(app);
  }
  const backlog = new SharedBacklog(o.socket.maxTotalBufferedBytes);
  // GPU events for /ws and GraphQL subscriptions: polled from the database while someone listens.
  const events = new EventPoller(o.reader, {
    ...EVENT_POLLER_DEFAULTS,
    ...o.eventPoller,
    logger: o.logger,
  });
  metrics?.onScrape(async () => {
    metrics.wsBacklog.set(backlog.bytes);
  });
  if (o.websocket)
    await app.register(liveSocketRoutes, {
      hub,
      limits: o.socket,
      reader: o.reader,
      mistakes,
      backlog,
      events,
      ...(o.metrics === undefined ? {} : { metrics: o.metrics }),
    });
  if (o.graphql)
    await registerGraphql(app, {
      reader: o.reader,
      hub,
      version: o.version,
      maxPoints: o.maxPoints,
      events,
      fleet,
      limits: {
        ...o.graphqlLimits,
        maxSubscriptions: o.socket.maxSubscriptions,
        maxBufferedBytes: o.socket.maxBufferedBytes,
        slowClientMs: o.socket.slowClientMs,
      },
      ...(o.metrics === undefined ? {} : { metrics: o.metrics }),
      ...(auth.subscriptionConnect === undefined
        ? {}
        : { subscriptionConnect: auth.subscriptionConnect }),
    });
  for (const ext of o.extensions ?? []) await ext(app);
  app.addHook('onClose', async () => {
    tracker?.stop();
    events.stop();
    await stopTracking?.();
    await hub?.stop();
  });
  return {
    app,
    auth,
    hub,
    liveBacklogBytes: () => backlog.bytes,
    drain: () => {
      draining = true;
    },
  };
}
