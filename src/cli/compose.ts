import { hostname } from 'node:os';
import { basename, join } from 'node:path';
import type { Server } from 'node:http';
import { Collector } from '../collector/collector.js';
import type { Config } from '../core/config.js';
import { describeError } from '../core/errors.js';
import { createLogger, type Logger } from '../core/logger.js';
import { NexusMetrics } from '../core/metrics.js';
import { OUTAGE_BACKOFF } from '../core/outage.js';
import type { Gateway } from '../gateway/app.js';
import type { OpenedQueue } from '../gateway/remote-write/clusters.js';
import type { HealthCheck } from '../gateway/routes/health.js';
import type { Simulation } from '../gateway/schemas/overview.js';
import type { Queue } from '../queue/types.js';
import type { LiveFeed } from '../registry/feed.js';
import type { FleetRegistry, MemberInfo } from '../registry/types.js';
import type { TelemetryStore } from '../store/types.js';
import type { TelemetryReader } from '../store/reader.js';
import { shortHash } from '../streamer/fingerprint.js';
import {
  BarProgress,
  LogProgress,
  noProgress,
  type ProgressReporter,
} from '../streamer/progress.js';
import type { Streamer } from '../streamer/streamer.js';
import type { QueueSpace } from '../streamer/pacing.js';
import { gatewayAuth, openToAll, type TokenBackend } from './auth.js';
import type { Root } from './backends.js';
import type { GatewayTls } from './gateway-security.js';
import { startOpsServer, type OpsEndpoints } from './ops-server.js';
import { dataDir, resolveInput } from './paths.js';
import { onShutdown, type ShutdownOptions } from './signals.js';
import { ResourceStack } from './stack.js';
import { setupTracing } from './tracing.js';
import { TUNING } from './tuning.js';
import { VERSION } from './version.js';

/**
 * The composition root: every component a command runs (streamer, collector, gateway, its place in
 * the fleet registry, its operations port) is built here from the Config and the backends the
 * command chose (src/cli/backends.ts). What is opened for the process is pushed on its resource
 * stack (src/cli/stack.ts) by the builder; the stop of the work a command runs (streamer,
 * collector, gateway) is pushed by the command, which decides what stops first. Each component's
 * module loads only in the processes that build it (a streamer does not load the gateway).
 *
 * A new command: a builder here for its component, then its file in commands/ composes it.
 */

export type { Root } from './backends.js';

/** The components as they name themselves in metrics, traces and the registry. */
export type Component = 'streamer' | 'collector' | 'gateway' | 'embedded' | 'scraper';

/** A process's root: its configuration, its logger (cluster_id on every line) and its stack. */
export function openRoot(config: Config): Root {
  const logger = createLogger({ level: config.logLevel, base: { cluster_id: config.clusterId } });
  return { config, logger, stack: new ResourceStack(logger) };
}

/**
 * The process's metrics (one registry per process). The streamer and the collector belong to one
 * cluster and say so on every metric; a gateway or `nexus up` may serve several.
 */
export function processMetrics(root: Root, component: Component): NexusMetrics {
  const oneCluster =
    component === 'streamer' || component === 'collector' || component === 'scraper';
  return new NexusMetrics({
    component,
    ...(oneCluster ? { cluster: root.config.clusterId } : {}),
    version: VERSION,
  });
}

/** Tracing for the process (when the OTEL_* variables ask for it), flushed as it closes. */
export function startTracing(root: Root, component: Component): void {
  const stop = setupTracing(component, root.logger);
  root.stack.push('flushing traces', stop);
}

/** The operations port (METRICS_PORT: /healthz, /readyz, /metrics), when there is one. */
export async function startOps(root: Root, endpoints: OpsEndpoints): Promise<Server | undefined> {
  if (root.config.metricsPort <= 0) return undefined;
  const server = await startOpsServer(root.config.metricsPort, endpoints, root.logger);
  root.stack.push('closing the operations port', () => server.close());
  return server;
}

/**
 * Two-phase shutdown (src/cli/signals.ts): the first SIGINT/SIGTERM closes the stack (graceful),
 * a second one or TUNING.forceExitAfterMs exits at once, naming the step it cut short.
 */
export function closeOnSignal(root: Root, options: ShutdownOptions = {}): void {
  onShutdown(root.logger, (_signal, progress) => root.stack.close(progress), options);
}

/** How this process appears in the fleet registry (`nexus` members). */
export function member(root: Root, role: MemberInfo['role'], id: string): MemberInfo {
  return {
    id,
    role,
    hostname: hostname(),
    pid: process.pid,
    cluster_id: root.config.clusterId,
    started_at: Date.now(),
    version: VERSION,
  };
}

/**
 * Registers this process in the fleet registry. Its lease keeps it there while the process lives;
 * a registry that does not answer yet is retried by the lease keeper, so this only warns.
 */
export async function registerMember(
  root: Root,
  registry: FleetRegistry,
  info: MemberInfo,
): Promise<void> {
  await registry
    .register(info)
    .catch((err: unknown) =>
      root.logger.warn({ err: describeError(err) }, 'could not register in etcd yet'),
    );
}

export interface StreamerChoice {
  /** Ignore the checkpoint of an interrupted run (--restart). */
  readonly restart: boolean;
  /** In loop mode, stop after this many passes (--max-loops). */
  readonly maxLoops?: number;
  /** etcd's space and alarms (ETCD_QUOTA_BYTES): publishing waits while it is short. */
  readonly space?: QueueSpace;
}

/** The streamer's options from the configuration (CSV_FILE, STREAM_ID, BATCH_SIZE, ...). */
export function streamerOptionsFrom(
  config: Config,
  queue: Queue,
  logger: Logger,
  progress: ProgressReporter,
  extra: StreamerChoice,
) {
  const csvFile = resolveInput(config.csvFile);
  const file = basename(csvFile);
  const streamId =
    config.streamId !== ''
      ? config.streamId
      : `${file.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 80)}-${shortHash(`${config.clusterId}:${csvFile}`)}`;
  return {
    queue,
    csvFile,
    clusterId: config.clusterId,
    batchSize: config.batchSize,
    intervalMs: config.streamInterval,
    loop: config.loopMode,
    timestampMode:
      config.timestampMode === 'auto'
        ? config.loopMode
          ? 'live'
          : 'original'
        : config.timestampMode,
    maxQueueDepth: config.maxQueueDepth,
    concurrency: config.publishConcurrency,
    streamId,
    producerId: `streamer-${hostname()}-${process.pid}`,
    rejectsFile:
      config.rejectsFile !== ''
        ? config.rejectsFile
        : join(dataDir(config.dataDir), 'rejects', `${file}.rejects.csv`),
    rejectsMaxBytes: config.rejectsMaxBytes,
    restart: extra.restart,
    logger,
    progress,
    ...(extra.maxLoops === undefined ? {} : { maxLoops: extra.maxLoops }),
    ...(extra.space === undefined ? {} : { space: extra.space }),
  } as const;
}

/** How the streamer shows its progress (PROGRESS): a bar on a terminal, log lines otherwise. */
function progressOf(config: Config, logger: Logger): ProgressReporter {
  if (config.progress === 'off') return noProgress;
  if (config.progress === 'bar' || (config.progress === 'auto' && process.stderr.isTTY))
    return new BarProgress(process.stderr);
  return new LogProgress(logger);
}

/**
 * The streamer: CSV_FILE into the queue. `progress` replaces the PROGRESS setting (`nexus up`
 * keeps quiet: the dashboard shows the rate).
 */
export async function buildStreamer(
  root: Root,
  queue: Queue,
  metrics: NexusMetrics,
  choice: StreamerChoice & { readonly progress?: ProgressReporter },
): Promise<Streamer> {
  const { Streamer } = await import('../streamer/streamer.js');
  const { config, logger } = root;
  const progress = choice.progress ?? progressOf(config, logger);
  return new Streamer({
    ...streamerOptionsFrom(config, queue, logger, progress, choice),
    metrics,
  });
}

export interface CollectorParts {
  readonly queue: Queue;
  readonly store: TelemetryStore;
  readonly metrics: NexusMetrics;
  /** The fleet registry and the commit feed (ENABLE_NEXUS), if any. */
  readonly registry?: FleetRegistry | undefined;
  readonly feed?: LiveFeed | undefined;
  /** The queue dies with this process: store everything it holds before stopping. */
  readonly drainOnStop?: boolean;
}

/** A collector: the queue into the store (WORKERS, COLLECT_BATCH, POLL_TIMEOUT, ROLLUP_INTERVAL). */
export function buildCollector(root: Root, parts: CollectorParts): Collector {
  const { config, logger } = root;
  return new Collector({
    queue: parts.queue,
    store: parts.store,
    metrics: parts.metrics,
    ...(parts.registry === undefined ? {} : { registry: parts.registry }),
    ...(parts.feed === undefined ? {} : { feed: parts.feed }),
    ...(parts.drainOnStop === undefined ? {} : { drainOnStop: parts.drainOnStop }),
    clusterId: config.clusterId,
    workers: config.workers,
    batchMessages: config.collectBatch,
    pollTimeoutMs: config.pollTimeout,
    outageBackoff: OUTAGE_BACKOFF,
    maintenanceIntervalMs: TUNING.maintenanceIntervalMs,
    rollupIntervalMs: config.rollupInterval,
    compactIntervalMs: config.compactInterval,
    retireIntervalMs: TUNING.retireIntervalMs,
    staleAfterMs: config.staleAfter,
    logger,
  });
}

export interface GatewayParts {
  readonly store: TelemetryStore;
  /** Where the API reads telemetry and the fleet (a read replica); default: the store's reader. */
  readonly reader?: TelemetryReader | undefined;
  readonly metrics: NexusMetrics;
  readonly checks: readonly HealthCheck[];
  readonly registry?: FleetRegistry | undefined;
  readonly feed?: LiveFeed | undefined;
  /** The queue whose depth the overview shows, if this process sees one. */
  readonly queue?: Queue | undefined;
  /** HTTPS with this certificate (TLS_CERT_FILE, TLS_KEY_FILE: gateway-security.ts). */
  readonly tls?: GatewayTls | undefined;
  /** Where AUTH_MODE=token finds tokens: PostgreSQL, or NEXUS_DATA_DIR/tokens.json. */
  readonly tokens: TokenBackend;
  /** Dead letters through the API (admin): only where this process owns the queue (nexus up). */
  readonly deadLetters?: Queue | undefined;
  /** With ENABLE_REMOTE_WRITE: the queue of a cluster remote_write publishes to, opened on first use. */
  readonly remoteWriteQueue?: ((cluster: string) => OpenedQueue) | undefined;
  /** The simulated fleet this process streams (nexus up without a CSV), for the overview. */
  readonly simulation?: Simulation | undefined;
}

/**
 * The gateway with the dashboard, as the configuration sets it up (not listening yet). Its close
 * is the command's to push: `nexus up` closes it after the pipeline has stopped.
 */
export async function buildGatewayFor(root: Root, parts: GatewayParts): Promise<Gateway> {
  const [{ buildGateway }, { dashboardPlugin }, { ClusterQueues }] = await Promise.all([
    import('../gateway/app.js'),
    import('./dashboard.js'),
    import('../gateway/remote-write/clusters.js'),
  ]);
  const { config } = root;
  const openCluster = parts.remoteWriteQueue;
  const remoteWrite =
    config.enableRemoteWrite && openCluster !== undefined
      ? {
          queues: new ClusterQueues({
            open: openCluster,
            maxClusters: config.remoteWriteMaxClusters,
            producer: `remote-write-${hostname()}-${process.pid}`,
            batchSize: config.batchSize,
            maxDepth: config.maxQueueDepth,
          }),
          defaultCluster: config.clusterId,
          maxBytes: config.remoteWriteMaxBytes,
          accept: config.remoteWriteAccept,
        }
      : undefined;
  const queue = parts.queue;
  const auth = await gatewayAuth(root.config, root.logger, parts.tokens);
  const open = openToAll(root.config);
  if (open !== undefined) root.logger.warn({ host: root.config.host, auth_mode: 'none' }, open);
  return buildGateway({
    auth,
    ...(parts.deadLetters === undefined ? {} : { deadLetters: parts.deadLetters }),
    metrics: parts.metrics,
    reader: parts.reader ?? parts.store.reader,
    ...(parts.registry === undefined ? {} : { registry: parts.registry }),
    ...(parts.feed === undefined ? {} : { feed: parts.feed }),
    checks: parts.checks,
    logger: root.logger,
    ...gatewaySettings(root.config),
    ...(queue === undefined ? {} : { queueStats: () => queue.stats() }),
    ...(parts.tls === undefined ? {} : { tls: parts.tls }),
    ...(remoteWrite === undefined ? {} : { remoteWrite }),
    ...(parts.simulation === undefined ? {} : { simulation: parts.simulation }),
    extensions: [dashboardPlugin(root.logger)],
  });
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
    fleetGaugesMaxGpus: config.fleetGaugesMaxGpus,
    fleet: {
      idleUtil: config.idleUtil,
      idleForMs: config.idleFor,
      energyPricePerKwh: config.energyPricePerKwh,
      gpuHourPrice: config.gpuHourPrice,
      currency: config.currency,
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
