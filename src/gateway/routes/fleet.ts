import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { NexusError } from '../../core/errors.js';
import { metricNameForms, resolveMetricName, unknownMetric } from '../../core/dcgm-fields.js';
import type { Static } from '@sinclair/typebox';
import { WHOLE_GPU } from '../../core/mig.js';
import type {
  GpuDetail as GpuDetailOf,
  LatestValue,
  MigInstance,
  Page,
  PageQuery as ReaderPageQuery,
  Series,
  TelemetryReader,
  Workload,
} from '../../store/reader.js';
import {
  decodeListCursor,
  encodeListCursor,
  filterList,
  gpuIndex,
  gpuInstanceId,
  iso,
  pageLimit,
  parseInstant,
  parseStep,
} from '../params.js';
import { ErrorRef } from '../schemas/common.js';
import {
  ClusterGpuList,
  ClusterList,
  ClusterParams,
  ClusterRef,
  ClusterStats,
  GpuDetail,
  GpuList,
  GpuParams,
  HostDetail,
  HostList,
  HostParams,
  MetricCatalogue,
  MigInstance as MigInstanceSchema,
  MigParams,
  PageQuery,
  PrefixQuery,
  RetiredQuery,
} from '../schemas/fleet.js';
import { GpuMetrics, GpuMetricsQuery } from '../schemas/telemetry.js';
import { clusterOut, gpuOut, hostOut, readingOut, seriesOut } from '../presenters.js';

const notFound = (what: string): NexusError => new NexusError('NOT_FOUND', what);
const errors = { 400: ErrorRef, 404: ErrorRef, 503: ErrorRef };

/** A list's query as the reader takes it: limit, cursor (sort key of `shape`), filters. */
function listQuery(
  q: { limit?: number; cursor?: string; include_retired?: boolean; prefix?: string },
  shape: readonly ('s' | 'n')[],
): ReaderPageQuery {
  const after = decodeListCursor(q.cursor, shape);
  return {
    limit: pageLimit(q.limit),
    ...(after === undefined ? {} : { after }),
    ...(q.include_retired === true ? { includeRetired: true } : {}),
    ...(q.prefix === undefined || q.prefix === '' ? {} : { prefix: q.prefix }),
  };
}

/** A page's count, total and next cursor. */
function pageOut(page: Page<unknown>): {
  count: number;
  total: number;
  next_cursor: string | null;
} {
  return {
    count: page.items.length,
    total: page.total,
    next_cursor: page.next === undefined ? null : encodeListCursor(page.next),
  };
}

/** The cluster -> host -> GPU hierarchy. */
export const fleetRoutes: FastifyPluginAsyncTypebox<{
  reader: TelemetryReader;
  maxPoints: number;
}> = async (app, { reader, maxPoints }) => {
  app.get(
    '/api/v1/clusters',
    {
      schema: {
        tags: ['fleet'],
        summary: 'List the clusters, by name, a page at a time',
        querystring: PageQuery,
        response: { 200: ClusterList, 400: ErrorRef, 503: ErrorRef },
      },
    },
    async (req) => {
      const after = decodeListCursor(req.query.cursor, ['s']);
      const page = await reader.clustersPage({
        limit: pageLimit(req.query.limit),
        ...(after === undefined ? {} : { after }),
      });
      const now = Date.now();
      const clusters = page.items.map((c) => clusterOut(c, now));
      return { clusters, ...pageOut(page) };
    },
  );

  app.get(
    '/api/v1/clusters/:cluster_id',
    {
      schema: {
        tags: ['fleet'],
        summary: 'Get cluster details',
        params: ClusterParams,
        response: { 200: ClusterRef, ...errors },
      },
    },
    async (req) => {
      const c = await reader.cluster(req.params.cluster_id);
      if (c === undefined) throw notFound(`cluster "${req.params.cluster_id}" not found`);
      return clusterOut(c);
    },
  );

  app.get(
    '/api/v1/clusters/:cluster_id/stats',
    {
      schema: {
        tags: ['fleet'],
        summary: 'Get cluster statistics',
        params: ClusterParams,
        response: { 200: ClusterStats, ...errors },
      },
    },
    async (req) => {
      const s = await reader.clusterStats(req.params.cluster_id);
      if (s === undefined) throw notFound(`cluster "${req.params.cluster_id}" not found`);
      return {
        ...s,
        first_timestamp: iso(s.first_timestamp),
        last_timestamp: iso(s.last_timestamp),
        samples_per_metric: [...s.samples_per_metric],
      };
    },
  );

  app.get(
    '/api/v1/clusters/:cluster_id/hosts',
    {
      schema: {
        tags: ['fleet'],
        summary:
          'List hosts in a cluster by hostname, a page at a time (with a live GPU, unless include_retired)',
        params: ClusterParams,
        querystring: PrefixQuery,
        response: { 200: HostList, ...errors },
      },
    },
    async (req) => {
      const { cluster_id } = req.params;
      const page = await reader.hostsPage(cluster_id, listQuery(req.query, ['s']));
      if (page === undefined) throw notFound(`cluster "${cluster_id}" not found`);
      return { cluster_id, hosts: page.items.map(hostOut), ...pageOut(page) };
    },
  );

  app.get(
    '/api/v1/clusters/:cluster_id/gpus',
    {
      schema: {
        tags: ['fleet'],
        summary:
          'List the GPUs of a cluster by hostname and index, a page at a time (live ones, unless include_retired)',
        params: ClusterParams,
        querystring: PrefixQuery,
        response: { 200: ClusterGpuList, ...errors },
      },
    },
    async (req) => {
      const { cluster_id } = req.params;
      const page = await reader.gpusPage(cluster_id, undefined, listQuery(req.query, ['s', 'n']));
      if (page === undefined) throw notFound(`cluster "${cluster_id}" not found`);
      return { cluster_id, gpus: page.items.map(gpuOut), ...pageOut(page) };
    },
  );

  app.get(
    '/api/v1/clusters/:cluster_id/hosts/:host_id',
    {
      schema: {
        tags: ['fleet'],
        summary: 'Get host details, with its GPUs',
        params: HostParams,
        response: { 200: HostDetail, ...errors },
      },
    },
    async (req) => {
      const { cluster_id, host_id } = req.params;
      const h = await reader.host(cluster_id, host_id);
      if (h === undefined) throw notFound(`host "${host_id}" not found in cluster "${cluster_id}"`);
      // The host's detail lists its retired GPUs too, flagged.
      const gpus = (await reader.gpus(cluster_id, host_id, true)).map(gpuOut);
      return {
        cluster_id,
        host_id,
        hostname: h.hostname,
        first_seen: iso(h.first_seen) ?? '',
        last_seen: iso(h.last_seen),
        gpus,
      };
    },
  );

  app.get(
    '/api/v1/clusters/:cluster_id/hosts/:host_id/gpus',
    {
      schema: {
        tags: ['fleet'],
        summary: 'List GPUs on a host (live ones, unless include_retired)',
        params: HostParams,
        querystring: RetiredQuery,
        response: { 200: GpuList, ...errors },
      },
    },
    async (req) => {
      const { cluster_id, host_id } = req.params;
      const page = await reader.gpusPage(cluster_id, host_id, listQuery(req.query, ['s', 'n']));
      if (page === undefined)
        throw notFound(
          (await reader.cluster(cluster_id)) === undefined
            ? `cluster "${cluster_id}" not found`
            : `host "${host_id}" not found in cluster "${cluster_id}"`,
        );
      return { cluster_id, host_id, gpus: page.items.map(gpuOut), ...pageOut(page) };
    },
  );

  const workloadsOut = (ws: readonly Workload[]) =>
    ws.map((w) => ({
      ...w,
      first_seen: iso(w.first_seen) ?? '',
      last_seen: iso(w.last_seen) ?? '',
    }));
  const instanceOut = (g: GpuDetailOf, i: MigInstance) => ({
    cluster_id: g.cluster_id,
    host_id: g.hostname,
    gpu_id: g.gpu_id,
    gpu_instance_id: i.gpu_instance_id,
    profile: i.profile ?? null,
    uuid: i.uuid ?? null,
    first_seen: iso(i.first_seen) ?? '',
    last_seen: iso(i.last_seen),
    utilization_percent: i.utilization_percent ?? null,
    workloads: workloadsOut(i.workloads),
    latest: i.latest.map(readingOut),
  });
  const gpuOrNotFound = async (cluster_id: string, host_id: string, gpuId: number) => {
    const g = await reader.gpu(cluster_id, host_id, gpuId);
    if (g === undefined)
      throw notFound(`GPU ${gpuId} not found on host "${host_id}" in cluster "${cluster_id}"`);
    return g;
  };
  const instanceOrNotFound = (g: GpuDetailOf, instance: number): MigInstance => {
    const i = g.mig_instances.find((x) => x.gpu_instance_id === instance);
    if (i === undefined)
      throw notFound(
        `MIG instance ${instance} not found on GPU ${g.gpu_id} of host "${g.hostname}" in cluster "${g.cluster_id}"`,
      );
    return i;
  };

  app.get(
    '/api/v1/clusters/:cluster_id/hosts/:host_id/gpus/:gpu_id',
    {
      schema: {
        tags: ['fleet'],
        summary:
          'Get GPU details: identity, labels, workloads, latest values, utilisation, MIG instances',
        params: GpuParams,
        response: { 200: GpuDetail, ...errors },
      },
    },
    async (req) => {
      const { cluster_id, host_id } = req.params;
      const g = await gpuOrNotFound(cluster_id, host_id, gpuIndex(req.params.gpu_id));
      return {
        ...gpuOut(g),
        labels: { ...g.labels },
        workloads: workloadsOut(g.workloads),
        latest: g.latest.map(readingOut),
        utilization_percent: g.utilization_percent ?? null,
        mig_instances: g.mig_instances.map((i) => instanceOut(g, i)),
      };
    },
  );

  app.get(
    '/api/v1/clusters/:cluster_id/hosts/:host_id/gpus/:gpu_id/mig/:gpu_instance_id',
    {
      schema: {
        tags: ['fleet'],
        summary:
          'Get a MIG instance of a GPU: profile, utilisation, workloads, latest values (its own series)',
        params: MigParams,
        response: { 200: MigInstanceSchema, ...errors },
      },
    },
    async (req) => {
      const { cluster_id, host_id } = req.params;
      const g = await gpuOrNotFound(cluster_id, host_id, gpuIndex(req.params.gpu_id));
      return instanceOut(g, instanceOrNotFound(g, gpuInstanceId(req.params.gpu_instance_id)));
    },
  );

  /** A GPU's (instance -1) or a MIG instance's metrics: latest values, and series when asked. */
  const metricsOf = async (
    g: GpuDetailOf,
    instance: number,
    latestValues: readonly LatestValue[],
    q: Static<typeof GpuMetricsQuery>,
  ) => {
    const metrics = filterList('metric', q.metric, 128);
    const wanted = metrics === undefined ? undefined : new Set(metrics.flatMap(metricNameForms));
    const latest = latestValues.filter((l) => wanted === undefined || wanted.has(l.metric));
    // A name none of the GPU's values has: unknown anywhere is a bad request, as on /telemetry.
    const seen = new Set(latest.map((l) => l.metric));
    const unseen = (metrics ?? []).filter((m) => !metricNameForms(m).some((f) => seen.has(f)));
    if (unseen.length > 0) {
      const known = new Set((await reader.metricCatalogue()).map((m) => m.name));
      for (const m of unseen) {
        if (resolveMetricName(m, (f) => (known.has(f) ? f : undefined)) === undefined)
          throw unknownMetric(m, known);
      }
    }
    let series: Series[] | undefined;
    if (q.from !== undefined || q.to !== undefined || q.step !== undefined) {
      const now = Date.now();
      const to = q.to === undefined ? now : parseInstant('to', q.to, now);
      const from = q.from === undefined ? to - 3_600_000 : parseInstant('from', q.from, now);
      if (from >= to) throw new NexusError('BAD_REQUEST', 'from must be before to');
      const stepMs =
        q.step === undefined
          ? Math.max(1000, Math.ceil((to - from) / 600 / 1000) * 1000)
          : parseStep(q.step);
      const res = await reader.series({
        cluster: g.cluster_id,
        hosts: [g.hostname],
        gpus: [g.gpu_id],
        instances: [instance],
        ...(metrics === undefined ? {} : { metrics }),
        from,
        to,
        stepMs,
        agg: q.agg ?? 'avg',
        maxPoints,
      });
      series = [...res.series];
    }
    return {
      cluster_id: g.cluster_id,
      host_id: g.hostname,
      gpu_id: g.gpu_id,
      ...(instance === WHOLE_GPU ? {} : { gpu_instance_id: instance }),
      metrics: latest.map(readingOut),
      ...(series === undefined ? {} : { series: series.map(seriesOut) }),
    };
  };

  app.get(
    '/api/v1/clusters/:cluster_id/hosts/:host_id/gpus/:gpu_id/metrics',
    {
      schema: {
        tags: ['fleet'],
        summary:
          "Get a GPU's metrics: the latest value of each, and series when from/to/step are given",
        params: GpuParams,
        querystring: GpuMetricsQuery,
        response: { 200: GpuMetrics, ...errors },
      },
    },
    async (req) => {
      const { cluster_id, host_id } = req.params;
      const g = await gpuOrNotFound(cluster_id, host_id, gpuIndex(req.params.gpu_id));
      return metricsOf(g, WHOLE_GPU, g.latest, req.query);
    },
  );

  app.get(
    '/api/v1/clusters/:cluster_id/hosts/:host_id/gpus/:gpu_id/mig/:gpu_instance_id/metrics',
    {
      schema: {
        tags: ['fleet'],
        summary:
          "Get a MIG instance's metrics: the latest value of each, and series when from/to/step are given",
        params: MigParams,
        querystring: GpuMetricsQuery,
        response: { 200: GpuMetrics, ...errors },
      },
    },
    async (req) => {
      const { cluster_id, host_id } = req.params;
      const g = await gpuOrNotFound(cluster_id, host_id, gpuIndex(req.params.gpu_id));
      const i = instanceOrNotFound(g, gpuInstanceId(req.params.gpu_instance_id));
      return metricsOf(g, i.gpu_instance_id, i.latest, req.query);
    },
  );

  app.get(
    '/api/v1/metrics',
    {
      schema: {
        tags: ['fleet'],
        summary: 'The metric catalogue: name, unit, type, help',
        response: { 200: MetricCatalogue, 503: ErrorRef },
      },
    },
    async () => ({ metrics: await reader.metricCatalogue() }),
  );
};
