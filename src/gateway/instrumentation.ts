import { SpanKind, SpanStatusCode, type Span } from '@opentelemetry/api';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { conversionFactor } from '../core/dcgm-fields.js';
import type { NexusMetrics } from '../core/metrics.js';
import { context, contextFrom, tracer } from '../core/tracing.js';
import type { IdleGpu, TelemetryReader } from '../store/reader.js';
import { describeXid } from '../core/xid.js';

const spans = new WeakMap<FastifyRequest, Span>();

/** The span of a request, for work done on its behalf (GraphQL). */
export function requestSpan(req: FastifyRequest): Span | undefined {
  return spans.get(req);
}

/**
 * Per request: a server span (continuing a `traceparent` header when there is one) and the
 * duration histogram by route template, method and status. /metrics serves the exposition.
 */
export function instrumentHttp(app: FastifyInstance, metrics: NexusMetrics | undefined): void {
  app.addHook('onRequest', async (req) => {
    const header = req.headers.traceparent;
    const parent =
      typeof header === 'string' ? contextFrom({ traceparent: header }) : context.active();
    const route = req.routeOptions.url ?? 'unmatched';
    spans.set(
      req,
      tracer().startSpan(
        `HTTP ${req.method} ${route}`,
        {
          kind: SpanKind.SERVER,
          attributes: {
            'http.request.method': req.method,
            'http.route': route,
            'nexus.request_id': req.id,
          },
        },
        parent,
      ),
    );
  });
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    metrics?.httpDuration.observe(
      { method: req.method, route, status_code: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
    const span = spans.get(req);
    if (span !== undefined) {
      span.setAttribute('http.response.status_code', reply.statusCode);
      if (reply.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
      spans.delete(req);
    }
  });
  if (metrics !== undefined) {
    app.get('/metrics', { schema: { hide: true } }, async (_req, reply) => {
      const m = await metrics.exposition();
      return reply.type(m.contentType).send(m.body);
    });
  }
}

/**
 * DCGM field, gauge, and the Prometheus base unit the gauge is in (its name's suffix). The factor
 * from DCGM's unit comes from the field catalogue (src/core/dcgm-fields.ts), the one place units
 * are written down: DCGM_FI_DEV_POWER_VIOLATION is in ns, so 1e-9 to seconds.
 */
const FLEET_GAUGES = (
  [
    ['DCGM_FI_DEV_GPU_TEMP', 'gpuTemperature', 'celsius'],
    ['DCGM_FI_DEV_GPU_UTIL', 'gpuUtilization', 'percent'],
    ['DCGM_FI_DEV_POWER_USAGE', 'gpuPower', 'watts'],
    ['DCGM_FI_DEV_FB_USED', 'gpuMemoryUsed', 'bytes'],
    ['DCGM_FI_DEV_FB_FREE', 'gpuMemoryFree', 'bytes'],
    ['DCGM_FI_DEV_POWER_VIOLATION', 'gpuPowerViolation', 'seconds'],
  ] as const
).map(([metric, gauge, unit]) => [metric, gauge, conversionFactor(metric, unit)] as const);

/** FLEET_GAUGES_MAX_GPUS's default: 10,000 GPUs are about 70,000 series per scrape. */
export const FLEET_GAUGES_MAX_GPUS = 10_000;

/**
 * The fleet as Prometheus gauges, from the latest stored readings, refreshed on each scrape (GPUs
 * that disappeared drop out): what the GPU alerts of deploy/observability/alerts.yml watch. Only
 * while the fleet has at most `maxGpus` live GPUs: a scrape costs a series per GPU and gauge, so
 * 100,000 GPUs would be 700,000 series built on every scrape, in the gateway's event loop
 * (docs/scaling.md); above, the per-GPU gauges are left out and `nexus_fleet_gauges_gpus_left_out`
 * says how many GPUs, read from the fleet's counts (no per-GPU work).
 */
export function exportFleetGauges(
  metrics: NexusMetrics,
  reader: Pick<TelemetryReader, 'latest' | 'currentWorkloads' | 'clusters'>,
  maxGpus = FLEET_GAUGES_MAX_GPUS,
): void {
  const perGpu = [
    ...FLEET_GAUGES.map(([, field]) => metrics[field]),
    metrics.gpuXid,
    metrics.gpuLastSeen,
    metrics.gpuWorkload,
  ];
  metrics.onScrape(async () => {
    const live = (await reader.clusters().catch(() => [])).reduce((n, c) => n + c.gpus, 0);
    if (live > maxGpus) {
      for (const g of perGpu) g.reset();
      metrics.fleetGaugesLeftOut.set(live);
      return;
    }
    metrics.fleetGaugesLeftOut.set(0);
    const latest = await Promise.all(
      // MIG instances' too: a GPU reported only by its instances is seen (gauges are the GPU's own);
      // live GPUs only: a retired GPU leaves the gauges and their alerts.
      FLEET_GAUGES.map(([metric]) =>
        reader.latest({ metrics: [metric], instances: 'all', live: true }).catch(() => []),
      ),
    );
    const lastSeen = new Map<
      string,
      { labels: { cluster: string; host: string; gpu: string; uuid: string }; t: number }
    >();
    FLEET_GAUGES.forEach(([, field, factor], i) => {
      const gauge = metrics[field];
      gauge.reset();
      for (const l of latest[i] ?? []) {
        const labels = {
          cluster: l.cluster_id,
          host: l.hostname,
          gpu: String(l.gpu_id),
          uuid: l.uuid ?? '',
        };
        if (l.gpu_instance_id === undefined) gauge.set(labels, l.value * factor);
        const k = `${labels.cluster}\u0000${labels.host}\u0000${labels.gpu}`;
        const seen = lastSeen.get(k);
        if (seen === undefined || l.timestamp > seen.t) lastSeen.set(k, { labels, t: l.timestamp });
      }
    });
    // The latched XID of live GPUs (NexusGPUXidError): a retired GPU's goes with it. A MIG GPU's
    // comes on its instances' series (the same code on each: one gauge of the GPU).
    const xids = await reader
      .latest({ metrics: ['DCGM_FI_DEV_XID_ERRORS'], instances: 'all', live: true })
      .catch(() => []);
    metrics.gpuXid.reset();
    for (const l of xids) {
      if (l.value === 0) continue;
      const code = Math.trunc(l.value);
      metrics.gpuXid.set(
        {
          cluster: l.cluster_id,
          host: l.hostname,
          gpu: String(l.gpu_id),
          uuid: l.uuid ?? '',
          code: String(code),
          severity: describeXid(code).severity,
        },
        1,
      );
    }
    metrics.gpuLastSeen.reset();
    for (const { labels, t } of lastSeen.values()) metrics.gpuLastSeen.set(labels, t / 1000);
    const workloads = await reader.currentWorkloads().catch(() => undefined);
    if (workloads !== undefined) {
      metrics.gpuWorkload.reset();
      for (const w of workloads) {
        metrics.gpuWorkload.set(
          {
            cluster: w.cluster_id,
            host: w.hostname,
            gpu: String(w.gpu_id),
            namespace: w.namespace,
            pod: w.pod,
            container: w.container,
          },
          1,
        );
      }
    }
  });
}

/**
 * `nexus_gpu_idle_seconds` on every scrape: the GPUs GET /api/v1/clusters/{id}/idle lists with
 * IDLE_UTIL and IDLE_FOR, so the NexusGPUIdleWithWorkload alert fires for exactly those. A
 * cluster whose query fails keeps no series (the scrape itself answers).
 */
export function exportIdleGauge(
  metrics: NexusMetrics,
  reader: Pick<TelemetryReader, 'clusters' | 'idleGpus' | 'idleSnapshot'>,
  idle: { readonly utilPercent: number; readonly forMs: number },
  maxGpus = FLEET_GAUGES_MAX_GPUS,
): void {
  metrics.onScrape(async () => {
    // The lists the gateway keeps in the background (a minute old at most) where it keeps them:
    // a scrape then runs no query; else each cluster's, asked now.
    const known = reader.idleSnapshot?.();
    const lists =
      known !== undefined
        ? [...known].map(([cluster, gpus]) => ({ cluster, gpus }))
        : await Promise.all(
            (await reader.clusters().catch(() => [])).map((c) =>
              reader
                .idleGpus({ cluster: c.cluster_id, ...idle })
                .then((gpus) => ({ cluster: c.cluster_id, gpus }))
                .catch(() => ({ cluster: c.cluster_id, gpus: [] as readonly IdleGpu[] })),
            ),
          );
    metrics.gpuIdle.reset();
    // Bounded as the other per-GPU gauges (FLEET_GAUGES_MAX_GPUS).
    if (lists.reduce((n, l) => n + l.gpus.length, 0) > maxGpus) return;
    for (const { cluster, gpus } of lists) {
      for (const g of gpus) {
        metrics.gpuIdle.set(
          {
            cluster,
            host: g.hostname,
            gpu: String(g.gpu_id),
            namespace: g.namespace,
            pod: g.pod,
            container: g.container,
          },
          (g.last_seen - g.idle_since) / 1000,
        );
      }
    }
  });
}
