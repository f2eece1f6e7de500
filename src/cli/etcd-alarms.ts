import type { NexusMetrics } from '../core/metrics.js';
import { AlarmWatch, readEtcdSpace, type EtcdClient } from '../etcd/space.js';
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
