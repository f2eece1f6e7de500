import type {
  ClusterSummary,
  GpuDetail,
  GpuSummary,
  HostSummary,
  LatestValue,
  MetricInfo,
  Page,
  PageQuery,
  TelemetryReader,
} from '../../store/reader.js';
import { DEFAULT_PAGE } from '../params.js';

class Memo<T> {
  private readonly values = new Map<string, Promise<T>>();

  get(key: string, load: () => Promise<T>): Promise<T> {
    let p = this.values.get(key);
    if (p === undefined) {
      p = load();
      this.values.set(key, p);
    }
    return p;
  }
}

interface LatestWanted {
  readonly cluster: string;
  readonly host: string;
  readonly gpu: number;
  resolve(values: LatestValue[]): void;
  reject(err: unknown): void;
}

const gpuKey = (host: string, gpu: number): string => `${host}\u0000${gpu}`;

/**
 * What one GraphQL request reads, each thing once: nested fields (a cluster or host looked up from
 * several places, pages asked for twice, latest values of each GPU) share the reader's answers
 * instead of asking per object. Lists are pages (the reader serves them from its directory).
 * The latest values of all the GPUs a request touches are read in one query per cluster.
 */
export class RequestScope {
  private readonly clusterPages = new Memo<Page<ClusterSummary>>();
  private readonly clusterOne = new Memo<ClusterSummary | undefined>();
  private readonly hostPages = new Memo<Page<HostSummary> | undefined>();
  private readonly hostOne = new Memo<HostSummary | undefined>();
  private readonly gpuPages = new Memo<Page<GpuSummary> | undefined>();
  private readonly details = new Memo<GpuDetail | undefined>();
  private readonly catalogue = new Memo<MetricInfo[]>();
  private wanted: LatestWanted[] = [];

  constructor(readonly reader: TelemetryReader) {}

  /** A page of the clusters (limit, after: the sort key of the previous page's last). */
  clusters(q: PageQuery = { limit: DEFAULT_PAGE }): Promise<Page<ClusterSummary>> {
    return this.clusterPages.get(JSON.stringify(q), () => this.reader.clustersPage(q));
  }

  cluster(clusterId: string): Promise<ClusterSummary | undefined> {
    return this.clusterOne.get(clusterId, () => this.reader.cluster(clusterId));
  }

  /** A page of a cluster's hosts; undefined: no such cluster. */
  hosts(
    clusterId: string,
    q: PageQuery = { limit: DEFAULT_PAGE },
  ): Promise<Page<HostSummary> | undefined> {
    return this.hostPages.get(JSON.stringify([clusterId, q]), () =>
      this.reader.hostsPage(clusterId, q),
    );
  }

  host(clusterId: string, hostname: string): Promise<HostSummary | undefined> {
    return this.hostOne.get(JSON.stringify([clusterId, hostname]), () =>
      this.reader.host(clusterId, hostname),
    );
  }

  /** A page of GPUs of a cluster (hostname undefined) or of a host; undefined: no such one. */
  gpus(
    clusterId: string,
    hostname: string | undefined,
    q: PageQuery = { limit: DEFAULT_PAGE },
  ): Promise<Page<GpuSummary> | undefined> {
    return this.gpuPages.get(JSON.stringify([clusterId, hostname ?? null, q]), () =>
      this.reader.gpusPage(clusterId, hostname, q),
    );
  }

  gpu(clusterId: string, hostname: string, gpuId: number): Promise<GpuDetail | undefined> {
    return this.details.get(JSON.stringify([clusterId, hostname, gpuId]), () =>
      this.reader.gpu(clusterId, hostname, gpuId),
    );
  }

  metrics(): Promise<MetricInfo[]> {
    return this.catalogue.get('', () => this.reader.metricCatalogue());
  }

  /** The latest value of each metric of one GPU; batched with the other GPUs of this request. */
  latest(cluster: string, host: string, gpu: number): Promise<LatestValue[]> {
    return new Promise((resolve, reject) => {
      if (this.wanted.length === 0) {
        // After the promise jobs now queued (sibling fields resolving), like DataLoader.
        void Promise.resolve().then(() => process.nextTick(() => void this.flush()));
      }
      this.wanted.push({ cluster, host, gpu, resolve, reject });
    });
  }

  private async flush(): Promise<void> {
    const batch = this.wanted;
    this.wanted = [];
    const byCluster = new Map<string, LatestWanted[]>();
    for (const w of batch) {
      const list = byCluster.get(w.cluster) ?? [];
      list.push(w);
      byCluster.set(w.cluster, list);
    }
    await Promise.all(
      [...byCluster].map(async ([cluster, ws]) => {
        try {
          const values = await this.reader.latest({
            cluster,
            hosts: [...new Set(ws.map((w) => w.host))],
            gpus: [...new Set(ws.map((w) => w.gpu))],
          });
          const byGpu = new Map<string, LatestValue[]>();
          for (const v of values) {
            const k = gpuKey(v.hostname, v.gpu_id);
            const list = byGpu.get(k) ?? [];
            list.push(v);
            byGpu.set(k, list);
          }
          for (const w of ws) w.resolve(byGpu.get(gpuKey(w.host, w.gpu)) ?? []);
        } catch (err) {
          for (const w of ws) w.reject(err);
        }
      }),
    );
  }
}

const scopes = new WeakMap<object, RequestScope>();

/** The scope of a GraphQL context object (one per HTTP request, one per subscription). */
export function scopeOf(context: object, reader: TelemetryReader): RequestScope {
  let s = scopes.get(context);
  if (s === undefined) {
    s = new RequestScope(reader);
    scopes.set(context, s);
  }
  return s;
}
