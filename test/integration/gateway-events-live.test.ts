/**
 * GPU events pushed live: WebSocket /ws subscriptions of kind `events` and the GraphQL
 * subscription, fed by the gateway's poll of the events table (docs/fleet.md, "Events").
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sampleGateway, type TestGateway } from '../helpers/gateway.js';
import { openSocket } from '../helpers/ws-client.js';
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
});
