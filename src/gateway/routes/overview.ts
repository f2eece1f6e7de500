import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { NexusError } from '../../core/errors.js';
import type { FleetRegistry } from '../../registry/types.js';
import type { LatestValue, OverviewState, TelemetryReader } from '../../store/reader.js';
import type { LiveHub } from '../live/hub.js';
import { iso } from '../params.js';
import { round6 } from '../usage.js';
import { ErrorRef } from '../schemas/common.js';
import { Overview, OverviewQuery, type Alert, type Simulation } from '../schemas/overview.js';

export interface QueueGauge {
  readonly ready: number;
  readonly inFlight: number;
  readonly delayed: number;
  readonly dead: number;
  readonly oldestCreatedAt: number | undefined;
}

export interface OverviewOptions {
  readonly reader: TelemetryReader;
  readonly registry: FleetRegistry | undefined;
  readonly hub: LiveHub | undefined;
  readonly queueStats: (() => Promise<QueueGauge>) | undefined;
  /** The simulated fleet this process streams (nexus up without a CSV), if it does. */
  readonly simulation?: Simulation | undefined;
  /** IDLE_UTIL and IDLE_FOR, for the idle GPUs counted. */
  readonly idle: { readonly utilPercent: number; readonly forMs: number };
}

/** GPU conditions the overview flags (the operator's kit has the matching Prometheus alerts). */
export { ALERT_RULES } from '../../store/overview-state.js';
import { ALERT_RULES } from '../../store/overview-state.js';

/** Alerts in the overview's body, at most (alerts_total counts them all). */
export const MAX_OVERVIEW_ALERTS = 100;

/** Alerts from the latest values: hot GPUs, full memory. */
export function alertsFrom(latest: readonly LatestValue[]): Alert[] {
  const out: Alert[] = [];
  const fb = new Map<string, { used?: number; free?: number; t: number; l: LatestValue }>();
  for (const l of latest) {
    if (l.metric === 'DCGM_FI_DEV_GPU_TEMP' && l.value > ALERT_RULES.tempWarnC) {
      const critical = l.value > ALERT_RULES.tempCriticalC;
      out.push({
        severity: critical ? 'critical' : 'warning',
        cluster_id: l.cluster_id,
        host_id: l.hostname,
        gpu_id: l.gpu_id,
        metric: l.metric,
        value: l.value,
        message: `GPU at ${l.value} C (above ${critical ? ALERT_RULES.tempCriticalC : ALERT_RULES.tempWarnC} C)`,
        since: iso(l.timestamp) ?? '',
      });
    }
    if (l.metric === 'DCGM_FI_DEV_FB_USED' || l.metric === 'DCGM_FI_DEV_FB_FREE') {
      const k = `${l.cluster_id}\u0000${l.hostname}\u0000${l.gpu_id}`;
      const e = fb.get(k) ?? { t: l.timestamp, l };
      if (l.metric === 'DCGM_FI_DEV_FB_USED') e.used = l.value;
      else e.free = l.value;
      fb.set(k, e);
    }
  }
  for (const e of fb.values()) {
    if (e.used === undefined || e.free === undefined || e.used + e.free === 0) continue;
    const frac = e.used / (e.used + e.free);
    if (frac > ALERT_RULES.memoryFullFraction) {
      out.push({
        severity: 'warning',
        cluster_id: e.l.cluster_id,
        host_id: e.l.hostname,
        gpu_id: e.l.gpu_id,
        metric: 'DCGM_FI_DEV_FB_USED',
        value: e.used,
        message: `GPU memory ${(frac * 100).toFixed(1)} % full`,
        since: iso(e.t) ?? '',
      });
    }
  }
  return out.sort((a, b) =>
    a.severity === b.severity ? b.value - a.value : a.severity === 'critical' ? -1 : 1,
  );
}

interface OverviewFigures {
  readonly power: ReadonlyMap<string, number>;
  readonly alerts: Alert[];
  readonly alertsTotal: number;
  readonly idle: ReadonlyMap<string, number>;
}

/** The overview's figures from the state the reader keeps (no query). */
function fromMemory(state: OverviewState, cluster: string | undefined): OverviewFigures {
  const all =
    cluster === undefined ? state.alerts : state.alerts.filter((a) => a.cluster_id === cluster);
  const alerts = all.slice(0, MAX_OVERVIEW_ALERTS).map((a): Alert => ({
    severity: a.severity,
    cluster_id: a.cluster_id,
    host_id: a.hostname,
    gpu_id: a.gpu_id,
    metric: a.metric,
    value: a.value,
    message: a.message,
    since: iso(a.since) ?? '',
  }));
  return {
    power: state.power,
    alerts,
    alertsTotal: cluster === undefined ? state.alertsTotal : all.length,
    idle: state.idle,
  };
}

/** The overview's figures read from the store (a reader that keeps no state: no commit feed). */
async function fromStore(
  o: OverviewOptions,
  cluster: string | undefined,
  clusters: readonly { readonly cluster_id: string }[],
): Promise<OverviewFigures> {
  const selection = cluster === undefined ? {} : { cluster };
  // One query per metric: a metric the fleet does not report (yet) just gives no alert.
  const latest = await Promise.all(
    [
      'DCGM_FI_DEV_GPU_TEMP',
      'DCGM_FI_DEV_FB_USED',
      'DCGM_FI_DEV_FB_FREE',
      'DCGM_FI_DEV_POWER_USAGE',
    ].map((m) =>
      // Live GPUs only: a retired GPU raises no alert and draws no power here.
      o.reader.latest({ ...selection, metrics: [m], live: true }).catch(() => []),
    ),
  );
  const power = new Map<string, number>();
  for (const l of latest[3] ?? [])
    power.set(l.cluster_id, (power.get(l.cluster_id) ?? 0) + l.value);
  const all = alertsFrom(latest.slice(0, 3).flat());
  // Idle GPUs per cluster (a cluster whose query fails counts none rather than fail the page).
  const counts = await Promise.all(
    clusters.map((c) =>
      o.reader
        .idleGpus({ cluster: c.cluster_id, ...o.idle })
        .then((gpus) => gpus.length)
        .catch(() => 0),
    ),
  );
  const idle = new Map(clusters.map((c, i) => [c.cluster_id, counts[i] ?? 0]));
  return { power, alerts: all.slice(0, MAX_OVERVIEW_ALERTS), alertsTotal: all.length, idle };
}

/** The fleet at a glance, for the dashboard: counts, ingest rate, queue, collectors, alerts. */
export const overviewRoutes: FastifyPluginAsyncTypebox<OverviewOptions> = async (app, o) => {
  app.get(
    '/api/v1/overview',
    {
      schema: {
        tags: ['fleet'],
        summary:
          'The fleet at a glance: counts, ingest rate, queue depth, collectors alive, alerts',
        querystring: OverviewQuery,
        response: { 200: Overview, 404: ErrorRef, 503: ErrorRef },
      },
    },
    async (req) => {
      // What the gateway serves, read from its routes (registered after this one, so per request).
      const features = {
        graphql: app.hasRoute({ method: 'POST', url: '/graphql' }),
        websocket: o.hub !== undefined && app.hasRoute({ method: 'GET', url: '/ws' }),
      };
      const all = await o.reader.clusters();
      const clusters =
        req.query.cluster_id === undefined
          ? all
          : all.filter((c) => c.cluster_id === req.query.cluster_id);
      if (req.query.cluster_id !== undefined && clusters.length === 0)
        throw new NexusError('NOT_FOUND', `cluster "${req.query.cluster_id}" not found`);
      const [queue, members] = await Promise.all([
        o.queueStats?.().catch(() => undefined),
        o.registry?.members().catch(() => []),
      ]);
      // Power, alerts and idle counts kept in memory (fed by the commit feed); without one, read
      // from the store per request.
      const kept = await o.reader.overviewState?.();
      const { power, alerts, alertsTotal, idle } =
        kept === undefined
          ? await fromStore(o, req.query.cluster_id, clusters)
          : fromMemory(kept, req.query.cluster_id);
      const byCluster = clusters.map((c) => ({
        cluster_id: c.cluster_id,
        gpus: c.gpus,
        retired_gpus: c.retired_gpus,
        power_watts: round6(power.get(c.cluster_id) ?? 0),
        idle_gpus: idle.get(c.cluster_id) ?? 0,
      }));
      return {
        clusters: clusters.length,
        hosts: clusters.reduce((n, c) => n + c.hosts, 0),
        gpus: clusters.reduce((n, c) => n + c.gpus, 0),
        retired_gpus: clusters.reduce((n, c) => n + c.retired_gpus, 0),
        power_watts: round6(byCluster.reduce((n, c) => n + c.power_watts, 0)),
        by_cluster: byCluster,
        ingest: o.hub === undefined ? null : { records_per_s: round6(o.hub.rate()), window_s: 60 },
        queue:
          queue === undefined
            ? null
            : {
                ready: queue.ready,
                in_flight: queue.inFlight,
                delayed: queue.delayed,
                dead: queue.dead,
                oldest_age_s:
                  queue.oldestCreatedAt === undefined
                    ? null
                    : Math.max(0, (Date.now() - queue.oldestCreatedAt) / 1000),
              },
        collectors: (members ?? [])
          .filter((m) => m.role === 'collector' || m.role === 'embedded')
          .map((m) => ({
            id: m.id,
            hostname: m.hostname,
            pid: m.pid,
            started_at: iso(m.started_at) ?? '',
            version: m.version,
          })),
        alerts,
        alerts_total: alertsTotal,
        idle_gpus: byCluster.reduce((n, c) => n + c.idle_gpus, 0),
        features,
        simulated: o.simulation !== undefined,
        simulation: o.simulation ?? null,
      };
    },
  );
};
