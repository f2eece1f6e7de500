import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DEFAULT_GATEWAY, sampleGateway, type TestGateway } from '../helpers/gateway.js';
import { openSocket } from '../helpers/ws-client.js';

/**
 * Every bad input gets a 4xx (or a WebSocket error message) that says what is wrong; none a 500.
 */
let t: TestGateway;
let wsBase: string;
before(async () => {
  t = await sampleGateway({
    socket: {
      ...DEFAULT_GATEWAY.socket,
      maxBufferedBytes: 1 << 20,
      heartbeatMs: 15_000,
      maxSubscriptions: 3,
      slowClientMs: 30_000,
    },
  });
  wsBase = (await t.gateway.app.listen({ port: 0, host: '127.0.0.1' })).replace(/^http/, 'ws');
});
after(async () => {
  await t.close();
  const { sharedPostgres } = await import('../helpers/postgres.js');
  await (await sharedPostgres()).release();
});

const HOST = 'mtv5-dgx1-hgpu-031';
const C = '/api/v1/clusters/local-cluster';
const garbageCursor = Buffer.from(JSON.stringify({ not: 'a cursor' })).toString('base64url');

const rest: [string, string, number, RegExp][] = [
  ['unknown cluster', '/api/v1/clusters/nope', 404, /cluster "nope" not found/],
  ['unknown cluster stats', '/api/v1/clusters/nope/stats', 404, /cluster "nope" not found/],
  ['unknown cluster hosts', '/api/v1/clusters/nope/hosts', 404, /cluster "nope" not found/],
  ['unknown host', `${C}/hosts/no-such-host`, 404, /host "no-such-host" not found/],
  ['unknown host gpus', `${C}/hosts/no-such-host/gpus`, 404, /host "no-such-host" not found/],
  ['unknown GPU index', `${C}/hosts/${HOST}/gpus/99`, 404, /GPU 99 not found/],
  ['GPU id not a number', `${C}/hosts/${HOST}/gpus/abc`, 400, /gpu_id/],
  ['GPU id too large', `${C}/hosts/${HOST}/gpus/99999999`, 400, /gpu_id/],
  ['GPU metrics of unknown GPU', `${C}/hosts/${HOST}/gpus/42/metrics`, 404, /GPU 42 not found/],
  [
    'GPU metrics bad from',
    `${C}/hosts/${HOST}/gpus/0/metrics?from=soon`,
    400,
    /from: "soon" is not a time/,
  ],
  ['limit zero', '/api/v1/telemetry?limit=0', 400, /limit.*>= 1/],
  ['limit too large', '/api/v1/telemetry?limit=100001', 400, /limit.*<= 10000/],
  ['limit not a number', '/api/v1/telemetry?limit=lots', 400, /limit.*integer/],
  ['from not a time', '/api/v1/telemetry?from=yesterday', 400, /from: "yesterday" is not a time/],
  [
    'to an impossible date',
    '/api/v1/telemetry?to=2025-13-45T00:00:00Z',
    400,
    /to: .* is not a time/,
  ],
  [
    'relative time garbage',
    '/api/v1/telemetry?from=-xyz',
    400,
    /from: "-xyz" is not a relative time/,
  ],
  [
    'from after to',
    '/api/v1/telemetry?from=2025-07-19T00:00:00Z&to=2025-07-18T00:00:00Z',
    400,
    /from must be before to/,
  ],
  ['cursor not base64 JSON', '/api/v1/telemetry?cursor=%%%garbage', 400, /cursor/],
  [
    'cursor of the wrong shape',
    `/api/v1/telemetry?cursor=${garbageCursor}`,
    400,
    /cursor: not a cursor this API returned/,
  ],
  [
    'unknown metric',
    '/api/v1/telemetry?metric=NOT_A_METRIC',
    400,
    /unknown metric "NOT_A_METRIC"; known metrics: DCGM_FI_DEV_/,
  ],
  [
    'GPU id neither index nor uuid',
    '/api/v1/telemetry?gpu_id=x1',
    400,
    /gpu_id: "x1" is neither a GPU index/,
  ],
  ['step below 1s', '/api/v1/telemetry?from=-1h&step=1ms', 400, /below the smallest step/],
  [
    'step not a duration',
    '/api/v1/telemetry?from=-1h&step=often',
    400,
    /step: "often" is not a duration/,
  ],
  [
    'unknown aggregate',
    '/api/v1/telemetry?from=-1h&step=1m&agg=median',
    400,
    /querystring parameter "agg" must be one of avg, min, max, last/,
  ],
  ['agg without step', '/api/v1/telemetry?agg=max', 400, /agg needs a step/],
  ['step without from', '/api/v1/telemetry?step=1m', 400, /step needs from/],
  [
    'cursor with step',
    '/api/v1/telemetry?from=-1h&step=1m&cursor=abc',
    400,
    /cursor does not apply with step/,
  ],
  [
    'too many points',
    '/api/v1/telemetry?from=2000-01-01T00:00:00Z&to=2025-01-01T00:00:00Z&step=1s',
    400,
    /too many points/,
  ],
  [
    'telemetry of an unknown cluster',
    '/api/v1/telemetry?cluster_id=nope',
    404,
    /cluster "nope" not found/,
  ],
  [
    'unknown query parameter',
    '/api/v1/telemetry?colour=blue',
    400,
    /unknown querystring parameter "colour"/,
  ],
  [
    'latest with unknown metric',
    '/api/v1/telemetry/latest?metric=BOGUS',
    400,
    /unknown metric "BOGUS"/,
  ],
  [
    'latest with unknown parameter',
    '/api/v1/telemetry/latest?limit=5',
    400,
    /unknown querystring parameter "limit"/,
  ],
  [
    'a parameter that takes one value, given twice',
    '/api/v1/telemetry?limit=10000&limit=5',
    400,
    /query parameter "limit" is given 2 times; give it once/,
  ],
  ['unknown route', '/api/v1/nothing-here', 404, /no route GET \/api\/v1\/nothing-here/],
];

describe('bad input: REST', () => {
  for (const [name, url, status, message] of rest) {
    it(`${name}: ${status}`, async () => {
      const res = await t.gateway.app.inject({ method: 'GET', url });
      assert.equal(res.statusCode, status, res.body);
      const body = res.json<{ error: string; code: string; statusCode: number }>();
      assert.match(body.error, message);
      assert.equal(body.statusCode, status);
      assert.ok(body.code.length > 0);
    });
  }

  it('an oversized request body: 413', async () => {
    const res = await t.gateway.app.inject({
      method: 'POST',
      url: '/graphql',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({
        query: `{ clusters { cluster_id } } #${'x'.repeat(2 * 1024 * 1024)}`,
      }),
    });
    assert.equal(res.statusCode, 413);
    const body = res.json<{ error?: string; errors?: { message: string }[] }>();
    assert.match(body.error ?? body.errors?.[0]?.message ?? '', /body is too large/i);
  });
});

const graphql: [string, string, RegExp][] = [
  ['syntax error', '{ clusters { cluster_id ', /Syntax Error/],
  ['unknown field', '{ clusters { no_such_field } }', /Cannot query field "no_such_field"/],
  [
    'bad time argument',
    '{ telemetry(from: "yesterday") { value } }',
    /from: "yesterday" is not a time/,
  ],
];

describe('bad input: GraphQL', () => {
  for (const [name, query, message] of graphql) {
    it(`${name}: 4xx`, async () => {
      const res = await t.gateway.app.inject({
        method: 'POST',
        url: '/graphql',
        payload: { query },
      });
      assert.ok(res.statusCode >= 400 && res.statusCode < 500, `${res.statusCode}: ${res.body}`);
      const body = res.json<{ errors: { message: string }[] }>();
      assert.match(body.errors.map((e) => e.message).join('; '), message);
    });
  }
});

/** What is sent, the error it gets, and the subscription id that error names (when it has one). */
const ws: [string, (s: Awaited<ReturnType<typeof openSocket>>) => void, RegExp, string?][] = [
  ['not JSON', (s) => s.sendRaw('{"type": "subscribe"'), /message is not JSON/],
  ['binary frame', (s) => s.sendRaw(Buffer.from([1, 2, 3])), /binary messages are not supported/],
  ['unknown message type', (s) => s.send({ type: 'shout' }), /unknown message type "shout"/],
  [
    'unknown filter field',
    (s) => s.send({ type: 'subscribe', id: 'a', filter: { colour: 'blue' } }),
    /unknown field "filter.colour"/,
    'a',
  ],
  [
    'GPU id not a number',
    (s) => s.send({ type: 'subscribe', id: 'a', filter: { gpu_id: 'abc' } }),
    /filter.gpu_id must be a GPU index/,
    'a',
  ],
  [
    'a filter field with more than 1,000 values',
    (s) =>
      s.send({
        type: 'subscribe',
        id: 'a',
        filter: { host_id: Array.from({ length: 1001 }, (_, i) => `h${i}`) },
      }),
    /filters too large: 1001 values in filter.host_id; at most 1000 a field/,
    'a',
  ],
  [
    'bad metric name',
    (s) => s.send({ type: 'subscribe', id: 'a', filter: { metric: 'no spaces allowed' } }),
    /filter.metric must be a metric name/,
    'a',
  ],
  [
    'unsubscribe of nothing',
    (s) => s.send({ type: 'unsubscribe', id: 'ghost' }),
    /no subscription "ghost"/,
    'ghost',
  ],
  ['a message without a type', (s) => s.send({ id: 'x' }), /message needs a "type"/],
];

describe('bad input: WebSocket', () => {
  for (const [name, act, message, id] of ws) {
    it(`${name}: an error message, and the connection stays usable`, async () => {
      const s = await openSocket(`${wsBase}/ws?subscribe=none`);
      await s.waitFor((m) => m.type === 'welcome');
      act(s);
      const err = await s.waitFor((m) => m.type === 'error');
      assert.match(String(err.error), message);
      assert.equal(err.id, id);
      s.send({ type: 'ping' });
      await s.waitFor((m) => m.type === 'pong');
      await s.close();
    });
  }

  it('a duplicate subscription id and too many subscriptions are refused', async () => {
    const s = await openSocket(`${wsBase}/ws?subscribe=none`);
    s.send({ type: 'subscribe', id: 'one' });
    s.send({ type: 'subscribe', id: 'one' });
    assert.match(
      String((await s.waitFor((m) => m.type === 'error')).error),
      /subscription "one" already exists/,
    );
    s.send({ type: 'subscribe', id: 'two' });
    s.send({ type: 'subscribe', id: 'three' });
    s.send({ type: 'subscribe', id: 'four' });
    assert.match(
      String((await s.waitFor((m) => m.type === 'error' && m.id === 'four')).error),
      /at most 3 subscriptions/,
    );
    await s.close();
  });

  it('a bad filter in the URL is reported on connect', async () => {
    const s = await openSocket(`${wsBase}/ws?colour=blue`);
    assert.match(
      String((await s.waitFor((m) => m.type === 'error')).error),
      /unknown query parameter "colour"/,
    );
    await s.close();
  });
});
