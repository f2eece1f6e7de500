import { Command } from 'commander';
import { hostname } from 'node:os';
import type { Config } from '../../core/config.js';
import { describeError } from '../../core/errors.js';
import { createLogger } from '../../core/logger.js';
import { createEtcdClient } from '../../etcd/client.js';
import { buildGateway } from '../../gateway/app.js';
import type { HealthCheck } from '../../gateway/routes/health.js';
import { createStore, etcdConnection, etcdFeed, etcdQueueOn, etcdRegistry } from '../backends.js';
import { dashboardPlugin } from '../dashboard.js';
import { listenFailure, listening } from '../listen.js';
import { addSettings, configFrom } from '../settings.js';
import { onShutdown } from '../signals.js';
import { NexusMetrics } from '../../core/metrics.js';
import { exportStoreMetrics } from '../observability.js';
import { setupTracing } from '../tracing.js';
import { VERSION } from '../version.js';

export function gatewayCommand(): Command {
  const cmd = new Command('gateway').description(
    'Serve the REST, GraphQL and WebSocket APIs (PostgreSQL for history, etcd for live data)',
  );
  addSettings(cmd, ['common', 'queue', 'database', 'collector', 'gateway']);
  cmd.action(async () => {
    const config = configFrom(cmd);
    const logger = createLogger({ level: config.logLevel, base: { cluster_id: config.clusterId } });
    const instance = `gateway-${hostname()}-${process.pid}`;
    const store = createStore(config, logger, instance);
    const etcd = config.enableNexus ? createEtcdClient(etcdConnection(config)) : undefined;
    const feed = etcd === undefined ? undefined : etcdFeed(config, etcd, logger, instance);
    const registry = etcd === undefined ? undefined : etcdRegistry(config, etcd, logger);
    const checks: HealthCheck[] = [{ name: 'postgres', check: () => store.ping() }];
    if (etcd !== undefined) {
      checks.push({
        name: 'etcd',
        check: async () => {
          await etcd.get('health-probe').string();
        },
      });
    }
    const metrics = new NexusMetrics({ component: 'gateway', version: VERSION });
    const stopTracing = setupTracing('gateway', logger);
    exportStoreMetrics(metrics, store);
    const gateway = await buildGateway({
      metrics,
      reader: store.reader,
      ...(registry === undefined ? {} : { registry }),
      ...(feed === undefined ? {} : { feed }),
      checks,
      logger,
      ...gatewaySettings(config),
      ...(etcd === undefined
        ? {}
        : {
            queueStats: (() => {
              const q = etcdQueueOn(config, etcd, logger);
              return () => q.stats();
            })(),
          }),
      extensions: [dashboardPlugin(logger)],
    });
    const closeAll = async (): Promise<void> => {
      await gateway.app.close();
      await feed?.close();
      await registry?.close();
      etcd?.close();
      await store.close();
      await stopTracing();
    };
    let address: string;
    try {
      address = await gateway.app.listen({ port: config.port, host: config.host });
    } catch (err) {
      await closeAll().catch(() => undefined);
      throw listenFailure(err, config.port, config.host);
    }
    onShutdown(logger, async (_signal, progress) => {
      // Not ready first, so that load balancers stop sending; then close connections.
      progress.step('answering the requests in progress');
      gateway.drain();
      await new Promise((r) => setTimeout(r, Math.min(2000, config.pollTimeout)));
      progress.step('closing the connections to clients, etcd and PostgreSQL');
      await closeAll();
    });
    const serves = [
      'REST /api/v1',
      'OpenAPI /openapi.json',
      'Swagger UI /swagger/index.html',
      ...(config.enableGraphql ? ['GraphQL /graphql'] : []),
      ...(config.enableWebsocket ? ['WebSocket /ws'] : []),
    ];
    logger.info(
      { address },
      `gateway listening on ${listening(config.host, address)}: ${serves.join(', ')}`,
    );
    // Listening also keeps the in-memory latest values current (collectors publish only to listeners).
    if (feed !== undefined) {
      await feed
        .announceListener(instance)
        .catch((err: unknown) =>
          logger.warn({ err: describeError(err) }, 'could not announce the live listener yet'),
        );
    }
    if (registry !== undefined) {
      await registry
        .register({
          id: instance,
          role: 'gateway',
          hostname: hostname(),
          pid: process.pid,
          cluster_id: config.clusterId,
          started_at: Date.now(),
          version: VERSION,
        })
        .catch((err: unknown) =>
          logger.warn({ err: describeError(err) }, 'could not register in etcd yet'),
        );
    }
  });
  return cmd;
}

/** The gateway's options that come from the configuration (the same for `gateway` and `up`). */
export function gatewaySettings(config: Config) {
  return {
    version: VERSION,
    graphql: config.enableGraphql,
    websocket: config.enableWebsocket,
    cors: { enabled: config.enableCors, origins: config.corsOrigins },
    maxPoints: config.maxPoints,
    socket: {
      maxBufferedBytes: config.wsMaxBuffer,
      maxTotalBufferedBytes: config.wsMaxTotalBuffer,
      heartbeatMs: config.wsHeartbeat,
      maxSubscriptions: config.wsMaxSubscriptions,
      maxFilterValues: config.wsMaxFilterValues,
      slowClientMs: config.wsSlowClient,
      maxConnections: config.wsMaxConnections,
      maxConnectionsPerAddress: config.wsMaxConnectionsPerAddress,
    },
    bodyLimit: config.maxBody,
    api: {
      maxConcurrent: config.apiMaxConcurrent,
      maxQueued: config.apiMaxQueued,
      queueTimeoutMs: config.apiQueueTimeout,
      maxPerAddress: config.apiMaxPerAddress,
    },
    graphqlLimits: {
      maxCost: config.graphqlMaxCost,
      timeoutMs: config.graphqlTimeout,
      maxAnswerBytes: config.graphqlMaxAnswer,
    },
    pressure: {
      maxEventLoopDelayMs: config.maxEventLoopDelay,
      maxHeapUsedBytes: config.maxHeapUsed,
    },
    trustProxy: config.trustProxy,
  } as const;
}
