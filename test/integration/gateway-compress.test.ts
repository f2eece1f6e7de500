/**
 * Compressed answers (docs/api.md, "Compression"): a real gateway on a free port, the real sample,
 * raw HTTP (fetch would decode for us): gzip and brotli per Accept-Encoding on the REST API,
 * GraphQL, /openapi.json, /metrics and the dashboard's files, decoding to exactly the identity
 * answer; small answers and errors as they are; the latest values' encoded answers reused until a
 * committed reading changes them.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { silentLogger } from '../../src/core/logger.js';
import { NexusMetrics } from '../../src/core/metrics.js';
import { dashboardPlugin } from '../../src/gateway/dashboard/plugin.js';
import { sampleGateway, type TestGateway } from '../helpers/gateway.js';

let t: TestGateway;
let base: string;
let dashboardDir: string;
const metrics = new NexusMetrics({ component: 'gateway', processMetrics: false });

/** A dashboard build of one page and one 20 KB script. */
const SCRIPT = `export const rows = [${Array.from({ length: 800 }, (_, i) => `"row ${i}"`).join(', ')}];\n`;

before(async () => {
  dashboardDir = mkdtempSync(join(tmpdir(), 'nexus-compress-dash-'));
  mkdirSync(join(dashboardDir, 'assets'));
  writeFileSync(
    join(dashboardDir, 'index.html'),
    '<!doctype html><script src="/assets/app-X1.js"></script>',
  );
  writeFileSync(join(dashboardDir, 'assets', 'app-X1.js'), SCRIPT);
  t = await sampleGateway({
    metrics,
    extensions: [dashboardPlugin(dashboardDir, silentLogger())],
  });
  base = await t.gateway.app.listen({ host: '127.0.0.1', port: 0 });
});
after(async () => {
  await t.close();
  rmSync(dashboardDir, { recursive: true, force: true });
  const { sharedPostgres } = await import('../helpers/postgres.js');
  await (await sharedPostgres()).release();
});

interface Raw {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  /** The bytes on the wire (still encoded). */
  readonly body: Buffer;
}

/** One request over a real socket, the answer's bytes as sent. */
function raw(
  path: string,
  headers: Record<string, string> = {},
  options: { method?: string; body?: string } = {},
): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${base}${path}`,
      { method: options.method ?? 'GET', headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

/** The `count` of a JSON answer. */
const countOf = (b: Buffer): number => (JSON.parse(b.toString()) as { count: number }).count;

/** The answer's bytes decoded per its Content-Encoding. */
function decoded(r: Raw): Buffer {
  switch (r.headers['content-encoding']) {
    case undefined:
      return r.body;
    case 'gzip':
      return gunzipSync(r.body);
    case 'br':
      return brotliDecompressSync(r.body);
    default:
      throw new Error(`unexpected content-encoding ${String(r.headers['content-encoding'])}`);
  }
}

/** A Content-Length, when there is one, counts exactly the bytes sent. */
function lengthRight(r: Raw): void {
  const len = r.headers['content-length'];
  if (len !== undefined) assert.equal(Number(len), r.body.length);
  else assert.equal(r.headers['transfer-encoding'], 'chunked');
}

/**
 * Asks `path` without Accept-Encoding, then with gzip and with br: each compressed answer is
 * smaller and decodes to exactly the identity answer.
 */
async function compressesLikeIdentity(
  path: string,
  options: { method?: string; body?: string; headers?: Record<string, string> } = {},
): Promise<Buffer> {
  const h = options.headers ?? {};
  const plain = await raw(path, h, options);
  assert.equal(plain.status, 200, plain.body.toString());
  assert.equal(plain.headers['content-encoding'], undefined);
  lengthRight(plain);
  for (const encoding of ['gzip', 'br']) {
    const r = await raw(path, { ...h, 'accept-encoding': encoding }, options);
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-encoding'], encoding, `${path} in ${encoding}`);
    assert.match(String(r.headers.vary), /accept-encoding/i);
    assert.equal(r.headers['content-type'], plain.headers['content-type']);
    lengthRight(r);
    assert.ok(
      r.body.length < plain.body.length / 2,
      `${path}: ${r.body.length} bytes in ${encoding}`,
    );
    assert.ok(
      decoded(r).equals(plain.body),
      `${path} in ${encoding} decodes to the identity answer`,
    );
  }
  return plain.body;
}

const READINGS = '/api/v1/telemetry?limit=500';
const LATEST = '/api/v1/telemetry/latest';

describe('compressed answers', () => {
  it('REST readings: gzip and br decode to exactly the identity answer', async () => {
    const body = await compressesLikeIdentity(READINGS);
    assert.equal(countOf(body), 500);
  });

  it('follows Accept-Encoding: q values, q=0, identity, * and x-gzip', async () => {
    const cases: [string, string | undefined][] = [
      ['gzip, deflate, br', 'br'],
      ['gzip;q=1, br;q=0.5', 'gzip'],
      ['br;q=0, gzip', 'gzip'],
      ['gzip;q=0', undefined],
      ['br;q=0, gzip;q=0', undefined],
      ['identity', undefined],
      ['deflate', undefined],
      ['x-gzip', 'gzip'],
      ['*', 'gzip'],
    ];
    for (const [accept, expected] of cases) {
      const r = await raw(READINGS, { 'accept-encoding': accept });
      assert.equal(r.status, 200);
      assert.equal(r.headers['content-encoding'], expected, accept);
      assert.equal(countOf(decoded(r)), 500, accept);
    }
  });

  it('small answers are sent as they are', async () => {
    const r = await raw('/api/v1/clusters', { 'accept-encoding': 'gzip, br' });
    assert.equal(r.status, 200);
    assert.ok(r.body.length < 1024, `${r.body.length} bytes`);
    assert.equal(r.headers['content-encoding'], undefined);
    assert.equal(Number(r.headers['content-length']), r.body.length);
    assert.equal(countOf(r.body), 1);
  });

  it('errors keep the API error shape and status', async () => {
    for (const [path, status, code] of [
      ['/api/v1/telemetry?from=2025-07-19T00:00:00Z&to=2025-07-18T00:00:00Z', 400, 'BAD_REQUEST'],
      ['/api/v1/clusters/nope', 404, 'NOT_FOUND'],
      ['/api/v1/nothing-here', 404, 'NOT_FOUND'],
    ] as const) {
      const r = await raw(path, { 'accept-encoding': 'gzip, br' });
      assert.equal(r.status, status, path);
      lengthRight(r);
      const body = JSON.parse(decoded(r).toString()) as { code: string; statusCode: number };
      assert.equal(body.code, code, path);
      assert.equal(body.statusCode, status, path);
    }
  });

  it('HEAD answers the headers without a body', async () => {
    for (const accept of [undefined, 'gzip', 'br']) {
      const r = await raw(READINGS, accept === undefined ? {} : { 'accept-encoding': accept }, {
        method: 'HEAD',
      });
      assert.equal(r.status, 200, accept);
      assert.equal(r.body.length, 0);
      assert.match(String(r.headers['content-type']), /application\/json/);
    }
    const latest = await raw(LATEST, { 'accept-encoding': 'br' }, { method: 'HEAD' });
    assert.equal(latest.status, 200);
    assert.equal(latest.body.length, 0);
  });

  it('GraphQL, POST and GET', async () => {
    const query = '{ telemetry(cluster_id: "local-cluster", limit: 300) { host_id metric value } }';
    const post = await compressesLikeIdentity('/graphql', {
      method: 'POST',
      body: JSON.stringify({ query }),
      headers: { 'content-type': 'application/json' },
    });
    const answer = JSON.parse(post.toString()) as { data: { telemetry: unknown[] } };
    assert.equal(answer.data.telemetry.length, 300);
    const get = await compressesLikeIdentity(`/graphql?query=${encodeURIComponent(query)}`);
    assert.ok(get.equals(post));
  });

  it('/openapi.json, /metrics and the dashboard files', async () => {
    const doc = JSON.parse((await compressesLikeIdentity('/openapi.json')).toString()) as {
      paths: Record<string, unknown>;
    };
    assert.ok('/api/v1/telemetry/latest' in doc.paths);
    // The exposition changes from one scrape to the next (the HTTP metrics count the last one):
    // the same metrics in each encoding.
    const names = (b: Buffer): string[] =>
      b
        .toString()
        .split('\n')
        .filter((l) => l.startsWith('# HELP '))
        .sort();
    const plain = await raw('/metrics');
    assert.ok(names(plain.body).length > 20);
    for (const encoding of ['gzip', 'br']) {
      const r = await raw('/metrics', { 'accept-encoding': encoding });
      assert.equal(r.status, 200);
      assert.equal(r.headers['content-encoding'], encoding);
      assert.match(String(r.headers['content-type']), /^text\/plain/);
      lengthRight(r);
      assert.ok(r.body.length < plain.body.length / 2);
      assert.deepEqual(names(decoded(r)), names(plain.body));
    }
    assert.equal((await compressesLikeIdentity('/assets/app-X1.js')).toString(), SCRIPT);
  });
});

/** The hits and misses of the latest values' encoded answers so far. */
async function cache(): Promise<{ hit: number; miss: number }> {
  const text = await metrics.registry.metrics();
  const count = (result: string): number =>
    text
      .split('\n')
      .filter(
        (l) =>
          l.startsWith('nexus_gateway_encoded_cache_total{') && l.includes(`result="${result}"`),
      )
      .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
  return { hit: count('hit'), miss: count('miss') };
}

interface Latest {
  readings: { host_id: string; gpu_id: number; metric: string; value: number; timestamp: string }[];
  count: number;
}

/** A selection of its own (no other test warms its cache). */
const LATEST_CLUSTER = `${LATEST}?cluster_id=local-cluster`;

async function latest(accept: string): Promise<{ answer: Latest; bytes: Buffer; raw: Raw }> {
  const r = await raw(LATEST_CLUSTER, { 'accept-encoding': accept });
  assert.equal(r.status, 200);
  lengthRight(r);
  const bytes = decoded(r);
  return { answer: JSON.parse(bytes.toString()) as Latest, bytes, raw: r };
}

describe('latest values: encoded answers kept', () => {
  it('the same answer is served from the cache in each encoding, until a reading is committed', async () => {
    // The memory loads in the background; until then the store answers (new objects: a miss).
    let warm = false;
    for (let i = 0; i < 200 && !warm; i++) {
      const before = await cache();
      await latest('gzip');
      warm = (await cache()).hit > before.hit;
      if (!warm) await new Promise((r) => setTimeout(r, 25));
    }
    assert.ok(warm, 'the latest values came from memory');

    const identity = await latest('identity');
    assert.equal(identity.raw.headers['content-encoding'], undefined);
    assert.equal(identity.answer.count, 2470);

    let before = await cache();
    const gz = await latest('gzip');
    assert.equal(gz.raw.headers['content-encoding'], 'gzip');
    assert.ok(gz.bytes.equals(identity.bytes), 'gzip decodes to the identity answer');
    assert.deepEqual(await cache(), { hit: before.hit + 1, miss: before.miss });

    // The first br answer is compressed once, the next one reuses it.
    before = await cache();
    const br1 = await latest('br');
    assert.equal(br1.raw.headers['content-encoding'], 'br');
    assert.ok(br1.bytes.equals(identity.bytes), 'br decodes to the identity answer');
    const br2 = await latest('br');
    assert.ok(br2.raw.body.equals(br1.raw.body));
    assert.deepEqual(await cache(), { hit: before.hit + 1, miss: before.miss + 1 });

    // A committed reading: the next answer is built again and has it.
    const target = identity.answer.readings.find(
      (r) =>
        r.host_id === 'mtv5-dgx1-hgpu-031' && r.gpu_id === 0 && r.metric === 'DCGM_FI_DEV_GPU_TEMP',
    );
    assert.ok(target !== undefined);
    const record = {
      timestamp: Date.parse(target.timestamp) + 10_000,
      metric: target.metric,
      gpu: 0,
      hostname: target.host_id,
      value: target.value + 17,
      labels: {},
    };
    await t.store.write('local-cluster', [record]);
    await t.feed.publish('local-cluster', [record]);
    before = await cache();
    const fresh = await latest('gzip');
    const now = fresh.answer.readings.find(
      (r) => r.host_id === target.host_id && r.gpu_id === 0 && r.metric === target.metric,
    );
    assert.equal(now?.value, target.value + 17);
    assert.equal(now.timestamp, new Date(record.timestamp).toISOString());
    assert.equal(fresh.answer.count, 2470);
    const after = await cache();
    assert.equal(after.miss, before.miss + 1);
    assert.equal(after.hit, before.hit);
    // And that new answer is the one kept now.
    await latest('gzip');
    assert.deepEqual(await cache(), { hit: after.hit + 1, miss: after.miss });
  });
});
