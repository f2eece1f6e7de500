import { Command } from 'commander';
import { hostname } from 'node:os';
import {
  buildFeed,
  buildQueue,
  buildRegistry,
  buildStore,
  configuredBackends,
} from '../backends.js';
import {
  buildCollector,
  closeOnSignal,
  member,
  openRoot,
  processMetrics,
  registerMember,
  startOps,
  startTracing,
  type Root,
} from '../compose.js';
import { exitStatusOf } from '../exit.js';
import { boundHeapGrowth } from '../heap.js';
import { exportStoreMetrics, exportQueueGauges, readiness } from '../observability.js';
import { queueWatch } from '../etcd-alarms.js';
import { addSettings, configFrom } from '../settings.js';

/** GPUs whose ids a collector holds from which it bounds its heap's growth. */
const LARGE_FLEET_GPUS = 20_000;

/**
 * Bounds V8's heap growth to the live data (`--heap-growing-percent=100`) once the collector holds
 * the ids of LARGE_FLEET_GPUS GPUs or more (about 500 bytes each, with their attributes). Left
 * free, V8 lets garbage grow to 3-4 times the live data while the collector allocates at full
 * speed, and in a container V8's limit is the container's: at 100,000 GPUs the peak was 820-910 MB
 * against the Helm chart's 1 GiB limit, and 600-640 MB bounded (docs/operations.md "Memory of each
 * component"). Below that the live data is small and the bound would only add collections.
 */
function boundHeapOnLargeFleet({ logger, stack }: Root, gpus: () => number): void {
  const timer = setInterval(() => {
    const held = gpus();
    if (held < LARGE_FLEET_GPUS) return;
    clearInterval(timer);
    if (boundHeapGrowth(100))
      logger.info({ gpus: held }, 'large fleet: bounding heap growth to the live data');
    else logger.info({ gpus: held }, "large fleet: heap growth as node's command line sets it");
  }, 5000);
  timer.unref();
  stack.push('the heap bound check', () => clearInterval(timer));
}

export function collectorCommand(): Command {
  const cmd = new Command('collector').description(
    'Consume the queue and store telemetry in PostgreSQL (ack after commit; nothing lost, nothing twice)',
  );
  addSettings(cmd, ['common', 'queue', 'database', 'collector']);
  cmd.action(async () => {
    const root = openRoot(configFrom(cmd));
    const { config, stack } = root;
    const instance = `collector-${hostname()}-${process.pid}`;
    const backends = configuredBackends(root);
    const queue = buildQueue(root, backends, { instance });
    const { store } = await buildStore(root, { kind: 'postgres' }, instance);
    const registry = config.enableNexus ? buildRegistry(root, backends) : undefined;
    const feed = config.enableNexus ? buildFeed(root, backends, instance) : undefined;
    const metrics = processMetrics(root, 'collector');
    startTracing(root, 'collector');
    const collector = buildCollector(root, { metrics, queue, store, registry, feed });
    exportQueueGauges(metrics, queue);
    exportStoreMetrics(metrics, store);
    const { probes } = queueWatch(root, queue, metrics);
    const health = readiness(
      [{ name: 'PostgreSQL', check: () => store.ping() }, ...probes],
      () => collector.health,
      metrics,
      'collector',
    );
    await startOps(root, { health, metrics: () => metrics.exposition() });
    boundHeapOnLargeFleet(root, () => store.dimensionsCached.gpus);
    stack.push(
      'writing the batches in flight (what was not acked returns to the queue after LEASE_TTL)',
      () => collector.stop(),
    );
    closeOnSignal(root);
    await collector.start();
    if (registry !== undefined)
      void registerMember(root, registry, member(root, 'collector', instance));
    await collector.done;
    await stack.close();
    // Stopped on its own by a configuration error (etcd refused its user): exit 2, saying why.
    const failure = collector.failure;
    if (failure !== undefined) {
      process.stderr.write(`nexus collector: ${failure.message}\n`);
      process.exitCode = exitStatusOf(failure);
    }
  });
  return cmd;
}
