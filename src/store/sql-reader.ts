import { NexusError } from '../core/errors.js';
import { resolveMetricName, unknownMetric } from '../core/dcgm-fields.js';
import { EventReads } from './event-reads.js';
import type { Logger } from '../core/logger.js';
import { WHOLE_GPU } from '../core/mig.js';
import { isIdentityChanged, readIdentity, reidentifier, type IdentityChange } from './identity.js';
import { LatestMemory } from './latest-memory.js';
import {
  FleetDirectory,
  isRetiredHost,
  lowerBound,
  upperBound,
  type DirCluster,
  type DirGpu,
  type DirHost,
} from './fleet-directory.js';
import { HeatKeeper } from './heat-state.js';
import { OverviewKeeper, TEMP } from './overview-state.js';
import {
  ReadQueries,
  str,
  type GpuRef,
  type MetricRef,
  type MetricSelection,
} from './read-queries.js';
import { searchDirectory } from './search.js';
import type {
  ColumnPage,
  ClusterStats,
  ClusterSummary,
  CurrentWorkload,
  FleetReadCounters,
  GpuDetail,
  GpuSummary,
  HeatHosts,
  HostRange,
  HostSummary,
  IdleGpu,
  IdleQuery,
  LatestTracker,
  LatestValue,
  MetricInfo,
  OverviewState,
  Page,
  PageQuery,
  SearchQuery,
  SearchResult,
  Selection,
  SeriesQuery,
  SeriesResult,
  TelemetryPage,
  TelemetryQuery,
  TelemetryReader,
  UsageQuery,
  UsageRows,
} from './reader.js';
import { SwrCache } from './swr-cache.js';
import { idleGpus, usage, withHashJoins } from './fleet-reads.js';
import type { Database } from './types.js';

/** Importable from here too, as before (the gateway takes it from ./reader.js). */
export { END_OF_TIME } from './reader.js';

/** The GPU rows (every instance) of a cluster's hosts, or of the named hosts. */
function gpusOf(dir: FleetDirectory, sel: Selection): readonly DirGpu[] {
  if (sel.cluster === undefined) return [...dir.gpusById.values()];
  const c = dir.clusters.get(sel.cluster);
  if (c === undefined) return [];
  if (sel.hosts === undefined) return c.hosts.flatMap((h) => h.rows);
  return [...new Set(sel.hosts)].flatMap((h) => c.byName.get(h)?.rows ?? []);
}

const lower = (s: string): string => s.toLowerCase();

/** The GPUs of the directory a selection names, in id order: it costs what it names. */
function pickGpus(dir: FleetDirectory, sel: Selection): GpuRef[] {
  const hosts = sel.hosts === undefined ? undefined : new Set(sel.hosts);
  const indexes = sel.gpus === undefined ? undefined : new Set(sel.gpus);
  // Uuids match whatever their case (a uuid's hex is the same number in either).
  const uuids = sel.uuids === undefined ? undefined : new Set(sel.uuids.map(lower));
  // GPUs named by index or by uuid: a GPU either names is selected (gpu_id=0,GPU-...).
  const named = (g: DirGpu): boolean =>
    (indexes === undefined && uuids === undefined) ||
    (indexes !== undefined && indexes.has(g.gpu_id)) ||
    (uuids !== undefined && g.uuid !== null && uuids.has(lower(g.uuid)));
  // Whole GPUs only unless the selection names instances (a GPU's series never mix its own in).
  const instances = sel.instances === 'all' ? undefined : new Set(sel.instances ?? [WHOLE_GPU]);
  return gpusOf(dir, sel)
    .filter(
      (g) =>
        (instances === undefined || instances.has(g.gpu_instance_id)) &&
        (hosts === undefined || hosts.has(g.hostname)) &&
        named(g) &&
        (sel.live !== true || !g.retired),
    )
    .sort((a, b) => a.id - b.id);
}

/** A list's slice from the item after `after` (by `key`), up to `limit` items. */
function slicePage<T>(
  items: readonly T[],
  start: number,
  end: number,
  limit: number,
  key: (t: T) => readonly (string | number)[],
): { items: T[]; next: readonly (string | number)[] | undefined } {
  const page = items.slice(start, Math.min(end, start + limit));
  const last = page[page.length - 1];
  return {
    items: page,
    next: start + page.length < end && last !== undefined ? key(last) : undefined,
  };
}

/** Whole clusters' GPU lists kept (SqlReader.pick); past it, they are all dropped. */
const CLUSTER_GPUS_CACHED = 64;

/** The directory's answers are this fresh (ms): an older one is brought up to date first. */
const DIRECTORY_MAX_AGE_MS = 1000;
/** A name still unknown after a refresh is NOT_FOUND without another refresh this long (ms). */
const UNKNOWN_FOR_MS = 1000;
/** Idle GPUs per cluster are computed in the background this often (ms). */
const IDLE_EVERY_MS = 60_000;

export interface SqlReaderOptions {
  readonly logger?: Logger;
  /** The database's identity changed under the caches (they were dropped). */
  readonly onIdentityChange?: (change: IdentityChange) => void;
}

/**
 * How long the overview waits for the latest values' first load after the gateway started, before
 * it reads the store instead.
 */
const OVERVIEW_LOAD_WAIT_MS = 20_000;

/** Cluster statistics that took this long to count are cached for a minute (clusterStats). */
const STATS_CACHE_AFTER_MS = 200;

const hostname = (h: DirHost): string => h.hostname;

/** The index range [from, end) of a hostname-sorted host list whose names start with `prefix`. */
function prefixBounds(list: readonly DirHost[], prefix: string): [number, number] {
  if (prefix === '') return [0, list.length];
  return [lowerBound(list, prefix, hostname), lowerBound(list, `${prefix}\uffff`, hostname)];
}

/**
 * The read side of the SQL store: the queries (read-queries.ts) on selections resolved to ids
 * from the fleet directory (fleet-directory.ts: every cluster, host and GPU row in memory, kept
 * current by change markers) and the metrics (stale-while-revalidate: swr-cache.ts), and latest
 * values served from memory when tracked (latest-memory.ts).
 *
 * The caches belong to one database, by its identity (migration 003). Every query that uses
 * cached ids checks it (`guarded`); when the database is another one, the caches are dropped and
 * the query runs again.
 */
export class SqlReader implements TelemetryReader {
  readonly events: EventReads;
  private readonly q: ReadQueries;
  /** Every cluster, host and GPU row, with the lists' indexes and counts. */
  private readonly dir = new FleetDirectory();
  private refreshing: Promise<void> | undefined;
  /** When the refresh under way (or the last one) started, and when the last one ended. */
  private refreshStarted = 0;
  private refreshedAt = 0;
  /** Names found unknown by a refresh, and when that refresh started. */
  private readonly unknown = new Map<string, number>();
  /**
   * Metric name -> id, cached for a few seconds (new metrics appear rarely); a name not found
   * waits for a fresh read.
   */
  private readonly metrics: SwrCache<MetricRef[]>;
  private memory: LatestMemory | undefined;
  private readonly overview = new OverviewKeeper();
  private readonly heat = new HeatKeeper(
    (gpu, metric) => this.memory?.value(gpu, metric),
    () => this.metricIndex().byName.get(TEMP),
  );
  /** Newest reading time per cluster, from the latest values in memory. */
  private readonly clusterLast = new Map<string, number>();
  private readonly idle = new Map<string, number>();
  /** The idle GPUs of each cluster, as the last background round found them. */
  private readonly idleLists = new Map<string, readonly IdleGpu[]>();
  private idleTimer: NodeJS.Timeout | undefined;
  private backgroundTimer: NodeJS.Timeout | undefined;
  /** Cluster statistics, per cluster, stale-while-revalidate. */
  private readonly stats = new Map<string, SwrCache<ClusterStats | undefined>>();
  /** Latest-value rows read from the store outside memory (and by it). */
  private latestRows = 0;
  /** The identity of the database the caches belong to; undefined until read. */
  private identity: string | undefined;
  private identityLoading: Promise<string | undefined> | undefined;
  /** The database changed under the caches: read its identity, drop them, say so. */
  private readonly reidentify: () => Promise<void>;

  constructor(
    private readonly db: Database,
    options: SqlReaderOptions = {},
  ) {
    this.q = new ReadQueries(db);
    this.events = new EventReads(db);
    this.metrics = new SwrCache(
      () =>
        this.guarded(async (identity) => ({
          value: await this.q.metricRefs(identity),
          keep: this.current(identity),
        })),
      { maxAgeMs: 5000, forcedMaxAgeMs: 0, forcedJoins: false },
    );
    this.dir.onGpu = (old, g) => {
      this.overview.onGpu(old, g);
      this.heat.onGpu(g);
      if (old === undefined) this.memory?.adopt([g.id]);
    };
    this.reidentify = reidentifier({
      db,
      known: () => this.identity,
      drop: (now) => {
        this.identity = now;
        this.dir.reset();
        this.unknown.clear();
        this.metrics.clear();
        this.overview.clear();
        this.heat.clear();
        this.clusterLast.clear();
        this.idle.clear();
        this.idleLists.clear();
        this.stats.clear();
        this.memory?.reset();
      },
      onChange: options.onIdentityChange,
      logger: options.logger,
      messages: {
        database:
          'the database was replaced (another identity): dropped the fleet, metric and latest values cached for the old one',
        server:
          'the PostgreSQL server restarted or failed over: dropped the fleet, metric and latest values cached, reading them again',
      },
    });
  }

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

  /** One refresh of the directory at a time; the others wait for it. */
  private refresh(): Promise<void> {
    this.refreshing ??= (async () => {
      this.refreshStarted = Date.now();
      try {
        await this.guarded((identity) => this.dir.refresh(this.db, identity));
        this.refreshedAt = Date.now();
      } finally {
        this.refreshing = undefined;
      }
    })();
    return this.refreshing;
  }

  /** A refresh that started at or after `since` (joined if one is under way, else started). */
  private async refreshSince(since: number): Promise<void> {
    for (;;) {
      const under = this.refreshing;
      if (under === undefined) return this.refresh();
      if (this.refreshStarted >= since) return under;
      await under.catch(() => undefined);
    }
  }

  /** The directory, loaded, and no older than DIRECTORY_MAX_AGE_MS. */
  private async directory(): Promise<FleetDirectory> {
    if (!this.dir.loaded || Date.now() - this.refreshedAt > DIRECTORY_MAX_AGE_MS)
      await this.refreshSince(Date.now() - DIRECTORY_MAX_AGE_MS);
    return this.dir;
  }

  /**
   * Looks a name up; when unknown, once per UNKNOWN_FOR_MS, after a refresh started now (it may
   * have been written just before this request).
   */
  private async lookup<T>(
    key: string,
    find: (dir: FleetDirectory) => T | undefined,
  ): Promise<T | undefined> {
    const dir = await this.directory();
    const found = find(dir);
    if (found !== undefined) return found;
    const at = this.unknown.get(key);
    if (at !== undefined && Date.now() - at < UNKNOWN_FOR_MS) return undefined;
    const now = Date.now();
    await this.refreshSince(now);
    const again = find(this.dir);
    if (again === undefined) {
      if (this.unknown.size > 10_000) this.unknown.clear();
      this.unknown.set(key, now);
    } else this.unknown.delete(key);
    return again;
  }

  private clusterOf(clusterId: string): Promise<DirCluster | undefined> {
    return this.lookup(`c\u0000${clusterId}`, (d) => d.clusters.get(clusterId));
  }

  private hostOf(clusterId: string, hostname: string): Promise<DirHost | undefined> {
    return this.lookup(`h\u0000${clusterId}\u0000${hostname}`, (d) => d.host(clusterId, hostname));
  }

  /** What the reader counted (rows read, refreshes). */
  fleetCounters(): FleetReadCounters {
    const d = this.dir.counters;
    const m = this.memory;
    return {
      // latest: read for requests (memory did not hold them); latest_memory: the memory's load,
      // its reconciliation slices and the GPUs new to it (background, not per request).
      rowsRead: { ...d.rowsRead, latest: this.latestRows, latest_memory: m?.rowsRead ?? 0 },
      reloads: {
        full: d.reloads.full + (m?.reloads.full ?? 0),
        incremental: d.reloads.incremental + (m?.reloads.incremental ?? 0),
      },
    };
  }

  /** Newest reading of GPU rows, from memory; `missing` collects the rows memory does not hold. */
  private newestOf(rows: readonly DirGpu[], missing: number[]): number | undefined {
    let t: number | undefined;
    for (const g of rows) {
      const m = this.memory;
      if (m === undefined || !m.holds(g.id)) {
        missing.push(g.id);
        continue;
      }
      const n = m.newest(g.id);
      if (n !== undefined && (t === undefined || n > t)) t = n;
    }
    return t;
  }

  /** last_seen of GPU rows memory does not hold: one query for all of them. */
  private async lastSeen(ids: readonly number[]): Promise<Map<number, number>> {
    if (ids.length === 0) return new Map();
    const rows = await this.guarded((identity) => this.q.newestOf(ids, identity));
    this.latestRows += rows.size;
    return rows;
  }

  private clusterSummary(c: DirCluster, last: number | undefined): ClusterSummary {
    return {
      cluster_id: c.name,
      hosts: c.listed.length,
      gpus: c.liveGpus,
      retired_gpus: c.retiredGpus,
      first_seen: c.first_seen,
      last_seen: last,
    };
  }

  /** Clusters' last_seen: from memory when loaded, else one query per cluster. */
  private async clusterLastSeen(c: DirCluster): Promise<number | undefined> {
    if (this.memory?.loaded === true) return this.clusterLast.get(c.name);
    const ids = c.hosts.flatMap((h) => h.rows.map((g) => g.id));
    let t: number | undefined;
    for (const v of (await this.lastSeen(ids)).values()) if (t === undefined || v > t) t = v;
    return t;
  }

  async clusters(): Promise<ClusterSummary[]> {
    return [...(await this.clustersPage({ limit: Number.MAX_SAFE_INTEGER })).items];
  }

  async clustersPage(q: PageQuery): Promise<Page<ClusterSummary>> {
    const dir = await this.directory();
    const list = dir.sortedClusters;
    const after = q.after?.[0];
    const start = typeof after === 'string' ? upperBound(list, after, (c) => c.name) : 0;
    const page = slicePage(list, start, list.length, q.limit, (c) => [c.name]);
    const items = await Promise.all(
      page.items.map(async (c) => this.clusterSummary(c, await this.clusterLastSeen(c))),
    );
    return { items, total: list.length, next: page.next };
  }

  async cluster(clusterId: string): Promise<ClusterSummary | undefined> {
    const c = await this.clusterOf(clusterId);
    return c === undefined ? undefined : this.clusterSummary(c, await this.clusterLastSeen(c));
  }

  /**
   * A cluster's statistics: its rollups and chunks counted a page of GPU ids per statement (no
   * statement near the timeout on a large cluster). When counting took STATS_CACHE_AFTER_MS or
   * more (a large cluster), the answer is cached per cluster for a minute (stale-while-revalidate:
   * an expired answer is served while one computation refreshes it); a small cluster's is counted
   * on every request, so it is exact.
   */
  async clusterStats(clusterId: string): Promise<ClusterStats | undefined> {
    const c = await this.clusterOf(clusterId);
    if (c === undefined) return undefined;
    let cache = this.stats.get(clusterId);
    if (cache === undefined) {
      cache = new SwrCache(
        async () => {
          const summary = await this.cluster(clusterId);
          if (summary === undefined) return { value: undefined, keep: false };
          const ids = c.hosts.flatMap((h) => h.rows.map((g) => g.id));
          const t0 = Date.now();
          const value = await this.q.clusterStats(summary, ids);
          return { value, keep: Date.now() - t0 >= STATS_CACHE_AFTER_MS };
        },
        { maxAgeMs: 60_000, forcedMaxAgeMs: 0, forcedJoins: true },
      );
      this.stats.set(clusterId, cache);
    }
    return cache.get();
  }

  private hostSummary(h: DirHost, includeRetired: boolean, last: number | undefined): HostSummary {
    return {
      cluster_id: h.cluster.name,
      hostname: h.hostname,
      gpus: includeRetired ? h.liveWhole + h.retiredWhole : h.liveWhole,
      retired: isRetiredHost(h),
      first_seen: h.first_seen,
      last_seen: last,
    };
  }

  /** Hosts with their last_seen: memory, and one query for the rows it does not hold. */
  private async hostSummaries(
    hosts: readonly DirHost[],
    includeRetired: boolean,
  ): Promise<HostSummary[]> {
    const missing: number[] = [];
    const fromMemory = hosts.map((h) => this.newestOf(h.rows, missing));
    const fromStore = await this.lastSeen(missing);
    return hosts.map((h, i) => {
      let t = fromMemory[i];
      for (const g of h.rows) {
        const s = fromStore.get(g.id);
        if (s !== undefined && (t === undefined || s > t)) t = s;
      }
      return this.hostSummary(h, includeRetired, t);
    });
  }

  async hosts(clusterId: string, includeRetired = false): Promise<HostSummary[]> {
    const page = await this.hostsPage(clusterId, {
      limit: Number.MAX_SAFE_INTEGER,
      includeRetired,
    });
    return page === undefined ? [] : [...page.items];
  }

  async hostsPage(clusterId: string, q: PageQuery): Promise<Page<HostSummary> | undefined> {
    const c = await this.clusterOf(clusterId);
    if (c === undefined) return undefined;
    const list = q.includeRetired === true ? c.hosts : c.listed;
    const [from, end] = prefixBounds(list, q.prefix ?? '');
    const after = q.after?.[0];
    const start =
      typeof after === 'string'
        ? Math.max(
            from,
            upperBound(list, after, (h) => h.hostname),
          )
        : from;
    const page = slicePage(list, start, end, q.limit, (h) => [h.hostname]);
    const items = await this.hostSummaries(page.items, q.includeRetired === true);
    return { items, total: end - from, next: page.next };
  }

  async host(clusterId: string, hostname: string): Promise<HostSummary | undefined> {
    const h = await this.hostOf(clusterId, hostname);
    if (h === undefined) return undefined;
    return (await this.hostSummaries([h], true))[0];
  }

  async gpus(clusterId: string, hostname?: string, includeRetired = false): Promise<GpuSummary[]> {
    const page = await this.gpusPage(clusterId, hostname, {
      limit: Number.MAX_SAFE_INTEGER,
      includeRetired,
    });
    return page === undefined ? [] : [...page.items];
  }

  async gpusPage(
    clusterId: string,
    hostname: string | undefined,
    q: PageQuery,
  ): Promise<Page<GpuSummary> | undefined> {
    const c = await this.clusterOf(clusterId);
    if (c === undefined) return undefined;
    let hosts: readonly DirHost[];
    if (hostname !== undefined) {
      const h = await this.hostOf(clusterId, hostname);
      if (h === undefined) return undefined;
      hosts = [h];
    } else {
      const prefix = q.prefix ?? '';
      const from = lowerBound(c.hosts, prefix, (h) => h.hostname);
      const end =
        prefix === '' ? c.hosts.length : lowerBound(c.hosts, `${prefix}\uffff`, (h) => h.hostname);
      hosts = prefix === '' ? c.hosts : c.hosts.slice(from, end);
    }
    const retired = q.includeRetired === true;
    const counted = (h: DirHost): number => (retired ? h.liveWhole + h.retiredWhole : h.liveWhole);
    const total =
      hostname === undefined && (q.prefix ?? '') === ''
        ? retired
          ? c.liveGpus + c.retiredGpus
          : c.liveGpus
        : hosts.reduce((n, h) => n + counted(h), 0);
    // From the host of the cursor: its GPUs after the cursor's index, then the next hosts'.
    const afterHost = q.after?.[0];
    const afterGpu = q.after?.[1];
    let i = typeof afterHost === 'string' ? lowerBound(hosts, afterHost, (h) => h.hostname) : 0;
    const picked: DirGpu[] = [];
    let more = false;
    for (; i < hosts.length && !more; i++) {
      const h = hosts[i] as DirHost;
      for (const g of h.rows) {
        if (g.gpu_instance_id !== WHOLE_GPU || (!retired && g.retired)) continue;
        if (
          typeof afterHost === 'string' &&
          (h.hostname < afterHost ||
            (h.hostname === afterHost && typeof afterGpu === 'number' && g.gpu_id <= afterGpu))
        )
          continue;
        if (picked.length === q.limit) {
          more = true;
          break;
        }
        picked.push(g);
      }
    }
    const last = picked[picked.length - 1];
    const missing: number[] = [];
    const fromMemory = picked.map((g) =>
      this.newestOf(
        g.host.rows.filter((x) => x.gpu_id === g.gpu_id),
        missing,
      ),
    );
    const fromStore = await this.lastSeen(missing);
    const items = picked.map((g, k): GpuSummary => {
      const instances = g.host.rows.filter((x) => x.gpu_id === g.gpu_id);
      let t = fromMemory[k];
      for (const x of instances) {
        const s = fromStore.get(x.id);
        if (s !== undefined && (t === undefined || s > t)) t = s;
      }
      return {
        cluster_id: c.name,
        hostname: g.hostname,
        gpu_id: g.gpu_id,
        uuid: str(g.uuid),
        model: str(g.model),
        device: str(g.device),
        first_seen: g.first_seen,
        last_seen: t,
        mig_instances: instances
          .filter((x) => x.gpu_instance_id !== WHOLE_GPU)
          .map((x) => ({ gpu_instance_id: x.gpu_instance_id, profile: str(x.mig_profile) })),
        retired: g.retired,
      };
    });
    return {
      items,
      total,
      next: more && last !== undefined ? [last.hostname, last.gpu_id] : undefined,
    };
  }

  gpu(clusterId: string, hostname: string, gpuId: number): Promise<GpuDetail | undefined> {
    return this.q.gpu(clusterId, hostname, gpuId, (sel) => this.latest(sel));
  }

  currentWorkloads(): Promise<CurrentWorkload[]> {
    return this.q.currentWorkloads();
  }

  metricCatalogue(): Promise<MetricInfo[]> {
    return this.q.metricCatalogue();
  }

  /** Metric ids of a selection; NOT_FOUND-free: an unknown name is a bad request naming the known ones. */
  private async metricIds(names: readonly string[] | undefined): Promise<MetricSelection> {
    let refs = await this.metrics.get();
    const byName = new Map(refs.map((m) => [m.name, m]));
    if (
      names !== undefined &&
      names.some((n) => resolveMetricName(n, (f) => byName.get(f)) === undefined)
    ) {
      refs = await this.metrics.get(true);
      refs.forEach((m) => byName.set(m.name, m));
    }
    const byId = new Map(refs.map((m) => [m.id, m]));
    if (names === undefined) return { ids: null, byId };
    const ids: number[] = [];
    for (const n of names) {
      const m = resolveMetricName(n, (f) => byName.get(f));
      if (m === undefined) throw unknownMetric(n, byName.keys());
      ids.push(m.id);
    }
    return { ids, byId };
  }

  /**
   * A whole cluster's GPUs as pickGpus names them, by selection (live or not, which instances),
   * while the directory has not changed: the heatmap and the overview ask for them every few
   * seconds (100,000 GPUs: a list built and sorted twice a heatmap).
   */
  private readonly clusterGpus = new Map<string, { version: number; refs: readonly GpuRef[] }>();

  /** pickGpus, a whole cluster's answer reused while the directory is unchanged. */
  private pick(dir: FleetDirectory, sel: Selection): readonly GpuRef[] {
    const whole =
      sel.cluster !== undefined &&
      sel.hosts === undefined &&
      sel.gpus === undefined &&
      sel.uuids === undefined;
    if (!whole) return pickGpus(dir, sel);
    const instances = sel.instances === 'all' ? 'all' : (sel.instances ?? [WHOLE_GPU]).join(',');
    const key = `${sel.cluster}\u0000${sel.live === true}\u0000${instances}`;
    const hit = this.clusterGpus.get(key);
    if (hit !== undefined && hit.version === dir.version) return hit.refs;
    const refs = pickGpus(dir, sel);
    if (this.clusterGpus.size >= CLUSTER_GPUS_CACHED && hit === undefined) this.clusterGpus.clear();
    this.clusterGpus.set(key, { version: dir.version, refs });
    return refs;
  }

  /** The GPUs a selection names. An unknown cluster is NOT_FOUND; filters matching nothing give []. */
  private async gpuRefs(sel: Selection): Promise<readonly GpuRef[]> {
    if (sel.cluster !== undefined && (await this.clusterOf(sel.cluster)) === undefined)
      throw new NexusError('NOT_FOUND', `cluster "${sel.cluster}" not found`);
    let found = this.pick(await this.directory(), sel);
    // Nothing: a host or GPU named may have just appeared (once per name a second).
    if (found.length === 0 && sel.cluster !== undefined && sel.hosts !== undefined) {
      const cluster = sel.cluster;
      await Promise.all(sel.hosts.map((h) => this.hostOf(cluster, h)));
      found = this.pick(this.dir, sel);
    }
    return found;
  }

  /** Keeps the state derived from latest values (overview, last_seen) as a slot changes. */
  private onSlot(gpu: number, metric: number, time: number): void {
    const g = this.dir.gpusById.get(gpu);
    if (g === undefined) return;
    const c = this.clusterLast.get(g.cluster_id);
    if (c === undefined || time > c) this.clusterLast.set(g.cluster_id, time);
    const name = this.metricNames().get(metric);
    if (name !== undefined) {
      const value = this.memory?.value(gpu, metric);
      if (value !== undefined) this.overview.onValue(g, name, time, value);
      this.heat.onValue(g, metric, name);
    }
  }

  private names:
    | { rows: readonly MetricRef[]; byId: Map<number, string>; byName: Map<string, number> }
    | undefined;

  /** Metric names by id and ids by name, as cached now. */
  private metricIndex(): { byId: Map<number, string>; byName: Map<string, number> } {
    const rows = this.metrics.peek() ?? [];
    if (this.names?.rows !== rows)
      this.names = {
        rows,
        byId: new Map(rows.map((m) => [m.id, m.name])),
        byName: new Map(rows.map((m) => [m.name, m.id])),
      };
    return this.names;
  }

  private metricNames(): Map<number, string> {
    return this.metricIndex().byId;
  }

  trackLatest(options: {
    readonly reloadMs: number;
    readonly idle?: { readonly utilPercent: number; readonly forMs: number };
  }): LatestTracker {
    if (options.idle !== undefined) this.idleRule = { ...options.idle };
    const mem = new LatestMemory(
      {
        guarded: (read) => this.guarded(read),
        current: (identity) => this.current(identity),
        refreshIds: async () => {
          await this.refresh();
          await this.metrics.get(true);
        },
        readRange: (identity, from, to) => this.q.latestRange(from, to, identity),
        readIds: (identity, ids) => this.q.latestOfIds(ids, identity),
        maxGpuId: () => this.dir.maxGpuId,
        knownGpu: (id) => this.dir.gpusById.has(id),
        gpuId: (cluster, hostname, gpu, instance) =>
          this.dir
            .host(cluster, hostname)
            ?.rows.find((g) => g.gpu_id === gpu && g.gpu_instance_id === instance)?.id,
        metricId: (name) => this.metricIndex().byName.get(name),
      },
      Math.min(options.reloadMs, 1000),
      (gpu, metric, time) => this.onSlot(gpu, metric, time),
    );
    this.memory = mem;
    let warm = false;
    return {
      committed: (clusterId, readings) => mem.committed(clusterId, readings),
      resync: () => void mem.resync(),
      start: () => {
        mem.start();
        this.startBackground();
      },
      warming: () => {
        // Only the first load: a reload later (a resync after the feed missed readings, a
        // replaced database) serves meanwhile, as every gateway would be doing the same.
        if (warm) return undefined;
        if (!this.dir.loaded) return 'loading the fleet directory';
        if (!mem.loaded) return 'loading the latest values';
        warm = true;
        return undefined;
      },
      stop: () => {
        mem.stop();
        this.stopBackground();
        if (this.memory === mem) this.memory = undefined;
      },
    };
  }

  /** The directory refreshed every second, and idle GPUs per cluster every minute. */
  private startBackground(): void {
    this.backgroundTimer ??= setInterval(() => {
      this.refresh().catch(() => undefined);
    }, DIRECTORY_MAX_AGE_MS / 2);
    this.backgroundTimer.unref();
    const idleRound = async (): Promise<void> => {
      for (const c of [...this.dir.sortedClusters]) {
        try {
          const gpus = await this.db.transaction((tx) =>
            withHashJoins(tx, () => idleGpus(tx, { cluster: c.name, ...this.idleRule })),
          );
          this.idle.set(c.name, gpus.length);
          this.idleLists.set(c.name, gpus);
        } catch {
          // Counted again next round.
        }
      }
    };
    if (this.idleTimer === undefined) {
      this.idleTimer = setInterval(() => void idleRound(), IDLE_EVERY_MS);
      this.idleTimer.unref();
      setTimeout(() => void idleRound(), 0).unref();
    }
  }

  private stopBackground(): void {
    clearInterval(this.backgroundTimer);
    clearInterval(this.idleTimer);
    this.backgroundTimer = undefined;
    this.idleTimer = undefined;
  }

  /**
   * The idle GPUs of each cluster as the background round (every minute, with trackLatest) last
   * found them; undefined when no round runs here (the caller then asks idleGpus).
   */
  idleSnapshot(): ReadonlyMap<string, readonly IdleGpu[]> | undefined {
    return this.idleTimer === undefined ? undefined : this.idleLists;
  }

  /** IDLE_UTIL and IDLE_FOR, for the idle GPUs counted in the background (trackLatest's). */
  private idleRule = { utilPercent: 10, forMs: 3_600_000 };

  async overviewState(): Promise<OverviewState | undefined> {
    const memory = this.memory;
    if (memory === undefined) return undefined;
    // Just started: the first load takes seconds even for 100,000 GPUs, where the overview read
    // from the store (an idle query per cluster) takes minutes. So wait for it.
    if (!memory.loaded && !(await memory.whenLoaded(OVERVIEW_LOAD_WAIT_MS))) return undefined;
    // New GPUs' values read first (those written before the feed named them).
    await this.directory();
    await memory.settle();
    const alerts = this.overview.alertList();
    return {
      power: this.overview.power,
      alerts,
      alertsTotal: alerts.length,
      idle: this.idle,
    };
  }

  async heatHosts(
    clusterId: string,
    metric: string,
    range: HostRange,
  ): Promise<HeatHosts | undefined> {
    const memory = this.memory;
    if (memory === undefined || !memory.loaded) return undefined;
    const { ids, byId } = await this.metricIds([metric]);
    const ref = byId.get(ids?.[0] ?? -1);
    if (ref === undefined) return undefined;
    const c = await this.clusterOf(clusterId);
    if (c === undefined) throw new NexusError('NOT_FOUND', `cluster "${clusterId}" not found`);
    // New GPUs' values read first (those written before the feed named them), as the overview.
    await memory.settle();
    const list = c.listed;
    const { from, to } = range;
    const [start, end] = prefixBounds(list, range.prefix);
    const lo = Math.max(start, from === undefined ? 0 : lowerBound(list, from, hostname));
    const hi = Math.min(end, to === undefined ? list.length : upperBound(list, to, hostname));
    return { metric: ref.name, unit: ref.unit, hosts: this.heat.figures(list, lo, hi, ref.id) };
  }

  /** Hosts, GPUs, namespaces and pods by name, from the directory's indexes. */
  async search(q: SearchQuery): Promise<SearchResult> {
    if (q.cluster !== undefined && (await this.clusterOf(q.cluster)) === undefined)
      throw new NexusError('NOT_FOUND', `cluster "${q.cluster}" not found`);
    return searchDirectory(await this.directory(), q);
  }

  latest(q: Selection): Promise<LatestValue[]> {
    return this.guarded(async (identity) => {
      const [gpus, metrics] = await Promise.all([this.gpuRefs(q), this.metricIds(q.metrics)]);
      if (gpus.length === 0) return [];
      const fromMemory = this.memory?.read(gpus, metrics);
      if (fromMemory !== undefined) return fromMemory;
      const rows = await this.q.latest(gpus, metrics, identity);
      this.latestRows += rows.length;
      return rows;
    });
  }

  async idleGpus(q: IdleQuery): Promise<IdleGpu[]> {
    await this.mustExist(q.cluster);
    return this.db.transaction((tx) => withHashJoins(tx, () => idleGpus(tx, q)));
  }

  async usage(q: UsageQuery): Promise<UsageRows> {
    await this.mustExist(q.cluster);
    return this.db.transaction((tx) => withHashJoins(tx, () => usage(tx, q)));
  }

  private async mustExist(cluster: string): Promise<void> {
    if ((await this.clusterOf(cluster)) === undefined)
      throw new NexusError('NOT_FOUND', `cluster "${cluster}" not found`);
  }

  telemetry(q: TelemetryQuery): Promise<TelemetryPage> {
    return this.guarded(async (identity) => {
      const [gpus, metrics] = await Promise.all([this.gpuRefs(q), this.metricIds(q.metrics)]);
      return this.q.telemetry(q, gpus, metrics, identity);
    });
  }

  telemetryColumns(q: TelemetryQuery): Promise<ColumnPage> {
    return this.guarded(async (identity) => {
      const [gpus, metrics] = await Promise.all([this.gpuRefs(q), this.metricIds(q.metrics)]);
      return this.q.telemetryColumns(q, gpus, metrics, identity);
    });
  }

  series(q: SeriesQuery): Promise<SeriesResult> {
    return this.guarded(async (identity) => {
      const [gpus, metrics] = await Promise.all([this.gpuRefs(q), this.metricIds(q.metrics)]);
      return this.q.series(q, gpus, metrics, identity);
    });
  }
}
