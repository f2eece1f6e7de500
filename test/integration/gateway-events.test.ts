/**
 * GET /api/v1/clusters/{cluster_id}/events through the gateway on PostgreSQL: what the detection
 * in the write path recorded, as the contract shows it (docs/fleet.md, "Events").
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sampleGateway, type TestGateway } from '../helpers/gateway.js';
import { SECOND, T0 } from '../conformance/store-fixtures.js';
import { THROTTLE, XID, series } from '../conformance/store-events.js';

let t: TestGateway;
before(async () => {
  t = await sampleGateway();
  await t.store.write('events-1', [
    ...series(XID, [0, 79, 79], {
      hostname: 'gpu-node-02',
      gpu: 5,
      labels: { err_code: '79', err_msg: 'GPU has fallen off the bus' },
    }),
    ...series(XID, [13], { hostname: 'gpu-node-01', gpu: 0 }),
    ...series(THROTTLE, [0x4, 0x4, 0], { hostname: 'gpu-node-01', gpu: 0 }),
  ]);
});
after(async () => {
  await t.close();
  const { sharedPostgres } = await import('../helpers/postgres.js');
  await (await sharedPostgres()).release();
});

async function get<T = Record<string, unknown>>(url: string): Promise<{ status: number; body: T }> {
  const res = await t.gateway.app.inject({ method: 'GET', url });
  return { status: res.statusCode, body: res.json<T>() };
}

interface EventBody {
  id: string;
  type: string;
  time: string;
  ended_at: string | null;
  severity: string;
  host_id: string;
  gpu_id: number;
  uuid: string | null;
  code: number | null;
  message: string;
  details: Record<string, unknown>;
}
interface EventsBody {
  cluster_id: string;
  from: string;
  to: string;
  counts: Record<string, number>;
  events: EventBody[];
  next_cursor: string | null;
}

const FROM = new Date(T0 - 3600 * SECOND).toISOString();
const TO = new Date(T0 + 3600 * SECOND).toISOString();
const range = `from=${FROM}&to=${TO}`;

describe('GET /api/v1/clusters/{cluster_id}/events', () => {
  it('lists the events newest first, with counts per type, in the contract shape', async () => {
    const res = await get<EventsBody>(`/api/v1/clusters/events-1/events?${range}`);
    assert.equal(res.status, 200);
    assert.equal(res.body.cluster_id, 'events-1');
    assert.equal(res.body.from, FROM);
    assert.equal(res.body.to, TO);
    assert.deepEqual(res.body.counts, {
      xid: 2,
      throttle: 1,
      health: 2,
      stopped: 0,
      reappeared: 0,
    });
    assert.equal(res.body.events.length, 5);
    assert.equal(res.body.next_cursor, null);
    const times = res.body.events.map((e) => Date.parse(e.time));
    assert.deepEqual(
      times,
      [...times].sort((a, b) => b - a),
    );
    const xid = res.body.events.find((e) => e.type === 'xid' && e.code === 79);
    assert.deepEqual(
      { ...xid, id: undefined },
      {
        id: undefined,
        type: 'xid',
        time: new Date(T0 + 10 * SECOND).toISOString(),
        ended_at: null,
        severity: 'critical',
        host_id: 'gpu-node-02',
        gpu_id: 5,
        uuid: 'GPU-gpu-node-02-5',
        code: 79,
        message: 'XID 79: GPU has fallen off the bus',
        details: { err_code: '79', err_msg: 'GPU has fallen off the bus', previous: 0 },
      },
    );
    const throttle = res.body.events.find((e) => e.type === 'throttle');
    assert.equal(throttle?.time, new Date(T0).toISOString());
    assert.equal(throttle.ended_at, new Date(T0 + 20 * SECOND).toISOString());
  });

  it('filters by type, host and GPU; counts ignore only the type filter', async () => {
    const res = await get<EventsBody>(
      `/api/v1/clusters/events-1/events?${range}&type=xid,throttle&host_id=gpu-node-01&gpu_id=0`,
    );
    assert.equal(res.status, 200);
    assert.deepEqual(res.body.counts, {
      xid: 1,
      throttle: 1,
      health: 1,
      stopped: 0,
      reappeared: 0,
    });
    assert.deepEqual(
      res.body.events.map((e) => [e.type, e.host_id, e.gpu_id]),
      [
        ['xid', 'gpu-node-01', 0],
        ['throttle', 'gpu-node-01', 0],
      ],
    );
  });

  it('pages with limit and next_cursor, each event once', async () => {
    const seen: string[] = [];
    let url = `/api/v1/clusters/events-1/events?${range}&limit=2`;
    for (let pages = 0; pages < 10; pages++) {
      const res = await get<EventsBody>(url);
      assert.equal(res.status, 200);
      seen.push(...res.body.events.map((e) => e.id));
      if (res.body.next_cursor === null) break;
      url = `/api/v1/clusters/events-1/events?${range}&limit=2&cursor=${res.body.next_cursor}`;
    }
    assert.equal(seen.length, 5);
    assert.equal(new Set(seen).size, 5);
  });

  it('the default range is the last 24 hours up to now', async () => {
    const res = await get<EventsBody>('/api/v1/clusters/events-1/events');
    assert.equal(res.status, 200);
    assert.equal(Date.parse(res.body.to) - Date.parse(res.body.from), 86_400_000);
    assert.deepEqual(res.body.events, []); // the readings are from 2025
  });

  it('400 for bad filters, 404 for an unknown cluster', async () => {
    const cases: [string, number, RegExp][] = [
      ['type=xid,fire', 400, /type: "fire" is not an event type/],
      ['gpu_id=1', 400, /gpu_id: give host_id too/],
      ['host_id=h&gpu_id=x', 400, /gpu_id: "x" is not a GPU index/],
      ['limit=0', 400, /limit/],
      ['limit=1001', 400, /limit/],
      ['from=yesterday', 400, /from: "yesterday" is not a time/],
      [`from=${TO}&to=${FROM}`, 400, /from: must not be after to/],
      ['cursor=abc', 400, /cursor: not a cursor this API returned/],
      ['colour=red', 400, /colour/],
    ];
    for (const [query, status, message] of cases) {
      const res = await t.gateway.app.inject({
        method: 'GET',
        url: `/api/v1/clusters/events-1/events?${query}`,
      });
      assert.equal(res.statusCode, status, query);
      assert.match(res.json<{ error: string }>().error.slice(0, 300), message, query);
    }
    const missing = await get('/api/v1/clusters/nope/events');
    assert.equal(missing.status, 404);
  });
});
