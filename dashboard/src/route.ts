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

export type Route =
  | {
      readonly view: 'overview';
      readonly cluster: string | undefined;
      readonly metric: HeatMetric;
      /** The range of the multi-GPU panels (default DEFAULT_RANGE). */
      readonly range?: RangeKey;
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
  | { readonly view: 'notfound'; readonly path: string };

function isRange(s: string | null): s is RangeKey {
  return s !== null && (RANGES as readonly string[]).includes(s);
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
    return { view: 'overview', cluster: query.get('cluster') ?? undefined, metric, ...range };
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
      const s = q.toString();
      return s === '' ? '#/' : `#/?${s}`;
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
    case 'overview':
      return undefined;
  }
}
