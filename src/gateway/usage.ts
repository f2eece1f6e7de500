/**
 * Idle GPUs and usage/showback (docs/fleet.md) as the API answers them, shared by REST and
 * GraphQL: parameters checked (a bad one is a 400 saying what is wrong), figures rounded, costs
 * from the prices, and the CSV download.
 */
import { NexusError } from '../core/errors.js';
import { parseDuration } from '../core/duration.js';
import type { IdleGpu, TelemetryReader, UsageGroupBy, UsageRow } from '../store/reader.js';
import { clip, iso, parseInstant } from './params.js';
import type { IdleListBody, UsageGroupBody, UsageReportBody } from './schemas/usage.js';

/** The settings the fleet features answer with (IDLE_UTIL, IDLE_FOR, prices, CURRENCY). */
export interface FleetSettings {
  /** Percent, 0..100. */
  readonly idleUtil: number;
  readonly idleForMs: number;
  /** 0: no energy price. */
  readonly energyPricePerKwh: number;
  /** 0: no GPU-hour price. */
  readonly gpuHourPrice: number;
  readonly currency: string;
}

export const DEFAULT_FLEET_SETTINGS: FleetSettings = {
  idleUtil: 5,
  idleForMs: 15 * 60_000,
  energyPricePerKwh: 0,
  gpuHourPrice: 0,
  currency: 'USD',
};

const DAY = 86_400_000;
/** The longest usage range: 400 days (the rollup's usual longest retention). */
export const MAX_USAGE_RANGE_MS = 400 * DAY;
/** The longest IDLE_FOR a query may ask: 400 days. */
export const MAX_IDLE_FOR_MS = 400 * DAY;

const bad = (message: string): NexusError => new NexusError('BAD_REQUEST', message);

/** Figures are rounded to 6 decimals (a microhour is 3.6 ms; a micro-kWh 3.6 J). */
export const round6 = (x: number): number => Math.round(x * 1e6) / 1e6;

export function parseIdleParams(
  util: string | number | undefined,
  forText: string | undefined,
  settings: FleetSettings,
): { utilPercent: number; forMs: number } {
  let utilPercent = settings.idleUtil;
  if (util !== undefined) {
    const s = String(util).trim();
    const n = /^\d+(?:\.\d+)?$/.test(s) ? Number(s) : Number.NaN;
    if (!(n >= 0 && n <= 100))
      throw bad(`util: "${clip(String(util))}" is not a percentage from 0 to 100`);
    utilPercent = n;
  }
  let forMs = settings.idleForMs;
  if (forText !== undefined) {
    try {
      forMs = parseDuration(forText, 'for');
    } catch {
      throw bad(`for: "${clip(forText)}" is not a duration (e.g. 15m, 1h, 2h30m)`);
    }
    if (forMs > MAX_IDLE_FOR_MS) throw bad(`for: "${clip(forText)}" is longer than 400d`);
  }
  return { utilPercent, forMs };
}

function idleGpuOut(g: IdleGpu): IdleListBody['gpus'][number] {
  const ms = g.last_seen - g.idle_since;
  return {
    host_id: g.hostname,
    gpu_id: g.gpu_id,
    ...(g.gpu_instance_id === undefined ? {} : { gpu_instance_id: g.gpu_instance_id }),
    uuid: g.uuid ?? null,
    model: g.model ?? null,
    namespace: g.namespace,
    pod: g.pod,
    container: g.container,
    utilization_metric: g.utilization_metric,
    utilization_percent: g.utilization_percent === undefined ? null : round6(g.utilization_percent),
    idle_since: iso(g.idle_since) ?? '',
    last_seen: iso(g.last_seen) ?? '',
    idle_seconds: ms / 1000,
    wasted_gpu_hours: round6(ms / 3_600_000),
  };
}

/** GET /clusters/{id}/idle's body. NOT_FOUND for an unknown cluster. */
export async function idleReport(
  reader: Pick<TelemetryReader, 'idleGpus'>,
  cluster: string,
  q: { utilPercent: number; forMs: number },
): Promise<IdleListBody> {
  const gpus = (await reader.idleGpus({ cluster, ...q })).map(idleGpuOut);
  return {
    cluster_id: cluster,
    threshold_percent: q.utilPercent,
    idle_for_seconds: q.forMs / 1000,
    count: gpus.length,
    wasted_gpu_hours: round6(
      gpus.reduce((s, g) => s + (Date.parse(g.last_seen) - Date.parse(g.idle_since)), 0) /
        3_600_000,
    ),
    gpus,
  };
}

export interface UsageParams {
  readonly groupBy: UsageGroupBy;
  readonly from: number;
  readonly to: number;
}

export function parseUsageParams(
  q: { group_by?: string; from?: string; to?: string },
  now = Date.now(),
): UsageParams {
  const groupBy = q.group_by;
  if (groupBy !== 'namespace' && groupBy !== 'pod' && groupBy !== 'host' && groupBy !== 'gpu')
    throw bad(
      groupBy === undefined
        ? 'group_by is required: namespace, pod, host or gpu'
        : `group_by: "${clip(groupBy)}" is not one of namespace, pod, host, gpu`,
    );
  const to = q.to === undefined ? now : parseInstant('to', q.to, now);
  const from = q.from === undefined ? to - DAY : parseInstant('from', q.from, now);
  if (from >= to) throw bad(`from must be before to (from ${iso(from)}, to ${iso(to)})`);
  if (to - from > MAX_USAGE_RANGE_MS)
    throw bad(`the range is ${((to - from) / DAY).toFixed(1)} days; at most 400 days`);
  return { groupBy, from, to };
}

type Cost = UsageGroupBody['cost'];

function costOf(kwh: number, gpuHours: number, s: FleetSettings): Cost {
  if (s.energyPricePerKwh === 0 && s.gpuHourPrice === 0) return null;
  const energy = round6(kwh * s.energyPricePerKwh);
  const hours = round6(gpuHours * s.gpuHourPrice);
  return { energy, gpu_hours: hours, total: round6(energy + hours) };
}

function groupKeys(groupBy: UsageGroupBy, r: UsageRow): Partial<UsageGroupBody> {
  switch (groupBy) {
    case 'namespace':
      return { namespace: r.namespace ?? '' };
    case 'pod':
      return { namespace: r.namespace ?? '', pod: r.pod ?? '' };
    case 'host':
      return { host_id: r.hostname ?? '' };
    case 'gpu':
      return { host_id: r.hostname ?? '', gpu_id: r.gpu_id ?? 0, uuid: r.uuid ?? null };
  }
}

/** GET /clusters/{id}/usage's body. NOT_FOUND for an unknown cluster. */
export async function usageReport(
  reader: Pick<TelemetryReader, 'usage'>,
  cluster: string,
  p: UsageParams,
  s: FleetSettings,
): Promise<UsageReportBody> {
  const rows = await reader.usage({ cluster, groupBy: p.groupBy, from: p.from, to: p.to });
  const perGpu = p.groupBy === 'host' || p.groupBy === 'gpu';
  const groups: UsageGroupBody[] = rows.groups.map((r) => {
    const gpuHours = round6(r.allocated_minutes / 60);
    const kwh = round6(r.allocated_joules / 3_600_000);
    return {
      ...groupKeys(p.groupBy, r),
      gpu_hours: gpuHours,
      avg_utilization_percent:
        r.avg_utilization_percent === undefined ? null : round6(r.avg_utilization_percent),
      energy_kwh: kwh,
      cost: costOf(kwh, gpuHours, s),
      ...(perGpu
        ? {
            unallocated_gpu_hours: round6(r.unallocated_minutes / 60),
            unallocated_energy_kwh: round6(r.unallocated_joules / 3_600_000),
          }
        : {}),
    };
  });
  const totalHours = round6(rows.groups.reduce((n, r) => n + r.allocated_minutes, 0) / 60);
  const totalKwh = round6(rows.groups.reduce((n, r) => n + r.allocated_joules, 0) / 3_600_000);
  const priced = s.energyPricePerKwh !== 0 || s.gpuHourPrice !== 0;
  return {
    cluster_id: cluster,
    group_by: p.groupBy,
    from: iso(p.from) ?? '',
    to: iso(p.to) ?? '',
    currency: s.currency,
    prices: priced ? { energy_per_kwh: s.energyPricePerKwh, gpu_hour: s.gpuHourPrice } : null,
    groups,
    total: { gpu_hours: totalHours, energy_kwh: totalKwh, cost: costOf(totalKwh, totalHours, s) },
    unallocated: {
      gpu_hours: round6(rows.unallocated_minutes / 60),
      energy_kwh: round6(rows.unallocated_joules / 3_600_000),
    },
  };
}

/**
 * One CSV cell (RFC 4180): quoted when it holds a comma, a quote, CR or LF (quotes doubled). A
 * text starting with = + - @, a tab or CR is prefixed with ' so that a spreadsheet does not run
 * it as a formula (OWASP's CSV injection advice); numbers are written as they are.
 */
export function csvCell(v: string | number | null | undefined): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'number') return String(v);
  const safe = /^[=+\-@\t\r]/.test(v) ? `'${v}` : v;
  return /[",\r\n]/.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe;
}

const KEY_COLUMNS: Record<UsageGroupBy, readonly (keyof UsageGroupBody)[]> = {
  namespace: ['namespace'],
  pod: ['namespace', 'pod'],
  host: ['host_id'],
  gpu: ['host_id', 'gpu_id', 'uuid'],
};

/** The report as CSV: a header, then one line per group (CRLF line ends). */
export function usageCsv(report: UsageReportBody): string {
  const keys = KEY_COLUMNS[report.group_by];
  const header = [
    ...keys,
    'gpu_hours',
    'avg_utilization_percent',
    'energy_kwh',
    'cost_energy',
    'cost_gpu_hours',
    'cost_total',
    'currency',
  ];
  const lines = [header.map(csvCell).join(',')];
  for (const g of report.groups) {
    const cells: (string | number | null | undefined)[] = keys.map((k) => {
      const v = g[k];
      return typeof v === 'string' || typeof v === 'number' ? v : null;
    });
    cells.push(
      g.gpu_hours,
      g.avg_utilization_percent,
      g.energy_kwh,
      g.cost?.energy,
      g.cost?.gpu_hours,
      g.cost?.total,
      g.cost === null ? null : report.currency,
    );
    lines.push(cells.map(csvCell).join(','));
  }
  return `${lines.join('\r\n')}\r\n`;
}

/** `20250718T100000Z`: an instant in a file name (no colons). */
const fileTime = (ms: number): string =>
  (iso(ms) ?? '')
    .replace(/\.\d{3}Z$/, 'Z')
    .replaceAll('-', '')
    .replaceAll(':', '');

/** The CSV's file name: nexus-usage-<cluster>-<group_by>-<from>-<to>.csv, safe characters only. */
export function usageFileName(report: UsageReportBody): string {
  const cluster = report.cluster_id.replace(/[^A-Za-z0-9._-]/g, '_');
  return `nexus-usage-${cluster}-${report.group_by}-${fileTime(Date.parse(report.from))}-${fileTime(Date.parse(report.to))}.csv`;
}
