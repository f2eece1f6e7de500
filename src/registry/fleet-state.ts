import type { TelemetryRecord } from '../core/record.js';
import type { ClusterInfo, GpuInfo, HostInfo, LiveGpu } from './types.js';

/** Metadata moves (last_seen) at most this often per entity. */
const TOUCH_MS = 60_000;

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** A host as stored; its GPU count is counted when read. */
export type StoredHost = Omit<HostInfo, 'gpu_count'>;

export interface Dirty {
  readonly clusters: ClusterInfo[];
  readonly hosts: StoredHost[];
  readonly gpus: GpuInfo[];
  readonly live: LiveGpu[];
  /** The metadata entries above that this process writes for the first time. */
  readonly first: ReadonlySet<ClusterInfo | StoredHost | GpuInfo>;
}

interface ClusterEntry extends Mutable<ClusterInfo> {
  written: number;
  readonly hosts: Map<string, HostEntry>;
}

interface HostEntry extends Mutable<StoredHost> {
  written: number;
  readonly gpus: Map<number, GpuEntry>;
}

interface GpuEntry extends Mutable<GpuInfo> {
  written: number;
  /** Its latest value of each metric, once it has one. */
  live: Mutable<LiveGpu> & { metrics: Record<string, { value: number; time: number }> };
}

/**
 * Widens an entry's span by a reading at `t`; it is dirty when its first_seen moved, or its
 * last_seen moved more than TOUCH_MS past what was last written.
 */
function widen<E extends { first_seen: number; last_seen: number; written: number }>(
  e: E,
  t: number,
  dirty: Set<E>,
): void {
  if (t < e.first_seen) {
    e.first_seen = t;
    dirty.add(e);
  }
  if (t > e.last_seen) e.last_seen = t;
  if (e.last_seen > e.written + TOUCH_MS) dirty.add(e);
}

/** The span of an entry first seen at `t`, never written. */
function seenAt(t: number): { first_seen: number; last_seen: number; written: number } {
  return { first_seen: t, last_seen: t, written: Number.NEGATIVE_INFINITY };
}

/** The same text, an absent field as empty (how a GPU's attributes compare). */
const text = (s: string | undefined): string => s ?? '';

/**
 * What a collector has learnt about the fleet since the last flush: new or changed metadata and
 * the latest value of each metric per GPU, coalesced (many readings of a GPU between two flushes
 * make one write). Shared by the etcd and in-memory registries. Kept as maps of maps (cluster,
 * hostname, GPU index), so that a reading costs lookups of the strings it carries and no key built
 * for it; a reading of the same GPU as the one before it costs none.
 */
export class FleetState {
  private readonly clusters = new Map<string, ClusterEntry>();
  private dirtyClusters = new Set<ClusterEntry>();
  private dirtyHosts = new Set<HostEntry>();
  private dirtyGpus = new Set<GpuEntry>();
  private dirtyLive = new Set<GpuEntry>();

  observe(clusterId: string, records: readonly TelemetryRecord[]): void {
    if (records.length === 0) return;
    const first = records[0] as TelemetryRecord;
    let c = this.clusters.get(clusterId);
    if (c === undefined) {
      c = { cluster_id: clusterId, ...seenAt(first.timestamp), hosts: new Map() };
      this.clusters.set(clusterId, c);
      this.dirtyClusters.add(c);
    }
    let h: HostEntry | undefined;
    let g: GpuEntry | undefined;
    for (const r of records) {
      const t = r.timestamp;
      widen(c, t, this.dirtyClusters);
      if (h === undefined || h.hostname !== r.hostname) {
        h = c.hosts.get(r.hostname);
        g = undefined;
        if (h === undefined) {
          h = { cluster_id: clusterId, hostname: r.hostname, ...seenAt(t), gpus: new Map() };
          c.hosts.set(r.hostname, h);
          this.dirtyHosts.add(h);
        }
      }
      widen(h, t, this.dirtyHosts);
      if (g === undefined || g.gpu !== r.gpu) {
        g = h.gpus.get(r.gpu);
        if (g === undefined) {
          g = {
            cluster_id: clusterId,
            hostname: r.hostname,
            gpu: r.gpu,
            uuid: r.uuid,
            model: r.model,
            device: r.device,
            ...seenAt(t),
            live: {
              cluster_id: clusterId,
              hostname: r.hostname,
              gpu: r.gpu,
              uuid: r.uuid,
              time: t,
              metrics: {},
            },
          };
          h.gpus.set(r.gpu, g);
          this.dirtyGpus.add(g);
        }
      }
      if (
        t >= g.last_seen &&
        (text(r.uuid) !== text(g.uuid) ||
          text(r.model) !== text(g.model) ||
          text(r.device) !== text(g.device))
      ) {
        g.uuid = r.uuid;
        g.model = r.model;
        g.device = r.device;
        this.dirtyGpus.add(g);
      }
      widen(g, t, this.dirtyGpus);
      const l = g.live;
      const prev = l.metrics[r.metric];
      if (prev === undefined || prev.time <= t) {
        l.metrics[r.metric] = { value: r.value, time: t };
        if (t > l.time) l.time = t;
        if (r.uuid !== undefined) l.uuid = r.uuid;
        this.dirtyLive.add(g);
      }
    }
  }

  /**
   * Takes what must be written: every dirty metadata entry, and up to `maxLive` GPUs' live values
   * (the others stay dirty for the next flush, so a huge fleet is written round-robin).
   */
  take(maxLive: number): Dirty {
    const now = {
      clusters: [] as ClusterInfo[],
      hosts: [] as StoredHost[],
      gpus: [] as GpuInfo[],
      live: [] as LiveGpu[],
      first: new Set<ClusterInfo | StoredHost | GpuInfo>(),
    };
    /** `item`, counted as a first write when the entry has never been written. */
    const taken = <T extends ClusterInfo | StoredHost | GpuInfo>(
      e: { written: number; last_seen: number },
      item: T,
    ): T => {
      if (e.written === Number.NEGATIVE_INFINITY) now.first.add(item);
      e.written = e.last_seen;
      return item;
    };
    for (const c of this.dirtyClusters) {
      now.clusters.push(
        taken(c, { cluster_id: c.cluster_id, first_seen: c.first_seen, last_seen: c.last_seen }),
      );
    }
    for (const h of this.dirtyHosts) {
      now.hosts.push(
        taken(h, {
          cluster_id: h.cluster_id,
          hostname: h.hostname,
          first_seen: h.first_seen,
          last_seen: h.last_seen,
        }),
      );
    }
    for (const g of this.dirtyGpus) {
      now.gpus.push(
        taken(g, {
          cluster_id: g.cluster_id,
          hostname: g.hostname,
          gpu: g.gpu,
          uuid: g.uuid,
          model: g.model,
          device: g.device,
          first_seen: g.first_seen,
          last_seen: g.last_seen,
        }),
      );
    }
    this.dirtyClusters = new Set();
    this.dirtyHosts = new Set();
    this.dirtyGpus = new Set();
    // The oldest dirty GPUs, taken out of the set (a Set iterates in insertion order, and deleting
    // the entry being visited is safe): a GPU dirtied again goes to the back, so a fleet larger
    // than `maxLive` is written round-robin, and a flush costs `maxLive`, not the fleet.
    for (const g of this.dirtyLive) {
      if (now.live.length >= maxLive) break;
      this.dirtyLive.delete(g);
      now.live.push({ ...g.live, metrics: { ...g.live.metrics } });
    }
    return now;
  }

  /** Puts entries back after a failed write. */
  restore(d: Dirty): void {
    const host = (cluster: string, hostname: string): HostEntry | undefined =>
      this.clusters.get(cluster)?.hosts.get(hostname);
    for (const c of d.clusters) {
      const e = this.clusters.get(c.cluster_id);
      if (e !== undefined) this.dirtyClusters.add(e);
    }
    for (const h of d.hosts) {
      const e = host(h.cluster_id, h.hostname);
      if (e !== undefined) this.dirtyHosts.add(e);
    }
    for (const g of d.gpus) {
      const e = host(g.cluster_id, g.hostname)?.gpus.get(g.gpu);
      if (e !== undefined) this.dirtyGpus.add(e);
    }
    for (const l of d.live) {
      const e = host(l.cluster_id, l.hostname)?.gpus.get(l.gpu);
      if (e !== undefined) this.dirtyLive.add(e);
    }
  }
}
