/**
 * The REST client of the dashboard. The response types come from the gateway's own TypeBox schemas
 * (type-only imports: nothing of the server ends up in the bundle), so a change of the API's shape
 * fails the dashboard's type check instead of the page.
 */
import type { Static } from '@sinclair/typebox';
import type {
  ClusterList as ClusterListSchema,
  GpuDetail as GpuDetailSchema,
  HostDetail as HostDetailSchema,
} from '../../src/gateway/schemas/fleet.js';
import type {
  EventsResult as EventsResultSchema,
  GpuEvent as GpuEventSchema,
} from '../../src/gateway/schemas/events.js';
import type {
  Alert as AlertSchema,
  Features as FeaturesSchema,
  Overview as OverviewSchema,
} from '../../src/gateway/schemas/overview.js';
import type {
  LatestResult as LatestResultSchema,
  Reading as ReadingSchema,
  Series as SeriesSchema,
  SeriesResult as SeriesResultSchema,
} from '../../src/gateway/schemas/telemetry.js';
import type { Heatmap as HeatmapSchema } from '../../src/gateway/schemas/heatmap.js';
import { authHeaders, currentToken, requestToken, tokenGiven } from './auth.js';

export type ClusterList = Static<typeof ClusterListSchema>;
/** What the gateway serves besides REST (GraphQL, live push). */
export type Features = Static<typeof FeaturesSchema>;
export type GpuDetail = Static<typeof GpuDetailSchema>;
export type HostDetail = Static<typeof HostDetailSchema>;
export type LatestResult = Static<typeof LatestResultSchema>;
export type Reading = Static<typeof ReadingSchema>;
export type Series = Static<typeof SeriesSchema>;
export type SeriesResult = Static<typeof SeriesResultSchema>;
/** GET /api/v1/clusters/{c}/heatmap and one of its cells. */
export type HeatmapAnswer = Static<typeof HeatmapSchema>;
export type HeatCell = HeatmapAnswer['cells'][number];

/** GET /api/v1/search (docs/api.md): hosts, GPUs, namespaces and pods matching a name. */
export type SearchKind = 'host' | 'gpu' | 'namespace' | 'pod';
export interface SearchHit {
  readonly kind: SearchKind;
  readonly cluster_id: string;
  readonly label: string;
  readonly host_id?: string;
  readonly gpu_id?: number;
  readonly uuid?: string;
  readonly namespace?: string;
  readonly pod?: string;
  readonly gpus?: number;
}
export interface SearchResult {
  readonly q: string;
  readonly count: number;
  readonly truncated: boolean;
  readonly hits: readonly SearchHit[];
}

/** A page of a cluster's hosts (docs/api.md, paging). */
export interface HostPage {
  readonly hosts: readonly { readonly host_id: string; readonly gpus?: number }[];
  readonly count: number;
  /** Absent from a gateway older than paging (it answered every host). */
  readonly next_cursor?: string | null;
  readonly total?: number;
}

/** GET /api/v1/overview. */
export type Overview = Static<typeof OverviewSchema>;
export type Alert = Static<typeof AlertSchema>;

/**
 * The fleet-intelligence answers (issue 19): GET /api/v1/clusters/{c}/idle, /usage and /events, as
 * docs/fleet.md and the API contract describe them.
 */
export interface IdleGpu {
  readonly host_id: string;
  readonly gpu_id: number;
  readonly uuid: string | null;
  readonly model: string | null;
  readonly namespace: string | null;
  readonly pod: string | null;
  readonly container: string | null;
  readonly utilization_metric: string;
  readonly utilization_percent: number;
  readonly idle_since: string;
  readonly last_seen: string;
  readonly idle_seconds: number;
  readonly wasted_gpu_hours: number;
}
export interface IdleResult {
  readonly cluster_id: string;
  readonly threshold_percent: number;
  readonly idle_for_seconds: number;
  readonly count: number;
  readonly wasted_gpu_hours: number;
  readonly gpus: readonly IdleGpu[];
}
export interface Cost {
  readonly energy: number;
  readonly gpu_hours: number;
  readonly total: number;
}
export interface UsageGroup {
  readonly namespace?: string | null;
  readonly pod?: string | null;
  readonly host_id?: string;
  readonly gpu_id?: number;
  readonly uuid?: string | null;
  readonly gpu_hours: number;
  readonly avg_utilization_percent: number | null;
  readonly energy_kwh: number;
  readonly cost: Cost | null;
  readonly unallocated_gpu_hours?: number;
  readonly unallocated_energy_kwh?: number;
}
export interface UsageResult {
  readonly cluster_id: string;
  readonly group_by: string;
  readonly from: string;
  readonly to: string;
  readonly currency: string;
  readonly prices: { readonly energy_per_kwh: number; readonly gpu_hour: number } | null;
  readonly groups: readonly UsageGroup[];
  readonly total: {
    readonly gpu_hours: number;
    readonly energy_kwh: number;
    readonly cost: Cost | null;
  };
  readonly unallocated: { readonly gpu_hours: number; readonly energy_kwh: number };
}
/** GET /api/v1/clusters/{c}/events and one of its events. */
export type EventsResult = Static<typeof EventsResultSchema>;
export type FleetEvent = Static<typeof GpuEventSchema>;

/** An answer of the API that is not a success, or no answer at all. */
export class ApiError extends Error {
  constructor(
    message: string,
    /** HTTP status; 0 when the gateway could not be reached. */
    readonly status: number,
    readonly code: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

const TIMEOUT_MS = 20_000;

type Params = Readonly<Record<string, string | number | undefined>>;

function url(path: string, params: Params): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, String(v));
  const s = q.toString();
  return s === '' ? path : `${path}?${s}`;
}

function errorFrom(status: number, statusText: string, body: unknown): ApiError {
  if (typeof body === 'object' && body !== null && 'error' in body) {
    const b = body as { error: unknown; code?: unknown };
    if (typeof b.error === 'string') {
      return new ApiError(b.error, status, typeof b.code === 'string' ? b.code : `HTTP_${status}`);
    }
  }
  return new ApiError(`HTTP ${status} ${statusText}`.trim(), status, `HTTP_${status}`);
}

/**
 * GETs JSON from the gateway with this tab's token (auth.ts); rejects with an ApiError that says
 * what went wrong, in words. A 401 waits for the user to give a token (the form) and tries again
 * with it, for as long as the page wants the answer.
 */
export async function getJson<T>(
  path: string,
  params: Params = {},
  signal?: AbortSignal,
): Promise<T> {
  for (;;) {
    await tokenGiven(signal);
    const sent = currentToken();
    const res = await fetchJson(url(path, params), signal);
    if (res.status === 401) {
      await requestToken(sent, signal);
      continue;
    }
    if (!res.ok) throw errorFrom(res.status, res.statusText, res.body);
    if (res.body === undefined)
      throw new ApiError(`${path}: the answer is not JSON`, res.status, 'BAD_BODY');
    return res.body as T;
  }
}

/** One request, within TIMEOUT_MS: its status and its body (undefined when not JSON). */
async function fetchJson(
  target: string,
  signal: AbortSignal | undefined,
): Promise<{ status: number; statusText: string; ok: boolean; body: unknown }> {
  const ctl = new AbortController();
  const timer = setTimeout(() => {
    ctl.abort(new ApiError(`no answer from the gateway in ${TIMEOUT_MS / 1000} s`, 0, 'TIMEOUT'));
  }, TIMEOUT_MS);
  const onAbort = (): void => {
    ctl.abort(signal?.reason);
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    let res: Response;
    try {
      res = await fetch(target, {
        signal: ctl.signal,
        headers: { accept: 'application/json', ...authHeaders() },
      });
    } catch (err) {
      if (ctl.signal.aborted && ctl.signal.reason instanceof ApiError) throw ctl.signal.reason;
      if (signal?.aborted === true) throw err;
      throw new ApiError('cannot reach the gateway (network error)', 0, 'NETWORK');
    }
    let body: unknown;
    try {
      body = await res.json();
    } catch {
      body = undefined;
    }
    return { status: res.status, statusText: res.statusText, ok: res.ok, body };
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}

/**
 * Downloads a file of the API (a CSV) with this tab's token, as the JSON calls send it: its bytes
 * and the name the gateway gives it (Content-Disposition), or `fallback`.
 */
export async function download(
  path: string,
  params: Params,
  fallback: string,
): Promise<{ blob: Blob; filename: string }> {
  for (;;) {
    await tokenGiven();
    const sent = currentToken();
    let res: Response;
    try {
      res = await fetch(url(path, params), {
        headers: { accept: 'text/csv', ...authHeaders() },
      });
    } catch {
      throw new ApiError('cannot reach the gateway (network error)', 0, 'NETWORK');
    }
    if (res.status === 401) {
      await requestToken(sent);
      continue;
    }
    if (!res.ok) {
      let body: unknown;
      try {
        body = await res.json();
      } catch {
        body = undefined;
      }
      throw errorFrom(res.status, res.statusText, body);
    }
    const cd = res.headers.get('content-disposition') ?? '';
    const m = /filename="([^"]+)"/.exec(cd);
    return { blob: await res.blob(), filename: m?.[1] ?? fallback };
  }
}

interface ApiDoc {
  readonly paths?: Record<string, { get?: { parameters?: readonly { name?: string }[] } }>;
}
let apiDoc: Promise<ApiDoc> | undefined;

/** The gateway's OpenAPI document (asked once per page; an empty one when it cannot be read). */
function openApi(): Promise<ApiDoc> {
  apiDoc ??= getJson<ApiDoc>('/openapi.json').catch(() => {
    apiDoc = undefined;
    return {};
  });
  return apiDoc;
}

/**
 * Whether the gateway serves an API path (`/api/v1/clusters/{cluster_id}/usage`), as its OpenAPI
 * document lists it (asked once per page): a page does not ask an older gateway for what it lacks.
 */
export function serves(path: string): Promise<boolean> {
  return openApi().then((d) => d.paths?.[path] !== undefined);
}

/** Whether the GET of an API path takes a query parameter (`limit`), as the OpenAPI document says. */
export function takes(path: string, param: string): Promise<boolean> {
  return openApi().then(
    (d) => d.paths?.[path]?.get?.parameters?.some((p) => p.name === param) ?? false,
  );
}

/** True for the rejection of a request this page aborted itself (navigation, newer request). */
export function isAbort(err: unknown, signal: AbortSignal): boolean {
  return signal.aborted && !(err instanceof ApiError && err.code === 'TIMEOUT');
}

export function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

const enc = encodeURIComponent;

/** Most pages of clusters the dashboard reads (of 100: clusters are few). */
const MAX_CLUSTER_PAGES = 10;
/** Hosts per page of a host list (the API's default). */
export const HOST_PAGE = 100;

export const api = {
  overview: (signal?: AbortSignal) => getJson<Overview>('/api/v1/overview', {}, signal),
  /**
   * Every cluster (a gateway that pages its lists answers 100 a page: the pages are walked, at most
   * MAX_CLUSTER_PAGES of them; clusters are few).
   */
  clusters: async (signal?: AbortSignal): Promise<ClusterList> => {
    const first = await getJson<ClusterList & { next_cursor?: string | null }>(
      '/api/v1/clusters',
      {},
      signal,
    );
    const clusters = [...first.clusters];
    let cursor = first.next_cursor ?? null;
    for (let i = 1; cursor !== null && i < MAX_CLUSTER_PAGES; i++) {
      const page = await getJson<ClusterList & { next_cursor?: string | null }>(
        '/api/v1/clusters',
        { cursor },
        signal,
      );
      clusters.push(...page.clusters);
      cursor = page.next_cursor ?? null;
    }
    const all: typeof first = { ...first, clusters, count: clusters.length, next_cursor: null };
    return all;
  },
  latest: (
    params: { cluster_id: string; metric?: string; host_id?: string; gpu_id?: string },
    signal?: AbortSignal,
  ) => getJson<LatestResult>('/api/v1/telemetry/latest', params, signal),
  series: (
    params: {
      cluster_id: string;
      host_id?: string;
      gpu_id?: string;
      metric?: string;
      from: string;
      step: string;
      agg: 'avg' | 'min' | 'max' | 'last';
    },
    signal?: AbortSignal,
  ) => getJson<SeriesResult>('/api/v1/telemetry', params, signal),
  host: (cluster: string, host: string, signal?: AbortSignal) =>
    getJson<HostDetail>(`/api/v1/clusters/${enc(cluster)}/hosts/${enc(host)}`, {}, signal),
  /**
   * A page of a cluster's hosts (by hostname, `limit` of them after `cursor`). A gateway older than
   * paging (its OpenAPI document has no `limit` on the route) answers its whole list, once.
   */
  hosts: async (
    cluster: string,
    page: { limit?: number; cursor?: string; prefix?: string } = {},
    signal?: AbortSignal,
  ): Promise<HostPage> => {
    const paged = await takes('/api/v1/clusters/{cluster_id}/hosts', 'limit');
    if (!paged && page.cursor !== undefined) return { hosts: [], count: 0, next_cursor: null };
    return getJson<HostPage>(
      `/api/v1/clusters/${enc(cluster)}/hosts`,
      paged ? { limit: HOST_PAGE, ...page } : {},
      signal,
    );
  },
  heatmap: (
    cluster: string,
    params: { metric: string; prefix?: string; from?: string; to?: string; max_cells?: number },
    signal?: AbortSignal,
  ) => getJson<HeatmapAnswer>(`/api/v1/clusters/${enc(cluster)}/heatmap`, params, signal),
  search: (
    params: { q: string; cluster_id?: string; kind?: string; limit?: number },
    signal?: AbortSignal,
  ) => getJson<SearchResult>('/api/v1/search', params, signal),
  idle: (cluster: string, signal?: AbortSignal) =>
    getJson<IdleResult>(`/api/v1/clusters/${enc(cluster)}/idle`, {}, signal),
  usage: (
    cluster: string,
    params: { group_by: string; from: string; to?: string },
    signal?: AbortSignal,
  ) => getJson<UsageResult>(`/api/v1/clusters/${enc(cluster)}/usage`, params, signal),
  events: (
    cluster: string,
    params: {
      type?: string;
      from: string;
      host_id?: string;
      limit?: number;
      cursor?: string;
    },
    signal?: AbortSignal,
  ) => getJson<EventsResult>(`/api/v1/clusters/${enc(cluster)}/events`, params, signal),
  gpu: (cluster: string, host: string, gpu: number, signal?: AbortSignal) =>
    getJson<GpuDetail>(
      `/api/v1/clusters/${enc(cluster)}/hosts/${enc(host)}/gpus/${gpu}`,
      {},
      signal,
    ),
};
