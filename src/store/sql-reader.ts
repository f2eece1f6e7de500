import { NexusError } from '../core/errors.js';
import { EventReads } from './event-reads.js';
import type { Logger } from '../core/logger.js';
import { WHOLE_GPU } from '../core/mig.js';
import { isIdentityChanged, readIdentity, reidentifier, type IdentityChange } from './identity.js';
import { LatestMemory } from './latest-memory.js';
import {
  ReadQueries,
  type FleetSnapshot,
  type GpuRef,
  type MetricRef,
  type MetricSelection,
} from './read-queries.js';
import type {
  ColumnPage,
  ClusterStats,
  ClusterSummary,
  CurrentWorkload,
  GpuDetail,
  GpuSummary,
  HostSummary,
  IdleGpu,
  IdleQuery,
  LatestTracker,
  LatestValue,
  MetricInfo,
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

/** The GPUs of `gpus` (in id order) a selection names. */
function pickGpus(gpus: readonly GpuRef[], sel: Selection): GpuRef[] {
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
  // Whole GPUs only unless the selection names instances (a GPU's series never mix its own in).
  const instances = sel.instances === 'all' ? undefined : new Set(sel.instances ?? [WHOLE_GPU]);
  return gpus.filter(
    (g) =>
      (instances === undefined || instances.has(g.gpu_instance_id)) &&
      (sel.cluster === undefined || g.cluster_id === sel.cluster) &&
      (hosts === undefined || hosts.has(g.hostname)) &&
      (indexes === undefined || indexes.has(g.gpu_id)) &&
      (uuids === undefined || (g.uuid !== null && uuids.has(g.uuid))) &&
      (sel.live !== true || !g.retired),
  );
}

export interface SqlReaderOptions {
  readonly logger?: Logger;
  /** The database's identity changed under the caches (they were dropped). */
  readonly onIdentityChange?: (change: IdentityChange) => void;
}

/**
 * The read side of the SQL store: the queries (read-queries.ts) on selections resolved to ids
 * from two caches (the fleet's GPUs and the metrics, stale-while-revalidate: swr-cache.ts), and
 * latest values served from memory when tracked (latest-memory.ts).
 *
 * The caches belong to one database, by its identity (migration 003). Every query that uses
 * cached ids checks it (`guarded`); when the database is another one, the caches are dropped and
 * the query runs again.
 */
export class SqlReader implements TelemetryReader {
  readonly events: EventReads;
  private readonly q: ReadQueries;
  /**
   * The fleet's GPUs, kept in memory for a few seconds: resolving a selection costs no query, and
   * a name not found triggers one refresh (a GPU or cluster that just appeared), at most one a
   * second.
   */
  private readonly fleet: SwrCache<FleetSnapshot>;
  /**
   * Metric name -> id, cached for a few seconds (new metrics appear rarely); a name not found
   * waits for a fresh read.
   */
  private readonly metrics: SwrCache<MetricRef[]>;
  private memory: LatestMemory | undefined;
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
    this.fleet = new SwrCache(
      () =>
        this.guarded(async (identity) => ({
          value: await this.q.fleet(identity),
          keep: this.current(identity),
        })),
      { maxAgeMs: 5000, forcedMaxAgeMs: 1000, forcedJoins: true },
    );
    this.metrics = new SwrCache(
      () =>
        this.guarded(async (identity) => ({
          value: await this.q.metricRefs(identity),
          keep: this.current(identity),
        })),
      { maxAgeMs: 5000, forcedMaxAgeMs: 0, forcedJoins: false },
    );
    this.reidentify = reidentifier({
      db,
      known: () => this.identity,
      drop: (now) => {
        this.identity = now;
        this.fleet.clear();
        this.metrics.clear();
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

  clusters(): Promise<ClusterSummary[]> {
    return this.q.clusters();
  }

  async cluster(clusterId: string): Promise<ClusterSummary | undefined> {
    return (await this.clusters()).find((c) => c.cluster_id === clusterId);
  }

  async clusterStats(clusterId: string): Promise<ClusterStats | undefined> {
    const summary = await this.cluster(clusterId);
    if (summary === undefined) return undefined;
    return this.q.clusterStats(summary);
  }

  hosts(clusterId: string, includeRetired = false): Promise<HostSummary[]> {
    return this.q.hosts(clusterId, includeRetired);
  }

  async host(clusterId: string, hostname: string): Promise<HostSummary | undefined> {
    return (await this.hosts(clusterId, true)).find((h) => h.hostname === hostname);
  }

  gpus(clusterId: string, hostname?: string, includeRetired = false): Promise<GpuSummary[]> {
    return this.q.gpus(clusterId, hostname, includeRetired);
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
      names.some((n) => !byName.has(n) && !byName.has(`DCGM_FI_DEV_${n}`))
    ) {
      refs = await this.metrics.get(true);
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
  private async gpuRefs(sel: Selection): Promise<GpuRef[]> {
    let found = pickGpus((await this.fleet.get()).gpus, sel);
    const clusterKnown = (): boolean =>
      sel.cluster === undefined || this.fleet.peek()?.clusters.has(sel.cluster) === true;
    if (found.length === 0 || !clusterKnown()) {
      found = pickGpus((await this.fleet.get(true)).gpus, sel);
    }
    // Still unknown: a snapshot (even a young one) may have been read just before the cluster's
    // first commit. The database says whether it exists; if it does, a load started now shows it.
    if (!clusterKnown() && sel.cluster !== undefined && (await this.q.clusterExists(sel.cluster)))
      found = pickGpus((await this.fleet.reload()).gpus, sel);
    if (!clusterKnown())
      throw new NexusError('NOT_FOUND', `cluster "${sel.cluster ?? ''}" not found`);
    return found;
  }

  trackLatest(options: { readonly reloadMs: number }): LatestTracker {
    const mem = new LatestMemory(
      {
        guarded: (read) => this.guarded(read),
        current: (identity) => this.current(identity),
        reloadIds: async () => {
          const fleet = await this.fleet.get(true);
          await this.metrics.get(true);
          return fleet.gpus;
        },
        readAll: (identity) => this.q.allLatest(identity),
        cachedFleet: () => this.fleet.peek()?.gpus,
        cachedMetrics: () => this.metrics.peek(),
      },
      options.reloadMs,
    );
    this.memory = mem;
    return {
      committed: (clusterId, readings) => mem.committed(clusterId, readings),
      start: () => mem.start(),
      stop: () => {
        mem.stop();
        if (this.memory === mem) this.memory = undefined;
      },
    };
  }

  latest(q: Selection): Promise<LatestValue[]> {
    return this.guarded(async (identity) => {
      const [gpus, metrics] = await Promise.all([this.gpuRefs(q), this.metricIds(q.metrics)]);
      if (gpus.length === 0) return [];
      return this.memory?.read(gpus, metrics) ?? this.q.latest(gpus, metrics, identity);
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
    if (!(await this.q.clusterExists(cluster)))
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
