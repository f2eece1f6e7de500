/**
 * The heatmap's data: one cell per (host, GPU index), values in typed arrays so thousands of GPUs
 * cost a few kilobytes and a live reading is a map lookup and two array writes.
 */

export interface CellReading {
  readonly host_id: string;
  readonly gpu_id: number;
  readonly value: number;
  /** Epoch milliseconds. */
  readonly time: number;
  readonly uuid?: string | null;
}

export type ApplyResult =
  { readonly kind: 'cell'; readonly index: number } | { readonly kind: 'structure' };

const byName = (a: string, b: string): number =>
  a.localeCompare(b, undefined, { numeric: true, sensitivity: 'base' });

export class HeatmapModel {
  /** Hostnames in display order (natural sort). */
  hosts: string[] = [];
  /** Columns: the largest GPU index seen, plus one. */
  cols = 0;
  values = new Float64Array(0);
  times = new Float64Array(0);
  /** 1 where the host has a GPU with that index. */
  present = new Uint8Array(0);
  uuids: (string | null)[] = [];
  private rowOf = new Map<string, number>();
  private gpuTotal = 0;
  private maxSeen = Number.NEGATIVE_INFINITY;

  get gpus(): number {
    return this.gpuTotal;
  }

  get max(): number {
    return this.maxSeen;
  }

  /** The newest reading time of any cell (NaN when there is none). */
  newest(): number {
    let t = Number.NEGATIVE_INFINITY;
    for (const x of this.times) if (x > t) t = x;
    return t === Number.NEGATIVE_INFINITY ? Number.NaN : t;
  }

  /** Replaces everything with a full set of readings (the REST answer). */
  load(readings: readonly CellReading[]): void {
    const hosts = new Map<string, number>();
    for (const r of readings)
      hosts.set(r.host_id, Math.max(hosts.get(r.host_id) ?? 0, r.gpu_id + 1));
    this.hosts = [...hosts.keys()].sort(byName);
    this.rowOf = new Map(this.hosts.map((h, i) => [h, i]));
    this.cols = Math.max(0, ...hosts.values());
    const n = this.hosts.length * this.cols;
    this.values = new Float64Array(n).fill(Number.NaN);
    this.times = new Float64Array(n).fill(Number.NaN);
    this.present = new Uint8Array(n);
    this.uuids = new Array<string | null>(n).fill(null);
    this.gpuTotal = 0;
    this.maxSeen = Number.NEGATIVE_INFINITY;
    for (const r of readings) this.set(this.index(r.host_id, r.gpu_id), r);
  }

  /** Applies one live reading; says whether one cell changed or the grid must be rebuilt. */
  apply(r: CellReading): ApplyResult {
    const row = this.rowOf.get(r.host_id);
    if (row === undefined || r.gpu_id >= this.cols) {
      this.grow(r);
      return { kind: 'structure' };
    }
    const i = row * this.cols + r.gpu_id;
    const old = this.times[i] ?? Number.NaN;
    if (r.time < old) return { kind: 'cell', index: -1 };
    this.set(i, r);
    return { kind: 'cell', index: i };
  }

  index(host: string, gpu: number): number {
    const row = this.rowOf.get(host);
    return row === undefined || gpu < 0 || gpu >= this.cols ? -1 : row * this.cols + gpu;
  }

  rowOfHost(host: string): number | undefined {
    return this.rowOf.get(host);
  }

  private set(i: number, r: CellReading): void {
    if (i < 0) return;
    if (this.present[i] !== 1) {
      this.present[i] = 1;
      this.gpuTotal++;
    }
    this.values[i] = r.value;
    this.times[i] = r.time;
    if (r.uuid !== undefined) this.uuids[i] = r.uuid;
    if (r.value > this.maxSeen) this.maxSeen = r.value;
  }

  /** A host or GPU index not seen before: rebuild the grid with it. */
  private grow(extra: CellReading): void {
    const all: CellReading[] = [extra];
    for (let row = 0; row < this.hosts.length; row++) {
      const host = this.hosts[row] ?? '';
      for (let c = 0; c < this.cols; c++) {
        const i = row * this.cols + c;
        if (this.present[i] !== 1) continue;
        all.push({
          host_id: host,
          gpu_id: c,
          value: this.values[i] ?? Number.NaN,
          time: this.times[i] ?? Number.NaN,
          uuid: this.uuids[i] ?? null,
        });
      }
    }
    this.load(all);
  }
}
