import { Command } from 'commander';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { Collector } from '../../collector/collector.js';
import { SETTINGS, type Config, type SettingKey } from '../../core/config.js';
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
import { listenFailure, listening, reach } from '../listen.js';
import { lockDirectory } from '../lock.js';
import { dataDir, resolveInput } from '../paths.js';
import { readHeader } from '../../streamer/csv/reader.js';
import { addSettings, configFrom, isGiven } from '../settings.js';
import { onShutdown, type ShutdownProgress } from '../signals.js';
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
  postgres: boolean,
  logger: Logger,
): Promise<{ store: TelemetryStore; ready: Promise<void> }> {
  if (postgres) return { store: createStore(config, logger, 'nexus-up'), ready: Promise.resolve() };
  const dir = pgliteDir(config);
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

function pgliteDir(config: Config): string {
  return join(dataDir(config.dataDir), 'pglite');
}

/** The queue `nexus up` uses: etcd when ETCD_ENDPOINTS is set, in process otherwise. */
function embeddedQueue(config: Config, etcd: boolean, logger: Logger): Queue {
  if (etcd) return createQueue(config, logger, `nexus-up-${process.pid}`);
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

/** The defaults of `nexus up` that differ from the components' (its --help shows these). */
const UP_DEFAULTS = {
  // A lively loop.
  streamInterval: '1s',
  batchSize: '250',
  workers: '2',
  // Loopback only: the dashboard and the APIs are for this machine unless HOST says otherwise.
  host: '127.0.0.1',
} as const satisfies Partial<Record<SettingKey, string>>;
/**
 * The in-process queue holds records in this process's memory (~0.8 KB each): a short queue, as
 * the store is the bottleneck anyway (measured: 10,000 messages held a whole 500,000-record file,
 * 230 MB more at peak than 200, at the same speed).
 */
const IN_PROCESS_QUEUE_DEPTH = '200';
/**
 * PGlite runs one statement at a time, and each transaction has a fixed cost (the dimensions, the
 * statement, the commit): fewer, larger transactions. The collector takes what is ready, so a
 * trickle still commits at once.
 */
const PGLITE_COLLECT_BATCH = '100';

/** "Nexus is up" and where it listens, as `nexus up` says them when the first data is servable. */
export function upLines(
  config: Config,
  address: string,
  startupMs: number,
): { url: string; up: string; where: string } {
  const { port } = new URL(address);
  const to = reach(config.host);
  // The address a person opens: localhost, unless it listens on one other address only.
  const url = to === 'one' ? address : `http://localhost:${port}`;
  const apis = [
    `REST ${url}/api/v1`,
    ...(config.enableGraphql ? [`GraphQL ${url}/graphql`] : []),
    `Swagger ${url}/swagger/index.html`,
  ];
  return {
    url,
    up: `Nexus is up in ${(startupMs / 1000).toFixed(1)} s: dashboard ${url}/  (${apis.join(', ')})`,
    where: `Listening on ${listening(config.host, address)}${to === 'loopback' ? ': HOST=0.0.0.0 lets other machines in' : ''}.`,
  };
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
  addSettings(cmd, ['common', 'queue', 'streamer', 'database', 'collector', 'gateway'], {
    ...UP_DEFAULTS,
    etcdEndpoints: 'none: the in-process queue',
    dbHost: 'none: PGlite in <data-dir>/pglite',
    maxQueueDepth: `${IN_PROCESS_QUEUE_DEPTH} with the in-process queue, ${SETTINGS.maxQueueDepth.default} with etcd`,
    collectBatch: `${PGLITE_COLLECT_BATCH} with PGlite, ${SETTINGS.collectBatch.default} with PostgreSQL`,
  });
  cmd.action(async (opts: { csv?: string }) => {
    // The real backends when they are named, as a variable or a flag; embedded ones otherwise.
    const etcd = isGiven(cmd, 'etcdEndpoints');
    const postgres = isGiven(cmd, 'databaseUrl') || isGiven(cmd, 'dbHost');
    const defaults: Partial<Record<SettingKey, string>> = {
      ...UP_DEFAULTS,
      ...(etcd ? {} : { maxQueueDepth: IN_PROCESS_QUEUE_DEPTH }),
      ...(postgres ? {} : { collectBatch: PGLITE_COLLECT_BATCH }),
    };
    const config = configFrom(cmd, {
      ...(opts.csv === undefined ? {} : { csvFile: opts.csv }),
      ...Object.fromEntries(
        Object.entries(defaults).filter(([key]) => !isGiven(cmd, key as SettingKey)),
      ),
    });
    // A CSV that cannot be read, or a data directory another nexus up holds (a second `make run`
    // must not write into it), stops `nexus up` here, before anything starts.
    await readHeader(resolveInput(config.csvFile));
    if (!postgres) lockDirectory(pgliteDir(config), 'nexus up');
    const logger = createLogger({ level: config.logLevel, base: { cluster_id: config.clusterId } });
    const t0 = Date.now();
    const queue = embeddedQueue(config, etcd, logger);
    const metrics = new NexusMetrics({ component: 'embedded', version: VERSION });
    // Streaming starts at once: the queue holds what is read while the store starts.
    const streamer = new Streamer({
      ...streamerOptionsFrom(config, queue, logger, { restart: false }),
      metrics,
      // Progress stays quiet: the dashboard shows the ingest rate.
      progress: noProgress,
    });
    const failed: { streamer?: unknown } = {};
    const streaming = streamer.run().then(
      (s) => logger.info({ summary: s }, summaryLine(s)),
      (err: unknown) => {
        failed.streamer = err;
        logger.error({ err: describeError(err) }, 'streamer failed');
      },
    );
    // From here on a signal stops the pipeline in order. During start-up it stops the reading at
    // once, and start-up then ends in the full stop, which stores what was read first.
    const shutdown: {
      requested: boolean;
      stopAll: (() => Promise<void>) | undefined;
      progress: ShutdownProgress | undefined;
    } = { requested: false, stopAll: undefined, progress: undefined };
    const step = (what: string): void => shutdown.progress?.step(what);
    // Read through a function: the flag changes while start-up awaits.
    const stopRequested = (): boolean => shutdown.requested;
    onShutdown(
      logger,
      async (_signal, progress) => {
        shutdown.requested = true;
        shutdown.progress = progress;
        step('stopping the streamer (publishing what it read)');
        await (shutdown.stopAll ?? (() => streamer.stop()))();
      },
      { atRisk: () => unstored(queue) },
    );
    const { store, ready: storeReady } = await embeddedStore(config, postgres, logger);
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
      step('stopping the streamer (publishing what it read)');
      await streamer.stop();
      await streaming;
      step('storing what the queue holds');
      await collector.stop();
      step('closing the gateway and the live feed');
      await gateway.app.close();
      await feed.close();
      await registry.close();
      await queue.close();
      step('closing the store');
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
      throw listenFailure(err, config.port, config.host);
    }
    // "Up" once the first readings are stored and servable.
    for (;;) {
      if (state.stopping) return;
      // A CSV the streamer cannot stream (not a DCGM export): nothing would ever be up.
      if (failed.streamer !== undefined) {
        await stopAll().catch(() => undefined);
        throw failed.streamer instanceof Error
          ? failed.streamer
          : new Error(describeError(failed.streamer));
      }
      const clusters = await store.reader.clusters().catch(() => []);
      if (clusters.some((c) => c.last_seen !== undefined)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const startupMs = Date.now() - t0;
    const { url, up, where } = upLines(config, address, startupMs);
    // The JSON line for log collectors on stdout; the same for a person on stderr, terminal or not.
    logger.info({ url: `${url}/`, startup_ms: startupMs }, up);
    process.stderr.write(
      process.stderr.isTTY ? `\n  ${up}\n  ${where}\n  Ctrl-C to stop.\n\n` : `${up}\n${where}\n`,
    );
  });
  return cmd;
}
