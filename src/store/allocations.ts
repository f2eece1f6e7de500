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

/** Allocation minutes remembered as written, at most (the oldest are forgotten first). */
export const ALLOCATION_CACHE_MAX = 100_000;

/**
 * Allocation minutes (docs/fleet.md), written with each batch: one row per GPU, minute and
 * (namespace, pod) its readings carry, or pod '' for a minute observed without one. One
 * set-based insert per batch, ON CONFLICT DO NOTHING (a redelivered batch adds nothing), of the
 * rows not already written by this process (a busy GPU costs one row a minute, not one a
 * reading). The memory of what was written is bounded (ALLOCATION_CACHE_MAX, oldest first) and
 * dropped with the dimension ids when the database changes.
 */
export class AllocationMinutes {
  private written = new Map<string, true>();

  constructor(private readonly max = ALLOCATION_CACHE_MAX) {}

  forget(): void {
    this.written = new Map();
  }

  /** Rows written so far and remembered (tests, metrics). */
  get remembered(): number {
    return this.written.size;
  }

  async write(
    db: SqlClient,
    records: readonly TelemetryRecord[],
    ids: ResolvedIds,
  ): Promise<number> {
    const fresh = new Map<string, { g: number; b: number; ns: string; pod: string }>();
    for (let i = 0; i < records.length; i++) {
      const r = records[i];
      const g = ids.gpu[i];
      if (r === undefined || g === undefined) continue;
      const b = Math.floor(r.timestamp / MINUTE) * MINUTE;
      const pod = r.pod ?? '';
      const ns = pod === '' ? '' : (r.namespace ?? '');
      const k = `${g}\u0000${b}\u0000${ns}\u0000${pod}`;
      if (this.written.has(k) || fresh.has(k)) continue;
      fresh.set(k, { g, b, ns, pod });
    }
    if (fresh.size === 0) return 0;
    // Key order: concurrent writers take the index's locks in the same order.
    const rows = [...fresh.values()].sort(
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
    for (const k of fresh.keys()) {
      this.written.set(k, true);
      if (this.written.size > this.max) {
        const oldest = this.written.keys().next();
        if (oldest.done !== true) this.written.delete(oldest.value);
      }
    }
    return fresh.size;
  }
}
