import { WHOLE_GPU } from '../core/mig.js';
import type { DirGpu } from './fleet-directory.js';
import type { LatestAlert } from './reader.js';

/** GPU conditions the overview flags (the operator's kit has the matching Prometheus alerts). */
export const ALERT_RULES = {
  tempWarnC: 80,
  tempCriticalC: 85,
  memoryFullFraction: 0.95,
} as const;

export const POWER = 'DCGM_FI_DEV_POWER_USAGE';
export const TEMP = 'DCGM_FI_DEV_GPU_TEMP';
export const FB_USED = 'DCGM_FI_DEV_FB_USED';
export const FB_FREE = 'DCGM_FI_DEV_FB_FREE';

interface GpuFigures {
  power?: number;
  temp?: number;
  tempAt?: number;
  used?: number;
  free?: number;
  fbAt?: number;
}

const bySeverity = (a: LatestAlert, b: LatestAlert): number =>
  a.severity === b.severity ? b.value - a.value : a.severity === 'critical' ? -1 : 1;

/**
 * The overview's power per cluster and its alerts, kept as latest values change: a GPU's power
 * delta is added to its cluster's sum, a GPU enters or leaves the alert set when its temperature or
 * memory crosses a rule. Live whole GPUs only (a retired GPU raises no alert and draws no power).
 */
export class OverviewKeeper {
  private readonly figures = new Map<number, GpuFigures>();
  readonly power = new Map<string, number>();
  private readonly alerts = new Map<string, LatestAlert>();
  private sorted: LatestAlert[] | undefined;

  /** Whether a GPU row counts (live, whole). */
  private static counts(g: DirGpu | undefined): g is DirGpu {
    return g !== undefined && !g.retired && g.gpu_instance_id === WHOLE_GPU;
  }

  /** A latest value changed (metric by name; others are ignored). */
  onValue(g: DirGpu | undefined, metric: string, time: number, value: number): void {
    if (metric !== POWER && metric !== TEMP && metric !== FB_USED && metric !== FB_FREE) return;
    if (g === undefined) return;
    let f = this.figures.get(g.id);
    if (f === undefined) this.figures.set(g.id, (f = {}));
    const before = OverviewKeeper.counts(g);
    if (before) this.withdraw(g, f);
    if (metric === POWER) f.power = value;
    else if (metric === TEMP) {
      f.temp = value;
      f.tempAt = time;
    } else {
      if (metric === FB_USED) f.used = value;
      else f.free = value;
      f.fbAt = time;
    }
    if (before) this.contribute(g, f);
  }

  /** A GPU row changed in the directory (retired, or new): its contributions follow. */
  onGpu(old: DirGpu | undefined, g: DirGpu): void {
    const f = this.figures.get(g.id);
    if (f === undefined) return;
    if (OverviewKeeper.counts(old)) this.withdraw(old, f);
    if (OverviewKeeper.counts(g)) this.contribute(g, f);
  }

  /** Forgets everything (the database was replaced). */
  clear(): void {
    this.figures.clear();
    this.power.clear();
    this.alerts.clear();
    this.sorted = undefined;
  }

  private withdraw(g: DirGpu, f: GpuFigures): void {
    if (f.power !== undefined)
      this.power.set(g.cluster_id, (this.power.get(g.cluster_id) ?? 0) - f.power);
    const hot = this.alerts.delete(`${g.id}/t`);
    const full = this.alerts.delete(`${g.id}/m`);
    if (hot || full) this.sorted = undefined;
  }

  private contribute(g: DirGpu, f: GpuFigures): void {
    if (f.power !== undefined)
      this.power.set(g.cluster_id, (this.power.get(g.cluster_id) ?? 0) + f.power);
    if (f.temp !== undefined && f.temp > ALERT_RULES.tempWarnC) {
      const critical = f.temp > ALERT_RULES.tempCriticalC;
      this.alerts.set(`${g.id}/t`, {
        severity: critical ? 'critical' : 'warning',
        cluster_id: g.cluster_id,
        hostname: g.hostname,
        gpu_id: g.gpu_id,
        metric: TEMP,
        value: f.temp,
        message: `GPU at ${f.temp} C (above ${critical ? ALERT_RULES.tempCriticalC : ALERT_RULES.tempWarnC} C)`,
        since: f.tempAt ?? 0,
      });
      this.sorted = undefined;
    }
    if (f.used !== undefined && f.free !== undefined && f.used + f.free !== 0) {
      const frac = f.used / (f.used + f.free);
      if (frac > ALERT_RULES.memoryFullFraction) {
        this.alerts.set(`${g.id}/m`, {
          severity: 'warning',
          cluster_id: g.cluster_id,
          hostname: g.hostname,
          gpu_id: g.gpu_id,
          metric: FB_USED,
          value: f.used,
          message: `GPU memory ${(frac * 100).toFixed(1)} % full`,
          since: f.fbAt ?? 0,
        });
        this.sorted = undefined;
      }
    }
  }

  /** The alerts, most severe first (then highest value), of one cluster or all. */
  alertList(cluster?: string): LatestAlert[] {
    this.sorted ??= [...this.alerts.values()].sort(bySeverity);
    return cluster === undefined
      ? this.sorted
      : this.sorted.filter((a) => a.cluster_id === cluster);
  }
}
