/**
 * Scrape targets from a Kubernetes Service's endpoints (SCRAPE_KUBERNETES_SERVICE=
 * namespace/name[:port]): the ready addresses of its EndpointSlices, watched through
 * @kubernetes/client-node (list, then watch; a broken watch lists again), with the in-cluster
 * service account or KUBECONFIG. The dcgm-exporter DaemonSet's Service lists one pod per GPU node,
 * so a node that joins or leaves the fleet is scraped or dropped without a restart.
 * The service account needs `list` and `watch` on `endpointslices` (discovery.k8s.io) in the
 * namespace.
 */
// Types only: the library loads when a Service is to be watched (see loadClient).
import type * as K8s from '@kubernetes/client-node';
import type { Informer, KubeConfig, ObjectCache, V1EndpointSlice } from '@kubernetes/client-node';
import { NexusError, describeError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { MAX_TARGETS, targetUrl, type ScrapeTarget, type TargetSink } from './targets.js';

export interface ServiceRef {
  readonly namespace: string;
  readonly name: string;
  /** A port's name or number; undefined: the slice's first port. */
  readonly port?: string;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** `namespace/name[:port]`. */
export function parseServiceRef(text: string): ServiceRef {
  const m = /^([^/:\s]+)\/([^/:\s]+)(?::([^/:\s]+))?$/.exec(text.trim());
  const namespace = m?.[1];
  const name = m?.[2];
  if (
    m === null ||
    namespace === undefined ||
    name === undefined ||
    !DNS_LABEL.test(namespace) ||
    !DNS_LABEL.test(name)
  ) {
    throw new NexusError(
      'CONFIG_INVALID',
      `SCRAPE_KUBERNETES_SERVICE: "${text}" is not namespace/name[:port] (e.g. gpu-operator/nvidia-dcgm-exporter:9400)`,
    );
  }
  return m[3] === undefined ? { namespace, name } : { namespace, name, port: m[3] };
}

/** What is read of an EndpointSlice (the API's JSON, as the library hands it over). */
export interface EndpointSliceLike {
  readonly ports?: readonly {
    readonly name?: string;
    readonly port?: number;
    readonly appProtocol?: string;
  }[];
  readonly endpoints?: readonly {
    readonly addresses: readonly string[];
    readonly conditions?: { readonly ready?: boolean };
    readonly nodeName?: string;
  }[];
}

/** The targets of a set of EndpointSlices: each ready address at the chosen port, once. */
export function targetsOfSlices(
  slices: readonly EndpointSliceLike[],
  ref: ServiceRef,
): ScrapeTarget[] {
  const out = new Map<string, ScrapeTarget>();
  for (const slice of slices) {
    const ports = slice.ports ?? [];
    let port: number | undefined;
    let https = false;
    if (ref.port !== undefined && /^\d+$/.test(ref.port)) {
      port = Number(ref.port);
      https = ports.some(
        (p) => p.port === port && (p.appProtocol === 'https' || p.name === 'https'),
      );
    } else {
      const chosen = ref.port === undefined ? ports[0] : ports.find((p) => p.name === ref.port);
      port = chosen?.port;
      https = chosen?.appProtocol === 'https' || chosen?.name === 'https';
    }
    if (port === undefined) continue;
    for (const ep of slice.endpoints ?? []) {
      // Ready unless it says otherwise (the API's own reading of a missing condition).
      if (ep.conditions?.ready === false) continue;
      for (const address of ep.addresses) {
        const host = address.includes(':') ? `[${address}]` : address;
        const url = targetUrl(`${host}:${port}`, https ? 'https' : 'http');
        const labels: Record<string, string> = {};
        if (ep.nodeName !== undefined) labels.kubernetes_node = ep.nodeName;
        if (!out.has(url)) out.set(url, { url, labels });
        if (out.size >= MAX_TARGETS) return [...out.values()];
      }
    }
  }
  return [...out.values()];
}

export interface KubernetesTargetsOptions {
  readonly ref: ServiceRef;
  readonly sink: TargetSink;
  readonly logger: Logger;
  /**
   * The credentials: the CLI loads in-cluster ones, else KUBECONFIG, else ~/.kube/config (its
   * `loadFromDefault`), given the library's KubeConfig class.
   */
  readonly kubeConfig: (KubeConfigClass: new () => KubeConfig) => KubeConfig;
  /** Wait before listing again after the watch broke (default 5 s). */
  readonly retryMs?: number;
  /** How long the first list and watch may take at start before it is an error (default 30 s). */
  readonly startTimeoutMs?: number;
  readonly onError?: (reason: string) => void;
}

/** Watches the Service's EndpointSlices and hands the sink its targets on every change. */
export class KubernetesTargets {
  private informer: (Informer<V1EndpointSlice> & ObjectCache<V1EndpointSlice>) | undefined;
  private retry: NodeJS.Timeout | undefined;
  private stopped = false;
  private problem: string | undefined;

  constructor(private readonly o: KubernetesTargetsOptions) {}

  private get source(): string {
    return `${this.o.ref.namespace}/${this.o.ref.name}`;
  }

  /** Lists the slices once (an unreachable API is an error at start), then watches. */
  async start(): Promise<void> {
    const { DiscoveryV1Api, KubeConfig: KubeConfigClass, makeInformer } = await loadClient();
    const kc = this.o.kubeConfig(KubeConfigClass);
    const api = kc.makeApiClient(DiscoveryV1Api);
    const { namespace, name } = this.o.ref;
    const labelSelector = `kubernetes.io/service-name=${name}`;
    const informer = makeInformer<V1EndpointSlice>(
      kc,
      `/apis/discovery.k8s.io/v1/namespaces/${namespace}/endpointslices`,
      () => api.listNamespacedEndpointSlice({ namespace, labelSelector }),
      labelSelector,
    );
    this.informer = informer;
    const publish = (): void => {
      const targets = targetsOfSlices(informer.list(namespace), this.o.ref);
      this.o.sink('kubernetes', targets);
    };
    informer.on('add', publish);
    informer.on('update', publish);
    informer.on('delete', publish);
    informer.on('connect', () => {
      if (this.problem !== undefined) {
        this.o.logger.info({ service: this.source }, 'Kubernetes endpoints watch is back');
      }
      this.problem = undefined;
    });
    informer.on('error', (err: unknown) => {
      if (this.stopped) return;
      const reason = describeError(err);
      this.o.onError?.(reason);
      if (reason !== this.problem) {
        this.problem = reason;
        this.o.logger.error(
          { service: this.source, reason },
          `Kubernetes endpoints of ${this.source}: ${reason}; the last targets are kept, retrying`,
        );
      }
      clearTimeout(this.retry);
      this.retry = setTimeout(() => {
        if (!this.stopped) void informer.start().catch(() => undefined);
      }, this.o.retryMs ?? 5000);
    });
    const startMs = this.o.startTimeoutMs ?? 30_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      // An API server that accepts the connection and never answers would hold the start for ever.
      await Promise.race([
        informer.start(),
        new Promise<never>((_resolve, reject) => {
          timer = setTimeout(() => {
            reject(new Error(`the API server did not answer within ${startMs / 1000} s`));
          }, startMs);
        }),
      ]);
    } catch (err) {
      this.stopped = true;
      await informer.stop().catch(() => undefined);
      throw new NexusError(
        'CONFIG_INVALID',
        `SCRAPE_KUBERNETES_SERVICE: cannot list the EndpointSlices of ${this.source}: ${describeError(err)}`,
      );
    } finally {
      clearTimeout(timer);
    }
    publish();
    this.o.logger.info(
      { service: this.source },
      `watching the endpoints of Kubernetes Service ${this.source}`,
    );
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retry);
    await this.informer?.stop();
  }
}

/**
 * @kubernetes/client-node, loaded on demand: only a scraper that watches a Service pays for
 * loading it (it is large), and a Node.js it cannot load on gets one clear error.
 */
async function loadClient(): Promise<typeof K8s> {
  try {
    return await import('@kubernetes/client-node');
  } catch (err) {
    throw new NexusError(
      'CONFIG_INVALID',
      `SCRAPE_KUBERNETES_SERVICE: @kubernetes/client-node cannot load on Node.js ${process.versions.node} (${describeError(err)}); list the exporters in SCRAPE_TARGETS or SCRAPE_TARGETS_FILE instead`,
    );
  }
}
