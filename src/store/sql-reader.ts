import { NexusError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import {
  identityChange,
  isIdentityChanged,
  readIdentity,
  type IdentityChange,
} from './identity.js';
import type {
  ClusterStats,
  CommittedReading,
  CurrentWorkload,
  ClusterSummary,
  GpuDetail,
  GpuSummary,
  HostSummary,
  LatestValue,
  MetricInfo,
  Selection,
  Series,
  SeriesQuery,
  SeriesResult,
  TelemetryPage,
  TelemetryQuery,
  TelemetryReader,
  LatestTracker,
  Workload,
} from './reader.js';
import type { SqlClient } from './types.js';

interface GpuRef {
  readonly id: number;
  readonly cluster_id: string;
  readonly hostname: string;
  readonly gpu_id: number;
  readonly uuid: string | null;
}

interface MetricRef {
  readonly id: number;
  readonly name: string;
  readonly unit: string;
}

const num = (v: unknown): number => (typeof v === 'number' ? v : Number(v));
const opt = (v: unknown): number | undefined =>
  v === null || v === undefined ? undefined : num(v);
const str = (v: string | null): string | undefined => v ?? undefined;

interface FleetIndex {
  readonly byCluster: Map<string, GpuRef[]>;
  readonly byHost: Map<string, GpuRef[]>;
}

const hostKey = (cluster: string, hostname: string): string => `${cluster}\u0000${hostname}`;

/** GPUs by cluster and by host, for each fleet snapshot (built once per snapshot). */
const fleetIndexes = new WeakMap<readonly GpuRef[], FleetIndex>();
function fleetIndex(gpus: readonly GpuRef[]): FleetIndex {
  let index = fleetIndexes.get(gpus);
  if (index === undefined) {
    index = { byCluster: new Map(), byHost: new Map() };
    for (const g of gpus) {
      const c = index.byCluster.get(g.cluster_id);
      if (c === undefined) index.byCluster.set(g.cluster_id, [g]);
      else c.push(g);
      const k = hostKey(g.cluster_id, g.hostname);
      const h = index.byHost.get(k);
      if (h === undefined) index.byHost.set(k, [g]);
      else h.push(g);
    }
    fleetIndexes.set(gpus, index);
  }
  return index;
}

/** One (GPU, metric) of the in-memory latest values; `out` is built on first read. */
interface LatestSlot {
  readonly metric: number;
  time: number;
  value: number;
  out: LatestValue | undefined;
}

/** The in-memory latest values: GPU id -> its slots, in metric id order. */
interface LatestMemory {
  readonly byGpu: Map<number, LatestSlot[]>;
  /** Loaded at least once. */
  ready: boolean;
  /** The feed named a GPU or metric not known yet: read the store until the next reload. */
  dirty: number;
  loading: Promise<void> | undefined;
  lastLoad: number;
  /** A reload is due (set while one waits for its turn). */
  scheduled: boolean;
  timer: NodeJS.Timeout | undefined;
  stopped: boolean;
  /** (cluster, hostname, GPU index) -> GPU id, built from the fleet cache it was built from. */
  index: { gpus: GpuRef[]; ids: Map<string, number> } | undefined;
  metricIndex: { rows: MetricRef[]; ids: Map<string, number> } | undefined;
}

const gpuKey = (cluster: string, hostname: string, gpu: number): string =>
  `${cluster}\u0000${hostname}\u0000${gpu}`;

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

/**
 * Each GPU's newest reading not yet folded into `samples_latest` (migration 002): one pass over
 * the small pending table, where a per-GPU subquery would scan it once per GPU.
 */
const PENDING_SEEN =
  'WITH pending_seen AS (SELECT gpu_id, max(time) AS t FROM samples_pending GROUP BY gpu_id)';

/** The longest instant PostgreSQL and JavaScript both hold (year 275760). */
export const END_OF_TIME = 8_640_000_000_000_000;
/** The earliest instant PostgreSQL holds (4713 BC); -END_OF_TIME is out of its range. */
const BEGINNING_OF_TIME = -210_866_803_200_000;

/**
 * The gateway's queries, in SQL shared by PostgreSQL and PGlite. Every query first resolves the
 * selection (cluster, hosts, GPU indexes or uuids, metrics) to surrogate ids, then reads
 * `samples`, `samples_1m` or `samples_latest` by their primary keys.
 */
/** A reading as the queries return it: ids, epoch ms (as text) and the value. */
interface ReadingRow {
  gpu_id: number;
  metric_id: number;
  t: string;
  value: number;
}

/** What names a reading or a series: its GPU and metric. */
function identityOf(g: GpuRef, m: MetricRef) {
  return {
    cluster_id: g.cluster_id,
    hostname: g.hostname,
    gpu_id: g.gpu_id,
    uuid: str(g.uuid),
    metric: m.name,
    unit: m.unit,
  };
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

export interface SqlReaderOptions {
  readonly logger?: Logger;
  /** The database's identity changed under the caches (they were dropped). */
  readonly onIdentityChange?: (change: IdentityChange) => void;
}

/**
 * The caches (the fleet's and the metrics' ids, the latest values by id) belong to one database,
 * by its identity (migration 003). Every query that uses cached ids checks it (`guarded`); when
 * the database is another one, the caches are dropped and the query runs again.
 */
export class SqlReader implements TelemetryReader {
  private metricCache: { at: number; rows: MetricRef[] } | undefined;
  private metricLoading: Promise<MetricRef[]> | undefined;
  private fleetCache: { at: number; gpus: GpuRef[]; clusters: Set<string> } | undefined;
  private fleetLoading: Promise<GpuRef[]> | undefined;
  private memory: LatestMemory | undefined;
  /** The identity of the database the caches belong to; undefined until read. */
  private identity: string | undefined;
  private identityLoading: Promise<string | undefined> | undefined;
  private reidentifying: Promise<void> | undefined;

  constructor(
    private readonly db: SqlClient,
    private readonly options: SqlReaderOptions = {},
  ) {}

  /** The identity the caches belong to (read once, and again after a change). */
  private knownIdentity(): Promise<string | undefined> {
    if (this.identity !== undefined) return Promise.resolve(this.identity);
    this.identityLoading ??= readIdentity(this.db)
      .then((id) => {
        this.identity ??= id;
        return this.identity;
      })
      .finally(() => {
        this.identityLoading = undefined;
      });
    return this.identityLoading;
  }

  /**
   * Runs a read that uses cached ids, with the identity they belong to (taken before any id is),
   * for its statement to check. When the database is another one, the caches are dropped and the
   * read runs again, once.
   */
  private async guarded<T>(read: (identity: string | null) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const identity = (await this.knownIdentity()) ?? null;
      try {
        return await read(identity);
      } catch (err) {
        if (attempt === 1 && isIdentityChanged(err)) {
          await this.reidentify();
          continue;
        }
        throw err;
      }
    }
  }

  /** Whether rows read under `identity` may go into the caches (no change was noticed since). */
  private current(identity: string | null): boolean {
    return (this.identity ?? null) === identity;
  }

  /** The database changed under the caches: read its identity, drop them, say so. */
  private reidentify(): Promise<void> {
    this.reidentifying ??= (async () => {
      const old = this.identity;
      const now = await readIdentity(this.db);
      if (now === old) return;
      this.identity = now;
      this.fleetCache = undefined;
      this.metricCache = undefined;
      const mem = this.memory;
      if (mem !== undefined) {
        mem.byGpu.clear();
        mem.ready = false;
        mem.index = undefined;
        mem.metricIndex = undefined;
        this.scheduleReload(mem);
      }
      const change = identityChange(old, now);
      this.options.onIdentityChange?.(change);
      this.options.logger?.warn(
        { old_identity: old ?? null, new_identity: now ?? null, change },
        change === 'database'
          ? 'the database was replaced (another identity): dropped the fleet, metric and latest values cached for the old one'
          : 'the PostgreSQL server restarted or failed over: dropped the fleet, metric and latest values cached, reading them again',
      );
    })().finally(() => {
      this.reidentifying = undefined;
    });
    return this.reidentifying;
  }

  async clusters(): Promise<ClusterSummary[]> {
    const res = await this.db.query<{
      cluster_id: string;
      hosts: number;
      gpus: number;
      first_seen: string;
      last_seen: string | null;
    }>(
      `SELECT c.name AS cluster_id,
              (SELECT count(*) FROM hosts h WHERE h.cluster_id = c.id)::int AS hosts,
              (SELECT count(*) FROM gpus g JOIN hosts h ON h.id = g.host_id WHERE h.cluster_id = c.id)::int AS gpus,
              nexus_ms(c.first_seen) AS first_seen,
              (SELECT nexus_ms(max(l.time)) FROM samples_latest_all l JOIN gpus g ON g.id = l.gpu_id JOIN hosts h ON h.id = g.host_id
                WHERE h.cluster_id = c.id) AS last_seen
       FROM clusters c ORDER BY c.name`,
    );
    return res.rows.map((r) => ({
      cluster_id: r.cluster_id,
      hosts: r.hosts,
      gpus: r.gpus,
      first_seen: num(r.first_seen),
      last_seen: opt(r.last_seen),
    }));
  }

  async cluster(clusterId: string): Promise<ClusterSummary | undefined> {
    return (await this.clusters()).find((c) => c.cluster_id === clusterId);
  }

  async clusterStats(clusterId: string): Promise<ClusterStats | undefined> {
    const summary = await this.cluster(clusterId);
    if (summary === undefined) return undefined;
    const per = await this.db.query<{
      metric: string;
      unit: string;
      samples: string;
      first_bucket: string | null;
    }>(
      `SELECT m.name AS metric, m.unit, sum(r.count)::bigint AS samples, nexus_ms(min(r.bucket)) AS first_bucket
       FROM samples_1m_all r JOIN metrics m ON m.id = r.metric_id
       WHERE r.gpu_id IN (SELECT g.id FROM gpus g JOIN hosts h ON h.id = g.host_id JOIN clusters c ON c.id = h.cluster_id WHERE c.name = $1)
       GROUP BY m.name, m.unit ORDER BY m.name`,
      [clusterId],
    );
    let firstBucket: number | undefined;
    for (const r of per.rows) {
      const b = opt(r.first_bucket);
      if (b !== undefined && (firstBucket === undefined || b < firstBucket)) firstBucket = b;
    }
    let first: number | undefined;
    if (firstBucket !== undefined) {
      const res = await this.db.query<{ t: string | null }>(
        `SELECT nexus_ms(min(s.time)) AS t FROM samples s
         WHERE s.time >= nexus_ts($2) AND s.time < nexus_ts($2) + interval '1 minute'
           AND s.gpu_id IN (SELECT g.id FROM gpus g JOIN hosts h ON h.id = g.host_id JOIN clusters c ON c.id = h.cluster_id WHERE c.name = $1)`,
        [clusterId, firstBucket],
      );
      first = opt(res.rows[0]?.t);
    }
    const samples = per.rows.reduce((n, r) => n + num(r.samples), 0);
    return {
      cluster_id: clusterId,
      samples,
      hosts: summary.hosts,
      gpus: summary.gpus,
      metrics: per.rows.length,
      first_timestamp: first,
      last_timestamp: summary.last_seen,
      samples_per_metric: per.rows.map((r) => ({
        metric: r.metric,
        unit: r.unit,
        samples: num(r.samples),
      })),
    };
  }

  async hosts(clusterId: string): Promise<HostSummary[]> {
    const res = await this.db.query<{
      hostname: string;
      gpus: number;
      first_seen: string;
      last_seen: string | null;
    }>(
      `${PENDING_SEEN}
       SELECT h.hostname, count(g.id)::int AS gpus, nexus_ms(h.first_seen) AS first_seen,
              nexus_ms(greatest(
                (SELECT max(l.time) FROM samples_latest l JOIN gpus g2 ON g2.id = l.gpu_id WHERE g2.host_id = h.id),
                max(p.t))) AS last_seen
       FROM hosts h JOIN clusters c ON c.id = h.cluster_id LEFT JOIN gpus g ON g.host_id = h.id
         LEFT JOIN pending_seen p ON p.gpu_id = g.id
       WHERE c.name = $1 GROUP BY h.id ORDER BY h.hostname`,
      [clusterId],
    );
    return res.rows.map((r) => ({
      cluster_id: clusterId,
      hostname: r.hostname,
      gpus: r.gpus,
      first_seen: num(r.first_seen),
      last_seen: opt(r.last_seen),
    }));
  }

  async host(clusterId: string, hostname: string): Promise<HostSummary | undefined> {
    return (await this.hosts(clusterId)).find((h) => h.hostname === hostname);
  }

  async gpus(clusterId: string, hostname?: string): Promise<GpuSummary[]> {
    const res = await this.db.query<{
      hostname: string;
      gpu_id: number;
      uuid: string | null;
      model: string | null;
      device: string | null;
      first_seen: string;
      last_seen: string | null;
    }>(
      `${PENDING_SEEN}
       SELECT h.hostname, g.gpu_index AS gpu_id, g.uuid, g.model, g.device, nexus_ms(g.first_seen) AS first_seen,
              nexus_ms(greatest((SELECT max(l.time) FROM samples_latest l WHERE l.gpu_id = g.id), p.t)) AS last_seen
       FROM gpus g JOIN hosts h ON h.id = g.host_id JOIN clusters c ON c.id = h.cluster_id
         LEFT JOIN pending_seen p ON p.gpu_id = g.id
       WHERE c.name = $1 AND ($2::text IS NULL OR h.hostname = $2)
       ORDER BY h.hostname, g.gpu_index`,
      [clusterId, hostname ?? null],
    );
    return res.rows.map((r) => ({
      cluster_id: clusterId,
      hostname: r.hostname,
      gpu_id: r.gpu_id,
      uuid: str(r.uuid),
      model: str(r.model),
      device: str(r.device),
      first_seen: num(r.first_seen),
      last_seen: opt(r.last_seen),
    }));
  }

  async gpu(clusterId: string, hostname: string, gpuId: number): Promise<GpuDetail | undefined> {
    const res = await this.db.query<{
      id: number;
      uuid: string | null;
      model: string | null;
      device: string | null;
      labels: Record<string, string>;
      first_seen: string;
    }>(
      `SELECT g.id, g.uuid, g.model, g.device, g.labels, nexus_ms(g.first_seen) AS first_seen
       FROM gpus g JOIN hosts h ON h.id = g.host_id JOIN clusters c ON c.id = h.cluster_id
       WHERE c.name = $1 AND h.hostname = $2 AND g.gpu_index = $3`,
      [clusterId, hostname, gpuId],
    );
    const g = res.rows[0];
    if (g === undefined) return undefined;
    const [workloads, latest] = await Promise.all([
      this.db.query<{
        namespace: string;
        pod: string;
        container: string;
        first_seen: string;
        last_seen: string;
      }>(
        `SELECT namespace, pod, container, nexus_ms(first_seen) AS first_seen, nexus_ms(last_seen) AS last_seen
         FROM gpu_workloads WHERE gpu_id = $1 ORDER BY last_seen DESC`,
        [g.id],
      ),
      this.latest({ cluster: clusterId, hosts: [hostname], gpus: [gpuId] }),
    ]);
    const last = latest.reduce<number | undefined>(
      (m, l) => (m === undefined || l.timestamp > m ? l.timestamp : m),
      undefined,
    );
    return {
      cluster_id: clusterId,
      hostname,
      gpu_id: gpuId,
      uuid: str(g.uuid),
      model: str(g.model),
      device: str(g.device),
      first_seen: num(g.first_seen),
      last_seen: last,
      labels: g.labels,
      workloads: workloads.rows.map((w): Workload => ({
        ...w,
        first_seen: num(w.first_seen),
        last_seen: num(w.last_seen),
      })),
      latest,
    };
  }

  async currentWorkloads(): Promise<CurrentWorkload[]> {
    const res = await this.db.query<CurrentWorkload>(
      `SELECT c.name AS cluster_id, h.hostname, g.gpu_index AS gpu_id, w.namespace, w.pod, w.container
       FROM gpu_workloads w
       JOIN gpus g ON g.id = w.gpu_id JOIN hosts h ON h.id = g.host_id JOIN clusters c ON c.id = h.cluster_id
       JOIN (SELECT gpu_id, max(time) AS t FROM samples_latest_all GROUP BY gpu_id) lt ON lt.gpu_id = g.id
       WHERE w.last_seen >= lt.t - interval '5 minutes'`,
    );
    return res.rows;
  }

  async metricCatalogue(): Promise<MetricInfo[]> {
    const res = await this.db.query<MetricInfo>(
      'SELECT name, unit, type, help FROM metrics ORDER BY name',
    );
    return res.rows;
  }

  /**
   * Metric name -> id, cached for a few seconds (new metrics appear rarely). An expired cache is
   * still answered while one query refreshes it; `force` (a name not found) waits for a fresh one.
   */
  private async metricRefs(force = false): Promise<MetricRef[]> {
    const cache = this.metricCache;
    if (!force && cache !== undefined && Date.now() - cache.at < 5000) return cache.rows;
    const loading =
      force || this.metricLoading === undefined ? this.loadMetrics() : this.metricLoading;
    if (!force && cache !== undefined) {
      loading.catch(() => undefined);
      return cache.rows;
    }
    return loading;
  }

  private loadMetrics(): Promise<MetricRef[]> {
    const at = Date.now();
    const loading = this.guarded(async (identity) => {
      const res = await this.db.query<MetricRef>(
        'SELECT id, name, unit FROM metrics WHERE nexus_expect_identity($1::text)',
        [identity],
      );
      if (this.current(identity) && (this.metricCache === undefined || this.metricCache.at <= at))
        this.metricCache = { at, rows: res.rows };
      return res.rows;
    }).finally(() => {
      if (this.metricLoading === loading) this.metricLoading = undefined;
    });
    this.metricLoading = loading;
    return loading;
  }

  /** Metric ids of a selection; NOT_FOUND-free: an unknown name is a bad request naming the known ones. */
  private async metricIds(
    names: readonly string[] | undefined,
  ): Promise<{ ids: number[] | null; byId: Map<number, MetricRef> }> {
    let refs = await this.metricRefs();
    const byName = new Map(refs.map((m) => [m.name, m]));
    if (
      names !== undefined &&
      names.some((n) => !byName.has(n) && !byName.has(`DCGM_FI_DEV_${n}`))
    ) {
      refs = await this.metricRefs(true);
      refs.forEach((m) => byName.set(m.name, m));
    }
    const byId = new Map(refs.map((m) => [m.id, m]));
    if (names === undefined) return { ids: null, byId };
    const ids: number[] = [];
    for (const n of names) {
      const m = byName.get(n) ?? byName.get(`DCGM_FI_DEV_${n}`);
      if (m === undefined) {
        throw new NexusError(
          'BAD_REQUEST',
          `unknown metric "${n}"; known metrics: ${[...byName.keys()].sort().join(', ') || 'none yet'}`,
        );
      }
      ids.push(m.id);
    }
    return { ids, byId };
  }

  /** The GPUs a selection names. An unknown cluster is NOT_FOUND; filters matching nothing give []. */
  /**
   * The fleet's GPUs, kept in memory for a few seconds: resolving a selection costs no query, and a
   * name not found triggers one refresh (a GPU or cluster that just appeared).
   */
  private async fleet(force = false): Promise<GpuRef[]> {
    const cache = this.fleetCache;
    const age = cache === undefined ? Number.POSITIVE_INFINITY : Date.now() - cache.at;
    // A forced refresh (a name not found) still waits a second since the last one.
    if (cache !== undefined && age < (force ? 1000 : 5000)) return cache.gpus;
    const loading = (this.fleetLoading ??= this.loadFleet());
    // Expired: answered from the cache while one query refreshes it (nobody waits for it).
    if (!force && cache !== undefined) {
      loading.catch(() => undefined);
      return cache.gpus;
    }
    return loading;
  }

  private loadFleet(): Promise<GpuRef[]> {
    return this.guarded(async (identity) => {
      const res = await this.db.query<GpuRef>(
        `SELECT g.id, c.name AS cluster_id, h.hostname, g.gpu_index AS gpu_id, g.uuid
         FROM gpus g JOIN hosts h ON h.id = g.host_id JOIN clusters c ON c.id = h.cluster_id
         WHERE nexus_expect_identity($1::text)
         ORDER BY g.id`,
        [identity],
      );
      const clusters = await this.db.query<{ name: string }>(
        'SELECT name FROM clusters WHERE nexus_expect_identity($1::text)',
        [identity],
      );
      if (this.current(identity)) {
        this.fleetCache = {
          at: Date.now(),
          gpus: res.rows,
          clusters: new Set(clusters.rows.map((r) => r.name)),
        };
      }
      return res.rows;
    }).finally(() => {
      this.fleetLoading = undefined;
    });
  }

  /** The GPUs a selection names. An unknown cluster is NOT_FOUND; filters matching nothing give []. */
  private async gpuRefs(sel: Selection): Promise<GpuRef[]> {
    const pick = (gpus: readonly GpuRef[]): GpuRef[] => {
      // Narrowed through the index first (the fleet is in id order; so is each index entry).
      const index = fleetIndex(gpus);
      if (sel.cluster !== undefined) {
        const cluster = sel.cluster;
        if (sel.hosts === undefined) gpus = index.byCluster.get(cluster) ?? [];
        else {
          const hostnames = [...new Set(sel.hosts)];
          const onHosts = hostnames.flatMap((h) => index.byHost.get(hostKey(cluster, h)) ?? []);
          if (hostnames.length > 1) onHosts.sort((a, b) => a.id - b.id);
          gpus = onHosts;
        }
      }
      const hosts = sel.hosts === undefined ? undefined : new Set(sel.hosts);
      const indexes = sel.gpus === undefined ? undefined : new Set(sel.gpus);
      const uuids = sel.uuids === undefined ? undefined : new Set(sel.uuids);
      return gpus.filter(
        (g) =>
          (sel.cluster === undefined || g.cluster_id === sel.cluster) &&
          (hosts === undefined || hosts.has(g.hostname)) &&
          (indexes === undefined || indexes.has(g.gpu_id)) &&
          (uuids === undefined || (g.uuid !== null && uuids.has(g.uuid))),
      );
    };
    let gpus = await this.fleet();
    let found = pick(gpus);
    const clusterKnown = (): boolean =>
      sel.cluster === undefined || this.fleetCache?.clusters.has(sel.cluster) === true;
    if (found.length === 0 || !clusterKnown()) {
      gpus = await this.fleet(true);
      found = pick(gpus);
    }
    if (!clusterKnown())
      throw new NexusError('NOT_FOUND', `cluster "${sel.cluster ?? ''}" not found`);
    return found;
  }

  trackLatest(options: { readonly reloadMs: number }): LatestTracker {
    const mem: LatestMemory = {
      byGpu: new Map(),
      ready: false,
      dirty: 0,
      loading: undefined,
      lastLoad: 0,
      scheduled: false,
      timer: undefined,
      stopped: false,
      index: undefined,
      metricIndex: undefined,
    };
    this.memory = mem;
    return {
      committed: (clusterId, readings) => this.committed(mem, clusterId, readings),
      start: () => {
        if (mem.timer !== undefined || mem.stopped) return;
        mem.timer = setInterval(() => void this.loadLatest(mem), options.reloadMs);
        mem.timer.unref();
        void this.loadLatest(mem);
      },
      stop: () => {
        mem.stopped = true;
        clearInterval(mem.timer);
        if (this.memory === mem) this.memory = undefined;
      },
    };
  }

  /**
   * (Re)loads the latest values (folded and pending: several candidates per slot, the newest
   * wins), merging by time with what the feed brought.
   */
  private loadLatest(mem: LatestMemory): Promise<void> {
    mem.loading ??= this.guarded(async (identity) => {
      const dirty = mem.dirty;
      const gpus = await this.fleet(true);
      await this.metricRefs(true);
      const res = await this.db.query<{
        gpu_id: number;
        metric_id: number;
        t: string;
        value: number;
      }>(
        'SELECT gpu_id, metric_id, nexus_ms(time) AS t, value FROM samples_latest_all WHERE nexus_expect_identity($1::text)',
        [identity],
      );
      if (mem.stopped || !this.current(identity)) return;
      for (const r of res.rows) {
        let slots = mem.byGpu.get(r.gpu_id);
        if (slots === undefined) mem.byGpu.set(r.gpu_id, (slots = []));
        upsertSlot(slots, r.metric_id, num(r.t), r.value);
      }
      // GPUs known before the snapshot without a reading in it have none yet.
      for (const g of gpus) if (!mem.byGpu.has(g.id)) mem.byGpu.set(g.id, []);
      mem.ready = true;
      if (mem.dirty === dirty) mem.dirty = 0;
    })
      .catch(() => {
        // The store is unreachable: latest() reads it (and reports the error) until a reload works.
      })
      .finally(() => {
        mem.loading = undefined;
        mem.lastLoad = Date.now();
      });
    return mem.loading;
  }

  private committed(
    mem: LatestMemory,
    clusterId: string,
    readings: readonly CommittedReading[],
  ): void {
    if (mem.stopped) return;
    const fleet = this.fleetCache?.gpus;
    if (fleet !== undefined && mem.index?.gpus !== fleet) {
      mem.index = {
        gpus: fleet,
        ids: new Map(fleet.map((g) => [gpuKey(g.cluster_id, g.hostname, g.gpu_id), g.id])),
      };
    }
    const metrics = this.metricCache?.rows;
    if (metrics !== undefined && mem.metricIndex?.rows !== metrics) {
      mem.metricIndex = { rows: metrics, ids: new Map(metrics.map((m) => [m.name, m.id])) };
    }
    let unknown = false;
    for (const r of readings) {
      const gpu = mem.index?.ids.get(gpuKey(clusterId, r.hostname, r.gpu));
      const metric = mem.metricIndex?.ids.get(r.metric);
      // Not finite: the feed's JSON cannot carry it; the store answers for it.
      if (gpu === undefined || metric === undefined || !Number.isFinite(r.value)) {
        unknown = true;
        continue;
      }
      let slots = mem.byGpu.get(gpu);
      if (slots === undefined) mem.byGpu.set(gpu, (slots = []));
      upsertSlot(slots, metric, r.timestamp, r.value);
    }
    if (unknown) {
      mem.dirty++;
      this.scheduleReload(mem);
    }
  }

  /** One reload soon, at most one a second while new GPUs or metrics keep appearing. */
  private scheduleReload(mem: LatestMemory): void {
    if (mem.scheduled || mem.stopped) return;
    mem.scheduled = true;
    const wait = Math.max(0, mem.lastLoad + 1000 - Date.now());
    setTimeout(() => {
      mem.scheduled = false;
      void this.loadLatest(mem);
    }, wait).unref();
  }

  /** The latest values from memory; undefined when memory cannot answer (then the store does). */
  private latestFromMemory(
    gpus: readonly GpuRef[],
    metrics: { ids: number[] | null; byId: Map<number, MetricRef> },
  ): LatestValue[] | undefined {
    const mem = this.memory;
    if (mem === undefined || !mem.ready) return undefined;
    if (mem.dirty > 0) {
      this.scheduleReload(mem);
      return undefined;
    }
    const out: LatestValue[] = [];
    for (const g of gpus) {
      const slots = mem.byGpu.get(g.id);
      if (slots === undefined) {
        // A GPU newer than the last load: read the store, and reload.
        mem.dirty++;
        this.scheduleReload(mem);
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

  latest(q: Selection): Promise<LatestValue[]> {
    return this.guarded((identity) => this.latestOf(q, identity));
  }

  private async latestOf(q: Selection, identity: string | null): Promise<LatestValue[]> {
    const [gpus, metrics] = await Promise.all([this.gpuRefs(q), this.metricIds(q.metrics)]);
    if (gpus.length === 0) return [];
    const fromMemory = this.latestFromMemory(gpus, metrics);
    if (fromMemory !== undefined) return fromMemory;
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

  telemetry(q: TelemetryQuery): Promise<TelemetryPage> {
    return this.guarded((identity) => this.telemetryOf(q, identity));
  }

  private async telemetryOf(q: TelemetryQuery, identity: string | null): Promise<TelemetryPage> {
    const [gpus, metrics] = await Promise.all([this.gpuRefs(q), this.metricIds(q.metrics)]);
    if (gpus.length === 0) return { readings: [] };
    const byGpu = new Map(gpus.map((g) => [g.id, g]));
    const after = q.after;
    // Without a cursor, no position condition at all (one index condition less to check per row).
    const params: unknown[] = [
      gpus.map((g) => g.id),
      metrics.ids,
      Math.max(q.from, BEGINNING_OF_TIME),
      q.to,
      q.limit + 1,
      identity,
    ];
    if (after !== undefined) params.push(after.gpu, after.metric, after.time);
    const res = await this.db.query<ReadingRow>(
      `SELECT gpu_id, metric_id, nexus_ms(time) AS t, value FROM samples
       WHERE gpu_id = ANY($1::int[]) AND ($2::smallint[] IS NULL OR metric_id = ANY($2))
         AND time >= nexus_ts($3) AND time < nexus_ts($4) AND nexus_expect_identity($6::text)
         ${after === undefined ? '' : 'AND (gpu_id, metric_id, time) > ($7::int, $8::smallint, nexus_ts($9))'}
       ORDER BY gpu_id, metric_id, time
       LIMIT $5`,
      params,
    );
    const rows = res.rows.slice(0, q.limit);
    const readings = readingsOf(rows, byGpu, metrics.byId);
    const last = rows[rows.length - 1];
    return res.rows.length > q.limit && last !== undefined
      ? { readings, next: { gpu: last.gpu_id, metric: last.metric_id, time: num(last.t) } }
      : { readings };
  }

  series(q: SeriesQuery): Promise<SeriesResult> {
    return this.guarded((identity) => this.seriesOf(q, identity));
  }

  private async seriesOf(q: SeriesQuery, identity: string | null): Promise<SeriesResult> {
    const [gpus, metrics] = await Promise.all([this.gpuRefs(q), this.metricIds(q.metrics)]);
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
    const value = rollup
      ? {
          avg: 'sum(sum) / sum(count)',
          min: 'min(min)',
          max: 'max(max)',
          last: '(array_agg(last_value ORDER BY last_time DESC))[1]',
        }[q.agg]
      : {
          avg: 'avg(value)',
          min: 'min(value)',
          max: 'max(value)',
          last: '(array_agg(value ORDER BY time DESC))[1]',
        }[q.agg];
    const sql = rollup
      ? `SELECT gpu_id, metric_id, nexus_ms(date_bin($5 * interval '1 millisecond', bucket, timestamptz 'epoch')) AS t, ${value} AS v, sum(count)::bigint AS n
         FROM unnest($1::int[]) AS s(id) JOIN samples_1m_all ON gpu_id = s.id
         WHERE ($2::smallint[] IS NULL OR metric_id = ANY($2)) AND nexus_expect_identity($6::text)
           AND bucket >= date_bin(interval '1 minute', nexus_ts($3), timestamptz 'epoch') AND bucket < nexus_ts($4)
         GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`
      : `SELECT gpu_id, metric_id, nexus_ms(date_bin($5 * interval '1 millisecond', time, timestamptz 'epoch')) AS t, ${value} AS v, count(*)::bigint AS n
         FROM unnest($1::int[]) AS s(id) JOIN samples ON gpu_id = s.id
         WHERE ($2::smallint[] IS NULL OR metric_id = ANY($2)) AND nexus_expect_identity($6::text)
           AND time >= nexus_ts($3) AND time < nexus_ts($4)
         GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`;
    const res = await this.db.query<{
      gpu_id: number;
      metric_id: number;
      t: string;
      v: number;
      n: string;
    }>(sql, [gpus.map((g) => g.id), metrics.ids, q.from, q.to, q.stepMs, identity]);
    const byGpu = new Map(gpus.map((g) => [g.id, g]));
    const out: Series[] = [];
    let current: { key: string; s: Series & { points: [number, number, number][] } } | undefined;
    for (const r of res.rows) {
      const key = `${r.gpu_id}:${r.metric_id}`;
      if (current?.key !== key) {
        const g = byGpu.get(r.gpu_id);
        const m = metrics.byId.get(r.metric_id);
        if (g === undefined || m === undefined) continue;
        current = {
          key,
          s: { ...identityOf(g, m), points: [] },
        };
        out.push(current.s);
      }
      current.s.points.push([num(r.t), r.v, num(r.n)]);
    }
    return { series: out, source: rollup ? 'rollup_1m' : 'raw' };
  }
}
