import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { NexusError } from '../../core/errors.js';
import { metricNameForms } from '../../core/dcgm-fields.js';
import type { HostHeat, LatestValue, TelemetryReader } from '../../store/reader.js';
import { MAX_LIST, clip } from '../params.js';
import { ErrorRef } from '../schemas/common.js';
import { ClusterParams } from '../schemas/fleet.js';
import {
  HEATMAP_DEFAULT_CELLS,
  Heatmap,
  HeatmapQuery,
  type HeatmapCell,
} from '../schemas/heatmap.js';
import { ALERT_RULES } from './overview.js';

const TEMP = 'DCGM_FI_DEV_GPU_TEMP';
/** How long an answer is served from the cache as it is. */
export const HEATMAP_CACHE_MS = 2000;
/**
 * How long an older answer is still served at once while the next one is computed (a request
 * then waits for none); past that, or when the computation fails, requests wait for it.
 */
export const HEATMAP_STALE_MS = 30_000;
/** Most answers cached (cluster, metric, prefix, range, max_cells); the oldest goes first. */
export const HEATMAP_CACHE_ENTRIES = 256;

export interface HeatHost {
  readonly hostname: string;
  /** Live GPUs. */
  readonly gpus: number;
}

export interface HeatmapInput {
  /** Live hosts under the prefix (and range); any order. */
  readonly hosts: readonly HeatHost[];
  /** Latest values of the metric (whole GPUs; others are skipped). */
  readonly values: readonly LatestValue[];
  /** GPUs (host NUL index) whose temperature the overview flags. */
  readonly alerting: ReadonlySet<string>;
  readonly maxCells: number;
  /** The prefix asked for: groups split after it. */
  readonly prefix: string;
}

export interface HeatmapCells {
  readonly level: 'gpu' | 'host' | 'group';
  readonly hosts: number;
  readonly gpus: number;
  readonly cells: HeatmapCell[];
}

/** A host's figures as the fallback pass adds them up. */
type Agg = { -readonly [K in keyof HostHeat]: HostHeat[K] };

const gpuKey = (host: string, gpu: number): string => `${host}\u0000${gpu}`;
const byCode = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
const round = (x: number): number => Math.round(x * 1000) / 1000;

function aggOut(a: Omit<HostHeat, 'hostname'>) {
  const none = a.reporting === 0;
  return {
    gpus: a.gpus,
    reporting: a.reporting,
    min: none ? null : a.min,
    avg: none ? null : round(a.sum / a.reporting),
    max: none ? null : a.max,
    alerting: a.alerting,
  };
}

function commonPrefix(a: string, b: string): string {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return a.slice(0, i);
}

/** Distinct `slice(0, len)` of sorted names (equal ones are consecutive). */
function distinctPrefixes(sorted: readonly string[], len: number): number {
  let n = 0;
  let last: string | undefined;
  for (const h of sorted) {
    const p = h.slice(0, len);
    if (p !== last) n++;
    last = p;
  }
  return n;
}

/**
 * Consecutive hostnames grouped (docs/api.md, "heatmap"): by the longest prefix that splits them
 * into 2..maxGroups groups; when no prefix length does, runs of equal size.
 */
export function groupHosts(
  sorted: readonly string[],
  maxGroups: number,
  base: string,
): { prefix: string; from: number; to: number; run: boolean }[] {
  const longest = sorted.reduce((n, h) => Math.max(n, h.length), 0);
  let best: number | undefined;
  for (let len = base.length + 1; len <= longest; len++) {
    const n = distinctPrefixes(sorted, len);
    if (n > maxGroups) break;
    if (n >= 2) best = len;
  }
  const out: { prefix: string; from: number; to: number; run: boolean }[] = [];
  if (best !== undefined) {
    const len = best;
    sorted.forEach((h, i) => {
      const p = h.slice(0, len);
      const cur = out[out.length - 1];
      if (cur !== undefined && cur.prefix === p) cur.to = i;
      else out.push({ prefix: p, from: i, to: i, run: false });
    });
    return out;
  }
  const size = Math.ceil(sorted.length / Math.max(1, maxGroups));
  for (let i = 0; i < sorted.length; i += size) {
    const to = Math.min(sorted.length, i + size) - 1;
    out.push({ prefix: commonPrefix(sorted[i] ?? '', sorted[to] ?? ''), from: i, to, run: true });
  }
  return out;
}

/** The cells of a heatmap: one pass over the values, then one over the hosts. */
export function heatmapCells(input: HeatmapInput): HeatmapCells {
  const hosts = [...input.hosts].sort((a, b) => byCode(a.hostname, b.hostname));
  const gpus = hosts.reduce((n, h) => n + h.gpus, 0);
  const index = new Map<string, number>();
  hosts.forEach((h, i) => index.set(h.hostname, i));
  if (gpus <= input.maxCells) {
    const cells: HeatmapCell[] = [];
    for (const v of input.values) {
      if (v.gpu_instance_id !== undefined && v.gpu_instance_id !== -1) continue;
      if (!index.has(v.hostname)) continue;
      cells.push({
        key: `${v.hostname}/${v.gpu_id}`,
        host_id: v.hostname,
        gpu_id: v.gpu_id,
        uuid: v.uuid ?? null,
        value: v.value,
        time: new Date(v.timestamp).toISOString(),
        alerting: input.alerting.has(gpuKey(v.hostname, v.gpu_id)) ? 1 : 0,
      });
    }
    cells.sort(
      (a, b) => byCode(a.host_id ?? '', b.host_id ?? '') || (a.gpu_id ?? 0) - (b.gpu_id ?? 0),
    );
    return { level: 'gpu', hosts: hosts.length, gpus, cells };
  }
  const aggs: Agg[] = hosts.map((h) => ({
    hostname: h.hostname,
    gpus: h.gpus,
    reporting: 0,
    sum: 0,
    min: Infinity,
    max: -Infinity,
    alerting: 0,
  }));
  for (const v of input.values) {
    if (v.gpu_instance_id !== undefined && v.gpu_instance_id !== -1) continue;
    const i = index.get(v.hostname);
    const a = i === undefined ? undefined : aggs[i];
    if (a === undefined) continue;
    a.reporting++;
    a.sum += v.value;
    if (v.value < a.min) a.min = v.value;
    if (v.value > a.max) a.max = v.value;
    // (Few GPUs alert: no key made for the others' lookups when none does.)
    if (input.alerting.size > 0 && input.alerting.has(gpuKey(v.hostname, v.gpu_id))) a.alerting++;
  }
  return aggregateCells(aggs, gpus, input.maxCells, input.prefix);
}

/**
 * The cells of a heatmap of more GPUs than `maxCells`, from its hosts' figures (sorted by
 * hostname): one per host when they fit, else one per group of hosts.
 */
export function aggregateCells(
  hosts: readonly HostHeat[],
  gpus: number,
  maxCells: number,
  prefix: string,
): HeatmapCells {
  if (hosts.length <= maxCells) {
    const cells = hosts.map((a) => ({ key: a.hostname, host_id: a.hostname, ...aggOut(a) }));
    return { level: 'host', hosts: hosts.length, gpus, cells };
  }
  const names = hosts.map((h) => h.hostname);
  const groups = groupHosts(names, Math.max(2, Math.floor(maxCells / 4)), prefix);
  const cells = groups.map((g) => {
    const sum = { gpus: 0, reporting: 0, sum: 0, min: Infinity, max: -Infinity, alerting: 0 };
    for (let i = g.from; i <= g.to; i++) {
      const a = hosts[i] as HostHeat;
      sum.gpus += a.gpus;
      sum.reporting += a.reporting;
      sum.sum += a.sum;
      sum.min = Math.min(sum.min, a.min);
      sum.max = Math.max(sum.max, a.max);
      sum.alerting += a.alerting;
    }
    const from = names[g.from] ?? '';
    return {
      // A prefix names its group; a run of hosts (no shared structure) is named by its first.
      key: g.run ? from : g.prefix,
      prefix: g.prefix,
      from,
      to: names[g.to] ?? '',
      hosts: g.to - g.from + 1,
      ...aggOut(sum),
    };
  });
  return { level: 'group', hosts: hosts.length, gpus, cells };
}

interface Entry {
  /** The last answer computed, and when it came in. */
  answer?: { readonly heatmap: Heatmap; readonly at: number };
  /** The computation under way (one at a time). */
  computing?: Promise<Heatmap>;
}

/** GET /api/v1/clusters/{c}/heatmap: the overview heatmap, aggregated (docs/api.md). */
export const heatmapRoutes: FastifyPluginAsyncTypebox<{
  reader: TelemetryReader;
  now?: () => number;
}> = async (app, { reader, now = Date.now }) => {
  const cache = new Map<string, Entry>();

  const compute = async (
    cluster: string,
    metric: string,
    q: { prefix: string; from?: string | undefined; to?: string | undefined; maxCells: number },
  ): Promise<Heatmap> => {
    const { from, to, prefix } = q;
    const answer = (out: HeatmapCells, name: string, unit: string): Heatmap => ({
      cluster_id: cluster,
      metric: name,
      unit,
      level: out.level,
      prefix,
      hosts: out.hosts,
      gpus: out.gpus,
      as_of: new Date(now()).toISOString(),
      cells: out.cells,
    });
    // Hosts or groups: from the figures the reader keeps per host (a lookup per host).
    const heat = await reader.heatHosts?.(cluster, metric, { prefix, from, to });
    if (heat !== undefined) {
      const gpus = heat.hosts.reduce((n, h) => n + h.gpus, 0);
      if (gpus > q.maxCells)
        return answer(aggregateCells(heat.hosts, gpus, q.maxCells, prefix), heat.metric, heat.unit);
    }
    // A cell per GPU, or no figures kept: from the GPUs' latest values.
    const isTemp = metricNameForms(metric).includes(TEMP);
    const under = (h: string): boolean =>
      h.startsWith(prefix) && (from === undefined || h >= from) && (to === undefined || h <= to);
    // The hosts: those of the figures when kept (narrowed already), else the cluster's list.
    const hosts: readonly HeatHost[] =
      heat?.hosts ?? (await reader.hosts(cluster)).filter((h) => h.gpus > 0 && under(h.hostname));
    // Drilled down to a few hosts: read only their latest values (no host: a selection of none,
    // still a 400 for a metric the store does not know; no hostname is empty).
    const names = hosts.length === 0 ? [''] : hosts.map((h) => h.hostname);
    const narrowed = prefix !== '' || from !== undefined || to !== undefined;
    const selection = {
      cluster,
      live: true,
      ...(narrowed && hosts.length <= MAX_LIST ? { hosts: names } : {}),
    };
    const [values, temps] = await Promise.all([
      reader.latest({ ...selection, metrics: [metric] }),
      isTemp
        ? Promise.resolve(undefined)
        : reader.latest({ ...selection, metrics: [TEMP] }).catch(() => []),
    ]);
    const alerting = new Set<string>();
    for (const t of temps ?? values) {
      if (t.value > ALERT_RULES.tempWarnC && under(t.hostname))
        alerting.add(gpuKey(t.hostname, t.gpu_id));
    }
    const out = heatmapCells({ hosts, values, alerting, maxCells: q.maxCells, prefix });
    const first = values[0];
    return answer(out, heat?.metric ?? first?.metric ?? metric, heat?.unit ?? first?.unit ?? '');
  };

  app.get(
    '/api/v1/clusters/:cluster_id/heatmap',
    {
      schema: {
        tags: ['fleet'],
        summary:
          'The overview heatmap: the latest value of a metric per GPU, host or group of hosts, at most max_cells cells (up to 2 s old, or up to 30 s while the next is computed)',
        params: ClusterParams,
        querystring: HeatmapQuery,
        response: { 200: Heatmap, 400: ErrorRef, 404: ErrorRef, 503: ErrorRef },
      },
    },
    async (req) => {
      const cluster = req.params.cluster_id;
      const { metric } = req.query;
      const prefix = req.query.prefix ?? '';
      const maxCells = req.query.max_cells ?? HEATMAP_DEFAULT_CELLS;
      if (
        req.query.from !== undefined &&
        req.query.to !== undefined &&
        req.query.from > req.query.to
      )
        throw new NexusError(
          'BAD_REQUEST',
          `from: "${clip(req.query.from)}" is after to: "${clip(req.query.to)}"`,
        );
      if ((await reader.cluster(cluster)) === undefined)
        throw new NexusError('NOT_FOUND', `cluster "${cluster}" not found`);
      const key = [
        cluster,
        metric,
        prefix,
        req.query.from ?? '',
        req.query.to ?? '',
        maxCells,
      ].join('\u0000');
      // Most recently asked last: the oldest goes first.
      const entry: Entry = cache.get(key) ?? {};
      cache.delete(key);
      cache.set(key, entry);
      while (cache.size > HEATMAP_CACHE_ENTRIES) {
        const oldest = cache.keys().next().value;
        if (oldest === undefined) break;
        cache.delete(oldest);
      }
      const answer = entry.answer;
      const age = answer === undefined ? Infinity : now() - answer.at;
      if (answer !== undefined && age < HEATMAP_CACHE_MS) return answer.heatmap;
      // Expired or none: one computation at a time, shared by the requests that wait for it.
      let computing = entry.computing;
      if (computing === undefined) {
        const started = compute(cluster, metric, {
          prefix,
          from: req.query.from,
          to: req.query.to,
          maxCells,
        }).then((heatmap) => {
          entry.answer = { heatmap, at: now() };
          return heatmap;
        });
        const done = (): void => {
          if (entry.computing === started) delete entry.computing;
        };
        started.then(done, done);
        entry.computing = computing = started;
      }
      // Stale-while-revalidate: an answer less than HEATMAP_STALE_MS old is served at once while
      // the next one is computed, so a poll does not wait for it (the hosts that changed, or the
      // GPUs' latest values of a GPU-level answer). A failed computation is the next request's
      // to retry; past HEATMAP_STALE_MS requests wait for it, and see its error.
      if (answer !== undefined && age < HEATMAP_STALE_MS) return answer.heatmap;
      return computing;
    },
  );
};
