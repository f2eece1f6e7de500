import { EventEmitter } from 'node:events';
import type { TelemetryRecord } from '../../core/record.js';
import { FleetState, type StoredHost } from '../fleet-state.js';
import type {
  ClusterInfo,
  FleetRegistry,
  GpuInfo,
  HostInfo,
  LiveGpu,
  MemberInfo,
} from '../types.js';

/** The fleet registry of the embedded mode: the same behaviour as the etcd one, in memory. */
export class MemoryRegistry implements FleetRegistry {
  private readonly state = new FleetState();
  private readonly clustersById = new Map<string, ClusterInfo>();
  private readonly hostsByKey = new Map<string, StoredHost>();
  private readonly gpusByKey = new Map<string, GpuInfo>();
  private readonly liveByKey = new Map<string, LiveGpu>();
  private readonly membersById = new Map<string, MemberInfo>();
  private readonly events = new EventEmitter();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly o: { flushIntervalMs: number; maxLivePerFlush: number }) {
    this.events.setMaxListeners(0);
    this.timer = setInterval(() => void this.flush(), o.flushIntervalMs);
    this.timer.unref();
  }

  observe(clusterId: string, records: readonly TelemetryRecord[]): void {
    this.state.observe(clusterId, records);
  }

  async flush(): Promise<void> {
    const d = this.state.take(this.o.maxLivePerFlush);
    const merge = <T extends { first_seen: number; last_seen: number }>(
      m: Map<string, T>,
      k: string,
      v: T,
    ): void => {
      const old = m.get(k);
      m.set(
        k,
        old === undefined
          ? v
          : {
              ...v,
              first_seen: Math.min(old.first_seen, v.first_seen),
              last_seen: Math.max(old.last_seen, v.last_seen),
            },
      );
    };
    for (const c of d.clusters) merge(this.clustersById, c.cluster_id, c);
    for (const h of d.hosts) merge(this.hostsByKey, `${h.cluster_id}\u0000${h.hostname}`, h);
    for (const g of d.gpus)
      merge(this.gpusByKey, `${g.cluster_id}\u0000${g.hostname}\u0000${g.gpu}`, g);
    for (const l of d.live) {
      this.liveByKey.set(`${l.cluster_id}\u0000${l.hostname}\u0000${l.gpu}`, l);
      this.events.emit(`live:${l.cluster_id}`, l);
    }
  }

  async register(member: MemberInfo): Promise<void> {
    this.membersById.set(member.id, member);
  }

  async clusters(): Promise<ClusterInfo[]> {
    return [...this.clustersById.values()].sort((a, b) => a.cluster_id.localeCompare(b.cluster_id));
  }

  async hosts(clusterId: string): Promise<HostInfo[]> {
    const counts = new Map<string, number>();
    for (const g of this.gpusByKey.values())
      if (g.cluster_id === clusterId) counts.set(g.hostname, (counts.get(g.hostname) ?? 0) + 1);
    return [...this.hostsByKey.values()]
      .filter((h) => h.cluster_id === clusterId)
      .sort((a, b) => (a.hostname < b.hostname ? -1 : 1))
      .map((h) => ({ ...h, gpu_count: counts.get(h.hostname) ?? 0 }));
  }

  async gpus(clusterId: string, hostname?: string): Promise<GpuInfo[]> {
    return [...this.gpusByKey.values()]
      .filter(
        (g) => g.cluster_id === clusterId && (hostname === undefined || g.hostname === hostname),
      )
      .sort((a, b) =>
        a.hostname === b.hostname ? a.gpu - b.gpu : a.hostname < b.hostname ? -1 : 1,
      );
  }

  async live(clusterId: string, hostname?: string): Promise<LiveGpu[]> {
    return [...this.liveByKey.values()].filter(
      (l) => l.cluster_id === clusterId && (hostname === undefined || l.hostname === hostname),
    );
  }

  async members(): Promise<MemberInfo[]> {
    return [...this.membersById.values()];
  }

  async watchLive(
    clusterId: string,
    onChange: (gpu: LiveGpu) => void,
  ): Promise<() => Promise<void>> {
    const name = `live:${clusterId}`;
    this.events.on(name, onChange);
    return async () => {
      this.events.off(name, onChange);
    };
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}
