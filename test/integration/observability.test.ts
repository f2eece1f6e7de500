import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer, type Server } from 'node:http';
import { after, describe, it } from 'node:test';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace';
import { silentLogger } from '../../src/core/logger.js';
import { NexusMetrics } from '../../src/core/metrics.js';
import { Streamer } from '../../src/streamer/streamer.js';
import { setupTracing } from '../../src/cli/tracing.js';
import { ROOT, run, spawnNexus } from '../helpers/child.js';
import { sharedEtcd, uniqueCluster } from '../helpers/etcd.js';
import { metricSum } from '../helpers/metrics.js';
import { freePort } from '../helpers/ports.js';
import { sharedPostgres, startPostgres, uniqueDatabase } from '../helpers/postgres.js';
import { scalar, sqlStore, startCollector, until } from '../helpers/pipeline.js';
import { etcdQueue } from '../helpers/queues.js';
import { SAMPLE, sampleRows } from '../helpers/sample.js';

/**
 * What an operator sees: Prometheus metrics that promtool accepts and that agree with the
 * database, correlation ids from the streamer's log to the collector's, traces that join the
 * streamer and the collector, readiness that follows PostgreSQL, and no secret in any log.
 */
const etcd = await sharedEtcd();
const pg = await sharedPostgres();
after(async () => {
  await etcd.release();
  await pg.release();
});

const TOTAL = sampleRows().length;

function promtool(exposition: string): void {
  try {
    execFileSync('promtool', ['check', 'metrics'], { input: exposition, stdio: 'pipe' });
  } catch (err) {
    const e = err as { stdout?: Buffer; stderr?: Buffer };
    assert.fail(`promtool check metrics: ${String(e.stdout)}${String(e.stderr)}`);
  }
}

async function scrape(url: string): Promise<string> {
  const res = await fetch(url);
  assert.equal(res.status, 200, `${url}: ${res.status}`);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
  return res.text();
}

/** The sum of a metric's samples (over all label sets) in an exposition; it must be there. */
function sampleSum(exposition: string, name: string): number {
  const sum = metricSum(exposition, name);
  assert.ok(sum !== undefined, `${name} not in the exposition`);
  return sum;
}

/** The metrics the shipped alert rules watch (their expressions' nexus_ and etcd_ names). */
function alertMetrics(): string[] {
  const rules = readFileSync(join(ROOT, 'deploy/observability/alerts.yml'), 'utf8');
  const exprs = [...rules.matchAll(/expr: (\|\n(?:\s{10,}.*\n)+|.*)/g)].map((m) => m[1] ?? '');
  return [...new Set(exprs.flatMap((e) => e.match(/\b(?:nexus|etcd)_[a-z0-9_]+/g) ?? []))];
}

function jsonLines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  service: string;
}

/** A minimal OTLP/HTTP (JSON) trace receiver. */
async function otlpReceiver(): Promise<{ url: string; spans: OtlpSpan[]; server: Server }> {
  const spans: OtlpSpan[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      const doc = JSON.parse(body) as {
        resourceSpans?: {
          resource?: { attributes?: { key: string; value: { stringValue?: string } }[] };
          scopeSpans?: { spans?: Omit<OtlpSpan, 'service'>[] }[];
        }[];
      };
      for (const rs of doc.resourceSpans ?? []) {
        const service =
          rs.resource?.attributes?.find((a) => a.key === 'service.name')?.value.stringValue ?? '';
        for (const ss of rs.scopeSpans ?? [])
          for (const s of ss.spans ?? []) spans.push({ ...s, service });
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  return { url: `http://127.0.0.1:${port}`, spans, server };
}

describe('observability across processes', () => {
  it('metrics pass promtool and agree with the data; a batch is followed by its id and its trace; no secret is logged', async () => {
    const cluster = uniqueCluster('obs');
    const url = await pg.server.createDatabase(uniqueDatabase('obs'));
    const password = new URL(url).password;
    assert.ok(password.length > 8);
    const otlp = await otlpReceiver();
    const [gatewayPort, collectorPort, streamerPort] = [
      await freePort(),
      await freePort(),
      await freePort(),
    ];
    const env = {
      DATABASE_URL: url,
      ETCD_ENDPOINTS: etcd.endpoint,
      CLUSTER_ID: cluster,
      MESSAGE_QUEUE_PREFIX: '/obs-test/queue',
      REGISTRY_PREFIX: `/obs-test/${cluster}`,
      LOG_LEVEL: 'debug',
      HOST: '127.0.0.1',
      POLL_TIMEOUT: '500ms',
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
      OTEL_BSP_SCHEDULE_DELAY: '200',
    };
    const migrate = await run(spawnNexus(['migrate'], env));
    assert.equal(migrate.code, 0, migrate.stderr);
    const collectorChild = spawnNexus(['collector'], {
      ...env,
      METRICS_PORT: String(collectorPort),
    });
    const collector = run(collectorChild);
    const gatewayChild = spawnNexus(['gateway'], {
      ...env,
      PORT: String(gatewayPort),
      // What is measured and traced, not who asks (gateway-auth.test.ts tests authentication).
      AUTH_MODE: 'none',
    });
    const gateway = run(gatewayChild);
    const http = `http://127.0.0.1:${gatewayPort}`;
    const collectorOps = `http://127.0.0.1:${collectorPort}`;
    const streamerOps = `http://127.0.0.1:${streamerPort}`;
    let streamerDone: ReturnType<typeof run> | undefined;
    let requestId: string | null = null;
    try {
      assert.ok(
        await until(async () => (await fetch(`${collectorOps}/readyz`)).status === 200, 30_000),
        'collector not ready',
      );
      assert.ok(
        await until(async () => (await fetch(`${http}/readyz`)).status === 200, 30_000),
        'gateway not ready',
      );
      // 25 batches of 100, 100 ms apart: the streamer is still at work when it is scraped.
      streamerDone = run(
        spawnNexus(['streamer'], {
          ...env,
          CSV_FILE: SAMPLE,
          LOOP_MODE: 'false',
          BATCH_SIZE: '100',
          STREAM_INTERVAL: '100ms',
          METRICS_PORT: String(streamerPort),
        }),
      );
      let streamerMetrics = '';
      assert.ok(
        await until(async () => {
          streamerMetrics = await scrape(`${streamerOps}/metrics`);
          return sampleSum(streamerMetrics, 'nexus_streamer_records_published_total') > 0;
        }, 30_000),
        'the streamer published nothing',
      );
      promtool(streamerMetrics);
      assert.equal((await fetch(`${streamerOps}/readyz`)).status, 200);
      assert.equal((await fetch(`${streamerOps}/healthz`)).status, 200);
      for (const name of [
        'nexus_streamer_records_read_total',
        'nexus_streamer_publish_duration_seconds_bucket',
        'nexus_process_cpu_seconds_total',
        'nexus_nodejs_eventloop_lag_p99_seconds',
      ])
        sampleSum(streamerMetrics, name);
      // Each message's size as etcd stores it, compressed: the sample's 100-record batches are
      // about 220 bytes a record as JSON and 39 compressed.
      assert.equal(
        sampleSum(streamerMetrics, 'nexus_streamer_message_bytes_count'),
        sampleSum(streamerMetrics, 'nexus_streamer_batches_published_total'),
      );
      const bytesPerRecord =
        sampleSum(streamerMetrics, 'nexus_streamer_message_bytes_sum') /
        sampleSum(streamerMetrics, 'nexus_streamer_records_published_total');
      assert.ok(bytesPerRecord > 10 && bytesPerRecord < 80, `${bytesPerRecord} bytes a record`);

      const streamer = await streamerDone;
      assert.equal(streamer.code, 0, streamer.stderr);
      const rowsStored = async (): Promise<number> => scalar(url, 'SELECT count(*) FROM samples');
      assert.ok(await until(async () => (await rowsStored()) === TOTAL, 30_000), 'not all stored');

      // Traffic on the gateway: REST (one bad request among them) and GraphQL.
      for (const path of [
        '/api/v1/clusters',
        `/api/v1/clusters/${cluster}/hosts`,
        `/api/v1/telemetry/latest?cluster_id=${cluster}`,
      ]) {
        const res = await fetch(`${http}${path}`);
        assert.equal(res.status, 200, `${path}: ${await res.text()}`);
      }
      const bad = await fetch(`${http}/api/v1/telemetry?cluster_id=${cluster}&limit=-1`);
      assert.equal(bad.status, 400);
      requestId = bad.headers.get('x-request-id');
      assert.ok(requestId !== null && requestId !== '');
      const gql = await fetch(`${http}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: `{ gpus(cluster_id: "${cluster}") { gpu_id } }` }),
      });
      assert.equal(gql.status, 200);

      // The counters agree with the database.
      let collectorMetrics = '';
      assert.ok(
        await until(async () => {
          collectorMetrics = await scrape(`${collectorOps}/metrics`);
          return sampleSum(collectorMetrics, 'nexus_collector_records_stored_total') === TOTAL;
        }, 10_000),
        `records stored counter ${sampleSum(collectorMetrics, 'nexus_collector_records_stored_total')} != ${TOTAL} rows`,
      );
      promtool(collectorMetrics);
      assert.equal(sampleSum(collectorMetrics, 'nexus_collector_records_consumed_total'), TOTAL);
      assert.equal(sampleSum(collectorMetrics, 'nexus_collector_records_duplicate_total'), 0);
      assert.ok(sampleSum(collectorMetrics, 'nexus_collector_commit_duration_seconds_count') > 0);
      assert.equal(sampleSum(collectorMetrics, 'nexus_collector_batch_records_sum'), TOTAL);
      assert.equal(sampleSum(collectorMetrics, 'nexus_queue_messages'), 0, 'queue not drained');
      sampleSum(collectorMetrics, 'nexus_pg_pool_connections');
      sampleSum(collectorMetrics, 'nexus_queue_oldest_message_age_seconds');
      // Nothing rejected: the counter (one series per reason) has no series yet.
      assert.doesNotMatch(streamerMetrics, /^nexus_streamer_records_rejected_total\{/m);

      const gatewayMetrics = await scrape(`${http}/metrics`);
      promtool(gatewayMetrics);
      // Every metric a shipped alert watches is exported by a running component (a renamed or
      // unregistered metric leaves an alert that can never fire), etcd's by etcd.
      const etcdMetrics = await scrape(`http://${etcd.endpoint}/metrics`);
      const exported = [streamerMetrics, collectorMetrics, gatewayMetrics, etcdMetrics].join('\n');
      const watched = alertMetrics();
      assert.ok(watched.length >= 10, `alerts watch ${watched.join(', ')}`);
      for (const name of watched)
        assert.match(exported, new RegExp(`^# TYPE ${name} `, 'm'), `${name} is not exported`);
      assert.ok(sampleSum(gatewayMetrics, 'nexus_http_request_duration_seconds_count') >= 4);
      assert.match(gatewayMetrics, /route="\/api\/v1\/telemetry"[^\n]*status_code="400"/);
      assert.ok(sampleSum(gatewayMetrics, 'nexus_graphql_request_duration_seconds_count') >= 1);
      assert.ok(sampleSum(gatewayMetrics, 'nexus_gpu_temperature_celsius') > 0);
      sampleSum(gatewayMetrics, 'nexus_websocket_clients');
    } finally {
      // Stopped by SIGTERM, as an orchestrator would: each flushes its spans on the way out.
      gatewayChild.kill('SIGTERM');
      collectorChild.kill('SIGTERM');
      setTimeout(() => otlp.server.close(), 10_000).unref();
    }
    const [gw, col] = await Promise.all([gateway, collector]);
    assert.equal(col.code, 0, col.stderr);
    const str = await streamerDone;

    // Correlation: every batch the streamer published, with its CSV line range, is in the
    // collector's log of what it stored, with the same trace.
    const published = jsonLines(str.stdout).filter((l) => l.msg === 'batch published');
    const stored = jsonLines(col.stdout).filter((l) => l.msg === 'batch stored');
    assert.equal(published.length, 25);
    const storedBy = new Map<string, Record<string, unknown>>();
    for (const s of stored) for (const id of s.batches as string[]) storedBy.set(id, s);
    for (const p of published) {
      assert.equal(typeof p.batch, 'string');
      assert.ok(Array.isArray(p.lines), 'line range in the streamer log');
      const s = storedBy.get(p.batch as string);
      assert.ok(s !== undefined, `batch ${String(p.batch)} not in the collector log`);
      assert.equal(s.component, 'collector');
    }
    // The gateway logs the request id it returned.
    assert.ok(
      jsonLines(gw.stdout).some((l) => l.reqId === requestId),
      'request id not in the gateway log',
    );
    // No secret in any log line.
    for (const [name, out] of [
      ['migrate', migrate.stdout + migrate.stderr],
      ['streamer', str.stdout + str.stderr],
      ['collector', col.stdout + col.stderr],
      ['gateway', gw.stdout + gw.stderr],
    ] as const)
      assert.ok(!out.includes(password), `the database password is in the ${name} log`);

    // Traces: the OTLP receiver got, in one trace, the streamer's publish span and the collector's
    // consume and store spans.
    const publishes = otlp.spans.filter(
      (s) => s.name === 'nexus.publish' && s.service === 'nexus-streamer',
    );
    assert.equal(publishes.length, 25);
    const publish = publishes[0];
    assert.ok(publish !== undefined);
    const inTrace = otlp.spans.filter((s) => s.traceId === publish.traceId);
    const consume = inTrace.find((s) => s.name === 'nexus.consume');
    assert.ok(consume !== undefined, 'no consume span in the publish trace');
    assert.equal(consume.service, 'nexus-collector');
    assert.equal(consume.parentSpanId, publish.spanId);
    // Every trace a publish started reached a consume.
    const consumed = new Set(
      otlp.spans.filter((s) => s.name === 'nexus.consume').map((s) => s.traceId),
    );
    assert.ok(publishes.every((p) => consumed.has(p.traceId)));
    assert.ok(
      otlp.spans.some((s) => s.service === 'nexus-gateway' && s.name.startsWith('HTTP GET')),
    );
  });
});

describe('readiness follows PostgreSQL', () => {
  it('/readyz of the collector and the gateway turns 503 within 5 s of PostgreSQL stopping, and 200 after it returns', async () => {
    const server = await startPostgres();
    const cluster = uniqueCluster('ready');
    const [gatewayPort, collectorPort] = [await freePort(), await freePort()];
    const env = {
      DATABASE_URL: server.url,
      ETCD_ENDPOINTS: etcd.endpoint,
      CLUSTER_ID: cluster,
      MESSAGE_QUEUE_PREFIX: '/ready-test/queue',
      REGISTRY_PREFIX: `/ready-test/${cluster}`,
      LOG_LEVEL: 'warn',
      HOST: '127.0.0.1',
      POLL_TIMEOUT: '500ms',
      DB_CONNECT_TIMEOUT: '1s',
    };
    const children: ReturnType<typeof spawnNexus>[] = [];
    try {
      const migrate = await run(spawnNexus(['migrate'], env));
      assert.equal(migrate.code, 0, migrate.stderr);
      children.push(
        spawnNexus(['collector'], { ...env, METRICS_PORT: String(collectorPort) }),
        spawnNexus(['gateway'], { ...env, PORT: String(gatewayPort) }),
      );
      const done = children.map((c) => run(c));
      const urls = [
        `http://127.0.0.1:${collectorPort}/readyz`,
        `http://127.0.0.1:${gatewayPort}/readyz`,
      ];
      const status = async (u: string): Promise<number> => {
        try {
          return (await fetch(u, { signal: AbortSignal.timeout(3000) })).status;
        } catch {
          return 0;
        }
      };
      for (const u of urls)
        assert.ok(await until(async () => (await status(u)) === 200, 30_000), `${u} never ready`);

      await server.stop();
      const stoppedAt = Date.now();
      for (const u of urls) {
        assert.ok(
          await until(async () => (await status(u)) === 503, 5000 - (Date.now() - stoppedAt), 100),
          `${u} still ready 5 s after PostgreSQL stopped`,
        );
      }
      // What NexusNoCollectorReady watches follows the outage.
      const collectorMetrics = await (
        await fetch(`http://127.0.0.1:${collectorPort}/metrics`)
      ).text();
      assert.match(collectorMetrics, /^nexus_ready\{[^}]*component="collector"[^}]*\} 0$/m);
      const body = (await (await fetch(urls[0] ?? '')).json()) as { reasons: string[] };
      assert.ok(
        body.reasons.some((r) => r.startsWith('PostgreSQL')),
        JSON.stringify(body),
      );
      // The processes are alive all along.
      assert.equal((await fetch(urls[0]?.replace('readyz', 'healthz') ?? '')).status, 200);

      await server.start();
      for (const u of urls)
        assert.ok(
          await until(async () => (await status(u)) === 200, 15_000),
          `${u} not ready again after PostgreSQL returned`,
        );
      for (const c of children) c.kill('SIGTERM');
      const results = await Promise.all(done);
      for (const r of results) assert.equal(r.code, 0, r.stderr);
    } finally {
      for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
      await server.destroy();
    }
  });
});

describe('traces with an in-memory exporter', () => {
  it('one trace runs from the streamer publishing a batch to the collector committing it', async () => {
    const exporter = new InMemorySpanExporter();
    const shutdown = setupTracing('test', silentLogger(), {}, [
      new SimpleSpanProcessor({ exporter }),
    ]);
    const cluster = uniqueCluster('trace');
    const url = await pg.server.createDatabase(uniqueDatabase('trace'));
    const queue = etcdQueue(etcd.endpoint, cluster);
    const metrics = new NexusMetrics({ component: 'streamer', processMetrics: false });
    try {
      const migrateStore = sqlStore(url);
      await migrateStore.migrate();
      await migrateStore.close();
      await new Streamer({
        queue,
        csvFile: SAMPLE,
        clusterId: cluster,
        streamId: 'trace-test',
        producerId: 'trace-test',
        batchSize: 1000,
        intervalMs: 0,
        loop: false,
        timestampMode: 'original',
        maxQueueDepth: 10_000,
        concurrency: 2,
        rejectsFile: '',
        restart: true,
        logger: silentLogger(),
        metrics,
      }).run();
      const running = await startCollector({ endpoint: etcd.endpoint, url, cluster });
      assert.ok(
        await until(
          async () => (await scalar(url, 'SELECT count(*) FROM samples')) === TOTAL,
          30_000,
        ),
      );
      await running.stop();
      const spans = exporter.getFinishedSpans();
      const publishes = spans.filter((s) => s.name === 'nexus.publish');
      assert.equal(publishes.length, 3);
      for (const p of publishes) {
        const traceId = p.spanContext().traceId;
        const trace = spans.filter((s) => s.spanContext().traceId === traceId);
        const consume = trace.find((s) => s.name === 'nexus.consume');
        assert.ok(consume !== undefined, 'no consume span in the trace of a publish');
        assert.equal(consume.parentSpanContext?.spanId, p.spanContext().spanId);
        // The store span is the consume span's child, or links to it when one transaction
        // stored several messages.
        const store = spans.find(
          (s) =>
            s.name === 'nexus.store' &&
            (s.parentSpanContext?.spanId === consume.spanContext().spanId ||
              s.links.some((l) => l.context.spanId === consume.spanContext().spanId)),
        );
        assert.ok(store !== undefined, 'no store span for the consumed message');
        assert.equal(store.attributes['db.system'], 'postgresql');
        assert.ok(Number(store.attributes['nexus.inserted']) > 0);
      }
    } finally {
      await queue.close();
      await shutdown();
    }
  });
});
