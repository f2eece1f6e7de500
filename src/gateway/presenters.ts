import type { FeedRecord } from '../registry/feed.js';
import type {
  ClusterSummary,
  GpuSummary,
  HostSummary,
  LatestValue,
  Series,
} from '../store/reader.js';
import { iso } from './params.js';

/**
 * How the API shows what the store and the feed hold, in one place for REST, GraphQL and the live
 * WebSocket: each function gives the fields of its schema in src/gateway/schemas/.
 */

const ACTIVE_MS = 5 * 60_000;

export function clusterOut(c: ClusterSummary, now = Date.now()) {
  return {
    cluster_id: c.cluster_id,
    cluster_name: c.cluster_id,
    status:
      c.last_seen === undefined
        ? ('empty' as const)
        : now - c.last_seen < ACTIVE_MS
          ? ('active' as const)
          : ('idle' as const),
    hosts: c.hosts,
    gpus: c.gpus,
    retired_gpus: c.retired_gpus,
    first_seen: iso(c.first_seen) ?? '',
    last_seen: iso(c.last_seen),
  };
}

export function hostOut(h: HostSummary) {
  return {
    cluster_id: h.cluster_id,
    host_id: h.hostname,
    hostname: h.hostname,
    gpus: h.gpus,
    retired: h.retired,
    first_seen: iso(h.first_seen) ?? '',
    last_seen: iso(h.last_seen),
  };
}

export function gpuOut(g: GpuSummary) {
  return {
    cluster_id: g.cluster_id,
    host_id: g.hostname,
    gpu_id: g.gpu_id,
    uuid: g.uuid ?? null,
    model: g.model ?? null,
    device: g.device ?? null,
    first_seen: iso(g.first_seen) ?? '',
    last_seen: iso(g.last_seen),
    retired: g.retired,
    ...(g.mig_instances === undefined
      ? {}
      : {
          mig_instances: g.mig_instances.map((i) => ({
            gpu_instance_id: i.gpu_instance_id,
            profile: i.profile ?? null,
          })),
        }),
  };
}

/** What names a reading or a series in the API: its cluster, host, GPU and metric. */
export function seriesOfOut(s: Omit<LatestValue, 'timestamp' | 'value'>) {
  return {
    cluster_id: s.cluster_id,
    host_id: s.hostname,
    gpu_id: s.gpu_id,
    ...(s.gpu_instance_id === undefined
      ? {}
      : { gpu_instance_id: s.gpu_instance_id, mig_profile: s.mig_profile ?? null }),
    uuid: s.uuid ?? null,
    metric: s.metric,
    unit: s.unit,
  };
}

/** A stored reading (schemas/telemetry.ts, Reading). */
export function readingOut(r: LatestValue) {
  return {
    ...seriesOfOut(r),
    timestamp: iso(r.timestamp) ?? '',
    value: r.value,
  };
}

export function seriesOut(s: Series) {
  return {
    ...seriesOfOut(s),
    points: s.points.map(([t, value, count]) => ({ timestamp: isoOf(t), value, count })),
  };
}

/**
 * ISO 8601 texts of instants, remembered: answers repeat the same instants over and over (the
 * steps of every series of a fleet query, the scrapes of every series of a page), and a lookup
 * costs a fraction of formatting. Bounded: emptied past 100,000 instants.
 */
const isoTexts = new Map<number, string>();
export function isoOf(ms: number): string {
  let text = isoTexts.get(ms);
  if (text === undefined) {
    if (isoTexts.size >= 100_000) isoTexts.clear();
    text = new Date(ms).toISOString();
    isoTexts.set(ms, text);
  }
  return text;
}

/** A reading of the commit feed, as the live WebSocket sends it (schemas/live.ts, LiveReading). */
export function apiReading(clusterId: string, r: FeedRecord) {
  return {
    cluster_id: clusterId,
    host_id: r.hostname,
    gpu_id: r.gpu,
    ...(r.gpu_instance_id === undefined ? {} : { gpu_instance_id: r.gpu_instance_id }),
    uuid: r.uuid ?? null,
    metric: r.metric,
    timestamp: new Date(r.timestamp).toISOString(),
    value: r.value,
  };
}
