import { Command } from 'commander';
import { hostname } from 'node:os';
import { describeError } from '../../core/errors.js';
import { createLogger } from '../../core/logger.js';
import { Collector } from '../../collector/collector.js';
import { createFeed, createQueue, createRegistry, createStore } from '../backends.js';
import { startOpsServer } from '../ops-server.js';
import { NexusMetrics } from '../../core/metrics.js';
import { exportStoreMetrics, exportQueueGauges, readiness } from '../observability.js';
import { setupTracing } from '../tracing.js';
import { addSettings, configFrom } from '../settings.js';
import { onShutdown } from '../signals.js';
import { VERSION } from '../version.js';

export function collectorCommand(): Command {
  const cmd = new Command('collector').description(
    'Consume the queue and store telemetry in PostgreSQL (ack after commit; nothing lost, nothing twice)',
  );
  addSettings(cmd, ['common', 'queue', 'database', 'collector']);
  cmd.action(async () => {
    const config = configFrom(cmd);
    const logger = createLogger({ level: config.logLevel, base: { cluster_id: config.clusterId } });
    const instance = `collector-${hostname()}-${process.pid}`;
    const queue = createQueue(config, logger, instance);
    const store = createStore(config, logger, instance);
    const registry = config.enableNexus ? createRegistry(config, queue, logger) : undefined;
    const feed = config.enableNexus ? createFeed(config, queue, logger, instance) : undefined;
    const metrics = new NexusMetrics({
      component: 'collector',
      cluster: config.clusterId,
      version: VERSION,
    });
    const stopTracing = setupTracing('collector', logger);
    const collector = new Collector({
      metrics,
      queue,
      store,
      ...(registry === undefined ? {} : { registry }),
      ...(feed === undefined ? {} : { feed }),
      clusterId: config.clusterId,
      workers: config.workers,
      batchMessages: config.collectBatch,
      pollTimeoutMs: config.pollTimeout,
      outageBackoff: { baseMs: 200, capMs: 10_000, jitter: 0.5 },
      maintenanceIntervalMs: 600_000,
      rollupIntervalMs: config.rollupInterval,
      logger,
    });
    exportQueueGauges(metrics, queue);
    exportStoreMetrics(metrics, store);
    const health = readiness(
      [
        { name: 'PostgreSQL', check: () => store.ping() },
        {
          name: 'etcd',
          check: async () => {
            await queue.depth();
          },
        },
      ],
      () => collector.health,
      metrics,
      'collector',
    );
    const ops =
      config.metricsPort > 0
        ? await startOpsServer(
            config.metricsPort,
            { health, metrics: () => metrics.exposition() },
            logger,
          )
        : undefined;
    onShutdown(logger, async (_signal, progress) => {
      progress.step(
        'writing the batches in flight (what was not acked returns to the queue after LEASE_TTL)',
      );
      await collector.stop();
    });
    await collector.start();
    if (registry !== undefined) {
      void registry
        .register({
          id: instance,
          role: 'collector',
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
    await collector.done;
    await feed?.close();
    await registry?.close();
    await store.close();
    await queue.close();
    await stopTracing();
    ops?.close();
  });
  return cmd;
}
