import { num, str, type GpuRef, type MetricSelection, type ReadingRow } from './read-queries.js';
import type { CommittedReading, LatestValue } from './reader.js';
import { WHOLE_GPU } from '../core/mig.js';

/** One (GPU, metric) of the in-memory latest values; `out` is built on first read. */
interface LatestSlot {
  readonly metric: number;
  time: number;
  value: number;
  out: LatestValue | undefined;
}

/** GPU ids per statement of a full load (each GPU has a row per metric it reports). */
export const LOAD_GPU_IDS = 2000;
/** The rolling reconciliation re-reads the whole fleet over this long (ms). */
export const RECONCILE_PERIOD_MS = 300_000;
/** Most GPU ids one reconciliation tick reads. */
export const RECONCILE_MAX_IDS = 2000;

/**
 * Called when a slot takes a new value (`prev` undefined: the slot is new), for state kept from
 * the latest values (the overview's power and alerts, last_seen).
 */
export type SlotListener = (
  gpu: number,
  metric: number,
  time: number,
  value: number,
  prev: number | undefined,
) => void;

/** Puts a reading into a GPU's slots unless an equal or newer one is there (as samples_latest). */
function upsertSlot(
  gpu: number,
  slots: LatestSlot[],
  metric: number,
  time: number,
  value: number,
  listener: SlotListener | undefined,
): void {
  let i = slots.length;
  while (i > 0 && (slots[i - 1]?.metric ?? -1) > metric) i--;
  const prev = slots[i - 1];
  if (prev !== undefined && prev.metric === metric) {
    if (time > prev.time) {
      const old = prev.value;
      prev.time = time;
      prev.value = value;
      prev.out = undefined;
      listener?.(gpu, metric, time, value, old);
    }
    return;
  }
  slots.splice(i, 0, { metric, time, value, out: undefined });
  listener?.(gpu, metric, time, value, undefined);
}

/** What the memory needs of the reader: its identity guard, its fleet directory and a query. */
export interface LatestSource {
  /**
   * Runs a read under the identity the cached ids belong to (again, once, after the database
   * changed under them).
   */
  guarded<T>(read: (identity: string | null) => Promise<T>): Promise<T>;
  /** Whether rows read under `identity` still belong to the caches. */
  current(identity: string | null): boolean;
  /** Brings the fleet directory and the metrics up to date (incrementally). */
  refreshIds(): Promise<void>;
  /** The latest values (folded and pending) of GPU ids in (from, to]. */
  readRange(identity: string | null, from: number, to: number): Promise<readonly ReadingRow[]>;
  /** The latest values (folded and pending) of these GPU ids. */
  readIds(identity: string | null, ids: readonly number[]): Promise<readonly ReadingRow[]>;
  /** The largest GPU id known. */
  maxGpuId(): number;
  /** Whether the directory holds this GPU id. */
  knownGpu(id: number): boolean;
  /** A GPU row's id by its names, from the directory. */
  gpuId(cluster: string, hostname: string, gpu: number, instance: number): number | undefined;
  /** A metric's id by name, from the cache. */
  metricId(name: string): number | undefined;
}

/**
 * The latest values in memory (see `LatestTracker`): GPU id -> its slots, in metric id order. Loaded
 * once from the store in pages of GPU ids, kept current by the commit feed, and reconciled with the
 * store a slice of GPU ids at a time (the whole fleet every RECONCILE_PERIOD_MS): a feed event lost
 * costs at most that long. A GPU or metric the feed names that the directory does not know yet
 * brings the directory up to date (incrementally) and reads the GPUs it names.
 */
export class LatestMemory {
  private readonly byGpu = new Map<number, LatestSlot[]>();
  /** Loaded at least once. */
  private ready = false;
  private loading: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Where the rolling reconciliation goes on from (a GPU id). */
  private cursor = 0;
  private ticking: Promise<void> | undefined;
  /** A refresh for names the feed brought that were unknown is due. */
  private scheduled = false;
  /** Rows read from the store (for the gateway's counters). */
  rowsRead = 0;
  /** Full loads and reconciliation ticks done. */
  readonly reloads = { full: 0, incremental: 0 };

  constructor(
    private readonly source: LatestSource,
    private readonly tickMs: number,
    private readonly listener?: SlotListener,
  ) {}

  /** Loads from the store (in the background) and starts the rolling reconciliation. */
  start(): void {
    if (this.timer !== undefined || this.stopped) return;
    this.timer = setInterval(() => void this.tick(), this.tickMs);
    this.timer.unref();
    void this.load();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }

  get loaded(): boolean {
    return this.ready;
  }

  /**
   * Waits (at most `timeoutMs`) for the first load, started now if none is under way; resolves
   * whether the values are loaded.
   */
  async whenLoaded(timeoutMs: number): Promise<boolean> {
    if (this.ready || this.stopped) return this.ready;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.loading ?? this.load(),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
        timer.unref();
      }),
    ]);
    clearTimeout(timer);
    return this.ready;
  }

  /** The database changed under the ids: forget every value, and load again. */
  reset(): void {
    this.byGpu.clear();
    this.ready = false;
    this.cursor = 0;
    if (this.timer !== undefined) void this.load();
  }

  /** A full load again (the feed lost events: a watch restarted). */
  resync(): Promise<void> {
    this.ready = false;
    return this.load();
  }

  private apply(rows: readonly ReadingRow[]): void {
    this.rowsRead += rows.length;
    for (const r of rows) {
      let slots = this.byGpu.get(r.gpu_id);
      if (slots === undefined) this.byGpu.set(r.gpu_id, (slots = []));
      upsertSlot(r.gpu_id, slots, r.metric_id, num(r.t), r.value, this.listener);
    }
  }

  /** Reads GPU ids (from, to] and merges them (newest wins); GPUs without a reading get none. */
  private async readRange(from: number, to: number): Promise<void> {
    await this.source.guarded(async (identity) => {
      const rows = await this.source.readRange(identity, from, to);
      if (this.stopped || !this.source.current(identity)) return;
      this.apply(rows);
    });
    for (let id = from + 1; id <= to; id++)
      if (!this.byGpu.has(id) && this.source.knownGpu(id)) this.byGpu.set(id, []);
  }

  /** The whole fleet, LOAD_GPU_IDS GPU ids per statement. */
  private load(): Promise<void> {
    this.loading ??= (async () => {
      await this.source.refreshIds();
      const max = this.source.maxGpuId();
      for (let from = 0; from < max; from += LOAD_GPU_IDS) {
        if (this.stopped) return;
        await this.readRange(from, Math.min(from + LOAD_GPU_IDS, max));
      }
      this.reloads.full++;
      this.ready = true;
    })()
      .catch(() => {
        // The store is unreachable: latest() reads it (and reports the error) until a load works.
      })
      .finally(() => {
        this.loading = undefined;
      });
    return this.loading;
  }

  /** One step of the rolling reconciliation (or the load, until one worked). */
  private tick(): Promise<void> {
    if (!this.ready) return this.load();
    this.ticking ??= (async () => {
      await this.source.refreshIds();
      const max = this.source.maxGpuId();
      if (max === 0) return;
      const slice = Math.min(
        RECONCILE_MAX_IDS,
        Math.max(1, Math.ceil((max * this.tickMs) / RECONCILE_PERIOD_MS)),
      );
      if (this.cursor >= max) this.cursor = 0;
      const to = Math.min(this.cursor + slice, max);
      await this.readRange(this.cursor, to);
      this.cursor = to;
      this.reloads.incremental++;
    })()
      .catch(() => undefined)
      .finally(() => {
        this.ticking = undefined;
      });
    return this.ticking;
  }

  /** Readings a collector has just committed (the commit feed). */
  committed(clusterId: string, readings: readonly CommittedReading[]): void {
    if (this.stopped) return;
    const unknown: CommittedReading[] = [];
    for (const r of readings) {
      const gpu = this.source.gpuId(clusterId, r.hostname, r.gpu, r.gpu_instance_id ?? WHOLE_GPU);
      const metric = this.source.metricId(r.metric);
      // Not finite: the feed's JSON cannot carry it; the store answers for it.
      if (gpu === undefined || metric === undefined || !Number.isFinite(r.value)) {
        unknown.push(r);
        continue;
      }
      let slots = this.byGpu.get(gpu);
      if (slots === undefined) this.byGpu.set(gpu, (slots = []));
      upsertSlot(gpu, slots, metric, r.timestamp, r.value, this.listener);
    }
    if (unknown.length > 0) this.learn(clusterId, unknown);
  }

  /** GPU rows the directory learnt of, to read (`adopt`), and the read under way. */
  private readonly adopting = new Set<number>();
  private filling: Promise<void> | undefined;

  /**
   * GPU rows new to the fleet directory: their latest values are read from the store (what was
   * written before the feed named them), LOAD_GPU_IDS per statement.
   */
  adopt(ids: readonly number[]): void {
    if (this.stopped || !this.ready) return;
    for (const id of ids) if (!this.byGpu.has(id)) this.adopting.add(id);
    if (this.adopting.size > 0) void this.settle();
  }

  /** Resolves once the GPU rows adopted so far are read (or their read failed). */
  settle(): Promise<void> {
    if (this.adopting.size === 0) return this.filling ?? Promise.resolve();
    this.filling ??= (async () => {
      while (this.adopting.size > 0 && !this.stopped) {
        const ids = [...this.adopting].slice(0, LOAD_GPU_IDS);
        try {
          await this.source.guarded(async (identity) => {
            const rows = await this.source.readIds(identity, ids);
            if (this.stopped || !this.source.current(identity)) return;
            this.apply(rows);
          });
          for (const id of ids) if (!this.byGpu.has(id)) this.byGpu.set(id, []);
        } catch {
          // Read by the reconciliation; until then latest() reads the store for them.
        }
        for (const id of ids) this.adopting.delete(id);
      }
    })().finally(() => {
      this.filling = undefined;
    });
    return this.filling;
  }

  /** Brings the directory up to date, then reads the GPUs the feed named that were unknown. */
  private learn(clusterId: string, readings: readonly CommittedReading[]): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setTimeout(() => {
      void (async () => {
        try {
          await this.source.refreshIds();
          const ids = new Set<number>();
          for (const r of readings) {
            const id = this.source.gpuId(
              clusterId,
              r.hostname,
              r.gpu,
              r.gpu_instance_id ?? WHOLE_GPU,
            );
            if (id !== undefined) ids.add(id);
          }
          for (const id of ids) await this.readRange(id - 1, id);
        } catch {
          // Read again by the reconciliation.
        } finally {
          this.scheduled = false;
        }
      })();
    }, 0).unref();
  }

  /** The latest values of `gpus`; undefined when memory cannot answer (then the store does). */
  read(gpus: readonly GpuRef[], metrics: MetricSelection): LatestValue[] | undefined {
    if (!this.ready) return undefined;
    const out: LatestValue[] = [];
    for (const g of gpus) {
      const slots = this.byGpu.get(g.id);
      // A GPU newer than what was loaded: the store answers (the feed or reconciliation adds it).
      if (slots === undefined) return undefined;
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

  /** The newest reading time of a GPU row held (undefined: none held, or not loaded). */
  newest(gpu: number): number | undefined {
    if (!this.ready) return undefined;
    const slots = this.byGpu.get(gpu);
    if (slots === undefined || slots.length === 0) return undefined;
    let t = -Infinity;
    for (const s of slots) if (s.time > t) t = s.time;
    return t;
  }

  /** Whether memory holds this GPU row (loaded, and the row known when it was read). */
  holds(gpu: number): boolean {
    return this.ready && this.byGpu.has(gpu);
  }

  /** A slot's value, for state derived from it. */
  value(gpu: number, metric: number): number | undefined {
    const slots = this.byGpu.get(gpu);
    return slots?.find((s) => s.metric === metric)?.value;
  }
}
