import { WHOLE_GPU } from '../core/mig.js';
import { num, type GpuRef } from './read-queries.js';
import type { SqlClient } from './types.js';

/**
 * The fleet directory: every cluster, host and GPU row (whole GPUs and MIG instances) of the
 * store, in gateway memory, with the indexes the API pages through (hosts sorted per cluster, each
 * host's GPU rows) and counts per cluster and host kept as rows change. Loaded once in pages by id
 * (PAGE_ROWS per statement: nothing near the statement timeout on a cold start), then kept current
 * by the change markers of migration 012 rather than reloads:
 *
 * - each row carries `change_xid`, the id of the transaction that inserted it or last changed what
 *   the directory holds (retired_at, uuid, model, device, mig_profile, first_seen);
 * - a refresh reads the rows with `change_xid >= watermark`, where the watermark is the oldest
 *   transaction still in progress (`pg_snapshot_xmin`) when the previous refresh began: a
 *   transaction still open then has an id at least that, so its rows are read once it commits,
 *   even when it commits after a transaction with a larger id. Rows are applied idempotently (a row
 *   read twice changes nothing).
 */

/** Rows per statement of a load (by id). */
export const PAGE_ROWS = 10_000;

/**
 * Reads a query's rows PAGE_ROWS at a time by id (keyset: `$2` is the last id read, `$1` and `$3`
 * are `params`), applying each; returns how many were read.
 */
async function changedPages<R>(
  db: SqlClient,
  sql: string,
  [since, identity]: readonly [string, string | null],
  idOf: (r: R) => number,
  apply: (r: R) => void,
): Promise<number> {
  let read = 0;
  for (let after = 0; ;) {
    const page = await db.query<R>(sql, [since, after, identity]);
    read += page.rows.length;
    for (const r of page.rows) apply(r);
    const last = page.rows[page.rows.length - 1];
    if (last === undefined || page.rows.length < PAGE_ROWS) return read;
    after = idOf(last);
  }
}

export interface DirCluster {
  readonly id: number;
  readonly name: string;
  first_seen: number;
  /** Every host, by hostname. */
  readonly hosts: DirHost[];
  /** Hosts with a live GPU row or none at all (the default host list), by hostname. */
  readonly listed: DirHost[];
  readonly byName: Map<string, DirHost>;
  /** Whole GPUs live and retired. */
  liveGpus: number;
  retiredGpus: number;
}

export interface DirHost {
  readonly id: number;
  readonly cluster: DirCluster;
  readonly hostname: string;
  first_seen: number;
  /** The host's GPU rows by (index, instance): a whole GPU (-1) before its MIG instances. */
  readonly rows: DirGpu[];
  /** Rows not retired (instances included), whole GPUs live and retired. */
  liveRows: number;
  liveWhole: number;
  retiredWhole: number;
}

/** A GPU row: what GpuRef holds, and what the GPU lists show of it. */
export interface DirGpu extends GpuRef {
  readonly host: DirHost;
  readonly model: string | null;
  readonly device: string | null;
  readonly first_seen: number;
}

/** The newest workload seen on a GPU row (gpu_workloads inserts). */
export interface DirWorkload {
  readonly gpu: number;
  readonly namespace: string;
  readonly pod: string;
  readonly container: string;
  readonly first_seen: number;
}

/** A host is listed by default while it has a live GPU row, or no GPU rows at all. */
export const isListed = (h: DirHost): boolean => h.rows.length === 0 || h.liveRows > 0;
/** Every GPU row of a host is retired. */
export const isRetiredHost = (h: DirHost): boolean => h.rows.length > 0 && h.liveRows === 0;

/** The first index of `arr` (sorted by `key`) whose key is >= `k` (binary search). */
export function lowerBound<T>(arr: readonly T[], k: string, key: (t: T) => string): number {
  let lo = 0;
  let hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (key(arr[mid] as T) < k) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The first index of `arr` whose key is > `k`. */
export function upperBound<T>(arr: readonly T[], k: string, key: (t: T) => string): number {
  let lo = 0;
  let hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (key(arr[mid] as T) <= k) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const byHostname = (h: DirHost): string => h.hostname;
const rowOrder = (a: DirGpu, b: DirGpu): number =>
  a.gpu_id - b.gpu_id || a.gpu_instance_id - b.gpu_instance_id;

function insertSorted(arr: DirHost[], h: DirHost): void {
  arr.splice(lowerBound(arr, h.hostname, byHostname), 0, h);
}
function removeSorted(arr: DirHost[], h: DirHost): void {
  const i = lowerBound(arr, h.hostname, byHostname);
  if (arr[i] === h) arr.splice(i, 1);
}

/** The parts of a name search finds it by: the whole, and what follows each `-`, `.`, `_`, `/`. */
export function nameParts(name: string): string[] {
  const lower = name.toLowerCase();
  const out = [lower];
  for (let i = 0; i < lower.length - 1; i++) {
    const c = lower[i];
    if (c === '-' || c === '.' || c === '_' || c === '/') out.push(lower.slice(i + 1));
  }
  return [...new Set(out)];
}

/** One entry of a search index: a token (lower case) and what it names. */
export interface Token<T> {
  readonly token: string;
  readonly key: string;
  readonly ref: T;
}

/** Tokens sorted by (token, key): prefix lookups by binary search, inserts and removals in place. */
export class TokenIndex<T> {
  private entries: Token<T>[] = [];
  private pending: Token<T>[] = [];

  get size(): number {
    return this.entries.length + this.pending.length;
  }

  /** Adds many (sorted once, on the next lookup): the bulk of a full load. */
  addBulk(token: string, key: string, ref: T): void {
    this.pending.push({ token, key, ref });
  }

  /** Sorts what addBulk added (done by the next lookup otherwise). */
  settle(): void {
    if (this.pending.length === 0) return;
    const all = this.entries.concat(this.pending);
    this.pending = [];
    all.sort((a, b) =>
      a.token < b.token ? -1 : a.token > b.token ? 1 : a.key < b.key ? -1 : a.key > b.key ? 1 : 0,
    );
    this.entries = all;
  }

  private position(token: string, key: string): number {
    const e = this.entries;
    let lo = 0;
    let hi = e.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const m = e[mid] as Token<T>;
      if (m.token < token || (m.token === token && m.key < key)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  add(token: string, key: string, ref: T): void {
    this.settle();
    const i = this.position(token, key);
    const at = this.entries[i];
    if (at !== undefined && at.token === token && at.key === key)
      this.entries[i] = { token, key, ref };
    else this.entries.splice(i, 0, { token, key, ref });
  }

  remove(token: string, key: string): void {
    this.settle();
    const i = this.position(token, key);
    const at = this.entries[i];
    if (at !== undefined && at.token === token && at.key === key) this.entries.splice(i, 1);
  }

  /** Entries whose token starts with `prefix` (lower case), in token order, while `take` says so. */
  *prefixed(prefix: string): Generator<Token<T>> {
    this.settle();
    for (let i = lowerBound(this.entries, prefix, (t) => t.token); i < this.entries.length; i++) {
      const t = this.entries[i] as Token<T>;
      if (!t.token.startsWith(prefix)) return;
      yield t;
    }
  }

  clear(): void {
    this.entries = [];
    this.pending = [];
  }
}

/** A GPU row as the directory's queries read it (with its host and cluster). */
interface GpuRow {
  id: number;
  gpu_index: number;
  uuid: string | null;
  model: string | null;
  device: string | null;
  first_seen: string;
  gpu_instance_id: number;
  mig_profile: string | null;
  retired: boolean;
  host_id: number;
  hostname: string;
  host_first_seen: string;
  cluster_id: number;
  cluster: string;
  cluster_first_seen: string;
}

interface HostRow {
  host_id: number;
  hostname: string;
  host_first_seen: string;
  cluster_id: number;
  cluster: string;
  cluster_first_seen: string;
}

interface ClusterRow {
  cluster_id: number;
  cluster: string;
  cluster_first_seen: string;
}

interface WorkloadRow {
  gpu_id: number;
  namespace: string;
  pod: string;
  container: string;
  first_seen: string;
}

const GPU_COLUMNS = `g.id, g.gpu_index, g.uuid, g.model, g.device, nexus_ms(g.first_seen) AS first_seen,
  g.gpu_instance_id, g.mig_profile, g.retired_at IS NOT NULL AS retired,
  h.id AS host_id, h.hostname, nexus_ms(h.first_seen) AS host_first_seen,
  c.id AS cluster_id, c.name AS cluster, nexus_ms(c.first_seen) AS cluster_first_seen`;
const HOST_COLUMNS = `h.id AS host_id, h.hostname, nexus_ms(h.first_seen) AS host_first_seen,
  c.id AS cluster_id, c.name AS cluster, nexus_ms(c.first_seen) AS cluster_first_seen`;

/** What the directory counts, for the gateway's metrics. */
export interface DirectoryCounters {
  /** Rows read from the store, by table. */
  readonly rowsRead: Record<'clusters' | 'hosts' | 'gpus' | 'workloads', number>;
  /** Refreshes: full (paged loads) and incremental (changes since the watermark). */
  readonly reloads: Record<'full' | 'incremental', number>;
}

export class FleetDirectory {
  readonly clusters = new Map<string, DirCluster>();
  /** Clusters by name. */
  readonly sortedClusters: DirCluster[] = [];
  private readonly clustersById = new Map<number, DirCluster>();
  private readonly hostsById = new Map<number, DirHost>();
  readonly gpusById = new Map<number, DirGpu>();
  /** The newest workload per GPU row. */
  readonly workloads = new Map<number, DirWorkload>();
  /** Search indexes (lower case): hostname parts; GPU uuids, with and without `GPU-`. */
  readonly hostNames = new TokenIndex<DirHost>();
  readonly gpuNames = new TokenIndex<DirGpu>();
  /** Workloads now: namespace name parts (per cluster), pod name parts (per GPU row). */
  readonly namespaceNames = new TokenIndex<{ cluster: string; namespace: string }>();
  readonly podNames = new TokenIndex<DirWorkload>();
  /** GPU rows per (cluster, namespace) of the workloads now. */
  readonly namespaceGpus = new Map<string, number>();
  /** The largest GPU id held. */
  maxGpuId = 0;
  /** Where the next refresh starts (undefined: not loaded). */
  private watermark: string | undefined;
  readonly counters: DirectoryCounters = {
    rowsRead: { clusters: 0, hosts: 0, gpus: 0, workloads: 0 },
    reloads: { full: 0, incremental: 0 },
  };
  /** Bumped on every change applied (for caches derived from the directory). */
  version = 0;
  /** Called when a GPU row is added or changes (`old` undefined: new). */
  onGpu: ((old: DirGpu | undefined, g: DirGpu) => void) | undefined;

  get loaded(): boolean {
    return this.watermark !== undefined;
  }

  /** Forgets everything (the database was replaced): the next refresh is a full load. */
  reset(): void {
    this.clusters.clear();
    this.sortedClusters.length = 0;
    this.clustersById.clear();
    this.hostsById.clear();
    this.gpusById.clear();
    this.workloads.clear();
    for (const index of this.indexes()) index.clear();
    this.namespaceGpus.clear();
    this.maxGpuId = 0;
    this.watermark = undefined;
    this.version++;
  }

  /**
   * Reads what changed since the last refresh (everything, in pages, the first time) and applies
   * it. `identity` is checked by every statement (nexus_expect_identity): a statement on another
   * database fails (the caller resets the directory and loads it again).
   */
  async refresh(db: SqlClient, identity: string | null): Promise<void> {
    const full = this.watermark === undefined;
    const w = await db.query<{ w: string }>(
      'SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS w WHERE nexus_expect_identity($1::text)',
      [identity],
    );
    const next = w.rows[0]?.w;
    if (next === undefined) return;
    const since = this.watermark ?? '0';
    const bulk = full;
    // Clusters (few): one statement.
    const clusters = await db.query<ClusterRow>(
      `SELECT c.id AS cluster_id, c.name AS cluster, nexus_ms(c.first_seen) AS cluster_first_seen
       FROM clusters c WHERE c.change_xid >= $1::xid8 AND nexus_expect_identity($2::text)`,
      [since, identity],
    );
    this.counters.rowsRead.clusters += clusters.rows.length;
    for (const r of clusters.rows) this.applyCluster(r);
    this.counters.rowsRead.hosts += await changedPages<HostRow>(
      db,
      `SELECT ${HOST_COLUMNS} FROM hosts h JOIN clusters c ON c.id = h.cluster_id
       WHERE h.change_xid >= $1::xid8 AND h.id > $2 AND nexus_expect_identity($3::text)
       ORDER BY h.id LIMIT ${PAGE_ROWS}`,
      [since, identity],
      (r) => r.host_id,
      (r) => this.applyHost(r, bulk),
    );
    this.counters.rowsRead.gpus += await changedPages<GpuRow>(
      db,
      `SELECT ${GPU_COLUMNS} FROM gpus g JOIN hosts h ON h.id = g.host_id JOIN clusters c ON c.id = h.cluster_id
       WHERE g.change_xid >= $1::xid8 AND g.id > $2 AND nexus_expect_identity($3::text)
       ORDER BY g.id LIMIT ${PAGE_ROWS}`,
      [since, identity],
      (r) => r.id,
      (r) => this.applyGpu(r, bulk),
    );
    if (full) {
      // The newest workload of each GPU row, a range of GPU ids per statement.
      let maxId = 0;
      for (const id of this.gpusById.keys()) if (id > maxId) maxId = id;
      for (let from = 0; from <= maxId; from += PAGE_ROWS) {
        const rows = await db.query<WorkloadRow>(
          `SELECT DISTINCT ON (w.gpu_id) w.gpu_id, w.namespace, w.pod, w.container, nexus_ms(w.first_seen) AS first_seen
           FROM gpu_workloads w WHERE w.gpu_id > $1 AND w.gpu_id <= $2 AND nexus_expect_identity($3::text)
           ORDER BY w.gpu_id, w.last_seen DESC, w.first_seen DESC`,
          [from, from + PAGE_ROWS, identity],
        );
        this.counters.rowsRead.workloads += rows.rows.length;
        for (const r of rows.rows) this.applyWorkload(r, true);
      }
    } else {
      const rows = await db.query<WorkloadRow>(
        `SELECT w.gpu_id, w.namespace, w.pod, w.container, nexus_ms(w.first_seen) AS first_seen
         FROM gpu_workloads w WHERE w.change_xid >= $1::xid8 AND nexus_expect_identity($2::text)
         ORDER BY w.first_seen`,
        [since, identity],
      );
      this.counters.rowsRead.workloads += rows.rows.length;
      for (const r of rows.rows) this.applyWorkload(r, false);
    }
    // A full load's index entries are sorted now, in the load, rather than by the first search.
    if (full) for (const index of this.indexes()) index.settle();
    this.counters.reloads[full ? 'full' : 'incremental']++;
    this.watermark = next;
  }

  /** The search indexes. */
  private indexes(): { settle(): void; clear(): void }[] {
    return [this.hostNames, this.gpuNames, this.namespaceNames, this.podNames];
  }

  private applyCluster(r: ClusterRow): DirCluster {
    let c = this.clustersById.get(r.cluster_id);
    if (c === undefined) {
      c = {
        id: r.cluster_id,
        name: r.cluster,
        first_seen: num(r.cluster_first_seen),
        hosts: [],
        listed: [],
        byName: new Map(),
        liveGpus: 0,
        retiredGpus: 0,
      };
      this.clustersById.set(c.id, c);
      this.clusters.set(c.name, c);
      this.sortedClusters.splice(
        lowerBound(this.sortedClusters, c.name, (x) => x.name),
        0,
        c,
      );
      this.version++;
    } else if (c.first_seen !== num(r.cluster_first_seen)) {
      c.first_seen = num(r.cluster_first_seen);
      this.version++;
    }
    return c;
  }

  private applyHost(r: HostRow, bulk: boolean): DirHost {
    const cluster = this.applyCluster(r);
    let h = this.hostsById.get(r.host_id);
    if (h === undefined) {
      h = {
        id: r.host_id,
        cluster,
        hostname: r.hostname,
        first_seen: num(r.host_first_seen),
        rows: [],
        liveRows: 0,
        liveWhole: 0,
        retiredWhole: 0,
      };
      this.hostsById.set(h.id, h);
      cluster.byName.set(h.hostname, h);
      insertSorted(cluster.hosts, h);
      insertSorted(cluster.listed, h);
      const key = `${cluster.name}\u0000${h.hostname}`;
      for (const part of nameParts(h.hostname)) {
        if (bulk) this.hostNames.addBulk(part, key, h);
        else this.hostNames.add(part, key, h);
      }
      this.version++;
    } else if (h.first_seen !== num(r.host_first_seen)) {
      h.first_seen = num(r.host_first_seen);
      this.version++;
    }
    return h;
  }

  private applyGpu(r: GpuRow, bulk: boolean): void {
    const host = this.applyHost(r, bulk);
    const cluster = host.cluster;
    const g: DirGpu = {
      id: r.id,
      cluster_id: cluster.name,
      hostname: host.hostname,
      gpu_id: r.gpu_index,
      uuid: r.uuid,
      gpu_instance_id: r.gpu_instance_id,
      mig_profile: r.mig_profile,
      retired: r.retired,
      host,
      model: r.model,
      device: r.device,
      first_seen: num(r.first_seen),
    };
    const listedBefore = isListed(host);
    const old = this.gpusById.get(g.id);
    if (old !== undefined) {
      if (
        old.uuid === g.uuid &&
        old.retired === g.retired &&
        old.mig_profile === g.mig_profile &&
        old.model === g.model &&
        old.device === g.device &&
        old.first_seen === g.first_seen
      )
        return;
      this.count(old, -1);
      const i = host.rows.indexOf(old);
      if (i >= 0) host.rows[i] = g;
      if (old.uuid !== null) this.gpuTokens(old, false, bulk);
    } else {
      // Rows mostly come in id order, which is mostly (index, instance) order: search from the end.
      let i = host.rows.length;
      while (i > 0 && rowOrder(host.rows[i - 1] as DirGpu, g) > 0) i--;
      host.rows.splice(i, 0, g);
    }
    this.gpusById.set(g.id, g);
    if (g.id > this.maxGpuId) this.maxGpuId = g.id;
    this.count(g, 1);
    if (g.uuid !== null) this.gpuTokens(g, true, bulk);
    this.onGpu?.(old, g);
    const listedAfter = isListed(host);
    if (listedBefore !== listedAfter) {
      if (listedAfter) insertSorted(cluster.listed, host);
      else removeSorted(cluster.listed, host);
    }
    this.version++;
  }

  private count(g: DirGpu, d: 1 | -1): void {
    const host = g.host;
    if (!g.retired) host.liveRows += d;
    if (g.gpu_instance_id !== WHOLE_GPU) return;
    if (g.retired) {
      host.retiredWhole += d;
      host.cluster.retiredGpus += d;
    } else {
      host.liveWhole += d;
      host.cluster.liveGpus += d;
    }
  }

  private gpuTokens(g: DirGpu, add: boolean, bulk: boolean): void {
    if (g.uuid === null || g.gpu_instance_id !== WHOLE_GPU) return;
    // The uuid's parts include it without its `GPU-`.
    const tokens = nameParts(g.uuid);
    const key = String(g.id);
    for (const t of tokens) {
      if (!add) this.gpuNames.remove(t, key);
      else if (bulk) this.gpuNames.addBulk(t, key, g);
      else this.gpuNames.add(t, key, g);
    }
  }

  /** Adds (d 1) or takes away (d -1) a workload now of a GPU row from the search indexes. */
  private indexWorkload(w: DirWorkload, d: 1 | -1, bulk: boolean): void {
    const cluster = this.gpusById.get(w.gpu)?.cluster_id;
    if (cluster === undefined) return;
    const key = String(w.gpu);
    for (const t of nameParts(w.pod)) {
      if (d < 0) this.podNames.remove(t, key);
      else if (bulk) this.podNames.addBulk(t, key, w);
      else this.podNames.add(t, key, w);
    }
    if (w.namespace === '') return;
    const nsKey = `${cluster}\u0000${w.namespace}`;
    const n = (this.namespaceGpus.get(nsKey) ?? 0) + d;
    if (n > 0) this.namespaceGpus.set(nsKey, n);
    else this.namespaceGpus.delete(nsKey);
    if (n === 0 || (n === 1 && d > 0)) {
      for (const t of nameParts(w.namespace)) {
        if (n === 0) this.namespaceNames.remove(t, nsKey);
        else if (bulk) this.namespaceNames.addBulk(t, nsKey, { cluster, namespace: w.namespace });
        else this.namespaceNames.add(t, nsKey, { cluster, namespace: w.namespace });
      }
    }
  }

  private applyWorkload(r: WorkloadRow, bulk: boolean): void {
    const w: DirWorkload = {
      gpu: r.gpu_id,
      namespace: r.namespace,
      pod: r.pod,
      container: r.container,
      first_seen: num(r.first_seen),
    };
    const old = this.workloads.get(w.gpu);
    if (old !== undefined) {
      if (old.first_seen > w.first_seen) return;
      if (old.namespace === w.namespace && old.pod === w.pod && old.container === w.container)
        return;
      this.indexWorkload(old, -1, false);
    }
    this.workloads.set(w.gpu, w);
    this.indexWorkload(w, 1, bulk && old === undefined);
    this.version++;
  }

  host(cluster: string, hostname: string): DirHost | undefined {
    return this.clusters.get(cluster)?.byName.get(hostname);
  }
}
