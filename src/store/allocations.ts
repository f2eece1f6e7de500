import type { TelemetryRecord } from '../core/record.js';
import type { ResolvedIds } from './dimensions.js';
import type { SqlClient } from './types.js';

/** The metrics whose 1-minute rollup `fleet_1m` keeps past sealing (migration 009). */
export const FLEET_METRICS = [
  'DCGM_FI_PROF_GR_ENGINE_ACTIVE',
  'DCGM_FI_DEV_GPU_UTIL',
  'DCGM_FI_DEV_POWER_USAGE',
  'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION',
] as const;

const MINUTE = 60_000;
/** The usage job's unit (migration 015): usage is kept per 10-minute slice. */
export const USAGE_SLICE_MS = 600_000;
/**
 * The usage job takes a slice whose mark is at least this old; a process marks a slice it writes
 * into at most every third of it.
 */
export const USAGE_SETTLE_MS = 30_000;

/** GPUs whose allocation rows written are remembered, at most (the least recently written first). */
export const ALLOCATION_CACHE_MAX = 250_000;
/**
 * Rows remembered per GPU, at most: those of its newest minute and the minute before, the last
 * written kept first (a GPU that keeps reporting brings no older ones again). A GPU has one row a
 * minute, a few more when its workloads change within the minute.
 */
const ROWS_PER_GPU = 8;

/** An allocation row of a GPU: its minute (epoch ms) and workload. */
interface Row {
  readonly b: number;
  readonly ns: string;
  readonly pod: string;
}

function holds(rows: readonly Row[] | undefined, b: number, ns: string, pod: string): boolean {
  if (rows !== undefined)
    for (const x of rows) if (x.b === b && x.pod === pod && x.ns === ns) return true;
  return false;
}

/**
 * Allocation minutes (docs/fleet.md), written with each batch: one row per GPU, minute and
 * (namespace, pod) its readings carry, or pod '' for a minute observed without one. One
 * set-based insert per batch, ON CONFLICT DO NOTHING (a redelivered batch adds nothing), of the
 * rows not already written by this process (a busy GPU costs one row a minute, not one a
 * reading). What was written is remembered per GPU id (the rows of its newest two minutes, at
 * most ROWS_PER_GPU), for at most ALLOCATION_CACHE_MAX GPUs, the least recently written forgotten
 * first: a fleet of 100,000 GPUs is held whole (a row or two per GPU), and a batch looks up
 * numbers, not a key made for each GPU. It is dropped with the dimension ids when the database
 * changes.
 */
export class AllocationMinutes {
  private written = new Map<number, Row[]>();

  private readonly markEveryMs: number;

  constructor(
    private readonly max = ALLOCATION_CACHE_MAX,
    settleMs = USAGE_SETTLE_MS,
  ) {
    this.markEveryMs = settleMs / 3;
  }

  forget(): void {
    this.written = new Map();
    this.marked.clear();
  }

  /** GPUs whose rows written are remembered (tests). */
  get remembered(): number {
    return this.written.size;
  }

  /** Slices this process marked in usage_slices, and when (epoch ms). */
  private readonly marked = new Map<number, number>();

  /** The 10-minute slices a batch marks: its readings', and the slice of the minute after each. */
  static slicesOf(records: readonly TelemetryRecord[]): Set<number> {
    const slices = new Set<number>();
    for (const r of records) {
      const m = Math.floor(r.timestamp / MINUTE) * MINUTE;
      slices.add(Math.floor(m / USAGE_SLICE_MS) * USAGE_SLICE_MS);
      slices.add(Math.floor((m + MINUTE) / USAGE_SLICE_MS) * USAGE_SLICE_MS);
    }
    return slices;
  }

  /**
   * Marks the 10-minute slices of a batch (slicesOf: its readings', and the slice of the minute
   * after each, as a counter's first minute depends on the minute before), for the usage job (migration 015): at
   * most once per a third of the settle time per slice and process, so a busy slice costs one
   * statement now and then. The job takes marks older than the settle time: a write under a mark
   * made at most a third of it before has committed by the time the job reads the slice.
   */
  async markSlices(db: SqlClient, slices: ReadonlySet<number>, now = Date.now()): Promise<void> {
    const due = [...slices].filter(
      (s) => now - (this.marked.get(s) ?? -Infinity) >= this.markEveryMs,
    );
    if (due.length === 0) return;
    due.sort((a, b) => a - b);
    await db.query(
      `INSERT INTO usage_slices (slice, marked_at)
       SELECT nexus_ts(s), clock_timestamp() FROM unnest($1::bigint[]) AS s
       ON CONFLICT (slice) DO UPDATE SET marked_at = excluded.marked_at`,
      [due],
    );
    for (const s of due) this.marked.set(s, now);
    if (this.marked.size > 10_000) {
      for (const [s, t] of this.marked) if (now - t >= this.markEveryMs) this.marked.delete(s);
    }
  }

  async write(
    db: SqlClient,
    records: readonly TelemetryRecord[],
    ids: ResolvedIds,
  ): Promise<number> {
    /** The batch's new rows by GPU (a row twice in the batch is written once). */
    const batch = new Map<number, Row[]>();
    // The row of each GPU's last reading in the batch: a reading of the same minute and pod (most
    // are: the other metrics of the GPU, its later readings of the minute) is known without being
    // looked up again.
    const last = new Map<number, { b: number; ns: string; pod: string }>();
    for (let i = 0; i < records.length; i++) {
      const r = records[i];
      const g = ids.gpu[i];
      if (r === undefined || g === undefined) continue;
      const b = Math.floor(r.timestamp / MINUTE) * MINUTE;
      const pod = r.pod ?? '';
      const ns = pod === '' ? '' : (r.namespace ?? '');
      const seen = last.get(g);
      if (seen === undefined) last.set(g, { b, ns, pod });
      else if (seen.b === b && seen.pod === pod && seen.ns === ns) continue;
      else {
        seen.b = b;
        seen.ns = ns;
        seen.pod = pod;
      }
      if (holds(this.written.get(g), b, ns, pod)) continue;
      const mine = batch.get(g);
      if (holds(mine, b, ns, pod)) continue;
      if (mine === undefined) batch.set(g, [{ b, ns, pod }]);
      else mine.push({ b, ns, pod });
    }
    if (batch.size === 0) return 0;
    // Remembered in the map of the database this insert goes to: a forget() meanwhile (another
    // database) starts a new map, which must not learn these rows.
    const written = this.written;
    // Key order: concurrent writers take the index's locks in the same order.
    const rows = [...batch]
      .flatMap(([g, added]) => added.map((x) => ({ g, ...x })))
      .sort(
        (x, y) =>
          x.g - y.g ||
          x.b - y.b ||
          (x.ns < y.ns ? -1 : x.ns > y.ns ? 1 : x.pod < y.pod ? -1 : x.pod > y.pod ? 1 : 0),
      );
    await db.query(
      `INSERT INTO gpu_allocations (gpu_id, bucket, namespace, pod)
       SELECT g, nexus_ts(b), n, p FROM unnest($1::int[], $2::bigint[], $3::text[], $4::text[]) AS u(g, b, n, p)
       WHERE nexus_expect_identity($5::text)
       ON CONFLICT DO NOTHING`,
      [
        rows.map((x) => x.g),
        rows.map((x) => x.b),
        rows.map((x) => x.ns),
        rows.map((x) => x.pod),
        ids.identity,
      ],
    );
    for (const [g, added] of batch) {
      // Renewed: the GPUs written least recently are forgotten first.
      const kept = written.get(g) ?? [];
      written.delete(g);
      // Two workers may have written the same row: it is kept once.
      for (const x of added) if (!holds(kept, x.b, x.ns, x.pod)) kept.push(x);
      let newest = Number.NEGATIVE_INFINITY;
      for (const x of kept) if (x.b > newest) newest = x.b;
      const recent = kept.filter((x) => x.b >= newest - MINUTE).slice(-ROWS_PER_GPU);
      written.set(g, recent);
    }
    for (const g of written.keys()) {
      if (written.size <= this.max) break;
      written.delete(g);
    }
    return rows.length;
  }
}
