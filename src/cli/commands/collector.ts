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
} from '../compose.js';
import { exitStatusOf } from '../exit.js';
import { exportStoreMetrics, exportQueueGauges, readiness } from '../observability.js';
import { queueWatch } from '../etcd-alarms.js';
import { addSettings, configFrom } from '../settings.js';

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
