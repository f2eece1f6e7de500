import cors from '@fastify/cors';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import websocket from '@fastify/websocket';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { randomUUID } from 'node:crypto';
import type { Logger } from '../core/logger.js';
import type { LiveFeed } from '../registry/feed.js';
import type { FleetRegistry } from '../registry/types.js';
import type { TelemetryReader } from '../store/reader.js';
import { installErrorHandling } from './errors.js';
import { exportFleetGauges, instrumentHttp } from './instrumentation.js';
import type { NexusMetrics } from '../core/metrics.js';
import { registerGraphql } from './graphql/plugin.js';
import { LiveHub } from './live/hub.js';
import { fleetRoutes } from './routes/fleet.js';
import { healthRoutes, readinessOf, type HealthCheck } from './routes/health.js';
import { overviewRoutes, type QueueGauge } from './routes/overview.js';
import { telemetryRoutes } from './routes/telemetry.js';
import { SHARED_SCHEMAS } from './schemas.js';
import { liveSocketRoutes, type SocketLimits } from './ws/live-socket.js';

export interface GatewayOptions {
  readonly reader: TelemetryReader;
  readonly registry?: FleetRegistry;
  /** The commit feed; without it there is no live push. */
  readonly feed?: LiveFeed;
  readonly checks: readonly HealthCheck[];
  readonly logger: Logger;
  readonly version: string;
  readonly graphql: boolean;
  readonly websocket: boolean;
  readonly cors: { readonly enabled: boolean; readonly origins: readonly string[] };
  /** Largest number of points a series query may return. */
  readonly maxPoints: number;
  readonly socket: SocketLimits;
  /** Largest request body accepted (bytes). */
  readonly bodyLimit: number;
  /** Queue depth for the overview (the embedded queue, or the etcd queue read-only). */
  readonly queueStats?: () => Promise<QueueGauge>;
  /** Prometheus metrics of this process; /metrics serves them. */
  readonly metrics?: NexusMetrics;
  /** Export each GPU's latest readings as gauges (for the fleet alerts). */
  readonly fleetMetrics?: boolean;
  /**
   * With a feed, serve latest values from memory kept current by the feed, reloaded from the store
   * every this many ms (default 10 s; 0: always read the store).
   */
  readonly latestReloadMs?: number;
  /** Extra plugins (the dashboard) registered last. */
  readonly extensions?: readonly ((app: FastifyInstance) => Promise<void>)[];
}

export interface Gateway {
  readonly app: FastifyInstance;
  readonly hub: LiveHub | undefined;
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
    loggerInstance: log,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: o.bodyLimit,
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 300 },
    ajv: { customOptions: { coerceTypes: 'array', removeAdditional: false, allErrors: false } },
  });
  // Callback hooks, not async ones: no promise per request.
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
  instrumentHttp(app, o.metrics);
  if (o.metrics !== undefined && o.fleetMetrics !== false) exportFleetGauges(o.metrics, o.reader);
  for (const s of SHARED_SCHEMAS) app.addSchema(s);
  if (o.cors.enabled) {
    await app.register(cors, {
      origin:
        o.cors.origins.length === 0 || o.cors.origins.includes('*') ? true : [...o.cors.origins],
      methods: ['GET', 'POST', 'OPTIONS'],
    });
  }
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Nexus API',
        version: o.version,
        description:
          'GPU telemetry: the fleet (clusters, hosts, GPUs), stored readings, downsampled series, latest values. Live data: WebSocket /ws and GraphQL subscriptions (docs/api.md).',
      },
      tags: [
        { name: 'fleet', description: 'Clusters, hosts and GPUs' },
        { name: 'telemetry', description: 'Readings, series and latest values' },
        { name: 'health', description: 'Liveness and readiness' },
      ],
    },
    refResolver: {
      buildLocalReference: (json, _base, _fragment, i) =>
        typeof json.$id === 'string' ? json.$id : `def-${i}`,
    },
  });
  await app.register(swaggerUi, {
    routePrefix: '/swagger',
    uiConfig: { docExpansion: 'list', deepLinking: true },
  });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  // The product description's address of the UI.
  app.get('/swagger/index.html', { schema: { hide: true } }, async (_req, reply) => {
    const res = await app.inject({ method: 'GET', url: '/swagger/' });
    return reply.type('text/html; charset=utf-8').send(res.body);
  });

  const health = { checks: o.checks, draining: () => draining, checkTimeoutMs: 2000 };
  await app.register(healthRoutes, { ...health, version: o.version });
  const metrics = o.metrics;
  metrics?.onScrape(async () => {
    metrics.ready.set({ component: 'gateway' }, (await readinessOf(health)).ready ? 1 : 0);
  });
  await app.register(fleetRoutes, { reader: o.reader, maxPoints: o.maxPoints });
  await app.register(telemetryRoutes, { reader: o.reader, maxPoints: o.maxPoints });

  // Latest values in memory: subscribed to the feed first, then loaded, so nothing falls between.
  const reloadMs = o.latestReloadMs ?? 10_000;
  const tracker =
    o.feed !== undefined && reloadMs > 0 ? o.reader.trackLatest?.({ reloadMs }) : undefined;
  let stopTracking: (() => Promise<void>) | undefined;
  if (o.feed !== undefined && tracker !== undefined) {
    stopTracking = await o.feed.subscribe('*', (b) => tracker.committed(b.cluster_id, b.records));
    tracker.start();
  }

  // The hub also measures the ingest rate for the overview, so it runs whenever there is a feed.
  const hub = o.feed !== undefined ? new LiveHub(o.feed, o.logger, o.metrics) : undefined;
  if (hub !== undefined) await hub.start();
  await app.register(overviewRoutes, {
    reader: o.reader,
    registry: o.registry,
    hub,
    queueStats: o.queueStats,
  });
  if (o.websocket || o.graphql)
    await app.register(websocket, { options: { maxPayload: 64 * 1024 } });
  if (o.websocket)
    await app.register(liveSocketRoutes, { hub, limits: o.socket, reader: o.reader });
  if (o.graphql)
    await registerGraphql(app, {
      reader: o.reader,
      hub,
      version: o.version,
      maxPoints: o.maxPoints,
      ...(o.metrics === undefined ? {} : { metrics: o.metrics }),
    });
  for (const ext of o.extensions ?? []) await ext(app);
  app.addHook('onClose', async () => {
    tracker?.stop();
    await stopTracking?.();
    await hub?.stop();
  });
  return {
    app,
    hub,
    drain: () => {
      draining = true;
    },
  };
}
