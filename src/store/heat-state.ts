import { WHOLE_GPU } from '../core/mig.js';
import type { DirGpu, DirHost } from './fleet-directory.js';
import { ALERT_RULES, TEMP } from './overview-state.js';
import type { HostHeat } from './reader.js';

/** Most metrics kept at once; the one asked for least recently is dropped first. */
export const HEAT_METRICS_KEPT = 8;

/**
 * The heatmap's per-host figures, kept from the latest values as they change (docs/api.md,
 * "heatmap"): a host's figures are computed from its GPUs' slots (at most a few dozen) when first
 * asked for, and forgotten when one of its GPUs changes (a value of the metric, a temperature, the
 * GPU row itself), to be computed again at the next request. A request then costs a lookup per
 * host, and the GPUs of the hosts that changed since the last one, not a pass over every GPU of
 * the cluster.
 */
export class HeatKeeper {
  /** Per metric id kept: host id -> its figures (absent: to compute). */
  private readonly kept = new Map<number, Map<number, HostHeat>>();

  constructor(
    /** A GPU row's latest value of a metric (undefined: none). */
    private readonly value: (gpu: number, metric: number) => number | undefined,
    /** The temperature metric's id, once known. */
    private readonly tempId: () => number | undefined,
  ) {}

  /** A latest value changed (metric by id and name). */
  onValue(g: DirGpu, metric: number, name: string): void {
    if (name === TEMP) {
      for (const hosts of this.kept.values()) hosts.delete(g.host.id);
    } else {
      this.kept.get(metric)?.delete(g.host.id);
    }
  }

  /** A GPU row changed in the directory (new, retired, back). */
  onGpu(g: DirGpu): void {
    for (const hosts of this.kept.values()) hosts.delete(g.host.id);
  }

  /** Forgets everything (the database was replaced). */
  clear(): void {
    this.kept.clear();
  }

  /**
   * The figures of hosts[from, to) (in their order) for a metric; hosts without a live GPU are
   * left out.
   */
  figures(hosts: readonly DirHost[], from: number, to: number, metric: number): HostHeat[] {
    let byHost = this.kept.get(metric);
    if (byHost === undefined) {
      byHost = new Map();
      if (this.kept.size >= HEAT_METRICS_KEPT) {
        const oldest = this.kept.keys().next().value;
        if (oldest !== undefined) this.kept.delete(oldest);
      }
    } else {
      this.kept.delete(metric); // asked for last: dropped last
    }
    this.kept.set(metric, byHost);
    const out: HostHeat[] = [];
    for (let i = from; i < to; i++) {
      const h = hosts[i] as DirHost;
      if (h.liveWhole === 0) continue;
      let f = byHost.get(h.id);
      if (f === undefined) byHost.set(h.id, (f = this.compute(h, metric)));
      out.push(f);
    }
    return out;
  }

  private compute(h: DirHost, metric: number): HostHeat {
    const temp = this.tempId();
    let gpus = 0;
    let reporting = 0;
    let sum = 0;
    let min = Infinity;
    let max = -Infinity;
    let alerting = 0;
    for (const g of h.rows) {
      if (g.retired || g.gpu_instance_id !== WHOLE_GPU) continue;
      gpus++;
      const v = this.value(g.id, metric);
      if (v === undefined) continue;
      reporting++;
      sum += v;
      if (v < min) min = v;
      if (v > max) max = v;
      const t = temp === undefined ? undefined : this.value(g.id, temp);
      if (t !== undefined && t > ALERT_RULES.tempWarnC) alerting++;
    }
    return { hostname: h.hostname, gpus, reporting, sum, min, max, alerting };
  }
}
