/** The read side of the store, as the gateway needs it. Times are epoch milliseconds. */

import type { EventReads } from './event-reads.js';

/**
 * The longest instant PostgreSQL and JavaScript both hold (year 275760): a range without an end
 * ends here; one without a start starts at -END_OF_TIME (the store clamps it to what it holds).
 */
export const END_OF_TIME = 8_640_000_000_000_000;

export interface ClusterSummary {
  readonly cluster_id: string;
  readonly hosts: number;
  /** Live GPUs (not retired: docs/fleet.md). */
  readonly gpus: number;
  /** GPUs retired (stopped reporting while their cluster went on). */
  readonly retired_gpus: number;
  readonly first_seen: number;
  /** Newest reading stored (exact). */
  readonly last_seen: number | undefined;
}

export interface MetricStats {
  readonly metric: string;
  readonly unit: string;
  readonly samples: number;
}

export interface ClusterStats {
  readonly cluster_id: string;
  readonly samples: number;
  readonly hosts: number;
  readonly gpus: number;
  readonly metrics: number;
  readonly first_timestamp: number | undefined;
  readonly last_timestamp: number | undefined;
  readonly samples_per_metric: readonly MetricStats[];
}

export interface HostSummary {
  readonly cluster_id: string;
  readonly hostname: string;
  /** Live GPUs (all of them when retired ones are included). */
  readonly gpus: number;
  /** Every GPU of the host is retired. */
  readonly retired: boolean;
  readonly first_seen: number;
  readonly last_seen: number | undefined;
}

export interface GpuSummary {
  readonly cluster_id: string;
  readonly hostname: string;
  readonly gpu_id: number;
  readonly uuid: string | undefined;
  readonly model: string | undefined;
  readonly device: string | undefined;
  readonly first_seen: number;
  readonly last_seen: number | undefined;
  /** Its MIG instances (gpus() lists them; empty: not partitioned, or none reported). */
  readonly mig_instances?: readonly { gpu_instance_id: number; profile: string | undefined }[];
  /** Retired (docs/fleet.md): hidden from lists unless asked for. */
  readonly retired: boolean;
}

export interface Workload {
  readonly namespace: string;
  readonly pod: string;
  readonly container: string;
  readonly first_seen: number;
  readonly last_seen: number;
}

export interface LatestValue {
  readonly cluster_id: string;
  readonly hostname: string;
  readonly gpu_id: number;
  readonly uuid: string | undefined;
  /** Present on a MIG instance's readings and series only: which instance, and its profile. */
  readonly gpu_instance_id?: number;
  readonly mig_profile?: string | undefined;
  readonly metric: string;
  readonly unit: string;
  readonly timestamp: number;
  readonly value: number;
}

/** A MIG instance of a GPU: its own series, workloads and latest values. */
export interface MigInstance {
  readonly gpu_instance_id: number;
  readonly profile: string | undefined;
  readonly uuid: string | undefined;
  readonly first_seen: number;
  readonly last_seen: number | undefined;
  /** docs/fleet.md: DCGM_FI_PROF_GR_ENGINE_ACTIVE x 100, else DCGM_FI_DEV_GPU_UTIL (latest). */
  readonly utilization_percent: number | undefined;
  readonly workloads: readonly Workload[];
  readonly latest: readonly LatestValue[];
}

export interface GpuDetail extends GpuSummary {
  readonly labels: Readonly<Record<string, string>>;
  readonly workloads: readonly Workload[];
  /** The whole GPU's own latest values (its instances' are under mig_instances). */
  readonly latest: readonly LatestValue[];
  readonly utilization_percent: number | undefined;
  readonly mig_instances: readonly MigInstance[];
}

export interface MetricInfo {
  readonly name: string;
  readonly unit: string;
  readonly type: string;
  readonly help: string;
}

/** Which GPUs and metrics a query is about. Absent means all. */
export interface Selection {
  readonly cluster?: string;
  readonly hosts?: readonly string[];
  /** GPU indexes on their hosts. With uuids: a GPU named by either is selected. */
  readonly gpus?: readonly number[];
  /**
   * MIG GPU instance ids (-1: the whole GPU), or 'all' (whole GPUs and every instance). Absent:
   * whole GPUs only, so that a GPU's queries never mix its instances' series in.
   */
  readonly instances?: readonly number[] | 'all';
  /** GPU uuids, in any case. With gpus: a GPU named by either is selected. */
  readonly uuids?: readonly string[];
  readonly metrics?: readonly string[];
  /** Live GPUs only (retired ones left out): the live views, alerts and gauges. */
  readonly live?: boolean;
}

export type Reading = LatestValue;

export interface TelemetryQuery extends Selection {
  readonly from: number;
  readonly to: number;
  readonly limit: number;
  /** Continue after this position (from a previous page's `next`). */
  readonly after?: { readonly gpu: number; readonly metric: number; readonly time: number };
}

export interface TelemetryPage {
  readonly readings: readonly Reading[];
  /** Where the next page starts; absent on the last page. */
  readonly next?: { readonly gpu: number; readonly metric: number; readonly time: number };
}

/** One series' readings of a page, as columns: epoch-ms times and values, in time order. */
export interface SeriesColumns {
  readonly cluster_id: string;
  readonly hostname: string;
  readonly gpu_id: number;
  readonly uuid: string | undefined;
  /** Present on a MIG instance's readings and series only: which instance, and its profile. */
  readonly gpu_instance_id?: number;
  readonly mig_profile?: string | undefined;
  readonly metric: string;
  readonly unit: string;
  readonly times: Float64Array;
  readonly values: Float64Array;
}

/** A page of readings as columns, one entry per series (same order and paging as TelemetryPage). */
export interface ColumnPage {
  readonly series: readonly SeriesColumns[];
  /** Readings on the page, over all series. */
  readonly count: number;
  readonly next?: { readonly gpu: number; readonly metric: number; readonly time: number };
}

export type Aggregate = 'avg' | 'min' | 'max' | 'last';

export interface SeriesQuery extends Selection {
  readonly from: number;
  readonly to: number;
  readonly stepMs: number;
  readonly agg: Aggregate;
  /** Refuse before running when more points than this would come back. */
  readonly maxPoints: number;
}

export interface Series {
  readonly cluster_id: string;
  readonly hostname: string;
  readonly gpu_id: number;
  readonly uuid: string | undefined;
  /** Present on a MIG instance's readings and series only: which instance, and its profile. */
  readonly gpu_instance_id?: number;
  readonly mig_profile?: string | undefined;
  readonly metric: string;
  readonly unit: string;
  /** [bucket start (epoch ms), value, readings in the bucket] */
  readonly points: readonly (readonly [number, number, number])[];
}

export interface SeriesResult {
  readonly series: readonly Series[];
  /** Where the points came from: the 1-minute rollup (step a multiple of a minute) or raw rows. */
  readonly source: 'rollup_1m' | 'raw';
}

/** A Kubernetes workload on a GPU now (seen with its latest readings). */
export interface CurrentWorkload {
  readonly cluster_id: string;
  readonly hostname: string;
  readonly gpu_id: number;
  readonly namespace: string;
  readonly pod: string;
  readonly container: string;
}

/** A reading a collector has just committed, as the commit feed announces it. */
export interface CommittedReading {
  readonly hostname: string;
  readonly gpu: number;
  /** The MIG GPU instance (absent: the whole GPU). */
  readonly gpu_instance_id?: number;
  readonly metric: string;
  readonly timestamp: number;
  readonly value: number;
}

/**
 * Latest values kept in memory (the gateway's): seeded from the store, kept current by the commit
 * feed, reloaded from the store periodically (a feed event lost costs at most one period), whenever
 * the feed names a GPU or metric not yet known, and wholly when the feed says it may have missed
 * batches (`resync`); until loaded, or for a GPU it does not hold, latest() reads the store.
 */
export interface LatestTracker {
  /** Readings a collector has just committed (the commit feed). */
  committed(clusterId: string, readings: readonly CommittedReading[]): void;
  /** The feed may have missed readings: everything is read again from the store (in the background). */
  resync(): void;
  /** Loads from the store (in the background) and starts the periodic reload. */
  start(): void;
  /**
   * What the first load still has to do ("loading the fleet directory", ...), or undefined once
   * the fleet directory, its search indexes and the latest values are in memory: until then the
   * first requests would wait for it (seconds at 100,000 GPUs), so the gateway is not ready.
   * Once undefined it stays so (later reloads serve meanwhile).
   */
  warming(): string | undefined;
  stop(): void;
}

// Fleet features (docs/fleet.md): idle GPUs and usage.

export type UsageGroupBy = 'namespace' | 'pod' | 'host' | 'gpu';

export interface IdleQuery {
  readonly cluster: string;
  /** Utilisation threshold, percent. */
  readonly utilPercent: number;
  readonly forMs: number;
}

export interface IdleGpu {
  readonly hostname: string;
  readonly gpu_id: number;
  /** A MIG instance of the GPU (absent: the whole GPU). */
  readonly gpu_instance_id?: number;
  readonly uuid: string | undefined;
  readonly model: string | undefined;
  readonly namespace: string;
  readonly pod: string;
  readonly container: string;
  readonly utilization_metric: string;
  /** The latest reading of the utilisation metric, in percent. */
  readonly utilization_percent: number | undefined;
  readonly idle_since: number;
  readonly last_seen: number;
}

export interface UsageQuery {
  readonly cluster: string;
  readonly groupBy: UsageGroupBy;
  readonly from: number;
  readonly to: number;
}

/** One group's figures: allocated minutes (shares), utilisation sums, joules. */
export interface UsageRow {
  readonly namespace?: string;
  readonly pod?: string;
  readonly hostname?: string;
  readonly gpu_id?: number;
  readonly uuid?: string | undefined;
  /** Sum of the group's shares of allocation minutes. */
  readonly allocated_minutes: number;
  /** Average utilisation while allocated (percent); undefined without utilisation readings. */
  readonly avg_utilization_percent: number | undefined;
  readonly allocated_joules: number;
  /** Observed minutes without a workload, and their energy (host and gpu grouping). */
  readonly unallocated_minutes: number;
  readonly unallocated_joules: number;
}

export interface UsageRows {
  readonly groups: readonly UsageRow[];
  /** Observed minutes without a workload in the range, over the cluster, and their energy. */
  readonly unallocated_minutes: number;
  readonly unallocated_joules: number;
}

export const USAGE_GROUP_BY: readonly UsageGroupBy[] = ['namespace', 'pod', 'host', 'gpu'];

/** A page of a list kept in sort order (clusters by name, hosts by hostname, GPUs by host, index). */
export interface PageQuery {
  /** Items per page (the gateway bounds it). */
  readonly limit: number;
  /** The sort key of the previous page's last item (the page starts after it). */
  readonly after?: readonly (string | number)[];
  /** Retired hosts and GPUs too (hosts and GPU lists). */
  readonly includeRetired?: boolean;
  /** Hostname prefix, case-sensitive (hosts and a cluster's GPUs). */
  readonly prefix?: string;
}

export interface Page<T> {
  readonly items: readonly T[];
  /** Items in the whole filtered list. */
  readonly total: number;
  /** The sort key of the last item, when more follow; undefined on the last page. */
  readonly next: readonly (string | number)[] | undefined;
}

export type SearchKind = 'host' | 'gpu' | 'namespace' | 'pod';
export const SEARCH_KINDS: readonly SearchKind[] = ['host', 'gpu', 'namespace', 'pod'];

export interface SearchQuery {
  /** What to look for: a prefix of a name or of a part of it (case-insensitive). */
  readonly q: string;
  readonly cluster?: string;
  readonly kinds?: readonly SearchKind[];
  readonly limit: number;
}

export type SearchHit =
  | {
      readonly kind: 'host';
      readonly cluster_id: string;
      readonly host_id: string;
      readonly label: string;
      readonly gpus: number;
    }
  | {
      readonly kind: 'gpu';
      readonly cluster_id: string;
      readonly host_id: string;
      readonly gpu_id: number;
      readonly uuid: string;
      readonly label: string;
    }
  | {
      readonly kind: 'namespace';
      readonly cluster_id: string;
      readonly namespace: string;
      readonly label: string;
      readonly gpus: number;
    }
  | {
      readonly kind: 'pod';
      readonly cluster_id: string;
      readonly namespace: string;
      readonly pod: string;
      readonly host_id: string;
      readonly gpu_id: number;
      readonly label: string;
    };

export interface SearchResult {
  readonly hits: readonly SearchHit[];
  /** More matched than `limit`. */
  readonly truncated: boolean;
}

/** What the overview shows, kept in memory (undefined from readers that keep none). */
export interface OverviewState {
  /** Watts per cluster: the latest power of its live whole GPUs. */
  readonly power: ReadonlyMap<string, number>;
  /** GPUs flagged now (ALERT_RULES), most severe first (every one: the gateway shows 100). */
  readonly alerts: readonly LatestAlert[];
  readonly alertsTotal: number;
  /** Idle GPUs per cluster, from the last background computation (absent: not computed yet). */
  readonly idle: ReadonlyMap<string, number>;
}

export interface LatestAlert {
  readonly severity: 'critical' | 'warning';
  readonly cluster_id: string;
  readonly hostname: string;
  readonly gpu_id: number;
  readonly metric: string;
  readonly value: number;
  readonly message: string;
  readonly since: number;
}

/** What a reader counts of its fleet state, for the gateway's metrics (nexus_gateway_fleet_*). */
export interface FleetReadCounters {
  /**
   * Fleet rows read from the store, by source: clusters, hosts, gpus, workloads (the directory),
   * latest (latest values and last_seen read for requests), latest_memory (the latest values'
   * load and reconciliation, in the background).
   */
  readonly rowsRead: Readonly<Record<string, number>>;
  /** Fleet state refreshes: full (paged loads) and incremental. */
  readonly reloads: Readonly<Record<'full' | 'incremental', number>>;
}

/** Hostnames starting with `prefix`, from `from` and to `to` (both included) when given. */
export interface HostRange {
  readonly prefix: string;
  readonly from?: string | undefined;
  readonly to?: string | undefined;
}

/**
 * A host's figures for the overview heatmap: its live whole GPUs, and over those reporting the
 * metric its latest value's count, sum, min and max, and how many of them read a temperature
 * above ALERT_RULES.tempWarnC.
 */
export interface HostHeat {
  readonly hostname: string;
  readonly gpus: number;
  readonly reporting: number;
  readonly sum: number;
  readonly min: number;
  readonly max: number;
  readonly alerting: number;
}

export interface HeatHosts {
  /** The metric's name and unit. */
  readonly metric: string;
  readonly unit: string;
  readonly hosts: readonly HostHeat[];
}

export interface TelemetryReader {
  /** GPU events (XID, throttle, health, stopped, reappeared): src/store/event-reads.ts. */
  readonly events: EventReads;
  /** Workloads seen within five minutes of their GPU's newest reading. */
  currentWorkloads(): Promise<CurrentWorkload[]>;
  clusters(): Promise<ClusterSummary[]>;
  cluster(clusterId: string): Promise<ClusterSummary | undefined>;
  clusterStats(clusterId: string): Promise<ClusterStats | undefined>;
  /** Hosts with a live GPU (or none at all); with `includeRetired`, every host. */
  hosts(clusterId: string, includeRetired?: boolean): Promise<HostSummary[]>;
  host(clusterId: string, hostname: string): Promise<HostSummary | undefined>;
  /** Live GPUs; with `includeRetired`, retired ones too (flagged). */
  gpus(clusterId: string, hostname?: string, includeRetired?: boolean): Promise<GpuSummary[]>;
  gpu(clusterId: string, hostname: string, gpuId: number): Promise<GpuDetail | undefined>;
  /** A page of the clusters, by name. */
  clustersPage(q: PageQuery): Promise<Page<ClusterSummary>>;
  /** A page of a cluster's hosts, by hostname; undefined: no such cluster. */
  hostsPage(clusterId: string, q: PageQuery): Promise<Page<HostSummary> | undefined>;
  /**
   * A page of GPUs (whole GPUs, their MIG instances beside each) by (hostname, index): a host's, or
   * with `hostname` undefined the cluster's; undefined: no such cluster or host.
   */
  gpusPage(
    clusterId: string,
    hostname: string | undefined,
    q: PageQuery,
  ): Promise<Page<GpuSummary> | undefined>;
  /** Hosts, GPUs, namespaces and pods by name (api.md, Search). NOT_FOUND: no such cluster. */
  search(q: SearchQuery): Promise<SearchResult>;
  /** Rows read and refreshes of the fleet state so far (monotonic). */
  fleetCounters?(): FleetReadCounters;
  /** The overview's power, alerts and idle counts, when kept in memory. */
  overviewState?(): Promise<OverviewState | undefined>;
  /**
   * The heatmap's figures of a metric for each host of a cluster with a live GPU, by hostname,
   * narrowed to a hostname prefix and range; kept in memory as the latest values change, so
   * undefined when they are not in memory (yet). The figures are the reader's own: read them
   * before the next await. BAD_REQUEST: an unknown metric; NOT_FOUND: no such cluster.
   */
  heatHosts?(cluster: string, metric: string, range: HostRange): Promise<HeatHosts | undefined>;
  metricCatalogue(): Promise<MetricInfo[]>;
  telemetry(q: TelemetryQuery): Promise<TelemetryPage>;
  /** The same page as columns: no object per reading (sealed windows decode straight into it). */
  telemetryColumns(q: TelemetryQuery): Promise<ColumnPage>;
  series(q: SeriesQuery): Promise<SeriesResult>;
  latest(q: Selection): Promise<LatestValue[]>;
  /**
   * The idle GPUs of every cluster as computed in the background (IDLE_UTIL, IDLE_FOR of
   * trackLatest), up to a minute old; undefined where nothing computes them (ask idleGpus).
   */
  idleSnapshot?(): ReadonlyMap<string, readonly IdleGpu[]> | undefined;
  /** Idle GPUs of a cluster (docs/fleet.md), most GPU-hours wasted first. NOT_FOUND: no such cluster. */
  idleGpus(q: IdleQuery): Promise<IdleGpu[]>;
  /** Usage of a cluster per group over a range (docs/fleet.md). NOT_FOUND: no such cluster. */
  usage(q: UsageQuery): Promise<UsageRows>;
  /**
   * Serve latest() from memory, fed with every committed batch. Values returned from memory are
   * shared, immutable objects: equal until the reading changes.
   */
  trackLatest?(options: {
    readonly reloadMs: number;
    /** IDLE_UTIL and IDLE_FOR: idle GPUs per cluster are counted in the background with them. */
    readonly idle?: { readonly utilPercent: number; readonly forMs: number };
  }): LatestTracker;
}
