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
}

/**
 * What a collector has learnt about the fleet since the last flush: new or changed metadata and
 * the latest value of each metric per GPU, coalesced (many readings of a GPU between two flushes
 * make one write). Shared by the etcd and in-memory registries.
 */
export class FleetState {
  private readonly clusters = new Map<string, Mutable<ClusterInfo> & { written: number }>();
  private readonly hosts = new Map<string, Mutable<StoredHost> & { written: number }>();
  private readonly gpus = new Map<string, Mutable<GpuInfo> & { written: number; attrs: string }>();
  private readonly live = new Map<
    string,
    Mutable<LiveGpu> & { metrics: Record<string, { value: number; time: number }> }
  >();
  private dirtyClusters = new Set<string>();
  private dirtyHosts = new Set<string>();
  private dirtyGpus = new Set<string>();
  private dirtyLive = new Set<string>();

  observe(clusterId: string, records: readonly TelemetryRecord[]): void {
    for (const r of records) {
      const t = r.timestamp;
      let c = this.clusters.get(clusterId);
      if (c === undefined) {
        c = {
          cluster_id: clusterId,
          first_seen: t,
          last_seen: t,
          written: Number.NEGATIVE_INFINITY,
        };
        this.clusters.set(clusterId, c);
        this.dirtyClusters.add(clusterId);
      } else {
        if (t < c.first_seen) {
          c.first_seen = t;
          this.dirtyClusters.add(clusterId);
        }
        if (t > c.last_seen) c.last_seen = t;
        if (c.last_seen > c.written + TOUCH_MS) this.dirtyClusters.add(clusterId);
      }
      const hk = `${clusterId}\u0000${r.hostname}`;
      let h = this.hosts.get(hk);
      if (h === undefined) {
        h = {
          cluster_id: clusterId,
          hostname: r.hostname,
          first_seen: t,
          last_seen: t,
          written: Number.NEGATIVE_INFINITY,
        };
        this.hosts.set(hk, h);
        this.dirtyHosts.add(hk);
      }
      if (t < h.first_seen) {
        h.first_seen = t;
        this.dirtyHosts.add(hk);
      }
      if (t > h.last_seen) h.last_seen = t;
      if (h.last_seen > h.written + TOUCH_MS) this.dirtyHosts.add(hk);
      const gk = `${hk}\u0000${r.gpu}`;
      const attrs = `${r.uuid ?? ''}\u0000${r.model ?? ''}\u0000${r.device ?? ''}`;
      let g = this.gpus.get(gk);
      if (g === undefined) {
        g = {
          cluster_id: clusterId,
          hostname: r.hostname,
          gpu: r.gpu,
          uuid: r.uuid,
          model: r.model,
          device: r.device,
          first_seen: t,
          last_seen: t,
          written: Number.NEGATIVE_INFINITY,
          attrs,
        };
        this.gpus.set(gk, g);
        this.dirtyGpus.add(gk);
      } else {
        if (t >= g.last_seen && attrs !== g.attrs) {
          g.uuid = r.uuid;
          g.model = r.model;
          g.device = r.device;
          g.attrs = attrs;
          this.dirtyGpus.add(gk);
        }
        if (t < g.first_seen) {
          g.first_seen = t;
          this.dirtyGpus.add(gk);
        }
        if (t > g.last_seen) g.last_seen = t;
        if (g.last_seen > g.written + TOUCH_MS) this.dirtyGpus.add(gk);
      }
      let l = this.live.get(gk);
      if (l === undefined) {
        l = {
          cluster_id: clusterId,
          hostname: r.hostname,
          gpu: r.gpu,
          uuid: r.uuid,
          time: t,
          metrics: {},
        };
        this.live.set(gk, l);
      }
      const prev = l.metrics[r.metric];
      if (prev === undefined || prev.time <= t) {
        l.metrics[r.metric] = { value: r.value, time: t };
        if (t > l.time) l.time = t;
        if (r.uuid !== undefined) l.uuid = r.uuid;
        this.dirtyLive.add(gk);
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
    };
    for (const k of this.dirtyClusters) {
      const c = this.clusters.get(k);
      if (c === undefined) continue;
      c.written = c.last_seen;
      now.clusters.push({
        cluster_id: c.cluster_id,
        first_seen: c.first_seen,
        last_seen: c.last_seen,
      });
    }
    for (const k of this.dirtyHosts) {
      const h = this.hosts.get(k);
      if (h === undefined) continue;
      h.written = h.last_seen;
      now.hosts.push({
        cluster_id: h.cluster_id,
        hostname: h.hostname,
        first_seen: h.first_seen,
        last_seen: h.last_seen,
      });
    }
    for (const k of this.dirtyGpus) {
      const g = this.gpus.get(k);
      if (g === undefined) continue;
      g.written = g.last_seen;
      now.gpus.push({
        cluster_id: g.cluster_id,
        hostname: g.hostname,
        gpu: g.gpu,
        uuid: g.uuid,
        model: g.model,
        device: g.device,
        first_seen: g.first_seen,
        last_seen: g.last_seen,
      });
    }
    this.dirtyClusters = new Set();
    this.dirtyHosts = new Set();
    this.dirtyGpus = new Set();
    const rest = new Set<string>();
    for (const k of this.dirtyLive) {
      const l = this.live.get(k);
      if (l === undefined) continue;
      if (now.live.length >= maxLive) rest.add(k);
      else now.live.push({ ...l, metrics: { ...l.metrics } });
    }
    this.dirtyLive = rest;
    return now;
  }

  /** Puts entries back after a failed write. */
  restore(d: Dirty): void {
    for (const c of d.clusters) this.dirtyClusters.add(c.cluster_id);
    for (const h of d.hosts) this.dirtyHosts.add(`${h.cluster_id}\u0000${h.hostname}`);
    for (const g of d.gpus) this.dirtyGpus.add(`${g.cluster_id}\u0000${g.hostname}\u0000${g.gpu}`);
    for (const l of d.live) this.dirtyLive.add(`${l.cluster_id}\u0000${l.hostname}\u0000${l.gpu}`);
  }
}
