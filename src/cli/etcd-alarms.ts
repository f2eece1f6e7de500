import type { NexusMetrics } from '../core/metrics.js';
import { AlarmWatch, readEtcdSpace, type EtcdClient } from '../etcd/space.js';
import { EtcdQueue } from '../queue/etcd/etcd-queue.js';
import type { Queue } from '../queue/types.js';
import type { QueueSpace } from '../streamer/pacing.js';
import type { Probe } from './observability.js';
import type { Root } from './backends.js';

/**
 * etcd's alarms as a component watches them: a readiness probe (not ready while one is raised,
 * naming it and the runbook), nexus_etcd_alarms, one log line per change, and for the streamer
 * etcd's space against ETCD_QUOTA_BYTES (its backpressure).
 */
export function etcdAlarms(
  root: Root,
  client: EtcdClient,
  metrics: NexusMetrics,
): { probe: Probe; space: QueueSpace } {
  const watch = new AlarmWatch({
    client,
    logger: root.logger,
    setGauge: (alarm, raised) => metrics.etcdAlarms.set({ alarm }, raised),
  });
  return {
    probe: { name: 'etcd alarms', check: () => watch.check() },
    space: {
      quotaBytes: root.config.etcdQuotaBytes,
      read: async () => {
        const s = await readEtcdSpace(client);
        watch.note(s.alarms);
        return { inUse: s.dbSizeInUse, dbSize: s.dbSize, alarms: s.alarms };
      },
    },
  };
}

/**
 * What a component working on the queue watches: its readiness probes (the queue answers; on etcd,
 * no alarm raised) and, on etcd, the alarms with etcd's space (undefined for the in-process queue).
 */
export function queueWatch(
  root: Root,
  queue: Queue,
  metrics: NexusMetrics,
): { probes: Probe[]; alarms: { probe: Probe; space: QueueSpace } | undefined } {
  const alarms = queue instanceof EtcdQueue ? etcdAlarms(root, queue.etcd, metrics) : undefined;
  const reachable: Probe = {
    name: 'etcd',
    check: async () => {
      await queue.depth();
    },
  };
  return { probes: alarms === undefined ? [reachable] : [reachable, alarms.probe], alarms };
}
