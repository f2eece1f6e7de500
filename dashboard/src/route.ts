/**
 * The routes of the dashboard (no DOM here). The URL holds the selection: `#/` (the overview, with
 * `?metric=` and `?cluster=`), `#/host/{cluster}/{host}`, `#/gpu/{cluster}/{host}/{gpu}?range=1h`.
 * Back and forward work because moving between pages pushes history entries; changing a metric or
 * range replaces the entry.
 */
import { DEFAULT_HEAT_METRIC, heatMetricFrom, type HeatMetric } from './metrics.js';

export const RANGES = ['15m', '1h', '6h', '24h', '7d', '30d'] as const;
export type RangeKey = (typeof RANGES)[number];
export const DEFAULT_RANGE: RangeKey = '1h';

/**
 * One step of the overview heatmap's drill-down: the hosts whose name starts with `prefix` (and, for
 * a group that is a run of hosts, from `from` to `to`), as GET /api/v1/clusters/{c}/heatmap takes
 * them. In the URL: `in=prefix|from|to`, one per step (`|` cannot be in a hostname).
 */
export interface Drill {
  readonly prefix: string;
  readonly from?: string;
  readonly to?: string;
}

export type Route =
  | {
      readonly view: 'overview';
      readonly cluster: string | undefined;
      readonly metric: HeatMetric;
      /** The range of the multi-GPU panels (default DEFAULT_RANGE). */
      readonly range?: RangeKey;
      /** The heatmap's drill-down, outermost first (absent: the whole cluster). */
      readonly drill?: readonly Drill[];
    }
  | {
      readonly view: 'host';
      readonly cluster: string;
      readonly host: string;
      readonly metric: HeatMetric;
      /** The range of the multi-GPU panels (default DEFAULT_RANGE). */
      readonly range?: RangeKey;
    }
  | {
      readonly view: 'gpu';
      readonly cluster: string;
      readonly host: string;
      readonly gpu: number;
      readonly range: RangeKey;
    }
  | {
      /** `#/idle?cluster=..`: the idle GPUs of a cluster. */
      readonly view: 'idle';
      readonly cluster: string | undefined;
    }
  | {
      /** `#/events?cluster=..&type=xid,health&host=..&range=24h`: the events of a cluster. */
      readonly view: 'events';
      readonly cluster: string | undefined;
      readonly types: readonly EventType[];
      readonly host: string | undefined;
      readonly range: UsageRange;
    }
  | {
      /** `#/usage?cluster=..&group_by=namespace&range=24h`: GPU-hours and energy by group. */
      readonly view: 'usage';
      readonly cluster: string | undefined;
      readonly groupBy: GroupBy;
      readonly range: UsageRange;
    }
  | { readonly view: 'notfound'; readonly path: string };

export const EVENT_TYPES = ['xid', 'throttle', 'health', 'stopped', 'reappeared'] as const;
export type EventType = (typeof EVENT_TYPES)[number];
export const GROUP_BYS = ['namespace', 'pod', 'host', 'gpu'] as const;
export type GroupBy = (typeof GROUP_BYS)[number];
/** The ranges of the events and usage pages (ending now). */
export const USAGE_RANGES = ['1h', '6h', '24h', '7d', '30d'] as const;
export type UsageRange = (typeof USAGE_RANGES)[number];
export const DEFAULT_USAGE_RANGE: UsageRange = '24h';

function isUsageRange(s: string | null): s is UsageRange {
  return s !== null && (USAGE_RANGES as readonly string[]).includes(s);
}

function isRange(s: string | null): s is RangeKey {
  return s !== null && (RANGES as readonly string[]).includes(s);
}

/** A drill step from the URL (`prefix|from|to`). */
export function parseDrill(text: string): Drill {
  const [prefix = '', from = '', to = ''] = text.split('|');
  return { prefix, ...(from === '' ? {} : { from }), ...(to === '' ? {} : { to }) };
}

export function formatDrill(d: Drill): string {
  return d.from === undefined && d.to === undefined
    ? d.prefix
    : `${d.prefix}|${d.from ?? ''}|${d.to ?? ''}`;
}

/** What a drill step is called in the breadcrumbs. */
export function drillLabel(d: Drill): string {
  if (d.from !== undefined && d.from === d.to) return d.from;
  if (
    d.from !== undefined &&
    d.to !== undefined &&
    !(d.from.startsWith(d.prefix) && d.prefix !== '')
  )
    return `${d.from} – ${d.to}`;
  return `${d.prefix}…`;
}

function decode(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

export function parseHash(hash: string): Route {
  const raw = hash.replace(/^#/, '');
  const qi = raw.indexOf('?');
  const path = qi < 0 ? raw : raw.slice(0, qi);
  const query = new URLSearchParams(qi < 0 ? '' : raw.slice(qi + 1));
  const parts = path.split('/').filter((p) => p !== '');
  const seg = parts.map(decode);
  const metric = heatMetricFrom(query.get('metric')) ?? DEFAULT_HEAT_METRIC;
  const rangeParam = query.get('range');
  const range = isRange(rangeParam) && rangeParam !== DEFAULT_RANGE ? { range: rangeParam } : {};
  if (parts.length === 0) {
    const drill = query.getAll('in').map(parseDrill);
    return {
      view: 'overview',
      cluster: query.get('cluster') ?? undefined,
      metric,
      ...range,
      ...(drill.length > 0 ? { drill } : {}),
    };
  }
  const clusterParam = query.get('cluster') ?? undefined;
  const usageRange = query.get('range');
  const pageRange = isUsageRange(usageRange) ? usageRange : DEFAULT_USAGE_RANGE;
  if (parts.length === 1 && seg[0] === 'idle') return { view: 'idle', cluster: clusterParam };
  if (parts.length === 1 && seg[0] === 'events') {
    const types = (query.get('type') ?? '')
      .split(',')
      .filter((t): t is EventType => (EVENT_TYPES as readonly string[]).includes(t));
    return {
      view: 'events',
      cluster: clusterParam,
      types: EVENT_TYPES.filter((t) => types.includes(t)),
      host: query.get('host') ?? undefined,
      range: pageRange,
    };
  }
  if (parts.length === 1 && seg[0] === 'usage') {
    const g = query.get('group_by');
    return {
      view: 'usage',
      cluster: clusterParam,
      groupBy: (GROUP_BYS as readonly (string | null)[]).includes(g) ? (g as GroupBy) : 'namespace',
      range: pageRange,
    };
  }
  const [kind, cluster, host, gpu] = seg;
  if (kind === 'host' && parts.length === 3 && cluster !== undefined && host !== undefined) {
    return { view: 'host', cluster, host, metric, ...range };
  }
  if (
    kind === 'gpu' &&
    parts.length === 4 &&
    cluster !== undefined &&
    host !== undefined &&
    gpu !== undefined &&
    /^\d+$/.test(gpu)
  ) {
    const range = query.get('range');
    return {
      view: 'gpu',
      cluster,
      host,
      gpu: Number(gpu),
      range: isRange(range) ? range : DEFAULT_RANGE,
    };
  }
  return { view: 'notfound', path };
}

const enc = encodeURIComponent;

export function formatRoute(r: Route): string {
  switch (r.view) {
    case 'overview': {
      const q = new URLSearchParams();
      if (r.metric !== DEFAULT_HEAT_METRIC) q.set('metric', r.metric);
      if (r.cluster !== undefined) q.set('cluster', r.cluster);
      if (r.range !== undefined && r.range !== DEFAULT_RANGE) q.set('range', r.range);
      for (const d of r.drill ?? []) q.append('in', formatDrill(d));
      const s = q.toString();
      return s === '' ? '#/' : `#/?${s.replace(/%7C/g, '|')}`;
    }
    case 'host': {
      const q = new URLSearchParams();
      if (r.metric !== DEFAULT_HEAT_METRIC) q.set('metric', r.metric);
      if (r.range !== undefined && r.range !== DEFAULT_RANGE) q.set('range', r.range);
      const base = `#/host/${enc(r.cluster)}/${enc(r.host)}`;
      const s = q.toString();
      return s === '' ? base : `${base}?${s}`;
    }
    case 'gpu': {
      const base = `#/gpu/${enc(r.cluster)}/${enc(r.host)}/${r.gpu}`;
      return r.range === DEFAULT_RANGE ? base : `${base}?range=${r.range}`;
    }
    case 'idle':
      return r.cluster === undefined
        ? '#/idle'
        : `#/idle?${new URLSearchParams({ cluster: r.cluster }).toString()}`;
    case 'events': {
      const q = new URLSearchParams();
      if (r.cluster !== undefined) q.set('cluster', r.cluster);
      if (r.types.length > 0) q.set('type', r.types.join(','));
      if (r.host !== undefined) q.set('host', r.host);
      if (r.range !== DEFAULT_USAGE_RANGE) q.set('range', r.range);
      const s = q.toString();
      return s === '' ? '#/events' : `#/events?${s.replace(/%2C/g, ',')}`;
    }
    case 'usage': {
      const q = new URLSearchParams();
      if (r.cluster !== undefined) q.set('cluster', r.cluster);
      if (r.groupBy !== 'namespace') q.set('group_by', r.groupBy);
      if (r.range !== DEFAULT_USAGE_RANGE) q.set('range', r.range);
      const s = q.toString();
      return s === '' ? '#/usage' : `#/usage?${s}`;
    }
    case 'notfound':
      return `#${r.path}`;
  }
}

/** The page one level up: GPU -> its host, host -> the overview. */
export function parentOf(r: Route): Route | undefined {
  switch (r.view) {
    case 'gpu':
      return { view: 'host', cluster: r.cluster, host: r.host, metric: DEFAULT_HEAT_METRIC };
    case 'host':
      return { view: 'overview', cluster: r.cluster, metric: r.metric };
    case 'notfound':
      return { view: 'overview', cluster: undefined, metric: DEFAULT_HEAT_METRIC };
    case 'idle':
    case 'events':
    case 'usage':
      return { view: 'overview', cluster: r.cluster, metric: DEFAULT_HEAT_METRIC };
    case 'overview': {
      // Up the heatmap's drill-down, one step at a time.
      const drill = r.drill ?? [];
      if (drill.length === 0) return undefined;
      const { drill: _omit, ...rest } = r;
      return drill.length === 1 ? rest : { ...rest, drill: drill.slice(0, -1) };
    }
  }
}
