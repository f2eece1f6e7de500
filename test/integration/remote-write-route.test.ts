/**
 * POST /api/v1/write (ENABLE_REMOTE_WRITE) on a gateway with in-process queues: what each request
 * puts in which cluster's queue, and what it answers (204, 400, 401/403, 503 with Retry-After),
 * with the samples counted by outcome.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace';
import type { Response } from 'light-my-request';
import { setupTracing } from '../../src/cli/tracing.js';
import { silentLogger } from '../../src/core/logger.js';
import { NexusMetrics } from '../../src/core/metrics.js';
import { FileTokenStore } from '../../src/gateway/auth/file-token-store.js';
import { TokenAuthenticator } from '../../src/gateway/auth/token-auth.js';
import { ClusterQueues } from '../../src/gateway/remote-write/clusters.js';
import { encodeWriteRequest } from '../../src/gateway/remote-write/decoder.js';
import { MemoryQueue } from '../../src/queue/memory/memory-queue.js';
import { DEFAULT_QUEUE_OPTIONS } from '../../src/queue/options.js';
import { sampleGateway, type TestGateway } from '../helpers/gateway.js';
import { metricSum } from '../helpers/metrics.js';
import { drain, recordsOf } from '../helpers/queues.js';

const T0 = Date.now() - 60_000;
const HEADERS = {
  'content-type': 'application/x-protobuf',
  'content-encoding': 'snappy',
  'x-prometheus-remote-write-version': '0.1.0',
};

function staleNaN(): number {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(0x7ff0000000000002n);
  return b.readDoubleLE(0);
}

const GPU0 = {
  __name__: 'DCGM_FI_DEV_GPU_TEMP',
  gpu: '0',
  UUID: 'GPU-aaaa',
  device: 'nvidia0',
  modelName: 'NVIDIA H100 80GB HBM3',
  Hostname: 'node-1',
  instance: 'node-1:9400',
  job: 'dcgm',
};

interface Rig {
  readonly gw: TestGateway;
  readonly queues: Map<string, MemoryQueue>;
  readonly metrics: NexusMetrics;
  post(body: Buffer, headers?: Record<string, string>): Promise<Response>;
}

async function rig(
  over: {
    maxDepth?: number;
    maxClusters?: number;
    accept?: string;
    auth?: TokenAuthenticator;
  } = {},
): Promise<Rig> {
  const queues = new Map<string, MemoryQueue>();
  const metrics = new NexusMetrics({ component: 'gateway', processMetrics: false });
  const gw = await sampleGateway({
    metrics,
    ...(over.auth === undefined
      ? {}
      : {
          auth: {
            mode: 'token',
            authenticator: over.auth,
            metricsAuth: false,
            rateLimit: { perMinute: 0, anonPerMinute: 0 },
          },
        }),
    remoteWrite: {
      queues: new ClusterQueues({
        open: (cluster) => {
          const queue = new MemoryQueue({
            ...DEFAULT_QUEUE_OPTIONS,
            clusterId: cluster,
            logger: silentLogger(),
          });
          queues.set(cluster, queue);
          return { queue, close: () => queue.close() };
        },
        maxClusters: over.maxClusters ?? 4,
        producer: 'remote-write-test',
        batchSize: 2,
        maxDepth: over.maxDepth ?? 0,
      }),
      defaultCluster: 'local-cluster',
      maxBytes: 64 * 1024,
      accept: over.accept ?? '',
    },
  });
  return {
    gw,
    queues,
    metrics,
    post: (body, headers = {}) =>
      gw.gateway.app.inject({
        method: 'POST',
        url: '/api/v1/write',
        headers: { ...HEADERS, ...headers },
        payload: body,
      }),
  };
}

async function stored(r: Rig, cluster: string) {
  const q = r.queues.get(cluster);
  return q === undefined ? [] : recordsOf(await drain(q, 50));
}

/** The value of the sample of `name` whose labels include `label` (e.g. `outcome="stored"`). */
function valueOf(text: string, name: string, label: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(label));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

async function counted(r: Rig, name: string): Promise<number | undefined> {
  return metricSum(await r.metrics.registry.metrics(), name);
}

describe('POST /api/v1/write', () => {
  let r: Rig;
  before(async () => {
    r = await rig();
  });
  after(() => r.gw.close());

  it('queues every DCGM sample as a record, skips staleness markers, ignores other series, 204', async () => {
    const res = await r.post(
      encodeWriteRequest([
        {
          labels: GPU0,
          samples: [
            { value: 41, timestamp: T0 },
            { value: 42, timestamp: T0 + 1000 },
            { value: 43, timestamp: T0 + 2000 },
            { value: staleNaN(), timestamp: T0 + 3000 },
          ],
        },
        {
          labels: { ...GPU0, gpu: '1', UUID: 'GPU-bbbb' },
          samples: [{ value: 50, timestamp: T0 }],
        },
        {
          labels: { __name__: 'up', job: 'dcgm', instance: 'node-1:9400' },
          samples: [{ value: 1, timestamp: T0 }],
        },
        { labels: { ...GPU0, gpu: '2' }, samples: [{ value: Number.NaN, timestamp: T0 }] },
      ]),
    );
    assert.equal(res.statusCode, 204, res.body);
    const got = await stored(r, 'local-cluster');
    assert.deepEqual(
      got.map((x) => [x.hostname, x.gpu, x.metric, x.value, x.timestamp, x.uuid]).sort(),
      [
        ['node-1', 0, 'DCGM_FI_DEV_GPU_TEMP', 41, T0, 'GPU-aaaa'],
        ['node-1', 0, 'DCGM_FI_DEV_GPU_TEMP', 42, T0 + 1000, 'GPU-aaaa'],
        ['node-1', 0, 'DCGM_FI_DEV_GPU_TEMP', 43, T0 + 2000, 'GPU-aaaa'],
        ['node-1', 1, 'DCGM_FI_DEV_GPU_TEMP', 50, T0, 'GPU-bbbb'],
      ].sort(),
    );
    const text = await r.metrics.registry.metrics();
    assert.equal(valueOf(text, 'nexus_remote_write_samples_total', 'outcome="received"'), 7);
    assert.equal(valueOf(text, 'nexus_remote_write_samples_total', 'outcome="stored"'), 4);
    assert.equal(valueOf(text, 'nexus_remote_write_samples_total', 'outcome="ignored"'), 1);
    assert.equal(valueOf(text, 'nexus_remote_write_samples_total', 'outcome="stale"'), 1);
    assert.equal(valueOf(text, 'nexus_remote_write_samples_total', 'outcome="rejected"'), 1);
    assert.equal(valueOf(text, 'nexus_remote_write_rejected_total', 'reason="value"'), 1);
    assert.equal(valueOf(text, 'nexus_remote_write_requests_total', 'code="204"'), 1);
  });

  it("sends readings with a cluster label to that cluster's queue", async () => {
    const res = await r.post(
      encodeWriteRequest([
        { labels: { ...GPU0, cluster: 'east-1' }, samples: [{ value: 60, timestamp: T0 }] },
        { labels: GPU0, samples: [{ value: 61, timestamp: T0 }] },
      ]),
    );
    assert.equal(res.statusCode, 204, res.body);
    assert.deepEqual(
      (await stored(r, 'east-1')).map((x) => x.value),
      [60],
    );
    assert.deepEqual(
      (await stored(r, 'local-cluster')).map((x) => x.value),
      [61],
    );
  });

  it('is in the OpenAPI document with a binary protobuf body, under the write scope', async () => {
    const doc = (await r.gw.gateway.app.inject({ url: '/openapi.json' })).json<{
      paths: Record<
        string,
        Record<string, { requestBody?: { content?: Record<string, unknown> } }>
      >;
    }>();
    const post = doc.paths['/api/v1/write']?.post;
    assert.ok(post, 'POST /api/v1/write is not in the document');
    assert.deepEqual(Object.keys(post.requestBody?.content ?? {}), ['application/x-protobuf']);
    assert.deepEqual(post.requestBody?.content?.['application/x-protobuf'], {
      schema: {
        type: 'string',
        format: 'binary',
        description:
          'A snappy-compressed (block format) protobuf prometheus.WriteRequest, as Prometheus remote_write 1.0 sends it',
      },
    });
  });

  it('400 saying what is wrong for a malformed body; nothing queued', async () => {
    const cases: [Buffer, Record<string, string>, RegExp][] = [
      [Buffer.from('not snappy at all'), {}, /not valid snappy block format/],
      [Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]), {}, /over REMOTE_WRITE_MAX_BYTES \(65536\)/],
      [
        encodeWriteRequest([]),
        { 'content-encoding': 'gzip' },
        /Content-Encoding "gzip" is not snappy/,
      ],
    ];
    for (const [body, headers, message] of cases) {
      const res = await r.post(body, headers);
      assert.equal(res.statusCode, 400, res.body);
      assert.match(res.json<{ error: string }>().error, message);
    }
    assert.equal((await stored(r, 'local-cluster')).length, 0);
    assert.equal(await counted(r, 'nexus_remote_write_requests_total'), 2 + 3);
  });
});

describe('POST /api/v1/write: limits', () => {
  it('a cluster beyond REMOTE_WRITE_MAX_CLUSTERS: 400 naming the limit, nothing of the request queued', async (t) => {
    const r = await rig({ maxClusters: 2 });
    t.after(() => r.gw.close());
    const first = await r.post(
      encodeWriteRequest([
        { labels: { ...GPU0, cluster: 'a' }, samples: [{ value: 1, timestamp: T0 }] },
        { labels: { ...GPU0, cluster: 'b' }, samples: [{ value: 2, timestamp: T0 }] },
      ]),
    );
    assert.equal(first.statusCode, 204, first.body);
    const res = await r.post(
      encodeWriteRequest([
        { labels: { ...GPU0, cluster: 'a' }, samples: [{ value: 3, timestamp: T0 }] },
        { labels: { ...GPU0, cluster: 'c' }, samples: [{ value: 4, timestamp: T0 }] },
      ]),
    );
    assert.equal(res.statusCode, 400, res.body);
    assert.match(
      res.json<{ error: string }>().error,
      /"c" beyond the 2 this gateway publishes to \(REMOTE_WRITE_MAX_CLUSTERS/,
    );
    assert.deepEqual(
      (await stored(r, 'a')).map((x) => x.value),
      [1],
    );
    assert.equal(r.queues.has('c'), false);
  });

  it('a queue at MAX_QUEUE_DEPTH: 503 with Retry-After before anything is published, 204 once there is room', async (t) => {
    const r = await rig({ maxDepth: 1 });
    t.after(() => r.gw.close());
    const body = (v: number): Buffer =>
      encodeWriteRequest([{ labels: GPU0, samples: [{ value: v, timestamp: T0 + v }] }]);
    assert.equal((await r.post(body(1))).statusCode, 204);
    const full = await r.post(body(2));
    assert.equal(full.statusCode, 503, full.body);
    assert.equal(full.headers['retry-after'], '1');
    assert.match(
      full.json<{ error: string }>().error,
      /queue of cluster "local-cluster" is at MAX_QUEUE_DEPTH/,
    );
    assert.deepEqual(
      (await stored(r, 'local-cluster')).map((x) => x.value),
      [1],
    );
    // Drained: the publisher's depth reading is at most a second old.
    await new Promise((res) => setTimeout(res, 1100));
    assert.equal((await r.post(body(2))).statusCode, 204);
    assert.deepEqual(
      (await stored(r, 'local-cluster')).map((x) => x.value),
      [2],
    );
  });

  it('REMOTE_WRITE_ACCEPT=all stores a non-DCGM series with gpu and Hostname labels', async (t) => {
    const r = await rig({ accept: 'all' });
    t.after(() => r.gw.close());
    const res = await r.post(
      encodeWriteRequest([
        {
          labels: { ...GPU0, __name__: 'node_gpu_power_watts' },
          samples: [{ value: 300, timestamp: T0 }],
        },
      ]),
    );
    assert.equal(res.statusCode, 204);
    assert.deepEqual(
      (await stored(r, 'local-cluster')).map((x) => x.metric),
      ['node_gpu_power_watts'],
    );
  });
});

describe('POST /api/v1/write: the write scope', () => {
  it('a write token writes and reads nothing; a read token cannot write; admin can; none: 401', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'nexus-rw-'));
    const tokens = new FileTokenStore(join(dir, 'tokens.json'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const auth = new TokenAuthenticator(tokens, { cacheTtlMs: 100, logger: silentLogger() });
    const r = await rig({ auth });
    t.after(() => r.gw.close());
    const make = async (scope: 'read' | 'write' | 'admin'): Promise<string> =>
      (await tokens.create({ scope, expiresAt: null })).token;
    const [write, read, admin] = [await make('write'), await make('read'), await make('admin')];
    const body = encodeWriteRequest([{ labels: GPU0, samples: [{ value: 7, timestamp: T0 }] }]);
    const as = (token?: string) =>
      token === undefined ? {} : { authorization: `Bearer ${token}` };
    assert.equal((await r.post(body, as())).statusCode, 401);
    const denied = await r.post(body, as(read));
    assert.equal(denied.statusCode, 403);
    assert.match(denied.json<{ error: string }>().error, /needs the write scope/);
    assert.equal((await r.post(body, as(write))).statusCode, 204);
    assert.equal((await r.post(body, as(admin))).statusCode, 204);
    const reading = await r.gw.gateway.app.inject({ url: '/api/v1/clusters', headers: as(write) });
    assert.equal(reading.statusCode, 403);
    assert.deepEqual(
      (await stored(r, 'local-cluster')).map((x) => x.value),
      [7, 7],
    );
  });
});

describe('POST /api/v1/write: traces', () => {
  it('publishes in a span per cluster whose context travels in the envelopes', async (t) => {
    const exporter = new InMemorySpanExporter();
    const shutdown = setupTracing('test', silentLogger(), {}, [
      new SimpleSpanProcessor({ exporter }),
    ]);
    t.after(shutdown);
    const r = await rig();
    t.after(() => r.gw.close());
    const res = await r.post(
      encodeWriteRequest([
        {
          labels: GPU0,
          samples: [
            { value: 1, timestamp: T0 },
            { value: 2, timestamp: T0 + 1 },
            { value: 3, timestamp: T0 + 2 },
          ],
        },
      ]),
    );
    assert.equal(res.statusCode, 204, res.body);
    const spans = exporter
      .getFinishedSpans()
      .filter((s) => s.name === 'nexus.remote_write.publish');
    assert.equal(spans.length, 1);
    const span = spans[0];
    assert.ok(span);
    assert.equal(span.attributes['nexus.cluster'], 'local-cluster');
    assert.equal(span.attributes['nexus.batch.records'], 3);
    assert.equal(span.attributes['nexus.messages'], 2); // batch size 2
    const queue = r.queues.get('local-cluster');
    assert.ok(queue);
    const got = await drain(queue, 50);
    assert.equal(got.length, 2);
    for (const d of got) {
      assert.ok(
        d.envelope.trace?.traceparent.includes(span.spanContext().traceId),
        JSON.stringify(d.envelope.trace),
      );
    }
  });
});
