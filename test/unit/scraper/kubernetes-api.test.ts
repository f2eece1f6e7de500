/**
 * SCRAPE_KUBERNETES_SERVICE against an API server on loopback that answers as Kubernetes does
 * (EndpointSlice list, then a watch stream of JSON events): @kubernetes/client-node really lists,
 * watches and hands the scraper each change.
 */
import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import { after, describe, it } from 'node:test';
import { silentLogger } from '../../../src/core/logger.js';
import {
  KubernetesTargets,
  parseServiceRef,
  type KubernetesTargetsOptions,
} from '../../../src/scraper/kubernetes.js';
import type { ScrapeTarget } from '../../../src/scraper/targets.js';

const slice = (addresses: { ip: string; ready: boolean; node: string }[], rv: string) => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: {
    name: 'nvidia-dcgm-exporter-abcde',
    namespace: 'gpu-operator',
    resourceVersion: rv,
    labels: { 'kubernetes.io/service-name': 'nvidia-dcgm-exporter' },
  },
  addressType: 'IPv4',
  ports: [{ name: 'gpu-metrics', port: 9400, protocol: 'TCP' }],
  endpoints: addresses.map((a) => ({
    addresses: [a.ip],
    conditions: { ready: a.ready },
    nodeName: a.node,
  })),
});

/** Credentials for the API server on loopback: a bearer token, as a service account's. */
const fakeApi =
  (port: number): KubernetesTargetsOptions['kubeConfig'] =>
  (KubeConfig) => {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'fake', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
      users: [{ name: 'nexus', token: 'sa-token' }],
      contexts: [{ name: 'fake', cluster: 'fake', user: 'nexus' }],
      currentContext: 'fake',
    });
    return kc;
  };

describe('Kubernetes Service endpoints through @kubernetes/client-node', () => {
  const requests: { url: string; auth: string | undefined }[] = [];
  let watch: ServerResponse | undefined;
  const server = createServer((req, res) => {
    requests.push({ url: req.url ?? '', auth: req.headers.authorization });
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname !== '/apis/discovery.k8s.io/v1/namespaces/gpu-operator/endpointslices') {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"kind":"Status"}');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    if (url.searchParams.get('watch') === 'true') {
      // Held open, headers sent at once as the API server sends them: events are written as the
      // test makes them.
      res.flushHeaders();
      watch = res;
      return;
    }
    res.end(
      JSON.stringify({
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSliceList',
        metadata: { resourceVersion: '10' },
        items: [
          slice(
            [
              { ip: '10.0.0.1', ready: true, node: 'gpu-node-1' },
              { ip: '10.0.0.2', ready: true, node: 'gpu-node-2' },
              { ip: '10.0.0.3', ready: false, node: 'gpu-node-3' },
            ],
            '10',
          ),
        ],
      }),
    );
  });
  after(() => {
    watch?.end();
    server.closeAllConnections();
    server.close();
  });

  it('lists the ready addresses, then follows the watch: a node joins, the Service goes', async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const addr = server.address();
    const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
    const seen: (readonly ScrapeTarget[])[] = [];
    const k8s = new KubernetesTargets({
      ref: parseServiceRef('gpu-operator/nvidia-dcgm-exporter:gpu-metrics'),
      sink: (_source, targets) => seen.push(targets),
      logger: silentLogger(),
      retryMs: 60_000,
      kubeConfig: fakeApi(port),
    });
    await k8s.start();
    try {
      const urls = (): string[] => (seen.at(-1) ?? []).map((t) => t.url).sort();
      assert.deepEqual(urls(), ['http://10.0.0.1:9400/metrics', 'http://10.0.0.2:9400/metrics']);
      assert.equal(seen.at(-1)?.[0]?.labels.kubernetes_node, 'gpu-node-1');
      const list = requests.find((r) => !r.url.includes('watch=true'));
      assert.ok(
        list?.url.includes('labelSelector=kubernetes.io%2Fservice-name%3Dnvidia-dcgm-exporter'),
        list?.url,
      );
      assert.equal(list?.auth, 'Bearer sa-token');
      const until = async (want: string[]): Promise<void> => {
        for (let i = 0; i < 100 && JSON.stringify(urls()) !== JSON.stringify(want); i++) {
          await new Promise((r) => setTimeout(r, 50));
        }
        assert.deepEqual(urls(), want);
      };
      for (let i = 0; i < 100 && watch === undefined; i++)
        await new Promise((r) => setTimeout(r, 50));
      assert.ok(watch !== undefined, 'the client watches after listing');
      // gpu-node-3 becomes ready.
      watch.write(
        `${JSON.stringify({
          type: 'MODIFIED',
          object: slice(
            [
              { ip: '10.0.0.1', ready: true, node: 'gpu-node-1' },
              { ip: '10.0.0.2', ready: true, node: 'gpu-node-2' },
              { ip: '10.0.0.3', ready: true, node: 'gpu-node-3' },
            ],
            '11',
          ),
        })}\n`,
      );
      await until([
        'http://10.0.0.1:9400/metrics',
        'http://10.0.0.2:9400/metrics',
        'http://10.0.0.3:9400/metrics',
      ]);
      watch.write(`${JSON.stringify({ type: 'DELETED', object: slice([], '12') })}\n`);
      await until([]);
    } finally {
      await k8s.stop();
    }
  });

  it('an API server that never answers the watch is an error at start, not a hang', async () => {
    const silent = createServer((req, res) => {
      if ((req.url ?? '').includes('watch=true')) return; // accepted, never answered
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          apiVersion: 'discovery.k8s.io/v1',
          kind: 'EndpointSliceList',
          metadata: { resourceVersion: '1' },
          items: [],
        }),
      );
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const addr = silent.address();
    const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
    try {
      const k8s = new KubernetesTargets({
        ref: parseServiceRef('gpu-operator/nvidia-dcgm-exporter'),
        sink: () => undefined,
        logger: silentLogger(),
        startTimeoutMs: 500,
        kubeConfig: fakeApi(port),
      });
      await assert.rejects(k8s.start(), /did not answer within 0\.5 s/);
      await k8s.stop();
    } finally {
      silent.closeAllConnections();
      silent.close();
    }
  });
});
