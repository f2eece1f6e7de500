import type {
  ClusterSummary,
  GpuDetail,
  GpuSummary,
  HostSummary,
  LatestValue,
  MetricInfo,
  TelemetryReader,
} from '../../store/reader.js';

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
 * What one GraphQL request reads, each thing once: nested fields (hosts of each cluster, GPUs of
 * each host, latest values of each GPU) share the reader's answers instead of asking per object.
 * The latest values of all the GPUs a request touches are read in one query per cluster.
 */
export class RequestScope {
  private readonly clusterList = new Memo<ClusterSummary[]>();
  private readonly hostLists = new Memo<HostSummary[]>();
  private readonly gpuLists = new Memo<GpuSummary[]>();
  private readonly details = new Memo<GpuDetail | undefined>();
  private readonly catalogue = new Memo<MetricInfo[]>();
  private wanted: LatestWanted[] = [];

  constructor(readonly reader: TelemetryReader) {}

  clusters(): Promise<ClusterSummary[]> {
    return this.clusterList.get('', () => this.reader.clusters());
  }

  async cluster(clusterId: string): Promise<ClusterSummary | undefined> {
    return (await this.clusters()).find((c) => c.cluster_id === clusterId);
  }

  hosts(clusterId: string): Promise<HostSummary[]> {
    return this.hostLists.get(clusterId, () => this.reader.hosts(clusterId));
  }

  async host(clusterId: string, hostname: string): Promise<HostSummary | undefined> {
    return (await this.hosts(clusterId)).find((h) => h.hostname === hostname);
  }

  /** Every GPU of a cluster, read once and shared by each host's `gpus`. */
  gpus(clusterId: string): Promise<GpuSummary[]> {
    return this.gpuLists.get(clusterId, () => this.reader.gpus(clusterId));
  }

  async gpusOf(clusterId: string, hostname: string): Promise<GpuSummary[]> {
    return (await this.gpus(clusterId)).filter((g) => g.hostname === hostname);
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
