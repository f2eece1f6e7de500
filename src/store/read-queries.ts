import { dcgmField } from '../core/dcgm-fields.js';
import { NexusError } from '../core/errors.js';
import { WHOLE_GPU, utilizationPercent } from '../core/mig.js';
import type {
  ColumnPage,
  ClusterStats,
  ClusterSummary,
  CurrentWorkload,
  GpuDetail,
  LatestValue,
  MetricInfo,
  MigInstance,
  Selection,
  Series,
  SeriesColumns,
  SeriesQuery,
  SeriesResult,
  TelemetryPage,
  TelemetryQuery,
  Workload,
} from './reader.js';
import { readAggregated, readRaw } from './series-reads.js';
import type { SqlClient } from './types.js';

/** A GPU by its surrogate id, with what names it. */
export interface GpuRef {
  readonly id: number;
  readonly cluster_id: string;
  readonly hostname: string;
  readonly gpu_id: number;
  readonly uuid: string | null;
  /** The MIG GPU instance (-1: the whole GPU). */
  readonly gpu_instance_id: number;
  readonly mig_profile: string | null;
  /** Retired (gpus.retired_at set, docs/fleet.md). */
  readonly retired: boolean;
}

/** A metric by its surrogate id. */
export interface MetricRef {
  readonly id: number;
  readonly name: string;
  readonly unit: string;
}

/** The metrics a selection names: their ids (null: all) and every metric known, by id. */
export interface MetricSelection {
  readonly ids: number[] | null;
  readonly byId: Map<number, MetricRef>;
}

/** A reading as the queries return it: ids, epoch ms (as text) and the value. */
export interface ReadingRow {
  gpu_id: number;
  metric_id: number;
  t: string;
  value: number;
}

export const num = (v: unknown): number => (typeof v === 'number' ? v : Number(v));
const opt = (v: unknown): number | undefined =>
  v === null || v === undefined ? undefined : num(v);
export const str = (v: string | null): string | undefined => v ?? undefined;

/** GPU ids per statement of a cluster's statistics. */
export const STATS_GPU_IDS = 2000;

/**
 * A metric's unit: the DCGM field catalogue's for a field it knows (src/core/dcgm-fields.ts, the one
 * source of units), else the one stored with the metric. The stored unit is the catalogue's of the
 * Nexus that first saw the metric: before issue 18 that said 'us' for the *_VIOLATION counters,
 * which are ns.
 */
function unitOf(name: string, stored: string): string {
  return dcgmField(name)?.unit ?? stored;
}

/** What names a reading or a series: its GPU and metric. */
function identityOf(g: GpuRef, m: MetricRef) {
  const id = {
    cluster_id: g.cluster_id,
    hostname: g.hostname,
    gpu_id: g.gpu_id,
    uuid: str(g.uuid),
    metric: m.name,
    unit: m.unit,
  };
  // A MIG instance's series say which instance (a whole GPU's have neither field).
  return g.gpu_instance_id === WHOLE_GPU
    ? id
    : { ...id, gpu_instance_id: g.gpu_instance_id, mig_profile: str(g.mig_profile) };
}

/** Rows of readings named by their GPU and metric (rows of an id not in the maps are left out). */
function readingsOf(
  rows: readonly ReadingRow[],
  byGpu: ReadonlyMap<number, GpuRef>,
  byMetric: ReadonlyMap<number, MetricRef>,
): LatestValue[] {
  return rows.flatMap((r) => {
    const g = byGpu.get(r.gpu_id);
    const m = byMetric.get(r.metric_id);
    if (g === undefined || m === undefined) return [];
    return [{ ...identityOf(g, m), timestamp: num(r.t), value: r.value }];
  });
}

/**
 * The gateway's queries, in SQL shared by PostgreSQL and PGlite. The queries of a selection take
 * it resolved to surrogate ids (GPUs, metrics) and read `samples`, `samples_1m` or
 * `samples_latest` by their primary keys; those using cached ids check the database's identity
 * they belong to (`nexus_expect_identity`, migration 003) in the same statement.
 */
export class ReadQueries {
  constructor(private readonly db: SqlClient) {}

  /** Whether a cluster of this name is stored (one index lookup). */
  async clusterExists(name: string): Promise<boolean> {
    const res = await this.db.query('SELECT 1 FROM clusters WHERE name = $1', [name]);
    return res.rows.length > 0;
  }

  /**
   * The statistics of a cluster, from its summary and its GPU rows' ids: the rollups and chunks are
   * counted STATS_GPU_IDS GPUs per statement (none near the statement timeout on a large cluster).
   */
  async clusterStats(summary: ClusterSummary, ids: readonly number[]): Promise<ClusterStats> {
    const clusterId = summary.cluster_id;
    const perMetric = new Map<
      string,
      { unit: string; samples: number; bucket: number | undefined; sealed: number | undefined }
    >();
    const min = (a: number | undefined, b: number | undefined): number | undefined =>
      a === undefined ? b : b === undefined ? a : Math.min(a, b);
    for (let i = 0; i < ids.length; i += STATS_GPU_IDS) {
      const per = await this.db.query<{
        metric: string;
        unit: string;
        samples: string;
        first_bucket: string | null;
        first_sealed: string | null;
      }>(
        `WITH counted AS (
           SELECT metric_id, count::bigint AS n, bucket, NULL::timestamptz AS first_time
           FROM samples_1m_all WHERE gpu_id = ANY($1::int[])
           UNION ALL
           SELECT metric_id, count::bigint, NULL, first_time FROM sample_chunks WHERE gpu_id = ANY($1::int[])
         )
         SELECT m.name AS metric, m.unit, sum(r.n)::bigint AS samples, nexus_ms(min(r.bucket)) AS first_bucket,
                nexus_ms(min(r.first_time)) AS first_sealed
         FROM counted r JOIN metrics m ON m.id = r.metric_id
         GROUP BY m.name, m.unit`,
        [ids.slice(i, i + STATS_GPU_IDS)],
      );
      for (const r of per.rows) {
        const e = perMetric.get(r.metric);
        const bucket = opt(r.first_bucket);
        const sealed = opt(r.first_sealed);
        if (e === undefined)
          perMetric.set(r.metric, { unit: r.unit, samples: num(r.samples), bucket, sealed });
        else {
          e.samples += num(r.samples);
          e.bucket = min(e.bucket, bucket);
          e.sealed = min(e.sealed, sealed);
        }
      }
    }
    const rows = [...perMetric.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    let firstBucket: number | undefined;
    let firstSealed: number | undefined;
    for (const [, r] of rows) {
      firstBucket = min(firstBucket, r.bucket);
      firstSealed = min(firstSealed, r.sealed);
    }
    let first = firstSealed;
    // The hot tier's first reading, when its first minute comes before the chunks' first reading.
    if (firstBucket !== undefined && (first === undefined || firstBucket < first)) {
      const res = await this.db.query<{ t: string | null }>(
        `SELECT nexus_ms(min(s.time)) AS t FROM samples s
         WHERE s.time >= nexus_ts($2) AND s.time < nexus_ts($2) + interval '1 minute'
           AND s.gpu_id = ANY($1::int[])`,
        [ids, firstBucket],
      );
      const t = opt(res.rows[0]?.t);
      if (t !== undefined && (first === undefined || t < first)) first = t;
    }
    const samples = rows.reduce((n, [, r]) => n + r.samples, 0);
    return {
      cluster_id: clusterId,
      samples,
      hosts: summary.hosts,
      gpus: summary.gpus,
      metrics: rows.length,
      first_timestamp: first,
      last_timestamp: summary.last_seen,
      samples_per_metric: rows.map(([metric, r]) => ({
        metric,
        unit: unitOf(metric, r.unit),
        samples: r.samples,
      })),
    };
  }

  /** One GPU with its workloads and its latest values (read by `latest`, beside the workloads). */
  async gpu(
    clusterId: string,
    hostname: string,
    gpuId: number,
    latestOf: (sel: Selection) => Promise<LatestValue[]>,
  ): Promise<GpuDetail | undefined> {
    // The GPU's rows: the whole GPU (-1) first, then its MIG instances.
    const res = await this.db.query<{
      id: number;
      gpu_instance_id: number;
      mig_profile: string | null;
      uuid: string | null;
      model: string | null;
      device: string | null;
      labels: Record<string, string>;
      first_seen: string;
      retired: boolean;
    }>(
      `SELECT g.id, g.gpu_instance_id, g.mig_profile, g.uuid, g.model, g.device, g.labels, nexus_ms(g.first_seen) AS first_seen,
              g.retired_at IS NOT NULL AS retired
       FROM gpus g JOIN hosts h ON h.id = g.host_id JOIN clusters c ON c.id = h.cluster_id
       WHERE c.name = $1 AND h.hostname = $2 AND g.gpu_index = $3
       ORDER BY g.gpu_instance_id`,
      [clusterId, hostname, gpuId],
    );
    const g = res.rows[0];
    if (g === undefined || g.gpu_instance_id !== WHOLE_GPU) return undefined;
    const [workloads, latest] = await Promise.all([
      this.db.query<{
        gpu_id: number;
        namespace: string;
        pod: string;
        container: string;
        first_seen: string;
        last_seen: string;
      }>(
        `SELECT gpu_id, namespace, pod, container, nexus_ms(first_seen) AS first_seen, nexus_ms(last_seen) AS last_seen
         FROM gpu_workloads WHERE gpu_id = ANY($1::int[]) ORDER BY last_seen DESC, namespace, pod, container`,
        [res.rows.map((r) => r.id)],
      ),
      latestOf({ cluster: clusterId, hosts: [hostname], gpus: [gpuId], instances: 'all' }),
    ]);
    const workloadsOf = (id: number): Workload[] =>
      workloads.rows
        .filter((w) => w.gpu_id === id)
        .map((w): Workload => ({
          namespace: w.namespace,
          pod: w.pod,
          container: w.container,
          first_seen: num(w.first_seen),
          last_seen: num(w.last_seen),
        }));
    const latestOfInstance = (instance: number): LatestValue[] =>
      latest.filter((l) => (l.gpu_instance_id ?? WHOLE_GPU) === instance);
    const newest = (ls: readonly LatestValue[]): number | undefined =>
      ls.reduce<number | undefined>(
        (m, l) => (m === undefined || l.timestamp > m ? l.timestamp : m),
        undefined,
      );
    const own = latestOfInstance(WHOLE_GPU);
    const instances = res.rows.slice(1).map((i): MigInstance => {
      const values = latestOfInstance(i.gpu_instance_id);
      return {
        gpu_instance_id: i.gpu_instance_id,
        profile: str(i.mig_profile),
        uuid: str(i.uuid),
        first_seen: num(i.first_seen),
        last_seen: newest(values),
        utilization_percent: utilizationPercent(values),
        workloads: workloadsOf(i.id),
        latest: values,
      };
    });
    return {
      cluster_id: clusterId,
      hostname,
      gpu_id: gpuId,
      uuid: str(g.uuid),
      model: str(g.model),
      device: str(g.device),
      first_seen: num(g.first_seen),
      last_seen: newest(latest),
      retired: g.retired,
      labels: g.labels,
      workloads: workloadsOf(g.id),
      latest: own,
      utilization_percent: utilizationPercent(own),
      mig_instances: instances,
    };
  }

  async currentWorkloads(): Promise<CurrentWorkload[]> {
    const res = await this.db.query<CurrentWorkload>(
      `SELECT c.name AS cluster_id, h.hostname, g.gpu_index AS gpu_id, w.namespace, w.pod, w.container
       FROM gpu_workloads w
       JOIN gpus g ON g.id = w.gpu_id JOIN hosts h ON h.id = g.host_id JOIN clusters c ON c.id = h.cluster_id
       JOIN (SELECT gpu_id, max(time) AS t FROM samples_latest_all GROUP BY gpu_id) lt ON lt.gpu_id = g.id
       WHERE w.last_seen >= lt.t - interval '5 minutes' AND g.retired_at IS NULL`,
    );
    return res.rows;
  }

  async metricCatalogue(): Promise<MetricInfo[]> {
    const res = await this.db.query<MetricInfo>(
      'SELECT name, unit, type, help FROM metrics ORDER BY name',
    );
    return res.rows.map((m) => ({ ...m, unit: unitOf(m.name, m.unit) }));
  }

  /** The metrics' ids, for the cache. */
  async metricRefs(identity: string | null): Promise<MetricRef[]> {
    const res = await this.db.query<MetricRef>(
      'SELECT id, name, unit FROM metrics WHERE nexus_expect_identity($1::text)',
      [identity],
    );
    return res.rows.map((m) => ({ ...m, unit: unitOf(m.name, m.unit) }));
  }

  /** The latest values (folded and pending: several candidates per slot) of GPU ids in (from, to]. */
  async latestRange(from: number, to: number, identity: string | null): Promise<ReadingRow[]> {
    const res = await this.db.query<ReadingRow>(
      `SELECT gpu_id, metric_id, nexus_ms(time) AS t, value FROM samples_latest_all
       WHERE gpu_id > $1 AND gpu_id <= $2 AND nexus_expect_identity($3::text)`,
      [from, to, identity],
    );
    return res.rows;
  }

  /** The latest values (folded and pending: several candidates per slot) of these GPU ids. */
  async latestOfIds(ids: readonly number[], identity: string | null): Promise<ReadingRow[]> {
    const res = await this.db.query<ReadingRow>(
      `SELECT l.gpu_id, l.metric_id, nexus_ms(l.time) AS t, l.value
       FROM unnest($1::int[]) AS s(id) JOIN samples_latest_all l ON l.gpu_id = s.id
       WHERE nexus_expect_identity($2::text)`,
      [ids, identity],
    );
    return res.rows;
  }

  /** The newest reading of each of these GPU rows (rows without one are left out). */
  async newestOf(ids: readonly number[], identity: string | null): Promise<Map<number, number>> {
    const res = await this.db.query<{ gpu_id: number; t: string }>(
      `SELECT l.gpu_id, nexus_ms(max(l.time)) AS t
       FROM unnest($1::int[]) AS s(id) JOIN samples_latest_all l ON l.gpu_id = s.id
       WHERE nexus_expect_identity($2::text) GROUP BY l.gpu_id`,
      [ids, identity],
    );
    return new Map(res.rows.map((r) => [r.gpu_id, num(r.t)]));
  }

  async latest(
    gpus: readonly GpuRef[],
    metrics: MetricSelection,
    identity: string | null,
  ): Promise<LatestValue[]> {
    const byGpu = new Map(gpus.map((g) => [g.id, g]));
    const res = await this.db.query<ReadingRow>(
      `SELECT DISTINCT ON (l.gpu_id, l.metric_id) l.gpu_id, l.metric_id, nexus_ms(l.time) AS t, l.value
       FROM unnest($1::int[]) AS s(id) JOIN samples_latest_all l ON l.gpu_id = s.id
       WHERE ($2::smallint[] IS NULL OR l.metric_id = ANY($2)) AND nexus_expect_identity($3::text)
       ORDER BY l.gpu_id, l.metric_id, l.time DESC`,
      [gpus.map((g) => g.id), metrics.ids, identity],
    );
    return readingsOf(res.rows, byGpu, metrics.byId);
  }

  /**
   * Readings page by page, in (GPU, metric, time) order, as columns per series: the selected GPUs
   * are read a few at a time (as many per statement as the page seems to need) until the page is
   * full, so that a small page over a large fleet decodes little.
   */
  async telemetryColumns(
    q: TelemetryQuery,
    gpus: readonly GpuRef[],
    metrics: MetricSelection,
    identity: string | null,
  ): Promise<ColumnPage> {
    const byGpu = new Map(gpus.map((g) => [g.id, g]));
    const after = q.after;
    let ids = gpus.map((g) => g.id).sort((a, b) => a - b);
    if (after !== undefined) ids = ids.filter((id) => id >= after.gpu);
    const out: SeriesColumns[] = [];
    let count = 0;
    /** Where the page's last reading is: the next page starts after it. */
    let end: { gpu: number; metric: number; time: number } | undefined;
    // GPUs per statement: one first, then as many as the readings per GPU seen so far say the rest
    // of the page needs, twice over (sparse data: few statements; dense data: little decoded).
    let per = 1;
    let scanned = 0;
    for (let i = 0; i < ids.length; i += per) {
      if (scanned > 0) {
        const density = Math.max(count, 1) / scanned;
        per = Math.min(Math.max(Math.ceil((2 * (q.limit - count)) / density), 1), 4096);
      }
      scanned += Math.min(per, ids.length - i);
      const series = await readRaw(this.db, {
        gpus: ids.slice(i, i + per),
        metrics: metrics.ids,
        from: q.from,
        to: q.to,
        identity,
        ...(after === undefined ? {} : { after }),
      });
      for (const s of series) {
        const g = byGpu.get(s.gpu);
        const m = metrics.byId.get(s.metric);
        if (g === undefined || m === undefined) continue;
        const room = q.limit - count;
        // The page is full and there is more.
        if (room === 0)
          return end === undefined ? { series: out, count } : { series: out, count, next: end };
        const n = Math.min(room, s.times.length);
        const cols: SeriesColumns = {
          ...identityOf(g, m),
          times: n === s.times.length ? s.times : s.times.subarray(0, n),
          values: n === s.values.length ? s.values : s.values.subarray(0, n),
        };
        out.push(cols);
        count += n;
        end = { gpu: s.gpu, metric: s.metric, time: cols.times[n - 1] ?? 0 };
        if (n < s.times.length) return { series: out, count, next: end };
      }
    }
    return { series: out, count };
  }

  /** The same page, a reading at a time. */
  async telemetry(
    q: TelemetryQuery,
    gpus: readonly GpuRef[],
    metrics: MetricSelection,
    identity: string | null,
  ): Promise<TelemetryPage> {
    const page = await this.telemetryColumns(q, gpus, metrics, identity);
    const readings: LatestValue[] = [];
    for (const s of page.series) {
      const { times, values, ...id } = s;
      for (let j = 0; j < times.length; j++) {
        readings.push({ ...id, timestamp: times[j] ?? 0, value: values[j] ?? 0 });
      }
    }
    return page.next === undefined ? { readings } : { readings, next: page.next };
  }

  async series(
    q: SeriesQuery,
    gpus: readonly GpuRef[],
    metrics: MetricSelection,
    identity: string | null,
  ): Promise<SeriesResult> {
    const metricCount = metrics.ids?.length ?? metrics.byId.size;
    const buckets = Math.ceil((q.to - q.from) / q.stepMs);
    if (gpus.length * metricCount * buckets > q.maxPoints) {
      throw new NexusError(
        'BAD_REQUEST',
        `too many points: ${gpus.length} GPUs x ${metricCount} metrics x ${buckets} steps exceeds ${q.maxPoints}; raise step, narrow the range or filter`,
      );
    }
    if (gpus.length === 0) return { series: [], source: 'raw' };
    const rollup = q.stepMs % 60_000 === 0;
    const rows = await readAggregated(this.db, {
      gpus: gpus.map((g) => g.id),
      metrics: metrics.ids,
      from: q.from,
      to: q.to,
      stepMs: q.stepMs,
      agg: q.agg,
      rollup,
      identity,
    });
    const byGpu = new Map(gpus.map((g) => [g.id, g]));
    const out: Series[] = [];
    for (const r of rows) {
      const g = byGpu.get(r.gpu);
      const m = metrics.byId.get(r.metric);
      if (g === undefined || m === undefined) continue;
      out.push({
        ...identityOf(g, m),
        points: r.buckets.map((b, i): [number, number, number] => [
          b,
          r.values[i] ?? 0,
          r.counts[i] ?? 0,
        ]),
      });
    }
    return { series: out, source: rollup ? 'rollup_1m' : 'raw' };
  }
}
