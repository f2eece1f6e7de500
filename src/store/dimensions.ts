import { dcgmField } from '../core/dcgm-fields.js';
import { detached } from '../core/detached.js';
import { setLabel } from '../core/labels.js';
import { NexusError } from '../core/errors.js';
import { MIG_LABELS, WHOLE_GPU, migInstanceOf, migProfileOf } from '../core/mig.js';
import { isIdentityChanged } from './identity.js';
import type { TelemetryRecord } from '../core/record.js';
import type { SqlClient } from './types.js';

/**
 * last_seen columns move at most this often per row (they are data time, not wall time); first_seen
 * moves back whenever an older reading arrives (rare: late or redelivered batches).
 */
const TOUCH_MS = 60_000;

/**
 * Hosts, GPU rows (whole GPUs and MIG instances) and workloads whose ids and spans a process keeps,
 * at most, of each kind (a GPU entry is some 500 bytes: its labels' JSON is most of it). Past it the
 * oldest entries are forgotten before a batch is planned: a batch that brings a forgotten one takes
 * the full upsert again (its rows exist, so they are read, and updated only if they moved), so a
 * fleet larger than the bound is stored all the same, at the cost of an upsert per batch.
 */
export const DIMENSION_CACHE_MAX = 250_000;

interface Span {
  first: number;
  last: number;
}

interface GpuSpan extends Span {
  readonly host: string;
  readonly index: number;
  /** The MIG GPU instance id (WHOLE_GPU: the GPU itself). */
  readonly instance: number;
  record: TelemetryRecord;
  /**
   * A whole GPU known in this batch only from its MIG instances' readings: its row is made if
   * missing (from the instance's uuid, model and device), never updated from them.
   */
  derived: boolean;
  /** Its key in the cache (host id, index, instance), once its host's id is known. */
  key?: string;
  /** Its cache entry, as `plan` found it (a batch that needs no upsert keeps it to the end). */
  entry?: GpuEntry;
  /** The workloads of its readings in the batch (most GPUs have one, or none). */
  workloads?: WorkloadSpan[];
  /** Its row's id, once resolved (the batch's readings take it from here). */
  id?: number | undefined;
}

/** A GPU row as a process knows it. */
interface GpuEntry {
  readonly id: number;
  /** Its attributes as last written by this process (undefined: not known here). */
  readonly seen: GpuSeen | undefined;
  firstSeen: number;
  lastSeen: number;
  /** The newest reading time of it this process has seen (written or not). */
  newest: number;
}

interface WorkloadSpan extends Span {
  /** The GPU row it runs on. */
  readonly gpu: GpuSpan;
  readonly ns: string;
  readonly pod: string;
  readonly container: string;
  /** Its key in the cache, once its GPU's id is known (`plan`). */
  key?: string;
}

/** What a batch says about the fleet. */
interface BatchFleet {
  readonly min: number;
  readonly max: number;
  readonly hosts: Map<string, Span>;
  readonly gpus: Map<string, GpuSpan>;
  /** The GPU row of each record (an instance's own row for a MIG instance's reading). */
  readonly rowOf: readonly GpuSpan[];
  readonly metrics: Set<string>;
  /** Each (GPU row, namespace, pod, container) once. */
  readonly workloads: readonly WorkloadSpan[];
}

/** A batch that only moves the spans of what is known (see `plan`). */
interface Touch {
  readonly clusterName: string;
  readonly clusterId: number;
  readonly min: number;
  readonly max: number;
  readonly hosts: readonly { key: string; id: number; span: Span }[];
  readonly gpus: readonly { key: string; id: number; span: Span }[];
  readonly workloads: readonly { key: string; gpuId: number; w: WorkloadSpan }[];
}

export interface ResolvedIds {
  readonly gpu: Int32Array;
  readonly metric: Int16Array;
  /** The identity of the database these ids belong to (`nexus_identity()`, migration 003). */
  readonly identity: string;
}

/**
 * The database does not hold what the cache says (a row deleted under us, a table emptied): the
 * cache is dropped, and a retry upserts again.
 */
function notAsCached(message: string): NexusError {
  return new NexusError('STORE_UNAVAILABLE', `${message}: dimension ids cached here were dropped`, {
    retryable: true,
  });
}

/** Sets `k` as the newest entry of `m` (a Map keeps keys in the order they were first set). */
function renew<V>(m: Map<string, V>, k: string, v: V): void {
  m.delete(k);
  m.set(k, v);
}

/** The ids known in this process, all of one database (`identity`). */
class Cache {
  readonly clusters = new Map<string, { id: number; firstSeen: number; lastSeen: number }>();
  readonly hosts = new Map<string, { id: number; firstSeen: number; lastSeen: number }>();
  readonly gpus = new Map<string, GpuEntry>();
  readonly metrics = new Map<string, number>();
  readonly workloads = new Map<string, Span>();
  /** Undefined until a statement has read it: the first upsert takes whatever database it finds. */
  constructor(public identity: string | undefined) {}

  /** Forgets the oldest entries (in the order they were last written) beyond `max` of each kind. */
  trim(max: number): void {
    for (const m of [this.hosts, this.gpus, this.workloads] as Map<string, unknown>[]) {
      if (m.size <= max) continue;
      let extra = m.size - max;
      for (const k of m.keys()) {
        if (extra-- <= 0) break;
        m.delete(k);
      }
    }
  }

  /** Entries kept, of each kind (tests; the collector bounds its heap by the GPUs). */
  get sizes(): { hosts: number; gpus: number; workloads: number } {
    return { hosts: this.hosts.size, gpus: this.gpus.size, workloads: this.workloads.size };
  }

  /** Takes in what a committed upsert read. */
  merge(from: Cache): void {
    if (from.identity !== undefined) this.identity = from.identity;
    for (const [k, v] of from.clusters) this.clusters.set(k, v);
    // Written again at the end: the entries of the latest batches are the last to be forgotten.
    for (const [k, v] of from.hosts) renew(this.hosts, k, v);
    for (const [k, v] of from.gpus) {
      // The newest reading seen only moves forward: another batch may have moved it on the entry
      // cached here since the upsert read it (its statements are awaited).
      const here = this.gpus.get(k);
      if (here !== undefined && here.newest > v.newest) v.newest = here.newest;
      renew(this.gpus, k, v);
    }
    for (const [k, v] of from.metrics) this.metrics.set(k, v);
    for (const [k, v] of from.workloads) renew(this.workloads, k, v);
  }
}

export interface Transactor extends SqlClient {
  transaction<T>(fn: (tx: SqlClient) => Promise<T>): Promise<T>;
}

/**
 * Moves the first/last seen of known clusters, hosts, GPUs and workloads, in one statement (one
 * round trip, atomic without a transaction): what a batch needs when it brings nothing new.
 * Returns the new spans of the cluster, hosts and GPUs (kind c, h or g). Nothing moves unless the
 * database is the one the ids came from ($16).
 */
const TOUCH = `
WITH c AS (
  UPDATE clusters SET first_seen = least(first_seen, nexus_ts($2)), last_seen = greatest(last_seen, nexus_ts($3))
  WHERE id = $1 AND nexus_expect_identity($16::text)
  RETURNING id, first_seen, last_seen
), h AS (
  UPDATE hosts x SET first_seen = least(x.first_seen, nexus_ts(u.f)), last_seen = greatest(x.last_seen, nexus_ts(u.l))
  FROM unnest($4::int[], $5::bigint[], $6::bigint[]) AS u(id, f, l)
  WHERE x.id = u.id
  RETURNING x.id, x.first_seen, x.last_seen
), g AS (
  UPDATE gpus x SET first_seen = least(x.first_seen, nexus_ts(u.f)), last_seen = greatest(x.last_seen, nexus_ts(u.l))
  FROM unnest($7::int[], $8::bigint[], $9::bigint[]) AS u(id, f, l)
  WHERE x.id = u.id
  RETURNING x.id, x.first_seen, x.last_seen
), w AS (
  UPDATE gpu_workloads x SET first_seen = least(x.first_seen, nexus_ts(u.f)), last_seen = greatest(x.last_seen, nexus_ts(u.l))
  FROM unnest($10::int[], $11::text[], $12::text[], $13::text[], $14::bigint[], $15::bigint[]) AS u(g, n, p, c, f, l)
  WHERE x.gpu_id = u.g AND x.namespace = u.n AND x.pod = u.p AND x.container = u.c
)
SELECT 'c' AS kind, id, nexus_ms(first_seen) AS first_seen, nexus_ms(last_seen) AS last_seen FROM c
UNION ALL SELECT 'h', id, nexus_ms(first_seen), nexus_ms(last_seen) FROM h
UNION ALL SELECT 'g', id, nexus_ms(first_seen), nexus_ms(last_seen) FROM g`;

/** Workload rows in key order (GPU, then namespace, pod and container): the order of their row locks. */
function byWorkloadKey(
  x: { gpuId: number; w: WorkloadSpan },
  y: { gpuId: number; w: WorkloadSpan },
): number {
  return (
    x.gpuId - y.gpuId ||
    (x.w.ns + x.w.pod + x.w.container < y.w.ns + y.w.pod + y.w.container ? -1 : 1)
  );
}

/**
 * Whether a batch's span reaches outside a row's as cached: earlier than its first_seen, or later
 * than its last_seen by more than TOUCH_MS (last_seen moves at most once a minute per row).
 */
function outside(span: Span, first: number, last: number): boolean {
  return span.first < first || span.last > last + TOUCH_MS;
}

/** Labels of an instance's reading that are not its GPU's (a derived GPU row leaves them out). */
const INSTANCE_ONLY = new Set([...MIG_LABELS, 'pod', 'namespace', 'container']);

/**
 * A GPU's attributes as a reading gave them (uuid, model, device, and its labels but `__name__`,
 * in their order), kept to compare the GPU's next readings with (sameAttrs). Text that is not
 * well-formed UTF-16 is kept with U+FFFD in its place, as it is stored; every string is a copy
 * that keeps no larger one alive (a reading's strings may be slices of the line they came from).
 */
export interface GpuSeen {
  readonly uuid: string;
  readonly model: string;
  readonly device: string;
  /** The label names, shared by the GPUs whose labels have the same names in the same order. */
  readonly keys: readonly string[];
  readonly values: readonly string[];
}

/** A GPU row's attributes as gpuAttrs writes them. */
export interface GpuAttrs {
  readonly seen: GpuSeen;
  /** The labels' JSON, for the row. */
  readonly labels: string;
}

/**
 * Lists of label names in use, shared by the GPUs that have them (a fleet has a few; at most
 * SHARED_NAMES_MAX are kept, beyond which each GPU keeps its own list).
 */
const sharedNames = new Map<string, readonly string[]>();
const SHARED_NAMES_MAX = 1024;

function shared(keys: string[]): readonly string[] {
  const key = keys.join('\u0000');
  const known = sharedNames.get(key);
  if (known !== undefined) return known;
  Object.freeze(keys);
  if (sharedNames.size < SHARED_NAMES_MAX) sharedNames.set(key, keys);
  return keys;
}

/**
 * A GPU row's attributes: what later readings are compared with, and its labels' JSON. The labels
 * keep the order they came in (a producer keeps it from scrape to scrape; one that changes it costs
 * one upsert, which writes nothing, as jsonb does not keep key order). Text that is not
 * well-formed UTF-16 (a lone surrogate, which JSON would escape and jsonb refuses) is written with
 * U+FFFD in its place, as it would be stored as text.
 */
export function gpuAttrs(r: TelemetryRecord, derived = false): GpuAttrs {
  const labels: Record<string, string> = {};
  const keys: string[] = [];
  const values: string[] = [];
  for (const k of Object.keys(r.labels))
    if (k !== '__name__' && !(derived && INSTANCE_ONLY.has(k))) {
      const v = (r.labels[k] ?? '').toWellFormed();
      // Assigned, `__proto__` would set the prototype instead.
      setLabel(labels, k, v);
      keys.push(k);
      values.push(detached(v));
    }
  return {
    seen: {
      uuid: detached((r.uuid ?? '').toWellFormed()),
      model: detached((r.model ?? '').toWellFormed()),
      device: detached((r.device ?? '').toWellFormed()),
      keys: shared(keys),
      values,
    },
    labels: JSON.stringify(labels),
  };
}

/** Whether a reading's text says what `kept` (well-formed, as gpuAttrs keeps it) says. */
function sameText(kept: string | undefined, text: string): boolean {
  return text === kept || (!text.isWellFormed() && text.toWellFormed() === kept);
}

/**
 * Whether reading `r` says of its GPU what `seen` says (nothing seen: no): the same answer as
 * comparing gpuAttrs of both, without making them (a batch compares every GPU it brings with what
 * is cached). Every string compared is a whole one, which is a length and a memory comparison.
 */
export function sameAttrs(seen: GpuSeen | undefined, r: TelemetryRecord): boolean {
  if (seen === undefined) return false;
  if (
    !sameText(seen.uuid, r.uuid ?? '') ||
    !sameText(seen.model, r.model ?? '') ||
    !sameText(seen.device, r.device ?? '')
  )
    return false;
  const labels = r.labels;
  const keys = seen.keys;
  let n = 0;
  for (const k in labels) {
    if (k === '__name__' || !Object.hasOwn(labels, k)) continue;
    if (k !== keys[n] || !sameText(seen.values[n], labels[k] ?? '')) return false;
    n++;
  }
  return n === keys.length;
}

/**
 * The GPU rows a batch writes, as the statements read them: one JSON document (`GPU_ROWS`), which
 * the labels go into as they are, instead of eleven arrays of which one holds every label set's
 * JSON escaped again as array text. Empty strings stand for "not from this reading" (a reading
 * older than the newest seen), as null labels do.
 */
const GPU_ROWS = `jsonb_to_recordset($1::jsonb)
  AS u(h int, i smallint, uu text, m text, d text, l jsonb, f bigint, t bigint, gi smallint, p text, keep boolean)`;

function gpuRowsJson(
  rows: readonly { hostId: number; g: GpuSpan; stale: boolean; labels: string }[],
): string {
  const out = new Array<string>(rows.length);
  for (let k = 0; k < rows.length; k++) {
    const { hostId, g, stale, labels } = rows[k] as (typeof rows)[number];
    const r = g.record;
    const text = (v: string | undefined): string =>
      JSON.stringify(stale ? '' : (v ?? '').toWellFormed());
    const profile =
      stale || g.instance === WHOLE_GPU ? '' : (migProfileOf(r.labels) ?? '').toWellFormed();
    out[k] =
      `{"h":${hostId},"i":${g.index},"uu":${text(r.uuid)},"m":${text(r.model)},"d":${text(r.device)},` +
      `"l":${stale ? 'null' : labels},"f":${g.first},"t":${g.last},"gi":${g.instance},` +
      `"p":${JSON.stringify(profile)},"keep":${g.derived}}`;
  }
  return `[${out.join(',')}]`;
}

/** Widens the span of GPU row `gk` by reading `r` (`derived`: `r` is one of its instances'). */
function spanGpu(
  gpus: Map<string, GpuSpan>,
  gk: string,
  r: TelemetryRecord,
  instance: number,
  derived: boolean,
): GpuSpan {
  const t = r.timestamp;
  const g = gpus.get(gk);
  if (g === undefined) {
    const made: GpuSpan = {
      host: r.hostname,
      index: r.gpu,
      instance,
      record: r,
      first: t,
      last: t,
      derived,
    };
    gpus.set(gk, made);
    return made;
  }
  if (t < g.first) g.first = t;
  if (!derived && g.derived) {
    // The GPU's own reading: its attributes come from it, not from an instance's.
    g.derived = false;
    g.record = r;
  }
  if (t >= g.last) {
    g.last = t;
    if (derived === g.derived) g.record = r;
  }
  return g;
}

/** A GPU row's workload of the batch with this namespace, pod and container, if any. */
function workloadOf(
  row: GpuSpan,
  ns: string,
  pod: string,
  container: string,
): WorkloadSpan | undefined {
  const ws = row.workloads;
  if (ws === undefined) return undefined;
  for (const w of ws) if (w.pod === pod && w.ns === ns && w.container === container) return w;
  return undefined;
}

function survey(records: readonly TelemetryRecord[]): BatchFleet {
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  const hosts = new Map<string, Span>();
  const gpus = new Map<string, GpuSpan>();
  const metrics = new Set<string>();
  const workloads: WorkloadSpan[] = [];
  const rowOf = new Array<GpuSpan>(records.length);
  for (let i = 0; i < records.length; i++) {
    const r = records[i] as TelemetryRecord;
    const t = r.timestamp;
    if (t < min) min = t;
    if (t > max) max = t;
    const h = hosts.get(r.hostname);
    if (h === undefined) hosts.set(r.hostname, { first: t, last: t });
    else {
      if (t < h.first) h.first = t;
      if (t > h.last) h.last = t;
    }
    const instance = migInstanceOf(r.labels);
    const gk = `${r.hostname}\u0000${r.gpu}\u0000${instance}`;
    const row = spanGpu(gpus, gk, r, instance, false);
    rowOf[i] = row;
    // An instance's reading is a reading of its GPU too: the GPU's row spans it.
    if (instance !== WHOLE_GPU)
      spanGpu(gpus, `${r.hostname}\u0000${r.gpu}\u0000${WHOLE_GPU}`, r, WHOLE_GPU, true);
    metrics.add(r.metric);
    if (r.pod !== undefined) {
      const ns = r.namespace ?? '';
      const container = r.container ?? '';
      // Found among its GPU row's (no key made and hashed for each reading).
      const w = workloadOf(row, ns, r.pod, container);
      if (w === undefined) {
        const made: WorkloadSpan = {
          gpu: row,
          ns,
          pod: r.pod,
          container,
          first: t,
          last: t,
        };
        (row.workloads ??= []).push(made);
        workloads.push(made);
      } else {
        if (t < w.first) w.first = t;
        if (t > w.last) w.last = t;
      }
    }
  }
  return { min, max, hosts, gpus, rowOf, metrics, workloads };
}

/**
 * Surrogate ids of clusters, hosts, GPUs and metrics, cached in memory. A batch that brings
 * something new or changed (a GPU's uuid, model, device or labels; a new workload; a last_seen more
 * than a minute behind) upserts it first, in a transaction of its own, in key order; a batch with
 * nothing new costs no query at all.
 *
 * The cache belongs to one database, by its identity: every statement that uses cached ids checks
 * it (and fails with IDENTITY_CHANGED otherwise), and the ids come back with it, for the write
 * statement to check. `forget` starts a new cache; a resolve still running on the old one fills
 * the old one.
 */
export class Dimensions {
  private cache = new Cache(undefined);

  /** `max`: entries kept of each kind (DIMENSION_CACHE_MAX, by default 250,000). */
  constructor(private readonly max = DIMENSION_CACHE_MAX) {}

  /** Entries kept, of each kind (tests; the collector bounds its heap by the GPUs). */
  get cached(): { hosts: number; gpus: number; workloads: number } {
    return this.cache.sizes;
  }

  /** The identity of the database the cached ids belong to (undefined: none read yet). */
  get identity(): string | undefined {
    return this.cache.identity;
  }

  /**
   * Forgets every id (after a failed transaction the cache may hold ids that do not exist; after
   * the database changed, they are another database's). `identity`: the database's, if known.
   */
  forget(identity?: string): void {
    this.cache = new Cache(identity);
  }

  async resolve(
    db: Transactor,
    clusterName: string,
    records: readonly TelemetryRecord[],
  ): Promise<ResolvedIds> {
    const c = this.cache;
    c.trim(this.max);
    const fleet = survey(records);
    const plan = this.plan(c, clusterName, fleet);
    if (plan !== 'current') {
      try {
        if (plan === 'upsert') {
          // What the upsert reads goes into the cache only once it is committed: a concurrent
          // batch taking an id from the cache before then would not find its row.
          const out = new Cache(undefined);
          await db.transaction((tx) => this.upsert(c, tx, clusterName, fleet, out));
          c.merge(out);
        } else await this.touch(c, db, plan);
      } catch (err) {
        // A changed identity is the store's to handle (it reads the new one, and says so).
        if (this.cache === c && !isIdentityChanged(err)) this.forget(c.identity);
        throw err;
      }
    }
    // Each GPU row's id, once (the readings take theirs from their row), and the newest reading
    // seen of it. Its key was made by the plan, or by the upsert when the plan stopped short of it
    // (something new came first); without one, `ids` says the row is not cached. A batch with
    // nothing to write takes its entry from the plan (no await since: no other batch has replaced
    // it); after a statement, the entry cached now.
    for (const g of fleet.gpus.values()) {
      const k = g.key;
      if (k === undefined) continue;
      const e = plan === 'current' ? g.entry : c.gpus.get(k);
      g.id = e?.id;
      if (e !== undefined && g.last > e.newest) e.newest = g.last;
    }
    return this.ids(c, records, fleet.rowOf);
  }

  private hostKey(clusterId: number, hostname: string): string {
    return `${clusterId}\u0000${hostname}`;
  }

  private gpuKey(hostId: number, index: number, instance: number): string {
    return `${hostId}\u0000${index}\u0000${instance}`;
  }

  private workloadKey(gpuId: number, w: WorkloadSpan): string {
    return `${gpuId}\u0000${w.ns}\u0000${w.pod}\u0000${w.container}`;
  }

  /**
   * What the batch needs, from what this process knows: nothing (`current`); only the spans of
   * known rows moved (a `Touch`); or the full upsert, when it brings a cluster, host, GPU, metric or
   * workload not known here, or a GPU's changed attributes (unless its reading is older than the
   * newest seen here). A span moves when a reading is older than first seen, or newer than last
   * seen by more than the last-seen lag.
   */
  private plan(c: Cache, clusterName: string, fleet: BatchFleet): Touch | 'current' | 'upsert' {
    const cluster = c.clusters.get(clusterName);
    if (cluster === undefined) return 'upsert';
    for (const m of fleet.metrics) if (!c.metrics.has(m)) return 'upsert';
    let moved = outside({ first: fleet.min, last: fleet.max }, cluster.firstSeen, cluster.lastSeen);
    const hosts: { key: string; id: number; span: Span }[] = [];
    const hostIds = new Map<string, number>();
    for (const [h, span] of fleet.hosts) {
      const key = this.hostKey(cluster.id, h);
      const host = c.hosts.get(key);
      if (host === undefined) return 'upsert';
      moved ||= outside(span, host.firstSeen, host.lastSeen);
      hosts.push({ key, id: host.id, span });
      hostIds.set(h, host.id);
    }
    // Each GPU's entry and each workload's key are kept on the batch's spans: a batch whose spans
    // moved lists them from there, and one with nothing to write (the most common) lists nothing.
    for (const g of fleet.gpus.values()) {
      const key = this.gpuKey(hostIds.get(g.host) ?? -1, g.index, g.instance);
      g.key = key;
      const gpu = c.gpus.get(key);
      if (gpu === undefined) return 'upsert';
      const stale = g.last < gpu.newest;
      if (!stale && !g.derived && !sameAttrs(gpu.seen, g.record)) return 'upsert';
      moved ||= outside(g, gpu.firstSeen, gpu.lastSeen);
      g.entry = gpu;
    }
    for (const w of fleet.workloads) {
      const key = this.workloadKey(w.gpu.entry?.id ?? -1, w);
      w.key = key;
      const seen = c.workloads.get(key);
      if (seen === undefined) return 'upsert';
      moved ||= outside(w, seen.first, seen.last);
    }
    if (!moved) return 'current';
    const gpus: { key: string; id: number; span: Span }[] = [];
    for (const g of fleet.gpus.values()) {
      const { key, entry } = g;
      if (key !== undefined && entry !== undefined) gpus.push({ key, id: entry.id, span: g });
    }
    const workloads: { key: string; gpuId: number; w: WorkloadSpan }[] = [];
    for (const w of fleet.workloads)
      if (w.key !== undefined) workloads.push({ key: w.key, gpuId: w.gpu.entry?.id ?? -1, w });
    // Key order, as the full upsert takes its row locks.
    const byId = (x: { id: number }, y: { id: number }): number => x.id - y.id;
    return {
      clusterName,
      clusterId: cluster.id,
      min: fleet.min,
      max: fleet.max,
      hosts: hosts.sort(byId),
      gpus: gpus.sort(byId),
      workloads: workloads.sort(byWorkloadKey),
    };
  }

  private async touch(c: Cache, db: SqlClient, t: Touch): Promise<void> {
    const res = await db.query<{
      kind: 'c' | 'h' | 'g';
      id: number;
      first_seen: string;
      last_seen: string;
    }>(TOUCH, [
      t.clusterId,
      t.min,
      t.max,
      t.hosts.map((x) => x.id),
      t.hosts.map((x) => x.span.first),
      t.hosts.map((x) => x.span.last),
      t.gpus.map((x) => x.id),
      t.gpus.map((x) => x.span.first),
      t.gpus.map((x) => x.span.last),
      t.workloads.map((x) => x.gpuId),
      t.workloads.map((x) => x.w.ns),
      t.workloads.map((x) => x.w.pod),
      t.workloads.map((x) => x.w.container),
      t.workloads.map((x) => x.w.first),
      t.workloads.map((x) => x.w.last),
      c.identity ?? null,
    ]);
    const spans = new Map<string, { firstSeen: number; lastSeen: number }>();
    for (const row of res.rows)
      spans.set(`${row.kind}${row.id}`, {
        firstSeen: Number(row.first_seen),
        lastSeen: Number(row.last_seen),
      });
    const moved = (kind: string, id: number): { firstSeen: number; lastSeen: number } => {
      const span = spans.get(`${kind}${id}`);
      // A row deleted under us (by hand): forget everything, the next batch upserts it again.
      if (span === undefined) throw notAsCached(`touch found no ${kind} ${id}`);
      return span;
    };
    c.clusters.set(t.clusterName, { id: t.clusterId, ...moved('c', t.clusterId) });
    for (const h of t.hosts) renew(c.hosts, h.key, { id: h.id, ...moved('h', h.id) });
    for (const g of t.gpus) {
      // As cached now: another batch's upsert may have replaced the entry the plan found.
      const known = c.gpus.get(g.key);
      renew(c.gpus, g.key, {
        id: g.id,
        seen: known?.seen,
        ...moved('g', g.id),
        newest: known?.newest ?? Number.NEGATIVE_INFINITY,
      });
    }
    for (const { key, w } of t.workloads) {
      const seen = c.workloads.get(key);
      renew(c.workloads, key, {
        first: Math.min(w.first, seen?.first ?? w.first),
        last: Math.max(w.last, seen?.last ?? w.last),
      });
    }
  }

  /**
   * Writes what the batch brings that this process does not know as it is (new, changed, or
   * outside its cached span; the rest keep their cached ids), in three steps per table, so that
   * identity values are only drawn for rows that are really new (an INSERT ... ON CONFLICT draws
   * one for every row it tries): insert the rows that do not exist, update the ones whose span or
   * attributes moved, read the ids.
   */
  private async upsert(
    c: Cache,
    tx: SqlClient,
    clusterName: string,
    fleet: BatchFleet,
    out: Cache,
  ): Promise<void> {
    await tx.query(
      `INSERT INTO clusters (name, first_seen, last_seen)
       SELECT $1, nexus_ts($2), nexus_ts($3) WHERE NOT EXISTS (SELECT FROM clusters WHERE name = $1)
       ON CONFLICT (name) DO NOTHING`,
      [clusterName, fleet.min, fleet.max],
    );
    // The database is the cache's (or the cache has none yet: it is this one's from now on).
    // Its span moves only when the batch reaches outside it (last seen: by more than the lag), so
    // that concurrent upserts do not queue on the cluster's row lock, held to their commit.
    const cr = await tx.query<{
      id: number;
      first_seen: string;
      last_seen: string;
      identity: string | null;
    }>(
      `WITH m AS (
         UPDATE clusters SET first_seen = least(first_seen, nexus_ts($2)), last_seen = greatest(last_seen, nexus_ts($3))
         WHERE name = $1 AND nexus_expect_identity($4::text)
           AND (first_seen > nexus_ts($2) OR last_seen < nexus_ts($3 - $5::bigint))
         RETURNING id, first_seen, last_seen
       )
       SELECT id, nexus_ms(first_seen) AS first_seen, nexus_ms(last_seen) AS last_seen, nexus_identity() AS identity FROM m
       UNION ALL
       SELECT id, nexus_ms(first_seen), nexus_ms(last_seen), nexus_identity() FROM clusters
       WHERE name = $1 AND nexus_expect_identity($4::text) AND NOT EXISTS (SELECT FROM m)`,
      [clusterName, fleet.min, fleet.max, c.identity ?? null, TOUCH_MS],
    );
    const cluster = cr.rows[0];
    if (cluster === undefined) throw notAsCached('cluster upsert returned no row');
    if (cluster.identity === null)
      throw new NexusError(
        'STORE_UNAVAILABLE',
        'the database has no identity (table nexus_identity is empty): run nexus migrate',
        { retryable: true },
      );
    out.identity = cluster.identity;
    out.clusters.set(clusterName, {
      id: cluster.id,
      firstSeen: Number(cluster.first_seen),
      lastSeen: Number(cluster.last_seen),
    });

    // Hosts, in hostname order: those this process knows, with the batch inside their span, have
    // nothing to write (as a batch with nothing new: `plan`) and keep their cached ids; only the
    // others go through the statements (a batch with one new GPU among 10,000 known ones sends one).
    const hostIds = new Map<string, number>();
    const hosts: [string, Span][] = [];
    for (const [h, span] of fleet.hosts) {
      const key = this.hostKey(cluster.id, h);
      const known = c.hosts.get(key);
      if (known !== undefined && !outside(span, known.firstSeen, known.lastSeen)) {
        hostIds.set(h, known.id);
        out.hosts.set(key, known);
      } else hosts.push([h, span]);
    }
    hosts.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
    const hostArgs = [
      cluster.id,
      hosts.map(([h]) => h),
      hosts.map(([, s]) => s.first),
      hosts.map(([, s]) => s.last),
    ];
    type HostRow = { id: number; hostname: string; first_seen: string; last_seen: string };
    const hr =
      hosts.length === 0
        ? { rows: [] as HostRow[] }
        : await tx.query<HostRow>(
            `INSERT INTO hosts (cluster_id, hostname, first_seen, last_seen)
       SELECT $1, u.h, nexus_ts(u.f), nexus_ts(u.l) FROM unnest($2::text[], $3::bigint[], $4::bigint[]) AS u(h, f, l)
       WHERE NOT EXISTS (SELECT FROM hosts x WHERE x.cluster_id = $1 AND x.hostname = u.h)
       ON CONFLICT (cluster_id, hostname) DO NOTHING
       RETURNING id, hostname, nexus_ms(first_seen) AS first_seen, nexus_ms(last_seen) AS last_seen`,
            hostArgs,
          );
    const hostRows = [...hr.rows];
    // The hosts that existed already (or that another collector inserted meanwhile): their ids,
    // and their spans moved where the batch reaches outside them (no row rewritten for nothing).
    const inserted = new Set(hr.rows.map((r) => r.hostname));
    const known = hosts.filter(([h]) => !inserted.has(h));
    if (known.length > 0) {
      const kr = await tx.query<HostRow>(
        `WITH u AS (SELECT * FROM unnest($2::text[], $3::bigint[], $4::bigint[]) AS u(h, f, l)),
         m AS (
           UPDATE hosts x SET first_seen = least(x.first_seen, nexus_ts(u.f)), last_seen = greatest(x.last_seen, nexus_ts(u.l))
           FROM u
           WHERE x.cluster_id = $1 AND x.hostname = u.h AND (x.first_seen > nexus_ts(u.f) OR x.last_seen < nexus_ts(u.l))
           RETURNING x.id, x.hostname, x.first_seen, x.last_seen
         )
         SELECT id, hostname, nexus_ms(first_seen) AS first_seen, nexus_ms(last_seen) AS last_seen FROM m
         UNION ALL
         SELECT x.id, x.hostname, nexus_ms(x.first_seen), nexus_ms(x.last_seen) FROM hosts x JOIN u ON x.cluster_id = $1 AND x.hostname = u.h
         WHERE NOT EXISTS (SELECT FROM m WHERE m.id = x.id)`,
        [
          cluster.id,
          known.map(([h]) => h),
          known.map(([, sp]) => sp.first),
          known.map(([, sp]) => sp.last),
        ],
      );
      hostRows.push(...kr.rows);
    }
    for (const row of hostRows) {
      hostIds.set(row.hostname, row.id);
      out.hosts.set(this.hostKey(cluster.id, row.hostname), {
        id: row.id,
        firstSeen: Number(row.first_seen),
        lastSeen: Number(row.last_seen),
      });
    }

    // GPUs (whole GPUs and their MIG instances), in (host id, index, instance) order. A GPU whose
    // reading here is older than the newest this process has seen keeps its attributes (an older
    // reading never reverts a uuid); so does a whole GPU known here only from its instances
    // (`derived`: its row is made from theirs when missing, `keep` on update).
    // Those known here, unchanged (as `plan` judges them) and with the batch inside their span keep
    // their cached ids and go through no statement.
    const gpuIds = new Map<string, number>();
    const gpus = [...fleet.gpus.values()]
      .map((g) => {
        const hostId = hostIds.get(g.host) ?? -1;
        const key = this.gpuKey(hostId, g.index, g.instance);
        g.key = key;
        const stale = g.last < (c.gpus.get(key)?.newest ?? Number.NEGATIVE_INFINITY);
        return { hostId, key, g, stale };
      })
      .filter((x) => {
        const known = c.gpus.get(x.key);
        if (
          known === undefined ||
          (!x.stale && !x.g.derived && !sameAttrs(known.seen, x.g.record)) ||
          outside(x.g, known.firstSeen, known.lastSeen)
        )
          return true;
        gpuIds.set(x.key, known.id);
        out.gpus.set(x.key, known);
        return false;
      })
      .map((x) => ({ ...x, ...gpuAttrs(x.g.record, x.g.derived) }))
      .sort((x, y) => x.hostId - y.hostId || x.g.index - y.g.index || x.g.instance - y.g.instance);
    const gpuDoc = gpuRowsJson(gpus);
    type GpuRow = {
      id: number;
      host_id: number;
      gpu_index: number;
      gpu_instance_id: number;
      first_seen: string;
      last_seen: string;
    };
    const gi =
      gpus.length === 0
        ? { rows: [] as GpuRow[] }
        : await tx.query<GpuRow>(
            `INSERT INTO gpus (host_id, gpu_index, gpu_instance_id, mig_profile, uuid, model, device, labels, first_seen, last_seen)
       SELECT u.h, u.i, u.gi, nullif(u.p, ''), nullif(u.uu, ''), nullif(u.m, ''), nullif(u.d, ''), coalesce(u.l, '{}'), nexus_ts(u.f), nexus_ts(u.t)
       FROM ${GPU_ROWS}
       WHERE NOT EXISTS (SELECT FROM gpus x WHERE x.host_id = u.h AND x.gpu_index = u.i AND x.gpu_instance_id = u.gi)
       ON CONFLICT (host_id, gpu_index, gpu_instance_id) DO NOTHING
       RETURNING id, host_id, gpu_index, gpu_instance_id, nexus_ms(first_seen) AS first_seen, nexus_ms(last_seen) AS last_seen`,
            [gpuDoc],
          );
    const gpuRows = [...gi.rows];
    // The GPUs that existed already: their ids, and their rows updated only where the batch
    // moves their span or changes their attributes (the values below differ from the row's).
    const made = new Set(
      gi.rows.map((r) => this.gpuKey(r.host_id, r.gpu_index, r.gpu_instance_id)),
    );
    const old = gpus.filter((x) => !made.has(x.key));
    if (old.length > 0) {
      const gr = await tx.query<GpuRow>(
        `WITH u AS (
           SELECT * FROM ${GPU_ROWS}
         ), n AS (
           SELECT x.id,
             CASE WHEN nexus_ts(u.t) >= x.last_seen AND NOT u.keep THEN coalesce(nullif(u.uu, ''), x.uuid) ELSE x.uuid END AS uuid,
             CASE WHEN nexus_ts(u.t) >= x.last_seen AND NOT u.keep THEN coalesce(nullif(u.m, ''), x.model) ELSE x.model END AS model,
             CASE WHEN nexus_ts(u.t) >= x.last_seen AND NOT u.keep THEN coalesce(nullif(u.d, ''), x.device) ELSE x.device END AS device,
             CASE WHEN nexus_ts(u.t) >= x.last_seen AND NOT u.keep AND u.l IS NOT NULL THEN u.l ELSE x.labels END AS labels,
             CASE WHEN nexus_ts(u.t) >= x.last_seen AND u.p <> '' THEN u.p ELSE x.mig_profile END AS mig_profile,
             least(x.first_seen, nexus_ts(u.f)) AS first_seen,
             greatest(x.last_seen, nexus_ts(u.t)) AS last_seen
           FROM gpus x JOIN u ON x.host_id = u.h AND x.gpu_index = u.i AND x.gpu_instance_id = u.gi
         ), m AS (
           UPDATE gpus x SET uuid = n.uuid, model = n.model, device = n.device, labels = n.labels,
             mig_profile = n.mig_profile, first_seen = n.first_seen, last_seen = n.last_seen
           FROM n
           WHERE x.id = n.id
             AND (x.uuid, x.model, x.device, x.labels, x.mig_profile, x.first_seen, x.last_seen)
               IS DISTINCT FROM (n.uuid, n.model, n.device, n.labels, n.mig_profile, n.first_seen, n.last_seen)
           RETURNING x.id, x.host_id, x.gpu_index, x.gpu_instance_id, x.first_seen, x.last_seen
         )
         SELECT id, host_id, gpu_index, gpu_instance_id, nexus_ms(first_seen) AS first_seen, nexus_ms(last_seen) AS last_seen FROM m
         UNION ALL
         SELECT x.id, x.host_id, x.gpu_index, x.gpu_instance_id, nexus_ms(x.first_seen), nexus_ms(x.last_seen)
         FROM gpus x JOIN u ON x.host_id = u.h AND x.gpu_index = u.i AND x.gpu_instance_id = u.gi
         WHERE NOT EXISTS (SELECT FROM m WHERE m.id = x.id)`,
        [gpuRowsJson(old)],
      );
      gpuRows.push(...gr.rows);
    }
    const attrsOf = new Map(gpus.map((x) => [x.key, x]));
    for (const row of gpuRows) {
      const k = this.gpuKey(row.host_id, row.gpu_index, row.gpu_instance_id);
      gpuIds.set(k, row.id);
      const mine = attrsOf.get(k);
      const known = c.gpus.get(k);
      const fresh = mine !== undefined && !mine.stale && !mine.g.derived;
      out.gpus.set(k, {
        id: row.id,
        seen: fresh ? mine.seen : known?.seen,
        firstSeen: Number(row.first_seen),
        lastSeen: Number(row.last_seen),
        newest: known?.newest ?? Number.NEGATIVE_INFINITY,
      });
    }

    // Metrics: the catalogue's unit, type and help for the ones not yet known.
    const missing = [...fleet.metrics].filter((m) => !c.metrics.has(m)).sort();
    if (missing.length > 0) {
      const fields = missing.map((m) => dcgmField(m));
      await tx.query(
        `INSERT INTO metrics (name, unit, type, help)
         SELECT u.n, u.u, u.t, u.h FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(n, u, t, h)
         WHERE NOT EXISTS (SELECT FROM metrics x WHERE x.name = u.n)
         ON CONFLICT (name) DO NOTHING`,
        [
          missing,
          fields.map((f) => f?.unit ?? ''),
          fields.map((f) => f?.type ?? 'gauge'),
          fields.map((f) => f?.help ?? ''),
        ],
      );
      const mr = await tx.query<{ id: number; name: string }>(
        'SELECT id, name FROM metrics WHERE name = ANY($1::text[])',
        [missing],
      );
      for (const row of mr.rows) out.metrics.set(row.name, row.id);
    }

    // Workloads (a composite key, no identity to spare).
    if (fleet.workloads.length > 0) {
      const ws = fleet.workloads
        .map((w) => ({
          // Every GPU of the batch has its key from the GPU step above.
          gpuId: gpuIds.get(w.gpu.key ?? '') ?? -1,
          w,
        }))
        .filter(({ gpuId, w }) => {
          // Known here with the batch inside its span: nothing to write.
          const k = this.workloadKey(gpuId, w);
          const seen = c.workloads.get(k);
          if (seen === undefined || outside(w, seen.first, seen.last)) return true;
          out.workloads.set(k, seen);
          return false;
        })
        .sort(byWorkloadKey);
      if (ws.length > 0)
        await tx.query(
          `INSERT INTO gpu_workloads (gpu_id, namespace, pod, container, first_seen, last_seen)
         SELECT g, n, p, c, nexus_ts(f), nexus_ts(l)
         FROM unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[]) AS x(g, n, p, c, f, l)
         ON CONFLICT (gpu_id, namespace, pod, container) DO UPDATE SET
           first_seen = least(gpu_workloads.first_seen, excluded.first_seen),
           last_seen = greatest(gpu_workloads.last_seen, excluded.last_seen)
         WHERE gpu_workloads.first_seen > excluded.first_seen OR gpu_workloads.last_seen < excluded.last_seen`,
          [
            ws.map((x) => x.gpuId),
            ws.map((x) => x.w.ns),
            ws.map((x) => x.w.pod),
            ws.map((x) => x.w.container),
            ws.map((x) => x.w.first),
            ws.map((x) => x.w.last),
          ],
        );
      for (const { gpuId, w } of ws) {
        const k = this.workloadKey(gpuId, w);
        const seen = c.workloads.get(k);
        out.workloads.set(k, {
          first: Math.min(w.first, seen?.first ?? w.first),
          last: Math.max(w.last, seen?.last ?? w.last),
        });
      }
    }
  }

  private ids(
    c: Cache,
    records: readonly TelemetryRecord[],
    rowOf: readonly GpuSpan[],
  ): ResolvedIds {
    const gpu = new Int32Array(records.length);
    const metric = new Int16Array(records.length);
    let lastMetric: string | undefined;
    let m: number | undefined;
    for (let i = 0; i < records.length; i++) {
      const r = records[i];
      if (r === undefined) continue;
      const g = rowOf[i]?.id;
      if (r.metric !== lastMetric) {
        lastMetric = r.metric;
        m = c.metrics.get(r.metric);
      }
      if (g === undefined || m === undefined)
        throw notAsCached(`no id for ${r.hostname} GPU ${r.gpu} ${r.metric}`);
      gpu[i] = g;
      metric[i] = m;
    }
    const identity = c.identity;
    if (identity === undefined) throw notAsCached('ids resolved without a database identity');
    return { gpu, metric, identity };
  }
}
