import {
  num,
  str,
  type GpuRef,
  type MetricRef,
  type MetricSelection,
  type ReadingRow,
} from './read-queries.js';
import type { CommittedReading, LatestValue } from './reader.js';
import { WHOLE_GPU } from '../core/mig.js';

/** One (GPU, metric) of the in-memory latest values; `out` is built on first read. */
interface LatestSlot {
  readonly metric: number;
  time: number;
  value: number;
  out: LatestValue | undefined;
}

/** A GPU row's key: a MIG instance is its own (instance -1: the whole GPU). */
const gpuKey = (cluster: string, hostname: string, gpu: number, instance: number): string =>
  `${cluster}\u0000${hostname}\u0000${gpu}\u0000${instance}`;

/** Puts a reading into a GPU's slots unless an equal or newer one is there (as samples_latest). */
function upsertSlot(slots: LatestSlot[], metric: number, time: number, value: number): void {
  let i = slots.length;
  while (i > 0 && (slots[i - 1]?.metric ?? -1) > metric) i--;
  const prev = slots[i - 1];
  if (prev !== undefined && prev.metric === metric) {
    if (time > prev.time) {
      prev.time = time;
      prev.value = value;
      prev.out = undefined;
    }
    return;
  }
  slots.splice(i, 0, { metric, time, value, out: undefined });
}

/** What the memory needs of the reader: its identity guard, its caches and two queries. */
export interface LatestSource {
  /**
   * Runs a read under the identity the cached ids belong to (again, once, after the database
   * changed under them).
   */
  guarded<T>(read: (identity: string | null) => Promise<T>): Promise<T>;
  /** Whether rows read under `identity` still belong to the caches. */
  current(identity: string | null): boolean;
  /** Reloads the fleet and the metrics (forced), and answers the fleet's GPUs. */
  reloadIds(): Promise<readonly GpuRef[]>;
  /** Every latest value, folded and pending (several candidates per slot). */
  readAll(identity: string | null): Promise<readonly ReadingRow[]>;
  /** The fleet as cached now. */
  cachedFleet(): readonly GpuRef[] | undefined;
  /** The metrics as cached now. */
  cachedMetrics(): readonly MetricRef[] | undefined;
}

/**
 * The latest values in memory (see `LatestTracker`): GPU id -> its slots, in metric id order,
 * seeded from the store, kept current by the commit feed, reloaded periodically and whenever the
 * feed names a GPU or metric not known yet.
 */
export class LatestMemory {
  private readonly byGpu = new Map<number, LatestSlot[]>();
  /** Loaded at least once. */
  private ready = false;
  /** The feed named a GPU or metric not known yet: read the store until the next reload. */
  private dirty = 0;
  private loading: Promise<void> | undefined;
  private lastLoad = 0;
  /** A reload is due (set while one waits for its turn). */
  private scheduled = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** (cluster, hostname, GPU index) -> GPU id, built from the fleet cache it was built from. */
  private index: { gpus: readonly GpuRef[]; ids: Map<string, number> } | undefined;
  private metricIndex: { rows: readonly MetricRef[]; ids: Map<string, number> } | undefined;

  constructor(
    private readonly source: LatestSource,
    private readonly reloadMs: number,
  ) {}

  /** Loads from the store (in the background) and starts the periodic reload. */
  start(): void {
    if (this.timer !== undefined || this.stopped) return;
    this.timer = setInterval(() => void this.load(), this.reloadMs);
    this.timer.unref();
    void this.load();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }

  /** The database changed under the ids: forget every value, and load again. */
  reset(): void {
    this.byGpu.clear();
    this.ready = false;
    this.index = undefined;
    this.metricIndex = undefined;
    this.scheduleReload();
  }

  /**
   * (Re)loads the latest values (folded and pending: several candidates per slot, the newest
   * wins), merging by time with what the feed brought.
   */
  private load(): Promise<void> {
    this.loading ??= this.source
      .guarded(async (identity) => {
        const dirty = this.dirty;
        const gpus = await this.source.reloadIds();
        const rows = await this.source.readAll(identity);
        if (this.stopped || !this.source.current(identity)) return;
        for (const r of rows) {
          let slots = this.byGpu.get(r.gpu_id);
          if (slots === undefined) this.byGpu.set(r.gpu_id, (slots = []));
          upsertSlot(slots, r.metric_id, num(r.t), r.value);
        }
        // GPUs known before the snapshot without a reading in it have none yet.
        for (const g of gpus) if (!this.byGpu.has(g.id)) this.byGpu.set(g.id, []);
        this.ready = true;
        if (this.dirty === dirty) this.dirty = 0;
      })
      .catch(() => {
        // The store is unreachable: latest() reads it (and reports the error) until a reload works.
      })
      .finally(() => {
        this.loading = undefined;
        this.lastLoad = Date.now();
      });
    return this.loading;
  }

  /** Readings a collector has just committed (the commit feed). */
  committed(clusterId: string, readings: readonly CommittedReading[]): void {
    if (this.stopped) return;
    const fleet = this.source.cachedFleet();
    if (fleet !== undefined && this.index?.gpus !== fleet) {
      this.index = {
        gpus: fleet,
        ids: new Map(
          fleet.map((g) => [gpuKey(g.cluster_id, g.hostname, g.gpu_id, g.gpu_instance_id), g.id]),
        ),
      };
    }
    const metrics = this.source.cachedMetrics();
    if (metrics !== undefined && this.metricIndex?.rows !== metrics) {
      this.metricIndex = { rows: metrics, ids: new Map(metrics.map((m) => [m.name, m.id])) };
    }
    let unknown = false;
    for (const r of readings) {
      const gpu = this.index?.ids.get(
        gpuKey(clusterId, r.hostname, r.gpu, r.gpu_instance_id ?? WHOLE_GPU),
      );
      const metric = this.metricIndex?.ids.get(r.metric);
      // Not finite: the feed's JSON cannot carry it; the store answers for it.
      if (gpu === undefined || metric === undefined || !Number.isFinite(r.value)) {
        unknown = true;
        continue;
      }
      let slots = this.byGpu.get(gpu);
      if (slots === undefined) this.byGpu.set(gpu, (slots = []));
      upsertSlot(slots, metric, r.timestamp, r.value);
    }
    if (unknown) {
      this.dirty++;
      this.scheduleReload();
    }
  }

  /** One reload soon, at most one a second while new GPUs or metrics keep appearing. */
  private scheduleReload(): void {
    if (this.scheduled || this.stopped) return;
    this.scheduled = true;
    const wait = Math.max(0, this.lastLoad + 1000 - Date.now());
    setTimeout(() => {
      this.scheduled = false;
      void this.load();
    }, wait).unref();
  }

  /** The latest values of `gpus`; undefined when memory cannot answer (then the store does). */
  read(gpus: readonly GpuRef[], metrics: MetricSelection): LatestValue[] | undefined {
    if (!this.ready) return undefined;
    if (this.dirty > 0) {
      this.scheduleReload();
      return undefined;
    }
    const out: LatestValue[] = [];
    for (const g of gpus) {
      const slots = this.byGpu.get(g.id);
      if (slots === undefined) {
        // A GPU newer than the last load: read the store, and reload.
        this.dirty++;
        this.scheduleReload();
        return undefined;
      }
      for (const s of slots) {
        if (metrics.ids !== null && !metrics.ids.includes(s.metric)) continue;
        const m = metrics.byId.get(s.metric);
        if (m === undefined) continue;
        let v = s.out;
        const uuid = str(g.uuid);
        if (
          v === undefined ||
          v.uuid !== uuid ||
          v.hostname !== g.hostname ||
          v.cluster_id !== g.cluster_id ||
          v.metric !== m.name ||
          v.unit !== m.unit
        ) {
          v = s.out = {
            cluster_id: g.cluster_id,
            hostname: g.hostname,
            gpu_id: g.gpu_id,
            uuid,
            ...(g.gpu_instance_id === WHOLE_GPU
              ? {}
              : { gpu_instance_id: g.gpu_instance_id, mig_profile: str(g.mig_profile) }),
            metric: m.name,
            unit: m.unit,
            timestamp: s.time,
            value: s.value,
          };
        }
        out.push(v);
      }
    }
    return out;
  }
}
