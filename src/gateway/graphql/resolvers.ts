import type { FastifyBaseLogger } from 'fastify';
import type { IResolvers } from 'mercurius';
import { NexusError } from '../../core/errors.js';
import { resolveMetricName, unknownMetric } from '../../core/dcgm-fields.js';
import { WHOLE_GPU } from '../../core/mig.js';
import type {
  Aggregate,
  ClusterStats,
  GpuDetail,
  LatestValue,
  MigInstance,
  PageQuery,
  TelemetryReader,
} from '../../store/reader.js';
import type { LiveHub } from '../live/hub.js';
import { decodeListCursor, encodeCursor, encodeListCursor, iso, pageLimit } from '../params.js';
import { searchKinds } from '../routes/search.js';
import { clusterOut, gpuOut, hostOut, readingOut, seriesOut } from '../presenters.js';
import {
  ALL_TIME,
  cursorOf,
  defaultStepMs,
  limitOf,
  rangeOf,
  selectionOf,
  stepOf,
  type FilterArgs,
  type PageArgs,
  type SeriesArgs,
} from './args.js';
import {
  batchStream,
  readingStream,
  type ConnectionSlots,
  type LiveLimits,
  type ReadingNode,
  type UnitBook,
} from './live.js';
import { scopeOf, type RequestScope } from './scope.js';
import { eventPage, eventStream, type EventArgs, type EventSubscriptionArgs } from './events.js';
import type { EventPoller } from '../live/event-poller.js';
import {
  idleReport,
  parseIdleParams,
  parseUsageParams,
  usageReport,
  type FleetSettings,
} from '../usage.js';

export interface ResolverDeps {
  readonly reader: TelemetryReader;
  readonly hub: LiveHub | undefined;
  /** Largest number of points a series may return (as the REST API). */
  readonly maxPoints: number;
  readonly units: UnitBook;
  readonly log: FastifyBaseLogger;
  /** Limits of GraphQL subscriptions (per WebSocket connection). */
  readonly live: LiveLimits;
  /** GPU events as recorded (Subscription.events). */
  readonly events?: EventPoller;
  /** IDLE_UTIL, IDLE_FOR and the prices of idleGpus and usage. */
  readonly fleet: FleetSettings;
}

type ClusterNode = ReturnType<typeof clusterOut>;
type HostNode = ReturnType<typeof hostOut>;
/** A GPU; `detail` when it was looked up alone (labels, workloads and latest come with it). */
type GpuNode = ReturnType<typeof gpuOut> & { readonly detail?: GpuDetail };

const notFound = (message: string): NexusError => new NexusError('NOT_FOUND', message);
const bad = (message: string): NexusError => new NexusError('BAD_REQUEST', message);

/** The arguments of a paged list field: limit (default 100) and the cursor after which it starts. */
interface ListArgs {
  readonly limit?: number | null;
  readonly after?: string | null;
}

function listOf(a: ListArgs, shape: readonly ('s' | 'n')[]): PageQuery {
  const after = decodeListCursor(a.after ?? undefined, shape);
  return { limit: pageLimit(a.limit ?? undefined), ...(after === undefined ? {} : { after }) };
}

function gpuIndexOf(n: number): number {
  if (n < 0 || n > 32767) throw bad(`gpu_id: ${n} is not a GPU index (0, 1, ...)`);
  return n;
}

function statsOut(s: ClusterStats) {
  return {
    ...s,
    first_timestamp: iso(s.first_timestamp),
    last_timestamp: iso(s.last_timestamp),
    samples_per_metric: [...s.samples_per_metric],
  };
}

const gpuNode = (d: GpuDetail): GpuNode => ({ ...gpuOut(d), detail: d });

interface MetricSeriesArgs {
  metric: string;
  from?: string | null;
  to?: string | null;
  step?: string | null;
  agg?: Aggregate | null;
}

/** A MIG instance as GraphQL's MigInstance (its series resolve on demand). */
function migNode(g: { cluster_id: string; host_id: string; gpu_id: number }, i: MigInstance) {
  return {
    cluster_id: g.cluster_id,
    host_id: g.host_id,
    gpu_id: g.gpu_id,
    gpu_instance_id: i.gpu_instance_id,
    profile: i.profile ?? null,
    uuid: i.uuid ?? null,
    first_seen: iso(i.first_seen),
    last_seen: iso(i.last_seen),
    utilization_percent: i.utilization_percent ?? null,
    workloads: i.workloads.map((w) => ({
      ...w,
      first_seen: iso(w.first_seen),
      last_seen: iso(w.last_seen),
    })),
    latest: i.latest.map(readingOut),
  };
}
type MigNode = ReturnType<typeof migNode>;

/** The connection's subscription counter, set by the plugin's subscription context. */
function slotsOf(ctx: object): ConnectionSlots | undefined {
  const v: unknown = Reflect.get(ctx, 'nexusLive');
  return typeof v === 'object' && v !== null && 'active' in v && typeof v.active === 'number'
    ? (v as ConnectionSlots)
    : undefined;
}

/** Checks metric names against the catalogue, with the reader's message. */
async function checkMetrics(scope: RequestScope, names: readonly string[]): Promise<void> {
  const known = new Set((await scope.metrics()).map((m) => m.name));
  for (const n of names) {
    if (resolveMetricName(n, (f) => (known.has(f) ? f : undefined)) === undefined)
      throw unknownMetric(n, known);
  }
}

export function createResolvers(deps: ResolverDeps): IResolvers {
  const { reader, maxPoints } = deps;
  const scope = (ctx: object): RequestScope => scopeOf(ctx, reader);
  const live = { hub: deps.hub, units: deps.units, log: deps.log, limits: deps.live };

  const gpuDetail = async (g: GpuNode, ctx: object): Promise<GpuDetail | undefined> =>
    g.detail ?? (await scope(ctx).gpu(g.cluster_id, g.host_id, g.gpu_id));

  /** One metric of a GPU (instance -1) or of a MIG instance, downsampled. */
  const seriesOf = async (
    g: { cluster_id: string; host_id: string; gpu_id: number; uuid: string | null },
    instance: number,
    a: MetricSeriesArgs,
    ctx: object,
  ) => {
    const now = Date.now();
    const { from, to } = rangeOf(a, { from: (end) => end - 3_600_000, to: now }, now);
    const stepMs =
      a.step === undefined || a.step === null ? defaultStepMs(from, to) : stepOf(a.step);
    const res = await reader.series({
      cluster: g.cluster_id,
      hosts: [g.host_id],
      gpus: [g.gpu_id],
      instances: [instance],
      metrics: [a.metric],
      from,
      to,
      stepMs,
      agg: a.agg ?? 'avg',
      maxPoints,
    });
    const first = res.series[0];
    if (first !== undefined) return seriesOut(first);
    const catalogue = await scope(ctx).metrics();
    const m = resolveMetricName(a.metric, (f) => catalogue.find((x) => x.name === f));
    return {
      cluster_id: g.cluster_id,
      host_id: g.host_id,
      gpu_id: g.gpu_id,
      ...(instance === WHOLE_GPU ? {} : { gpu_instance_id: instance }),
      uuid: g.uuid,
      metric: m?.name ?? a.metric,
      unit: m?.unit ?? '',
      points: [],
    };
  };

  return {
    Query: {
      clusters: async (_p: unknown, a: ListArgs, ctx: object) => {
        const now = Date.now();
        return (await scope(ctx).clusters(listOf(a, ['s']))).items.map((c) => clusterOut(c, now));
      },
      cluster: async (_p: unknown, a: { cluster_id: string }, ctx: object) => {
        const c = await scope(ctx).cluster(a.cluster_id);
        return c === undefined ? null : clusterOut(c);
      },
      hosts: async (_p: unknown, a: ListArgs & { cluster_id: string }, ctx: object) => {
        const page = await scope(ctx).hosts(a.cluster_id, listOf(a, ['s']));
        if (page === undefined) throw notFound(`cluster "${a.cluster_id}" not found`);
        return page.items.map(hostOut);
      },
      hostsPage: async (
        _p: unknown,
        a: ListArgs & { cluster_id: string; prefix?: string | null },
        ctx: object,
      ) => {
        const q = listOf(a, ['s']);
        const page = await scope(ctx).hosts(a.cluster_id, {
          ...q,
          ...(a.prefix == null || a.prefix === '' ? {} : { prefix: a.prefix }),
        });
        if (page === undefined) throw notFound(`cluster "${a.cluster_id}" not found`);
        return {
          hosts: page.items.map(hostOut),
          total: page.total,
          next_cursor: page.next === undefined ? null : encodeListCursor(page.next),
        };
      },
      search: async (
        _p: unknown,
        a: { q: string; cluster_id?: string | null; kind?: string[] | null; limit?: number | null },
      ) => {
        if (a.q.length < 1 || a.q.length > 128)
          throw new NexusError('BAD_REQUEST', 'q: 1 to 128 characters');
        const kinds = a.kind == null ? undefined : searchKinds(a.kind.join(','));
        const res = await reader.search({
          q: a.q,
          limit: pageLimit(a.limit ?? undefined, 20, 100),
          ...(a.cluster_id == null ? {} : { cluster: a.cluster_id }),
          ...(kinds === undefined ? {} : { kinds }),
        });
        return { q: a.q, count: res.hits.length, truncated: res.truncated, hits: res.hits };
      },
      host: async (_p: unknown, a: { cluster_id: string; host_id: string }, ctx: object) => {
        const h = await scope(ctx).host(a.cluster_id, a.host_id);
        return h === undefined ? null : hostOut(h);
      },
      gpus: async (
        _p: unknown,
        a: ListArgs & { cluster_id: string; host_id?: string | null },
        ctx: object,
      ) => {
        const s = scope(ctx);
        const host = a.host_id ?? undefined;
        const page = await s.gpus(a.cluster_id, host, listOf(a, ['s', 'n']));
        if (page !== undefined) return page.items.map(gpuOut);
        if (host === undefined || (await s.cluster(a.cluster_id)) === undefined)
          throw notFound(`cluster "${a.cluster_id}" not found`);
        throw notFound(`host "${host}" not found in cluster "${a.cluster_id}"`);
      },
      gpu: async (
        _p: unknown,
        a: { cluster_id: string; host_id: string; gpu_id: number },
        ctx: object,
      ) => {
        const d = await scope(ctx).gpu(a.cluster_id, a.host_id, gpuIndexOf(a.gpu_id));
        return d === undefined ? null : gpuNode(d);
      },
      metrics: (_p: unknown, _a: unknown, ctx: object) => scope(ctx).metrics(),
      clusterStats: async (_p: unknown, a: { cluster_id: string }) => {
        const s = await reader.clusterStats(a.cluster_id);
        if (s === undefined) throw notFound(`cluster "${a.cluster_id}" not found`);
        return statsOut(s);
      },
      telemetry: async (_p: unknown, a: PageArgs) => {
        const after = cursorOf(a.cursor);
        const page = await reader.telemetry({
          ...selectionOf(a),
          ...rangeOf(a, ALL_TIME, Date.now()),
          limit: limitOf(a.limit, 100),
          ...(after === undefined ? {} : { after }),
        });
        return page.readings.map(readingOut);
      },
      telemetryPage: async (_p: unknown, a: PageArgs) => {
        const after = cursorOf(a.cursor);
        const page = await reader.telemetry({
          ...selectionOf(a),
          ...rangeOf(a, ALL_TIME, Date.now()),
          limit: limitOf(a.limit, 1000),
          ...(after === undefined ? {} : { after }),
        });
        return {
          readings: page.readings.map(readingOut),
          count: page.readings.length,
          next_cursor: page.next === undefined ? null : encodeCursor(page.next),
        };
      },
      series: async (_p: unknown, a: SeriesArgs & { from: string; step: string }) => {
        const now = Date.now();
        const sel = selectionOf(a);
        const { from, to } = rangeOf(a, { from: () => now, to: now }, now);
        const stepMs = stepOf(a.step);
        const agg: Aggregate = a.agg ?? 'avg';
        const res = await reader.series({ ...sel, from, to, stepMs, agg, maxPoints });
        return {
          series: res.series.map(seriesOut),
          step: a.step,
          agg,
          from: iso(from),
          to: iso(to),
          source: res.source,
        };
      },
      latest: async (_p: unknown, a: FilterArgs) =>
        (await reader.latest(selectionOf(a))).map(readingOut),
    },

    Cluster: {
      host_count: (c: ClusterNode) => c.hosts,
      gpu_count: (c: ClusterNode) => c.gpus,
      retired_gpu_count: (c: ClusterNode) => c.retired_gpus,
      events: (c: ClusterNode, a: EventArgs) => eventPage(reader, c.cluster_id, a),
      hosts: async (c: ClusterNode, a: ListArgs, ctx: object) =>
        ((await scope(ctx).hosts(c.cluster_id, listOf(a, ['s'])))?.items ?? []).map(hostOut),
      host: async (c: ClusterNode, a: { host_id: string }, ctx: object) => {
        const h = await scope(ctx).host(c.cluster_id, a.host_id);
        return h === undefined ? null : hostOut(h);
      },
      stats: async (c: ClusterNode) => {
        const s = await reader.clusterStats(c.cluster_id);
        if (s === undefined) throw notFound(`cluster "${c.cluster_id}" not found`);
        return statsOut(s);
      },
      idleGpus: (c: ClusterNode, a: { util?: number | null; for?: string | null }) =>
        idleReport(
          reader,
          c.cluster_id,
          parseIdleParams(a.util ?? undefined, a.for ?? undefined, deps.fleet),
        ),
      usage: (c: ClusterNode, a: { groupBy: string; from?: string | null; to?: string | null }) =>
        usageReport(
          reader,
          c.cluster_id,
          parseUsageParams({
            group_by: a.groupBy,
            ...(a.from == null ? {} : { from: a.from }),
            ...(a.to == null ? {} : { to: a.to }),
          }),
          deps.fleet,
        ),
    },

    Host: {
      gpu_count: (h: HostNode) => h.gpus,
      cluster: async (h: HostNode, _a: unknown, ctx: object) => {
        const c = await scope(ctx).cluster(h.cluster_id);
        if (c === undefined) throw notFound(`cluster "${h.cluster_id}" not found`);
        return clusterOut(c);
      },
      gpus: async (h: HostNode, a: ListArgs, ctx: object) =>
        ((await scope(ctx).gpus(h.cluster_id, h.host_id, listOf(a, ['s', 'n'])))?.items ?? []).map(
          gpuOut,
        ),
      gpu: async (h: HostNode, a: { gpu_id: number }, ctx: object) => {
        const d = await scope(ctx).gpu(h.cluster_id, h.host_id, gpuIndexOf(a.gpu_id));
        return d === undefined ? null : gpuNode(d);
      },
    },

    Gpu: {
      host: async (g: GpuNode, _a: unknown, ctx: object) => {
        const h = await scope(ctx).host(g.cluster_id, g.host_id);
        if (h === undefined)
          throw notFound(`host "${g.host_id}" not found in cluster "${g.cluster_id}"`);
        return hostOut(h);
      },
      labels: async (g: GpuNode, _a: unknown, ctx: object) => ({
        ...(await gpuDetail(g, ctx))?.labels,
      }),
      workloads: async (g: GpuNode, _a: unknown, ctx: object) =>
        ((await gpuDetail(g, ctx))?.workloads ?? []).map((w) => ({
          ...w,
          first_seen: iso(w.first_seen),
          last_seen: iso(w.last_seen),
        })),
      latest: async (g: GpuNode, a: { metric?: readonly string[] | null }, ctx: object) => {
        const names = a.metric ?? undefined;
        if (names !== undefined) await checkMetrics(scope(ctx), names);
        const values: readonly LatestValue[] =
          g.detail?.latest ?? (await scope(ctx).latest(g.cluster_id, g.host_id, g.gpu_id));
        return values
          .filter(
            (l) =>
              names === undefined ||
              names.includes(l.metric) ||
              names.includes(l.metric.replace(/^DCGM_FI_DEV_/, '')),
          )
          .map(readingOut);
      },
      series: (g: GpuNode, a: MetricSeriesArgs, ctx: object) => seriesOf(g, WHOLE_GPU, a, ctx),
      utilization_percent: async (g: GpuNode, _a: unknown, ctx: object) =>
        (await gpuDetail(g, ctx))?.utilization_percent ?? null,
      migInstances: async (g: GpuNode, _a: unknown, ctx: object) => {
        const d = await gpuDetail(g, ctx);
        return (d?.mig_instances ?? []).map((i) => migNode(g, i));
      },
    },

    MigInstance: {
      series: (i: MigNode, a: MetricSeriesArgs, ctx: object) =>
        seriesOf(i, i.gpu_instance_id, a, ctx),
    },

    Telemetry: {
      data: (r: ReadingNode): ReadingNode => ({ ...r }),
    },

    Subscription: {
      telemetry: {
        subscribe: (_p: unknown, a: FilterArgs, ctx: object) =>
          readingStream(live, a, slotsOf(ctx)),
        resolve: (payload: unknown) => payload,
      },
      telemetryBatch: {
        subscribe: (_p: unknown, a: FilterArgs, ctx: object) => batchStream(live, a, slotsOf(ctx)),
        resolve: (payload: unknown) => payload,
      },
      events: {
        subscribe: (_p: unknown, a: EventSubscriptionArgs, ctx: object) =>
          eventStream(deps.events, deps.live, a, slotsOf(ctx)),
        resolve: (payload: unknown) => payload,
      },
    },
  };
}
