/**
 * GPU events pushed live: WebSocket /ws subscriptions of kind `events` and the GraphQL
 * subscription, fed by the gateway's poll of the events table (docs/fleet.md, "Events").
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sampleGateway, type TestGateway } from '../helpers/gateway.js';
import { openSocket } from '../helpers/ws-client.js';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { SECOND, T0 } from '../conformance/store-fixtures.js';
import { THROTTLE, XID, series } from '../conformance/store-events.js';

let t: TestGateway;
let base: string;
before(async () => {
  t = await sampleGateway({ eventPoller: { intervalMs: 100 } });
  const address = await t.gateway.app.listen({ port: 0, host: '127.0.0.1' });
  base = address.replace(/^http/, 'ws');
});
after(async () => {
  await t.close();
  const { sharedPostgres } = await import('../helpers/postgres.js');
  await (await sharedPostgres()).release();
});

describe('live GPU events', () => {
  it('/ws: a subscription of kind events receives each matching event once, as recorded', async () => {
    const s = await openSocket(`${base}/ws?subscribe=none`);
    s.send({
      type: 'subscribe',
      id: 'xids',
      kind: 'events',
      filter: { cluster_id: 'live-1', type: ['xid'], host_id: 'node-a' },
    });
    await s.waitFor((m) => m.type === 'subscribed' && m.id === 'xids');
    await t.store.write('live-1', [
      ...series(XID, [0, 79, 79, 48], { hostname: 'node-a', gpu: 2 }),
      ...series(XID, [31], { hostname: 'node-b', gpu: 0 }), // another host
      ...series(THROTTLE, [0x40], { hostname: 'node-a', gpu: 2 }), // another type
    ]);
    await t.store.write('live-2', series(XID, [79], { hostname: 'node-a' })); // another cluster
    const second = await s.waitFor(
      (m) => m.type === 'event' && (m.event as { code: number }).code === 48,
    );
    assert.equal(second.id, 'xids');
    // A later poll must not send them again.
    await new Promise((r) => setTimeout(r, 500));
    const got = s.messages
      .filter((m) => m.type === 'event')
      .map(
        (m) =>
          m.event as { type: string; host_id: string; gpu_id: number; code: number; time: string },
      );
    assert.deepEqual(
      got.map((e) => [e.type, e.host_id, e.gpu_id, e.code, e.time]),
      [
        ['xid', 'node-a', 2, 79, new Date(T0 + 10 * SECOND).toISOString()],
        ['xid', 'node-a', 2, 48, new Date(T0 + 30 * SECOND).toISOString()],
      ],
    );
    await s.close();
  });

  it('/ws: bad events filters are refused with a message', async () => {
    const s = await openSocket(`${base}/ws?subscribe=none`);
    s.send({ type: 'subscribe', id: 'a', kind: 'events', filter: { type: 'fire' } });
    const e1 = await s.waitFor((m) => m.type === 'error');
    assert.match(String(e1.error), /filter.type must be an event type/);
    s.send({ type: 'subscribe', id: 'b', kind: 'events', filter: { metric: 'X' } });
    const e2 = await s.waitFor((m) => m.type === 'error' && m.id === 'b');
    assert.match(
      String(e2.error),
      /an events subscription filters by cluster_id, host_id, gpu_id and type/,
    );
    s.send({ type: 'subscribe', id: 'c', filter: { type: 'xid' } });
    const e3 = await s.waitFor((m) => m.type === 'error' && m.id === 'c');
    assert.match(String(e3.error), /filter.type is for subscriptions of kind "events"/);
    await s.close();
  });

  it('GraphQL: cluster(id) { events(...) } answers the REST page; retired_gpu_count', async () => {
    await t.store.write('gql-1', [
      ...series(XID, [0, 79], { hostname: 'node-a', gpu: 0 }),
      ...series(XID, [13], { hostname: 'node-b', gpu: 1 }),
    ]);
    const from = new Date(T0 - 3600 * SECOND).toISOString();
    const to = new Date(T0 + 3600 * SECOND).toISOString();
    const res = await t.gateway.app.inject({
      method: 'POST',
      url: '/graphql',
      payload: {
        query: `{ cluster(cluster_id: "gql-1") { retired_gpu_count events(type: [xid], from: "${from}", to: "${to}", limit: 1) {
          counts { xid health } events { type host_id gpu_id code message time } next_cursor } } }`,
      },
    });
    assert.equal(res.statusCode, 200, res.body.slice(0, 300));
    const body = res.json<{
      data: {
        cluster: {
          retired_gpu_count: number;
          events: {
            counts: { xid: number; health: number };
            events: {
              type: string;
              host_id: string;
              gpu_id: number;
              code: number;
              message: string;
              time: string;
            }[];
            next_cursor: string | null;
          };
        };
      };
    }>();
    const page = body.data.cluster.events;
    assert.equal(body.data.cluster.retired_gpu_count, 0);
    assert.deepEqual(page.counts, { xid: 2, health: 2 });
    assert.deepEqual(page.events, [
      {
        type: 'xid',
        host_id: 'node-a',
        gpu_id: 0,
        code: 79,
        message: 'XID 79: GPU has fallen off the bus',
        time: new Date(T0 + 10 * SECOND).toISOString(),
      },
    ]);
    assert.ok(page.next_cursor !== null);
    const badLimit = await t.gateway.app.inject({
      method: 'POST',
      url: '/graphql',
      payload: {
        query: '{ cluster(cluster_id: "gql-1") { events(limit: 5000) { next_cursor } } }',
      },
    });
    assert.equal(badLimit.statusCode, 400);
  });

  it('GraphQL: subscription events(clusterId, types, hostIds) receives matching events once', async () => {
    const address = t.gateway.app.server.address();
    assert.ok(address !== null && typeof address === 'object');
    const c = createClient({
      url: `ws://127.0.0.1:${address.port}/graphql`,
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      lazy: true,
    });
    const got: { type: string; host_id: string; code: number | null }[] = [];
    const errors: unknown[] = [];
    const state = { started: false };
    const stop = c.subscribe<{ events: (typeof got)[number] }>(
      {
        query:
          'subscription { events(clusterId: "gql-2", types: [xid, throttle], hostIds: ["node-a"]) { type host_id code } }',
      },
      {
        next: (m) => {
          if (m.data) got.push(m.data.events);
        },
        error: (e) => errors.push(e),
        complete: () => undefined,
      },
    );
    c.on('connected', () => {
      state.started = true;
    });
    for (let i = 0; i < 500 && !state.started; i++) await new Promise((r) => setTimeout(r, 10));
    // The subscription is registered once the server has the subscribe message: wait a poll.
    await new Promise((r) => setTimeout(r, 300));
    await t.store.write('gql-2', [
      ...series(XID, [0, 43], { hostname: 'node-a', gpu: 0 }),
      ...series(THROTTLE, [0x8], { hostname: 'node-a', gpu: 0 }),
      ...series(XID, [43], { hostname: 'node-b', gpu: 0 }),
    ]);
    for (let i = 0; i < 500 && got.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 300));
    stop();
    await c.dispose();
    assert.deepEqual(errors, []);
    assert.deepEqual(got.map((e) => [e.type, e.host_id, e.code]).sort(), [
      ['throttle', 'node-a', 8],
      ['xid', 'node-a', 43],
    ]);
  });
});
