import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import WebSocket from 'ws';
import { NexusMetrics } from '../../src/core/metrics.js';
import { sampleGateway, type TestGateway } from '../helpers/gateway.js';

/**
 * Hostile input, as a careless client or an attacker sends it (issue 13): types, overflows,
 * encodings, sizes, methods, headers, cursors, aliases, variables, fragments and frames, across
 * REST, GraphQL and WebSocket. For each: a 4xx with a JSON error naming the problem (or a 200 for
 * an odd input that is valid), or a clean close or an error frame, never a 5xx or a hang. The
 * gateway's heap is back near where it started once all have run.
 */
setFlagsFromString('--expose_gc');
const gc = runInNewContext('gc') as () => void;

let t: TestGateway;
let http: string;
let ws: string;
let heapBefore = 0;
const HOST = 'mtv5-dgx1-hgpu-031';
const C = '/api/v1/clusters/local-cluster';

before(async () => {
  t = await sampleGateway({
    metrics: new NexusMetrics({ component: 'gateway', processMetrics: false }),
    fleetMetrics: false,
  });
  http = await t.gateway.app.listen({ port: 0, host: '127.0.0.1' });
  ws = http.replace(/^http/, 'ws');
  // Warm up (schemas compiled, caches filled) before the baseline.
  await fetch(`${http}/api/v1/telemetry?limit=10`);
  await fetch(`${http}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{"query":"{ clusters { cluster_id } }"}',
  });
  gc();
  heapBefore = process.memoryUsage().heapUsed;
});

after(async () => {
  await t.close();
  const { sharedPostgres } = await import('../helpers/postgres.js');
  await (await sharedPostgres()).release();
});

const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
const long = (n: number, c = 'a'): string => c.repeat(n);

interface Answer {
  status: number;
  body: string;
  headers: Headers;
}

async function request(path: string, init: RequestInit = {}, timeoutMs = 10_000): Promise<Answer> {
  const res = await fetch(`${http}${path}`, { ...init, signal: AbortSignal.timeout(timeoutMs) });
  return { status: res.status, body: await res.text(), headers: res.headers };
}

/** A 4xx whose JSON error names the problem (REST shape, or GraphQL's errors). */
function refused(a: Answer, names: RegExp): void {
  assert.ok(a.status >= 400 && a.status < 500, `status ${a.status}: ${a.body.slice(0, 300)}`);
  const body = JSON.parse(a.body) as {
    error?: string;
    code?: string;
    errors?: { message: string; extensions?: { code?: string } }[];
  };
  const message = body.error ?? body.errors?.map((e) => e.message).join('; ') ?? '';
  assert.match(message, names, a.body.slice(0, 300));
  assert.ok((body.code ?? body.errors?.[0]?.extensions?.code ?? '') !== '', 'an error code');
}

// ---------------------------------------------------------------------------------------------
// REST: query parameters (400 naming the parameter), and odd values that are valid (200).

const restBad: [string, RegExp][] = [
  // limit: types and overflows
  ...['Infinity', '-Infinity', '1e400', 'NaN', '-1', '0', '10001', '1.5', 'abc', ' ', '1e5'].map(
    (v): [string, RegExp] => [`/api/v1/telemetry?limit=${encodeURIComponent(v)}`, /limit/],
  ),
  [`/api/v1/telemetry?limit=${long(400, '9')}`, /limit/],
  ['/api/v1/telemetry?limit=1&limit=2', /limit/],
  ['/api/v1/telemetry?limit=%00', /limit/],
  ['/api/v1/telemetry?limit=-0.0001', /limit/],
  // instants
  ...[
    '9999999999999999',
    '99999999999999999999',
    '1e400',
    'Infinity',
    'NaN',
    '-99999999999999999999d',
    '2025-02-30T00:00:00Z',
    '2025-07-18T25:00:00Z',
    '2025-07-18T20:42:34+25:00',
    '99999-01-01T00:00:00Z',
    'now-',
    'now+1h',
    '-1y',
    '--1h',
    long(5000, '1'),
    '%00',
    '２０２５-07-18T00:00:00Z',
  ].flatMap((v): [string, RegExp][] => [
    [`/api/v1/telemetry?to=${encodeURIComponent(v)}`, /to/],
    [`/api/v1/telemetry?from=${encodeURIComponent(v)}`, /from/],
  ]),
  ['/api/v1/telemetry?from=2030-01-01T00:00:00Z&to=2020-01-01T00:00:00Z', /from must be before to/],
  // steps
  ...[
    '0s',
    '1ms',
    '999ms',
    '367d',
    '99999999999999999999999d',
    '1e400s',
    '-1m',
    'NaN',
    'Infinity',
    '1x',
    long(1000, '9') + 's',
  ].map((v): [string, RegExp] => [
    `/api/v1/telemetry?from=-1h&step=${encodeURIComponent(v)}`,
    /step/,
  ]),
  ...['median', 'AVG', 'avg;drop', '', long(300)].map((v): [string, RegExp] => [
    `/api/v1/telemetry?from=-1h&step=1m&agg=${encodeURIComponent(v)}`,
    /agg/,
  ]),
  ['/api/v1/telemetry?from=2000-01-01T00:00:00Z&step=1s', /too many points/],
  // cursors: garbage, wrong shapes, ids and times out of range
  ...[
    b64([1, 1e300, 1, 1]),
    b64([1, 2 ** 63, 1, 1]),
    b64([1, 1, 2 ** 63, 1]),
    b64([1, 1, 1, 2 ** 63]),
    b64([1, -1, 1, 1]),
    b64([1, 1, 40000, 1]),
    b64([1, 1.5, 1, 1]),
    b64([2, 1, 1, 1]),
    b64([1, 1, 1]),
    b64([1, '1', 1, 1]),
    b64({ gpu: 1 }),
    b64(null),
    b64('x'),
    long(5000, 'A'),
    '%%%',
    '🙂🙂',
    Buffer.from('{"a":').toString('base64url'),
  ].map((v): [string, RegExp] => [`/api/v1/telemetry?cursor=${encodeURIComponent(v)}`, /cursor/]),
  // selections
  ...['-1', '99999', '1.5', '0x1', 'GPU-', 'GPU-<script>', long(300), '%00'].map(
    (v): [string, RegExp] => [`/api/v1/telemetry?gpu_id=${encodeURIComponent(v)}`, /gpu_id/],
  ),
  ...['NOT_A_METRIC', "'; DROP TABLE samples; --", long(1000), 'DCGM_FI_DEV_GPU_TEMP\u0000'].map(
    (v): [string, RegExp] => [`/api/v1/telemetry?metric=${encodeURIComponent(v)}`, /metric/],
  ),
  ['/api/v1/telemetry/latest?metric=%E2%80%AE', /metric/],
  ['/api/v1/telemetry?colour=blue', /unknown querystring parameter "colour"/],
  ['/api/v1/telemetry?__proto__=1', /unknown querystring parameter/],
  ['/api/v1/telemetry?constructor=1', /unknown querystring parameter "constructor"/],
  ['/api/v1/telemetry/latest?limit=5', /unknown querystring parameter "limit"/],
  ['/api/v1/telemetry?step=1m', /step needs from/],
  ['/api/v1/telemetry?agg=max', /agg needs a step/],
  ['/api/v1/telemetry?from=-1h&step=1m&cursor=abc', /cursor does not apply/],
  [`/api/v1/telemetry?cluster_id=${long(200)}`, /cluster_id/],
  // path parameters
  [`${C}/hosts/${HOST}/gpus/abc`, /gpu_id/],
  [`${C}/hosts/${HOST}/gpus/99999999`, /gpu_id/],
  [`${C}/hosts/${HOST}/gpus/-1`, /gpu_id/],
  [`${C}/hosts/${HOST}/gpus/1e3`, /gpu_id/],
  [`${C}/hosts/${HOST}/gpus/0/metrics?from=soon`, /from/],
  [`${C}/hosts/${HOST}/gpus/0/metrics?step=0s`, /step/],
  [`${C}/hosts/${HOST}/gpus/0/metrics?to=9999999999999999`, /to/],
  [`${C}/hosts/${HOST}/gpus/0/metrics?agg=mode&step=1m`, /agg/],
  [`${C}/hosts/${HOST}/gpus/0/metrics?bogus=1`, /unknown querystring parameter/],
  [`/api/v1/clusters/${long(400)}`, /longer than 300 characters/],
  [`/api/v1/clusters/${long(200)}/hosts`, /cluster_id/],
  [`${C}/hosts/${long(260)}`, /host_id/],
];

const restNotFound: string[] = [
  '/api/v1/clusters/nope',
  '/api/v1/clusters/%00',
  '/api/v1/clusters/..%2F..%2Fetc',
  '/api/v1/clusters/%F0%9F%99%82',
  `${C}/hosts/nope`,
  `${C}/hosts/${HOST}/gpus/42`,
  '/api/v1/nothing-here',
  '/api/v2/clusters',
  '/%2e%2e/%2e%2e/etc/passwd',
  '/api/v1/telemetry?cluster_id=nope',
];

/** Odd inputs that are valid: they must work, not fail. */
const restOddButValid: string[] = [
  '/api/v1/telemetry?limit=1e3',
  '/api/v1/telemetry?limit=0x10',
  '/api/v1/telemetry?limit=10000',
  '/api/v1/telemetry?limit=%201%20',
  '/api/v1/telemetry?from=-99999999d',
  '/api/v1/telemetry?from=000000000000&to=253402300799999',
  '/api/v1/telemetry?from=0001-01-01T00:00:00Z',
  '/api/v1/telemetry?to=9999-12-31T23:59:59.999Z',
  '/api/v1/telemetry?host_id=,,,',
  `/api/v1/telemetry?host_id=${long(253)}`,
  '/api/v1/telemetry?metric=GPU_TEMP,GPU_TEMP,GPU_TEMP',
  '/api/v1/telemetry?from=-1h&step=366d',
  `/api/v1/telemetry?cursor=${b64([1, 0, 0, 0])}`,
];

describe('hostile input: REST parameters', { timeout: 120_000 }, () => {
  for (const [path, names] of restBad) {
    it(`400 ${path.slice(0, 90)}`, async () => {
      const a = await request(path);
      assert.equal(a.status, 400, a.body.slice(0, 300));
      refused(a, names);
    });
  }
  for (const path of restNotFound) {
    it(`404 ${path.slice(0, 90)}`, async () => {
      const a = await request(path);
      assert.equal(a.status, 404, a.body.slice(0, 300));
      refused(a, /not found|no route/);
    });
  }
  for (const path of restOddButValid) {
    it(`200 ${path.slice(0, 90)}`, async () => {
      const a = await request(path);
      assert.equal(a.status, 200, a.body.slice(0, 300));
    });
  }
});

// ---------------------------------------------------------------------------------------------
// HTTP: methods, headers, bodies, sizes.

describe('hostile input: HTTP methods, headers and bodies', { timeout: 120_000 }, () => {
  for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
    for (const path of ['/api/v1/clusters', '/api/v1/telemetry', '/healthz']) {
      it(`${method} ${path}: 404, not a 5xx`, async () => {
        const a = await request(path, { method });
        assert.equal(a.status, 404, a.body);
        refused(a, /no route/);
      });
    }
  }
  it('x-request-id: a valid one is echoed; one too long or with odd characters is replaced', async () => {
    assert.equal(
      (await request('/healthz', { headers: { 'x-request-id': 'abc-123' } })).headers.get(
        'x-request-id',
      ),
      'abc-123',
    );
    for (const given of [long(129), 'a b', 'a\tb', '<script>', '../../x', 'é']) {
      const echoed =
        (await request('/healthz', { headers: { 'x-request-id': given } })).headers.get(
          'x-request-id',
        ) ?? '';
      assert.notEqual(echoed, given);
      assert.match(echoed, /^[0-9a-f-]{36}$/);
    }
  });
  it('an 8 KB x-request-id is neither echoed nor an error', async () => {
    const a = await request('/healthz', { headers: { 'x-request-id': long(8000) } });
    assert.equal(a.status, 200);
    assert.ok((a.headers.get('x-request-id') ?? '').length <= 128);
  });
  const bodies: [string, string, string, RegExp][] = [
    ['invalid JSON', 'application/json', '{"query": ', /JSON/],
    ['JSON null', 'application/json', 'null', /JSON object/],
    ['JSON number', 'application/json', '5', /JSON object/],
    ['JSON string', 'application/json', '"{ clusters { cluster_id } }"', /JSON object/],
    ['a batch', 'application/json', '[{"query":"{ clusters { cluster_id } }"}]', /batched/],
    [
      'prototype pollution',
      'application/json',
      '{"__proto__":{"admin":true},"query":"{ clusters { cluster_id } }"}',
      /./,
    ],
    [
      'constructor pollution',
      'application/json',
      '{"constructor":{"prototype":{"admin":true}},"query":"{ clusters { cluster_id } }"}',
      /./,
    ],
    [
      'a form',
      'application/x-www-form-urlencoded',
      'query=%7B%7D',
      /content-type|Content-Type|Unsupported/i,
    ],
    ['XML', 'application/xml', '<query/>', /content-type|Content-Type|Unsupported/i],
    ['a 2 MB body', 'application/json', `{"query":"${long(2 << 20, ' ')}"}`, /too large/i],
    ['invalid UTF-8', 'application/json', '{"query":"\udc00"}', /./],
  ];
  for (const [name, type, body, names] of bodies) {
    it(`POST /graphql with ${name}: 4xx`, async () => {
      const a = await request('/graphql', {
        method: 'POST',
        headers: { 'content-type': type },
        body,
      });
      refused(a, names);
    });
  }
  it('deeply nested JSON in the variables is parsed and ignored, not a crash', async () => {
    const a = await request('/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: `{"query":"{ clusters { cluster_id } }","variables":${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}}`,
    });
    assert.equal(a.status, 200, a.body.slice(0, 300));
  });
  it('a request that never finishes its body is timed out or dropped, not held forever', async () => {
    const a = await request('/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': '10' },
      body: '{}',
    }).catch((err: unknown) => ({ status: 0, body: String(err), headers: new Headers() }));
    assert.ok(a.status === 0 || (a.status >= 400 && a.status < 500), `${a.status} ${a.body}`);
  });
});

// ---------------------------------------------------------------------------------------------
// GraphQL: documents, arguments, variables, aliases, fragments, introspection.

interface Gql {
  query?: unknown;
  variables?: unknown;
  operationName?: unknown;
}

async function graphql(body: Gql): Promise<Answer> {
  return request('/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

const aliases = (n: number, field: string): string =>
  `{ ${Array.from({ length: n }, (_, i) => `a${i}: ${field}`).join(' ')} }`;
const fragments = (n: number): string =>
  `{ clusters { ...F0 } } ${Array.from({ length: n }, (_, i) => `fragment F${i} on Cluster { cluster_id ${i + 1 < n ? `...F${i + 1}` : ''} }`).join(' ')}`;

const gqlBad: [string, Gql, RegExp][] = [
  ['query a number', { query: 5 }, /"query" must be a string/],
  ['query an object', { query: { a: 1 } }, /"query" must be a string/],
  ['query an array', { query: ['{ clusters { cluster_id } }'] }, /"query" must be a string/],
  ['query true', { query: true }, /"query" must be a string/],
  ['no query', {}, /no query/],
  ['query null', { query: null }, /must be a string|no query/],
  ['empty query', { query: '' }, /no query|Syntax Error|must be/],
  [
    'variables a string',
    { query: '{ clusters { cluster_id } }', variables: 'x' },
    /"variables" must be an object/,
  ],
  [
    'variables an array',
    { query: '{ clusters { cluster_id } }', variables: [1] },
    /"variables" must be an object/,
  ],
  [
    'operationName a number',
    { query: '{ clusters { cluster_id } }', operationName: 7 },
    /"operationName" must be a string/,
  ],
  [
    'operationName unknown',
    { query: 'query A { clusters { cluster_id } }', operationName: 'B' },
    /Unknown operation named "B"/,
  ],
  [
    'two operations, no name',
    { query: 'query A { clusters { cluster_id } } query B { metrics { name } }' },
    /Must provide operation name/,
  ],
  ['syntax error', { query: '{ clusters { cluster_id ' }, /Syntax Error/],
  ['unknown field', { query: '{ clusters { nope } }' }, /Cannot query field "nope"/],
  ['mutation', { query: 'mutation { x }' }, /mutation|Schema is not configured/i],
  ['subscription over HTTP', { query: 'subscription { telemetry { value } }' }, /WebSocket/],
  ['unknown directive', { query: '{ clusters @evil { cluster_id } }' }, /Unknown directive/],
  [
    'include with a wrong variable',
    {
      query: 'query($x: String) { clusters @include(if: $x) { cluster_id } }',
      variables: { x: 'y' },
    },
    /Boolean|type/,
  ],
  [
    'query too long',
    { query: `{ clusters { cluster_id } }${long(20_001, ' ')}` },
    /characters long; the limit is 20000/,
  ],
  [
    'too deep',
    {
      query:
        '{ clusters { hosts { cluster { hosts { cluster { hosts { cluster { hosts { host_id } } } } } } } } }',
    },
    /depth/,
  ],
  [
    'too costly by estimate',
    { query: '{ clusters { hosts { gpus { latest { metric value } } } } }' },
    /query cost \d+ exceeds/,
  ],
  ['490 aliases of latest', { query: aliases(490, 'latest { value }') }, /query cost/],
  [
    '200 aliases of a page of 100',
    { query: aliases(200, 'telemetry(limit: 100) { value }') },
    /query cost/,
  ],
  [
    '40 aliases of latest, under the estimate, over the budget',
    { query: aliases(40, 'latest { value }') },
    /cost passed the maximum|query cost/,
  ],
  [
    'a limit given as a variable default',
    {
      query:
        'query($l: Int = 10000) { telemetry(limit: $l) { cluster_id host_id gpu_id uuid metric unit timestamp value } }',
    },
    /query cost/,
  ],
  [
    'a limit given as a variable',
    { query: 'query($l: Int) { telemetry(limit: $l) { data } }', variables: { l: 10_000 } },
    /query cost/,
  ],
  [
    'fragment cycle',
    {
      query: '{ clusters { ...A } } fragment A on Cluster { ...B } fragment B on Cluster { ...A }',
    },
    /Cannot spread fragment/,
  ],
  [
    'aliased fragment bomb (2^30 fields)',
    {
      query: `{ hosts(cluster_id: "local-cluster") { ...A30 } } fragment A0 on Host { host_id } ${Array.from(
        { length: 30 },
        (_, i) =>
          `fragment A${i + 1} on Host { cluster { x: hosts { ...A${i} } y: hosts { ...A${i} } } }`,
      ).join(' ')}`,
    },
    /depth|query cost/,
  ],
  [
    'unused fragment',
    { query: '{ clusters { cluster_id } } fragment U on Cluster { cluster_id }' },
    /never used/,
  ],
  [
    'nested introspection',
    {
      query:
        '{ __schema { types { fields { type { fields { type { fields { type { fields { name } } } } } } } } } }',
    },
    /cost|depth/,
  ],
  ['limit as a Float', { query: '{ telemetry(limit: 1e400) { value } }' }, /Int cannot represent/],
  [
    'limit over 32 bits',
    { query: '{ telemetry(limit: 2147483648) { value } }' },
    /Int cannot represent/,
  ],
  ['limit negative', { query: '{ telemetry(limit: -1) { value } }' }, /limit/],
  ['limit zero', { query: '{ telemetry(limit: 0) { value } }' }, /limit/],
  ['limit too large', { query: '{ telemetryPage(limit: 10001) { count } }' }, /limit/],
  [
    'limit variable a Float',
    { query: 'query($l: Int) { telemetry(limit: $l) { value } }', variables: { l: 1.5 } },
    /Int cannot represent|\$l/,
  ],
  [
    'limit variable a string',
    { query: 'query($l: Int) { telemetry(limit: $l) { value } }', variables: { l: 'Infinity' } },
    /Int cannot represent|\$l/,
  ],
  [
    'limit variable huge',
    { query: 'query($l: Int) { telemetry(limit: $l) { value } }', variables: { l: 1e300 } },
    /Int cannot represent|\$l/,
  ],
  [
    'gpu_id over 32 bits',
    { query: '{ gpu(cluster_id: "local-cluster", host_id: "h", gpu_id: 99999999999) { uuid } }' },
    /Int cannot represent/,
  ],
  [
    'gpu_id negative',
    { query: '{ gpu(cluster_id: "local-cluster", host_id: "h", gpu_id: -1) { uuid } }' },
    /gpu_id/,
  ],
  [
    'gpu_id in a filter out of range',
    { query: '{ telemetry(gpu_id: [40000]) { value } }' },
    /gpu_id/,
  ],
  [
    'cursor of 1e300',
    { query: `{ telemetry(cursor: "${b64([1, 1e300, 1, 1])}") { value } }` },
    /cursor/,
  ],
  [
    'cursor of 2^63',
    { query: `{ telemetry(cursor: "${b64([1, 1, 1, 2 ** 63])}") { value } }` },
    /cursor/,
  ],
  ['cursor garbage', { query: '{ telemetryPage(cursor: "%%%") { count } }' }, /cursor/],
  ['to out of range', { query: '{ telemetry(to: "9999999999999999") { value } }' }, /to/],
  ['from not a time', { query: '{ telemetry(from: "yesterday") { value } }' }, /from/],
  [
    'from after to',
    { query: '{ telemetry(from: "2030-01-01T00:00:00Z", to: "2020-01-01T00:00:00Z") { value } }' },
    /from must be before to/,
  ],
  [
    'step huge',
    { query: '{ series(from: "-1h", step: "99999999999999999999999d") { step } }' },
    /step/,
  ],
  ['step too small', { query: '{ series(from: "-1h", step: "1ms") { step } }' }, /step/],
  [
    'series of too many points',
    { query: '{ series(from: "2000-01-01T00:00:00Z", step: "1s") { step } }' },
    /too many points/,
  ],
  ['unknown metric', { query: '{ telemetry(metric: ["NOPE"]) { value } }' }, /unknown metric/],
  ['empty host list', { query: '{ telemetry(host_id: []) { value } }' }, /host_id/],
  [
    '2,000 hosts',
    {
      query: 'query($h: [String!]) { telemetry(host_id: $h) { value } }',
      variables: { h: Array.from({ length: 2000 }, (_, i) => `h${i}`) },
    },
    /host_id/,
  ],
  [
    'cluster id too long',
    { query: `{ telemetry(cluster_id: "${long(200)}") { value } }` },
    /cluster_id/,
  ],
  ['unknown cluster', { query: '{ hosts(cluster_id: "nope") { host_id } }' }, /not found/],
  [
    'unknown aggregate',
    { query: '{ series(from: "-1h", step: "1m", agg: median) { step } }' },
    /Aggregate|median/,
  ],
  [
    'a variable of the wrong type',
    { query: 'query($c: Int) { cluster(cluster_id: $c) { cluster_id } }', variables: { c: 1 } },
    /Variable "\$c"/,
  ],
  [
    'an undefined variable',
    { query: '{ cluster(cluster_id: $c) { cluster_id } }' },
    /Variable "\$c" is not defined/,
  ],
  [
    'a required variable missing',
    { query: 'query($c: String!) { cluster(cluster_id: $c) { cluster_id } }' },
    /Variable "\$c"/,
  ],
];

describe('hostile input: GraphQL', { timeout: 120_000 }, () => {
  for (const [name, body, names] of gqlBad) {
    it(`4xx: ${name}`, async () => {
      refused(await graphql(body), names);
    });
  }
  const getBad: [string, RegExp][] = [
    ['?query=%7B', /Syntax Error/],
    ['?query=a&query=b', /once|string/],
    ['?query=%7Bclusters%7Bcluster_id%7D%7D&variables=notjson', /"variables" is not JSON/],
    [
      '?query=%7Bclusters%7Bcluster_id%7D%7D&variables=%5B1%5D',
      /"variables" must be a JSON object/,
    ],
    ['?query=subscription%7Btelemetry%7Bvalue%7D%7D', /WebSocket/],
  ];
  for (const [qs, names] of getBad) {
    it(`4xx: GET /graphql${qs}`, async () => {
      refused(await request(`/graphql${qs}`), names);
    });
  }
  const oddButValid: [string, string][] = [
    [
      'a fragment spread twice at each of 30 levels (runs once)',
      `{ clusters { ...F30 } } fragment F0 on Cluster { cluster_id } ${Array.from({ length: 30 }, (_, i) => `fragment F${i + 1} on Cluster { ...F${i} ...F${i} }`).join(' ')}`,
    ],
    ['a chain of 300 fragments', fragments(300)],
    [
      'ofType 40 deep',
      `{ __type(name: "Query") { ${'ofType { '.repeat(40)}name${' }'.repeat(40)} } }`,
    ],
    ['the same field 500 times', `{ clusters { ${'cluster_id '.repeat(500)} } }`],
    ['__typename everywhere', '{ __typename clusters { __typename cluster_id } }'],
  ];
  for (const [name, query] of oddButValid) {
    it(`200: ${name}`, async () => {
      const a = await graphql({ query });
      assert.equal(a.status, 200, a.body.slice(0, 300));
    });
  }
  it('the answer stays bounded: a large valid query costs what it returns', async () => {
    const a = await graphql({ query: '{ telemetry(limit: 10000) { value } }' });
    assert.equal(a.status, 200);
    assert.ok(a.body.length < 8 << 20);
  });
});

// ---------------------------------------------------------------------------------------------
// WebSocket: frames and filters.

interface Frames {
  readonly socket: WebSocket;
  readonly messages: Record<string, unknown>[];
  next(
    pred: (m: Record<string, unknown>) => boolean,
    ms?: number,
  ): Promise<Record<string, unknown>>;
  closed: Promise<{ code: number; reason: string }>;
}

async function connect(path: string, protocol?: string): Promise<Frames> {
  const socket =
    protocol === undefined
      ? new WebSocket(`${ws}${path}`)
      : new WebSocket(`${ws}${path}`, protocol);
  const messages: Record<string, unknown>[] = [];
  socket.on('message', (d: Buffer) => {
    try {
      messages.push(JSON.parse(d.toString()) as Record<string, unknown>);
    } catch {
      messages.push({ raw: d.toString() });
    }
  });
  socket.on('error', () => undefined);
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    socket.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
  );
  await new Promise((r) => socket.once('open', r));
  return {
    socket,
    messages,
    closed,
    next: async (pred, ms = 5000) => {
      for (let waited = 0; waited < ms; waited += 10) {
        const m = messages.find(pred);
        if (m !== undefined) return m;
        await sleep(10);
      }
      throw new Error(`no matching frame in ${ms} ms: ${JSON.stringify(messages.slice(-3))}`);
    },
  };
}

const wsBad: [string, string | Buffer, RegExp][] = [
  ['not JSON', '{"type": "subscribe"', /not JSON/],
  ['JSON null', 'null', /needs a "type"/],
  ['JSON array', '[]', /needs a "type"/],
  ['JSON string', '"subscribe"', /needs a "type"/],
  ['JSON number', '42', /needs a "type"/],
  ['binary frame', Buffer.from([1, 2, 3]), /binary messages are not supported/],
  ['no type', '{"id":"x"}', /needs a "type"/],
  ['unknown type', '{"type":"shout"}', /unknown message type/],
  ['type not a string', '{"type":{"$ne":1}}', /unknown message type/],
  ['a very long type', JSON.stringify({ type: long(10_000) }), /unknown message type/],
  ['extra field on ping', '{"type":"ping","x":1}', /unknown field "x" in the message/],
  ['subscribe: id too long', JSON.stringify({ type: 'subscribe', id: long(65) }), /id/],
  ['subscribe: id a number', '{"type":"subscribe","id":7}', /id/],
  ['subscribe: filter not an object', '{"type":"subscribe","id":"a","filter":"all"}', /filter/],
  [
    'subscribe: unknown filter field',
    '{"type":"subscribe","id":"a","filter":{"colour":"blue"}}',
    /unknown field "filter.colour"/,
  ],
  [
    'subscribe: gpu_id a string',
    '{"type":"subscribe","id":"a","filter":{"gpu_id":"x"}}',
    /filter.gpu_id/,
  ],
  [
    'subscribe: gpu_id negative',
    '{"type":"subscribe","id":"a","filter":{"gpu_id":-1}}',
    /filter.gpu_id/,
  ],
  [
    'subscribe: gpu_id too large',
    '{"type":"subscribe","id":"a","filter":{"gpu_id":99999}}',
    /filter.gpu_id/,
  ],
  [
    'subscribe: gpu_id a fraction',
    '{"type":"subscribe","id":"a","filter":{"gpu_id":1.5}}',
    /filter.gpu_id/,
  ],
  [
    'subscribe: gpu_id 1e400',
    '{"type":"subscribe","id":"a","filter":{"gpu_id":1e400}}',
    /filter.gpu_id/,
  ],
  [
    'subscribe: host_id a number',
    '{"type":"subscribe","id":"a","filter":{"host_id":5}}',
    /filter.host_id/,
  ],
  [
    'subscribe: host_id empty list',
    '{"type":"subscribe","id":"a","filter":{"host_id":[]}}',
    /filter.host_id/,
  ],
  [
    'subscribe: host_id too long',
    JSON.stringify({ type: 'subscribe', id: 'a', filter: { host_id: long(300) } }),
    /filter.host_id/,
  ],
  [
    'subscribe: 1,001 hosts',
    JSON.stringify({
      type: 'subscribe',
      id: 'a',
      filter: { host_id: Array.from({ length: 1001 }, (_, i) => `h${i}`) },
    }),
    /filter.host_id/,
  ],
  [
    'subscribe: metric with spaces',
    '{"type":"subscribe","id":"a","filter":{"metric":"a b"}}',
    /filter.metric/,
  ],
  [
    'subscribe: metric with a quote',
    `{"type":"subscribe","id":"a","filter":{"metric":"x'--"}}`,
    /filter.metric/,
  ],
  [
    'subscribe: cluster_id empty',
    '{"type":"subscribe","id":"a","filter":{"cluster_id":""}}',
    /filter.cluster_id/,
  ],
  [
    'subscribe: cluster_id too long',
    JSON.stringify({ type: 'subscribe', id: 'a', filter: { cluster_id: long(200) } }),
    /filter.cluster_id/,
  ],
  [
    'subscribe: uuid a list of numbers',
    '{"type":"subscribe","id":"a","filter":{"uuid":[1,2]}}',
    /filter.uuid/,
  ],
  [
    'subscribe: __proto__ filter',
    '{"type":"subscribe","id":"a","filter":{"__proto__":{"x":1}}}',
    /unknown field|filter/,
  ],
  ['unsubscribe: unknown id', '{"type":"unsubscribe","id":"ghost"}', /no subscription "ghost"/],
  ['unsubscribe: no id', '{"type":"unsubscribe"}', /id|message/],
  [
    'deeply nested JSON',
    `{"type":"ping","x":${'['.repeat(3000)}${']'.repeat(3000)}}`,
    /unknown field "x" in the message/,
  ],
];

describe('hostile input: WebSocket /ws', { timeout: 120_000 }, () => {
  for (const [name, frame, names] of wsBad) {
    it(`an error frame, and the connection stays usable: ${name}`, async () => {
      const s = await connect('/ws?subscribe=none');
      await s.next((m) => m.type === 'welcome');
      s.socket.send(frame);
      const err = await s.next((m) => m.type === 'error');
      assert.match(String(err.error), names);
      assert.equal(err.code, 'BAD_REQUEST');
      s.socket.send('{"type":"ping"}');
      await s.next((m) => m.type === 'pong');
      s.socket.close();
    });
  }
  const closes: [string, string | Buffer, number][] = [
    ['invalid UTF-8 in a text frame', Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), 1007],
    ['a frame over 64 KiB', `{"type":"ping","pad":"${long(70_000)}"}`, 1009],
  ];
  for (const [name, frame, code] of closes) {
    it(`a clean close (${code}): ${name}`, async () => {
      const s = await connect('/ws?subscribe=none');
      s.socket.send(frame, { binary: false });
      assert.equal((await s.closed).code, code);
    });
  }
  const urls: [string, RegExp][] = [
    ['/ws?colour=blue', /unknown query parameter "colour"/],
    ['/ws?gpu_id=x', /filter.gpu_id/],
    ['/ws?gpu_id=99999', /filter.gpu_id/],
    [`/ws?host_id=${long(300)}`, /filter.host_id/],
    ['/ws?metric=a%20b', /filter.metric/],
    ['/ws?cluster_id=', /filter.cluster_id/],
  ];
  for (const [path, names] of urls) {
    it(`an error frame for a bad URL filter: ${path.slice(0, 60)}`, async () => {
      const s = await connect(path);
      assert.match(String((await s.next((m) => m.type === 'error')).error), names);
      s.socket.close();
    });
  }
});

describe('hostile input: GraphQL over WebSocket', { timeout: 120_000 }, () => {
  it('a connection without the graphql-ws protocol is closed cleanly', async () => {
    const s = await connect('/graphql');
    assert.ok([1002, 4406].includes((await s.closed).code));
  });
  const frames: [string, string, RegExp][] = [
    [
      'a query too costly',
      JSON.stringify({
        id: '1',
        type: 'subscribe',
        payload: {
          query: `subscription { telemetryBatch { readings { ${Array.from({ length: 600 }, (_, i) => `a${i}: value`).join(' ')} } } }`,
        },
      }),
      /query cost/,
    ],
    [
      'a bad filter',
      JSON.stringify({
        id: '2',
        type: 'subscribe',
        payload: { query: 'subscription { telemetry(gpu_id: [-1]) { value } }' },
      }),
      /gpu_id/,
    ],
    [
      'an unknown field',
      JSON.stringify({ id: '3', type: 'subscribe', payload: { query: 'subscription { nope }' } }),
      /Cannot query field/,
    ],
    [
      'a syntax error',
      JSON.stringify({ id: '4', type: 'subscribe', payload: { query: 'subscription {' } }),
      /Syntax Error/,
    ],
    [
      'a query over 20,000 characters',
      JSON.stringify({
        id: '5',
        type: 'subscribe',
        payload: { query: `subscription { telemetry { value } }${long(20_001, ' ')}` },
      }),
      /characters long/,
    ],
  ];
  for (const [name, frame, names] of frames) {
    it(`an error for ${name}, never a crash`, async () => {
      const s = await connect('/graphql', 'graphql-transport-ws');
      s.socket.send('{"type":"connection_init"}');
      await s.next((m) => m.type === 'connection_ack');
      s.socket.send(frame);
      const reply = await Promise.race([
        s.next((m) => m.type === 'error' || m.type === 'next'),
        s.closed.then((c) => ({ type: 'closed', ...c })),
      ]);
      assert.ok(
        reply.type === 'error' || reply.type === 'closed' || reply.type === 'next',
        JSON.stringify(reply),
      );
      if (reply.type === 'error') assert.match(JSON.stringify(reply), names);
      s.socket.close();
    });
  }
  for (const [name, frame] of [
    ['not JSON', '{'],
    ['an unknown message type', '{"type":"shout"}'],
    ['a message of 60 KB', `{"type":"${long(60_000)}"}`],
    [
      'subscribe before init',
      JSON.stringify({
        id: '1',
        type: 'subscribe',
        payload: { query: 'subscription { telemetry { value } }' },
      }),
    ],
  ] as const) {
    it(`an error frame or a clean close for ${name}`, async () => {
      const s = await connect('/graphql', 'graphql-transport-ws');
      s.socket.send(frame);
      const reply = await Promise.race([
        s.next((m) => m.type === 'error' || m.type === 'connection_error'),
        s.closed.then((c) => ({ type: 'closed', ...c })),
      ]);
      if (reply.type === 'closed')
        assert.ok(![1006, 1011].includes(Number(reply.code)), JSON.stringify(reply));
      s.socket.close();
    });
  }
});

describe('after all hostile input', () => {
  it('the gateway answers health and real queries, and its heap is back near where it started', async () => {
    assert.equal((await request('/healthz')).status, 200);
    const a = await graphql({ query: '{ clusters { cluster_id } }' });
    assert.equal(a.status, 200, a.body);
    for (let i = 0; i < 3; i++) {
      gc();
      await sleep(50);
    }
    const grown = process.memoryUsage().heapUsed - heapBefore;
    assert.ok(grown < 64 << 20, `the heap grew by ${Math.round(grown / 1048576)} MB`);
  });
});
