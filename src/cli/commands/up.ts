import { Command } from 'commander';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { Collector } from '../../collector/collector.js';
import type { Config } from '../../core/config.js';
import { describeError } from '../../core/errors.js';
import { once } from '../../core/lifecycle.js';
import { createLogger, type Logger } from '../../core/logger.js';
import { buildGateway } from '../../gateway/app.js';
import type { HealthCheck } from '../../gateway/routes/health.js';
import { MemoryQueue } from '../../queue/memory/memory-queue.js';
import type { Queue } from '../../queue/types.js';
import { PGliteDatabase } from '../../store/pglite/database.js';
import { pristineTemplate } from '../../store/pglite/template.js';
import { SqlStore } from '../../store/sql-store.js';
import type { TelemetryStore } from '../../store/types.js';
import { noProgress } from '../../streamer/progress.js';
import { Streamer } from '../../streamer/streamer.js';
import { createFeed, createQueue, createRegistry, createStore } from '../backends.js';
import { dashboardPlugin } from '../dashboard.js';
import { dataDir } from '../paths.js';
import { addSettings, configFrom } from '../settings.js';
import { onShutdown } from '../signals.js';
import { NexusMetrics } from '../../core/metrics.js';
import { exportStoreMetrics, exportQueueGauges } from '../observability.js';
import { setupTracing } from '../tracing.js';
import { VERSION } from '../version.js';
import { gatewaySettings } from './gateway.js';
import { streamerOptionsFrom, summaryLine } from './streamer.js';

/**
 * The store `nexus up` uses: PostgreSQL when DB_HOST or DATABASE_URL is set, PGlite otherwise.
 * PGlite starts in a worker thread and is not waited for here: `ready` settles when it has started
 * (seconds: a fresh directory is unpacked from the build's template, or made by initdb when there
 * is none), while the streamer already fills the queue.
 */
async function embeddedStore(
  config: Config,
  env: NodeJS.ProcessEnv,
  logger: Logger,
): Promise<{ store: TelemetryStore; ready: Promise<void> }> {
  if ((env.DATABASE_URL ?? '') !== '' || (env.DB_HOST ?? '') !== '')
    return { store: createStore(config, logger, 'nexus-up'), ready: Promise.resolve() };
  const dir = join(dataDir(config.dataDir), 'pglite');
  const t0 = Date.now();
  // A fresh directory starts from the build's pristine data directory instead of running initdb.
  const template = await pristineTemplate(dir);
  // In a worker thread, PGlite's statements do not block the streamer, collector and gateway.
  const db = new PGliteDatabase(dir, template, { worker: true });
  const ready = db.ready().then(() => {
    logger.info(
      { dir, ms: Date.now() - t0, from_template: template !== undefined },
      'embedded PostgreSQL (PGlite) ready',
    );
  });
  const store = new SqlStore({
    db,
    logger,
    writeMethod: 'unnest',
    retentionDays: config.retentionDays,
    rollupRetentionDays: config.rollupRetentionDays,
    partitionAheadDays: config.partitionAheadDays,
  });
  return { store, ready };
}

/** What the in-process queue holds (read, published, not stored yet), lost if the process ends now. */
function unstored(queue: Queue): string | undefined {
  if (!(queue instanceof MemoryQueue)) return undefined;
  const held = queue.held();
  if (held.records === 0) return undefined;
  return `${held.records} records read and not yet stored are lost (${held.messages} messages of the in-process queue)`;
}

/** The queue `nexus up` uses: etcd when ETCD_ENDPOINTS is set, in process otherwise. */
function embeddedQueue(config: Config, env: NodeJS.ProcessEnv, logger: Logger): Queue {
  if ((env.ETCD_ENDPOINTS ?? '') !== '')
    return createQueue(config, logger, `nexus-up-${process.pid}`);
  return new MemoryQueue({
    clusterId: config.clusterId,
    maxAttempts: config.maxAttempts,
    retry: { baseMs: config.retryBase, capMs: config.retryCap, jitter: 0.5 },
    messageTtlMs: config.messageTtl,
    leaseTtlMs: config.leaseTtl,
    pollTimeoutMs: config.pollTimeout,
    logger,
  });
}

export function upCommand(): Command {
  const cmd = new Command('up')
    .description(
      'Run the whole pipeline in one process: streamer, collector and gateway with the dashboard (embedded queue and PGlite unless ETCD_ENDPOINTS / DB_HOST / DATABASE_URL say otherwise)',
    )
    .option(
      '--csv <file>',
      'CSV to stream (default: the bundled real sample, looped with live timestamps)',
    );
  addSettings(cmd, ['common', 'queue', 'streamer', 'database', 'collector', 'gateway']);
  cmd.action(async (opts: { csv?: string }) => {
    const env = process.env;
    // Defaults of the embedded mode, unless set: a lively loop and a local-only address.
    const config = configFrom(cmd, {
      ...(opts.csv === undefined ? {} : { csvFile: opts.csv }),
      ...(env.STREAM_INTERVAL === undefined && cmd.getOptionValue('streamInterval') === undefined
        ? { streamInterval: '1s' }
        : {}),
      ...(env.BATCH_SIZE === undefined && cmd.getOptionValue('batchSize') === undefined
        ? { batchSize: '250' }
        : {}),
      ...(env.HOST === undefined && cmd.getOptionValue('host') === undefined
        ? { host: '127.0.0.1' }
        : {}),
      ...(env.WORKERS === undefined && cmd.getOptionValue('workers') === undefined
        ? { workers: '2' }
        : {}),
      // The in-process queue holds records in this process's memory (~0.8 KB each): a short
      // queue, as the store is the bottleneck anyway (measured: 10,000 messages held a whole
      // 500,000-record file, 230 MB more at peak than 200, at the same speed).
      ...((env.ETCD_ENDPOINTS ?? '') === '' &&
      env.MAX_QUEUE_DEPTH === undefined &&
      cmd.getOptionValue('maxQueueDepth') === undefined
        ? { maxQueueDepth: '200' }
        : {}),
      // PGlite runs one statement at a time, and each transaction has a fixed cost (the
      // dimensions, the statement, the commit): fewer, larger transactions. The collector takes
      // what is ready, so a trickle still commits at once.
      ...((env.DATABASE_URL ?? '') === '' &&
      (env.DB_HOST ?? '') === '' &&
      env.COLLECT_BATCH === undefined &&
      cmd.getOptionValue('collectBatch') === undefined
        ? { collectBatch: '100' }
        : {}),
    });
    const logger = createLogger({ level: config.logLevel, base: { cluster_id: config.clusterId } });
    const t0 = Date.now();
    const queue = embeddedQueue(config, env, logger);
    const metrics = new NexusMetrics({ component: 'embedded', version: VERSION });
    // Streaming starts at once: the queue holds what is read while the store starts.
    const streamer = new Streamer({
      ...streamerOptionsFrom(config, queue, logger, { restart: false }),
      metrics,
      // Progress stays quiet: the dashboard shows the ingest rate.
      progress: noProgress,
    });
    const streaming = streamer.run().then(
      (s) => logger.info({ summary: s }, summaryLine(s)),
      (err: unknown) => logger.error({ err: describeError(err) }, 'streamer failed'),
    );
    // From here on a signal stops the pipeline in order. During start-up it stops the reading at
    // once, and start-up then ends in the full stop, which stores what was read first.
    const shutdown: { requested: boolean; stopAll: (() => Promise<void>) | undefined } = {
      requested: false,
      stopAll: undefined,
    };
    // Read through a function: the flag changes while start-up awaits.
    const stopRequested = (): boolean => shutdown.requested;
    onShutdown(
      logger,
      async () => {
        shutdown.requested = true;
        await (shutdown.stopAll ?? (() => streamer.stop()))();
      },
      { atRisk: () => unstored(queue) },
    );
    const { store, ready: storeReady } = await embeddedStore(config, env, logger);
    try {
      await storeReady;
    } catch (err) {
      await streamer.stop();
      await streaming;
      const lost = unstored(queue);
      if (lost !== undefined) logger.error(`the store did not start: ${lost}`);
      await queue.close();
      await store.close().catch(() => undefined);
      throw err;
    }
    const registry = createRegistry(config, queue, logger);
    const feed = createFeed(config, queue, logger, `up-${process.pid}`);
    const stopTracing = setupTracing('embedded', logger);
    exportQueueGauges(metrics, queue);
    exportStoreMetrics(metrics, store);
    const collector = new Collector({
      metrics,
      queue,
      store,
      registry,
      feed,
      clusterId: config.clusterId,
      workers: config.workers,
      batchMessages: config.collectBatch,
      pollTimeoutMs: config.pollTimeout,
      outageBackoff: { baseMs: 200, capMs: 10_000, jitter: 0.5 },
      maintenanceIntervalMs: 600_000,
      rollupIntervalMs: config.rollupInterval,
      logger,
      // The in-process queue dies with the process: what it holds is stored before it stops.
      drainOnStop: queue instanceof MemoryQueue,
    });
    await collector.start();
    const checks: HealthCheck[] = [
      { name: 'store', check: () => store.ping() },
      {
        name: 'collector',
        check: async () => {
          if (!collector.health.ready) throw new Error(collector.health.reasons.join('; '));
        },
      },
    ];
    const gateway = await buildGateway({
      metrics,
      reader: store.reader,
      registry,
      feed,
      checks,
      logger,
      ...gatewaySettings(config),
      queueStats: () => queue.stats(),
      extensions: [dashboardPlugin(logger)],
    });
    await feed.announceListener(`up-${process.pid}`).catch(() => undefined);
    await registry.register({
      id: `up-${hostname()}-${process.pid}`,
      role: 'embedded',
      hostname: hostname(),
      pid: process.pid,
      cluster_id: config.clusterId,
      started_at: Date.now(),
      version: VERSION,
    });
    const state = { stopping: false };
    // The streamer first (it publishes what it read), then the collector, which stores
    // everything published (with the in-process queue, everything the queue holds).
    const stopAll = once(async (): Promise<void> => {
      state.stopping = true;
      gateway.drain();
      await streamer.stop();
      await streaming;
      await collector.stop();
      await gateway.app.close();
      await feed.close();
      await registry.close();
      await queue.close();
      await store.close();
      await stopTracing();
    });
    shutdown.stopAll = stopAll;
    if (stopRequested()) {
      await stopAll();
      return;
    }
    let address: string;
    try {
      address = await gateway.app.listen({ port: config.port, host: config.host });
    } catch (err) {
      if (stopRequested()) {
        await stopAll();
        return;
      }
      // Without its gateway the pipeline is of no use: stop it all (what was acked is stored).
      await stopAll().catch(() => undefined);
      const inUse = (err as { code?: unknown }).code === 'EADDRINUSE';
      throw inUse
        ? new Error(
            `port ${config.port} on ${config.host} is in use (another nexus up?): stop it, or choose another with PORT or --port`,
          )
        : err;
    }
    const shown = address.replace('://127.0.0.1', '://localhost');
    // "Up" once the first readings are stored and servable.
    for (;;) {
      if (state.stopping) return;
      const clusters = await store.reader.clusters().catch(() => []);
      if (clusters.some((c) => c.last_seen !== undefined)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const ready = `Nexus is up in ${((Date.now() - t0) / 1000).toFixed(1)} s: dashboard ${shown}/  (REST ${shown}/api/v1, GraphQL ${shown}/graphql, Swagger ${shown}/swagger/index.html)`;
    logger.info({ url: `${shown}/`, startup_ms: Date.now() - t0 }, ready);
    if (process.stderr.isTTY) process.stderr.write(`\n  ${ready}\n  Ctrl-C to stop.\n\n`);
  });
  return cmd;
}
