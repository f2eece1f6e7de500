/**
 * Event detection in the write path (src/store/events.ts, docs/fleet.md "Events"): the same on
 * every backend.
 */
import assert from 'node:assert/strict';
import { it, type TestContext } from 'node:test';
import type { TelemetryRecord } from '../../src/core/record.js';
import type { GpuEvent } from '../../src/store/event-reads.js';
import { spoken } from '../../src/store/retire.js';
import type { SqlClient, TelemetryStore } from '../../src/store/types.js';
import { DAY, SECOND, T0, TEMP, rec, type RecordFields } from './store-fixtures.js';

type Open = (t: TestContext) => Promise<{ store: TelemetryStore; sql: SqlClient }>;

export const XID = 'DCGM_FI_DEV_XID_ERRORS';
export const THROTTLE = 'DCGM_FI_DEV_CLOCK_THROTTLE_REASONS';
export const CLOCKS_EVENT = 'DCGM_FI_DEV_CLOCKS_EVENT_REASONS';
export const REMAP_FAILURE = 'DCGM_FI_DEV_ROW_REMAP_FAILURE';
export const RETIRED_PENDING = 'DCGM_FI_DEV_RETIRED_PENDING';

/** One reading every 10 s from T0, of `metric`, with these values. */
export const series = (
  metric: string,
  values: readonly number[],
  over: RecordFields = {},
  start = T0,
): TelemetryRecord[] => values.map((v, i) => rec(start + i * 10 * SECOND, v, { ...over, metric }));

export async function eventsOf(
  store: TelemetryStore,
  cluster = 'cluster-1',
  extra: { types?: GpuEvent['type'][]; host?: string; gpu?: number } = {},
): Promise<GpuEvent[]> {
  const page = await store.reader.events.page({
    cluster,
    from: T0 - DAY,
    to: T0 + DAY,
    limit: 1000,
    ...extra,
  });
  return page.events.reverse(); // oldest first, for the tests
}

/** The parts of events a test compares. */
const brief = (events: readonly GpuEvent[]) =>
  events.map((e) => ({
    type: e.type,
    time: e.time,
    ended_at: e.ended_at,
    severity: e.severity,
    code: e.code,
    message: e.message,
  }));

export function eventTests(open: Open): void {
  it('a latched XID is one event, not one per scrape; a new code is another; 0 makes none', async (t) => {
    const { store } = await open(t);
    const xid = series(XID, [0, 0, 79, 79, 79, 0, 0, 13, 13], {
      labels: { err_code: '79', err_msg: 'GPU has fallen off the bus' },
    });
    const res = await store.write('cluster-1', [...xid, ...series(TEMP, [50, 51, 52])]);
    assert.deepEqual(res.events, { recorded: 5, ignored: 0 }); // 2 XIDs, 3 health changes
    const events = await eventsOf(store);
    assert.deepEqual(brief(events), [
      {
        type: 'xid',
        time: T0 + 20 * SECOND,
        ended_at: null,
        severity: 'critical',
        code: 79,
        message: 'XID 79: GPU has fallen off the bus',
      },
      {
        type: 'health',
        time: T0 + 20 * SECOND,
        ended_at: null,
        severity: 'critical',
        code: null,
        message: 'Health critical: last XID 79: GPU has fallen off the bus',
      },
      {
        type: 'health',
        time: T0 + 50 * SECOND,
        ended_at: null,
        severity: 'info',
        code: null,
        message: 'Health ok again (was critical)',
      },
      {
        type: 'xid',
        time: T0 + 70 * SECOND,
        ended_at: null,
        severity: 'warning',
        code: 13,
        message: 'XID 13: Graphics engine exception (usually an application error)',
      },
      {
        type: 'health',
        time: T0 + 70 * SECOND,
        ended_at: null,
        severity: 'warning',
        code: null,
        message:
          'Health warning: last XID 13: Graphics engine exception (usually an application error)',
      },
    ]);
    const first = events[0];
    assert.deepEqual(first?.details, {
      previous: 0,
      err_code: '79',
      err_msg: 'GPU has fallen off the bus',
    });
    assert.equal(first.host_id, 'node-a');
    assert.equal(first.gpu_id, 0);
    assert.equal(first.uuid, 'GPU-node-a-0');
  });

  it('the first reading of an XID series with a code is an event; across batches too', async (t) => {
    const { store } = await open(t);
    await store.write('cluster-1', series(XID, [31, 31]));
    await store.write('cluster-1', series(XID, [31, 31], {}, T0 + 60 * SECOND));
    const events = await eventsOf(store, 'cluster-1', { types: ['xid'] });
    assert.deepEqual(
      events.map((e) => [e.time, e.code, e.details.previous]),
      [[T0, 31, null]],
    );
  });

  it('a redelivered batch makes no new event and says how many readings it ignored', async (t) => {
    const { store } = await open(t);
    const batch = series(XID, [0, 79, 79]);
    assert.deepEqual((await store.write('cluster-1', batch)).events, { recorded: 2, ignored: 0 });
    assert.deepEqual((await store.write('cluster-1', batch)).events, { recorded: 0, ignored: 3 });
    assert.equal((await eventsOf(store)).length, 2); // the XID and the health change
  });

  it('concurrent writes of the same readings record each event once', async (t) => {
    const { store } = await open(t);
    const batch = series(XID, [0, 79, 79, 0, 48], { hostname: 'node-b', gpu: 3 });
    const results = await Promise.all([1, 2, 3, 4].map(() => store.write('cluster-1', batch)));
    assert.equal(
      results.reduce((n, r) => n + (r.events?.recorded ?? 0), 0),
      (await eventsOf(store)).length,
    );
    assert.deepEqual(
      (await eventsOf(store, 'cluster-1', { types: ['xid'] })).map((e) => e.code),
      [79, 48],
    );
  });

  it('a late reading (older than what detection saw) makes the event it makes in order', async (t) => {
    const { store } = await open(t);
    await store.write('cluster-1', [rec(T0 + 60 * SECOND, 0, { metric: XID })]);
    const late = await store.write('cluster-1', [rec(T0, 79, { metric: XID })]);
    // XID 79 at T0 (and the GPU critical from T0, ok again at T0+60 s).
    assert.deepEqual(late.events, { recorded: 3, ignored: 1 });
    assert.deepEqual((await eventsOf(store)).map((e) => [e.type, e.time - T0, e.code]).sort(), [
      ['health', 0, null],
      ['health', 60 * SECOND, null],
      ['xid', 0, 79],
    ]);
  });

  it('batches stored out of order (a later one first) give the events of the readings in time order, once', async (t) => {
    const { store } = await open(t);
    // XID 13 latched from T0+30 s, cleared at T0+90 s; throttled (SW thermal) from T0+40 s to T0+70 s.
    const xid = [0, 0, 0, 13, 13, 13, 13, 13, 13, 0, 0];
    const thr = [0, 0, 0, 0, 0x20, 0x20, 0x20, 0, 0, 0, 0];
    const all = [...series(XID, xid), ...series(THROTTLE, thr)];
    const early = all.filter((r) => r.timestamp < T0 + 50 * SECOND);
    const later = all.filter((r) => r.timestamp >= T0 + 50 * SECOND);
    await store.write('cluster-1', later);
    await store.write('cluster-1', early);
    await store.write('cluster-1', later); // redelivered
    const events = await eventsOf(store, 'cluster-1', { types: ['xid', 'throttle'] });
    assert.deepEqual(
      events
        .map((e) => [e.type, e.time - T0, e.ended_at === null ? null : e.ended_at - T0, e.code])
        .sort(),
      [
        ['throttle', 40 * SECOND, 70 * SECOND, 0x20],
        ['xid', 30 * SECOND, null, 13],
      ],
    );
  });

  it('throttling: starts when a throttling reason appears, a wider one is a new event, ends when none is left', async (t) => {
    const { store } = await open(t);
    // idle, SW power cap, + HW thermal, idle again (not throttling), SW thermal, nothing.
    await store.write(
      'cluster-1',
      series(THROTTLE, [0x1, 0x4, 0x4, 0x44, 0x44, 0x1, 0x20, 0x20 | 0x2, 0]),
    );
    const events = await eventsOf(store, 'cluster-1', { types: ['throttle'] });
    assert.deepEqual(
      events.map((e) => [
        e.time - T0,
        e.ended_at === null ? null : e.ended_at - T0,
        e.code,
        e.severity,
      ]),
      [
        [10 * SECOND, 30 * SECOND, 0x4, 'info'],
        [30 * SECOND, 50 * SECOND, 0x44, 'warning'],
        [60 * SECOND, 80 * SECOND, 0x20, 'info'],
      ],
    );
    assert.deepEqual(events[1]?.details.reasons, ['sw_power_cap', 'hw_thermal_slowdown']);
    assert.deepEqual(events[1].details.added, ['hw_thermal_slowdown']);
    assert.equal(events[1].message, 'Clocks throttled: sw_power_cap, hw_thermal_slowdown');
  });

  it('throttling across batches and under both field names: one open event, ended by a later batch', async (t) => {
    const { store } = await open(t);
    await store.write('cluster-1', [
      ...series(THROTTLE, [0x8, 0x8]),
      ...series(CLOCKS_EVENT, [0x8, 0x8]), // the same field under its new name, same instants
    ]);
    let events = await eventsOf(store, 'cluster-1', { types: ['throttle'] });
    assert.deepEqual(
      events.map((e) => [e.time, e.ended_at]),
      [[T0, null]],
    );
    await store.write('cluster-1', series(CLOCKS_EVENT, [0x8, 0], {}, T0 + 60 * SECOND));
    events = await eventsOf(store, 'cluster-1', { types: ['throttle'] });
    assert.deepEqual(
      events.map((e) => [e.time, e.ended_at]),
      [[T0, T0 + 70 * SECOND]],
    );
  });

  it('health: an event at each change of state, with the reason', async (t) => {
    const { store } = await open(t);
    await store.write('cluster-1', [
      ...series(REMAP_FAILURE, [0, 0, 0, 1, 1, 0]),
      ...series(RETIRED_PENDING, [0, 2, 2, 2, 0, 0]),
    ]);
    const events = await eventsOf(store, 'cluster-1', { types: ['health'] });
    assert.deepEqual(
      events.map((e) => [e.time - T0, e.severity, e.details.health, e.details.previous, e.message]),
      [
        [
          10 * SECOND,
          'warning',
          'warning',
          'ok',
          'Health warning: 2 pages pending retirement (a GPU reset retires them)',
        ],
        [30 * SECOND, 'critical', 'critical', 'warning', 'Health critical: row remapping failed'],
        [50 * SECOND, 'info', 'ok', 'critical', 'Health ok again (was critical)'],
      ],
    );
  });

  it('batches without event metrics pay nothing and report no events', async (t) => {
    const { store, sql } = await open(t);
    const res = await store.write('cluster-1', series(TEMP, [1, 2, 3]));
    assert.equal(res.events, undefined);
    const state = await sql.query<{ n: number }>('SELECT count(*)::int AS n FROM gpu_event_state');
    assert.equal(state.rows[0]?.n, 0);
  });

  it('the events page: newest first, filters, counts over every type, cursor paging', async (t) => {
    const { store } = await open(t);
    await store.write('cluster-1', [
      ...series(XID, [13, 31, 43], { hostname: 'node-a', gpu: 0 }),
      ...series(XID, [79], { hostname: 'node-b', gpu: 1 }),
      ...series(THROTTLE, [0x4, 0], { hostname: 'node-b', gpu: 1 }),
    ]);
    await store.write('cluster-2', series(XID, [79]));
    const all = await store.reader.events.page({
      cluster: 'cluster-1',
      from: T0 - DAY,
      to: T0 + DAY,
      limit: 2,
      types: ['xid'],
    });
    assert.deepEqual(all.counts, { xid: 4, throttle: 1, health: 2, stopped: 0, reappeared: 0 });
    assert.deepEqual(
      all.events.map((e) => [e.time - T0, e.host_id, e.code]),
      [
        [20 * SECOND, 'node-a', 43],
        [10 * SECOND, 'node-a', 31],
      ],
    );
    assert.ok(all.next !== undefined);
    const rest = await store.reader.events.page({
      cluster: 'cluster-1',
      from: T0 - DAY,
      to: T0 + DAY,
      limit: 2,
      types: ['xid'],
      after: all.next,
    });
    // The same instant on two GPUs: ordered by id (which GPU's detection inserted first).
    assert.deepEqual(rest.events.map((e) => [e.time - T0, e.host_id, e.code]).sort(), [
      [0, 'node-a', 13],
      [0, 'node-b', 79],
    ]);
    assert.ok(Number(rest.events[0]?.id) > Number(rest.events[1]?.id), 'the higher id first');
    assert.equal(rest.next, undefined);
    const onB = await store.reader.events.page({
      cluster: 'cluster-1',
      from: T0 - DAY,
      to: T0 + DAY,
      limit: 10,
      host: 'node-b',
      gpu: 1,
    });
    assert.deepEqual(onB.counts, { xid: 1, throttle: 1, health: 1, stopped: 0, reappeared: 0 });
    const empty = await store.reader.events.page({
      cluster: 'cluster-1',
      from: T0 + 60 * SECOND,
      to: T0 + DAY,
      limit: 10,
    });
    assert.deepEqual(empty.events, []);
  });
}

const MIN = 60 * SECOND;
/** A reading a minute of TEMP on `hostname`/`gpu`, from `start` for `minutes`. */
const minutes = (hostname: string, gpu: number, start: number, count: number): TelemetryRecord[] =>
  Array.from({ length: count }, (_, i) => rec(start + i * MIN, 40 + i, { hostname, gpu }));

export function retireTests(open: Open): void {
  const STALE = 10 * MIN;
  const retiredAt = async (sql: SqlClient, hostname: string, gpu: number) =>
    (
      await sql.query<{ t: string | null }>(
        `SELECT nexus_ms(g.retired_at)::text AS t FROM gpus g JOIN hosts h ON h.id = g.host_id
         WHERE h.hostname = $1 AND g.gpu_index = $2`,
        [hostname, gpu],
      )
    ).rows[0]?.t;

  it('a GPU silent for more than STALE_AFTER of its cluster data time stops (once); readings again bring it back', async (t) => {
    const { store, sql } = await open(t);
    // node-a/0 reports for 20 minutes; node-b/1 for the first 5 (last reading T0 + 4 min).
    await store.write('cluster-1', [
      ...minutes('node-a', 0, T0, 20),
      ...minutes('node-b', 1, T0, 5),
    ]);
    await store.rollUp();
    assert.deepEqual(await store.retire(STALE), { stopped: 1, reappeared: 0, busy: false });
    assert.deepEqual(await store.retire(STALE), { stopped: 0, reappeared: 0, busy: false });
    assert.equal(await retiredAt(sql, 'node-b', 1), String(T0 + 4 * MIN));
    assert.equal(await retiredAt(sql, 'node-a', 0), null);
    let events = await eventsOf(store, 'cluster-1', { types: ['stopped', 'reappeared'] });
    assert.deepEqual(
      events.map((e) => [e.type, e.host_id, e.gpu_id, e.time, e.severity]),
      [['stopped', 'node-b', 1, T0 + 4 * MIN, 'warning']],
    );
    assert.deepEqual(events[0]?.details, {
      last_seen: new Date(T0 + 4 * MIN).toISOString(),
      cluster_newest: new Date(T0 + 19 * MIN).toISOString(),
      stale_after_seconds: 600,
    });
    // node-b reports again from T0 + 18 min.
    await store.write('cluster-1', minutes('node-b', 1, T0 + 18 * MIN, 2));
    await store.rollUp();
    assert.deepEqual(await store.retire(STALE), { stopped: 0, reappeared: 1, busy: false });
    assert.equal(await retiredAt(sql, 'node-b', 1), null);
    events = await eventsOf(store, 'cluster-1', { types: ['stopped', 'reappeared'] });
    assert.deepEqual(
      events.map((e) => [e.type, e.time]),
      [
        ['stopped', T0 + 4 * MIN],
        ['reappeared', T0 + 18 * MIN],
      ],
    );
    assert.equal(events[1]?.details.gap_seconds, 14 * 60);
    // Said as an operator reads it, with the setting's value.
    assert.deepEqual(
      events.map((e) => e.message),
      [
        'Stopped reporting: no reading for more than 10 min (STALE_AFTER) while its cluster went on',
        'Reporting again after 14 min without readings',
      ],
    );
  });

  it('says how long a GPU was silent as people do (days, hours, minutes; seconds under a minute)', async (t) => {
    const { sql } = await open(t);
    const said: string[] = [];
    for (const s of [0, 59.9, 60, 3599, 3600, 3660, 7325, 86_400, 90_061, 200_000]) {
      const r = await sql.query<{ t: string }>(`SELECT ${spoken('$1::float8')} AS t`, [s]);
      said.push(r.rows[0]?.t ?? '');
    }
    assert.deepEqual(said, [
      '0 s',
      '59 s',
      '1 min',
      '59 min',
      '1 h',
      '1 h 1 min',
      '2 h 2 min',
      '1 d',
      '1 d 1 h',
      '2 d 7 h',
    ]);
  });

  it('within STALE_AFTER, or a whole cluster going quiet, retires nothing', async (t) => {
    const { store } = await open(t);
    // node-b's last reading is exactly STALE_AFTER older than the newest: not more.
    await store.write('cluster-1', [
      ...minutes('node-a', 0, T0, 11),
      ...minutes('node-b', 1, T0, 1),
    ]);
    await store.write('cluster-2', [
      ...minutes('node-c', 0, T0, 1),
      ...minutes('node-d', 0, T0, 1),
    ]);
    await store.rollUp();
    assert.deepEqual(await store.retire(STALE), { stopped: 0, reappeared: 0, busy: false });
  });
}
