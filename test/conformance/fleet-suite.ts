/**
 * The fleet features on a store (docs/fleet.md): allocation minutes, idle GPUs and usage, on a
 * small fleet written through the store, checked against figures computed here from the readings
 * fed, by a plain implementation of the definitions (not the store's SQL).
 */
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { isNexusError } from '../../src/core/errors.js';
import type { TelemetryRecord } from '../../src/core/record.js';
import type { UsageGroupBy, UsageRow } from '../../src/store/reader.js';
import type { SqlClient, TelemetryStore, UsageRollUp } from '../../src/store/types.js';
import { HOUR, MINUTE, SECOND, rec, utc } from './store-fixtures.js';
import type { StoreHarness, StoreOptions } from './store-suite.js';

export const PROF = 'DCGM_FI_PROF_GR_ENGINE_ACTIVE';
export const UTIL = 'DCGM_FI_DEV_GPU_UTIL';
export const POWER = 'DCGM_FI_DEV_POWER_USAGE';
export const ENERGY = 'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION';

/** 10:00 UTC: the fleet's first minute. */
export const B = utc(2025, 7, 18, 10, 0, 0);
/** Readings every 15 s, 5 s into each quarter minute; 40 minutes. */
export const MINUTES = 40;
const STEP = 15 * SECOND;

interface Pod {
  readonly namespace: string;
  readonly pod: string;
  readonly container?: string;
}

/**
 * The fleet: minute -> what a GPU reports (the pod of each reading by its quarter, utilisation).
 *
 * - node-a GPU 0: PROF_GR_ENGINE_ACTIVE and GPU_UTIL (usage and idle read PROF), the energy
 *   counter (reset at 25:20) and power. training/train-a minutes 0-9 (busy), shared with
 *   notebooks/nb-x in minutes 10-14 (two readings each a minute), no pod in 15-19,
 *   research/nb-1 from 20 on at 1 % (idle since its first reading: 19 min 45 s).
 * - node-a GPU 1: GPU_UTIL and power only (energy integrated). research/nb-2 throughout: 50 % in
 *   minutes 0-9, then 2 % (idle since 10:10:00).
 * - node-b GPU 0: GPU_UTIL and power: training/old at 1 % for 0-29, then research/nb-3 at 1 %
 *   (idle 40 minutes, but its pod only 9 min 45 s: not idle with IDLE_FOR 15m).
 * - node-b GPU 1: GPU_UTIL: research/nb-4 at 3 % for 0-24, then 80 % (busy again: not idle).
 */
export function fleetRecords(): TelemetryRecord[] {
  const out: TelemetryRecord[] = [];
  const train: Pod = { namespace: 'training', pod: 'train-a', container: 'main' };
  const nbx: Pod = { namespace: 'notebooks', pod: 'nb-x', container: 'lab' };
  let energy = 5_000_000; // mJ, before the range starts
  for (let m = 0; m < MINUTES; m++) {
    for (let q = 0; q < 4; q++) {
      const t = B + m * MINUTE + q * STEP + 5 * SECOND;
      const with_ = (pod: Pod | undefined) =>
        pod === undefined
          ? {}
          : { namespace: pod.namespace, pod: pod.pod, container: pod.container ?? 'c' };
      // node-a GPU 0
      let p0: Pod | undefined;
      if (m < 10) p0 = train;
      else if (m < 15) p0 = q % 2 === 0 ? train : nbx;
      else if (m < 20) p0 = undefined;
      else p0 = { namespace: 'research', pod: 'nb-1', container: 'main' };
      const busy0 = m < 15;
      const power0 = busy0 ? 300 + q : 60 + q;
      if (m === 25 && q === 1)
        energy = 1000; // driver reload: the counter restarts
      else energy += power0 * 15 * 1000;
      const a0 = { hostname: 'node-a', gpu: 0, ...with_(p0) };
      out.push(rec(t, busy0 ? 0.75 : 0.01, { ...a0, metric: PROF }));
      out.push(rec(t, busy0 ? 90 : 0, { ...a0, metric: UTIL }));
      out.push(rec(t, power0, { ...a0, metric: POWER }));
      out.push(rec(t, energy, { ...a0, metric: ENERGY }));
      // node-a GPU 1
      const a1 = {
        hostname: 'node-a',
        gpu: 1,
        ...with_({ namespace: 'research', pod: 'nb-2', container: 'main' }),
      };
      out.push(rec(t, m < 10 ? 50 : 2, { ...a1, metric: UTIL }));
      out.push(rec(t, m < 10 ? 250 + q * 2 : 70, { ...a1, metric: POWER }));
      // node-b GPU 0
      const b0 = {
        hostname: 'node-b',
        gpu: 0,
        ...with_(
          m < 30
            ? { namespace: 'training', pod: 'old', container: 'main' }
            : { namespace: 'research', pod: 'nb-3', container: 'main' },
        ),
      };
      out.push(rec(t, 1, { ...b0, metric: UTIL }));
      out.push(rec(t, 65 + (m % 3), { ...b0, metric: POWER }));
      // node-b GPU 1
      const b1 = {
        hostname: 'node-b',
        gpu: 1,
        ...with_({ namespace: 'research', pod: 'nb-4', container: 'main' }),
      };
      out.push(rec(t, m < 25 ? 3 : 80, { ...b1, metric: UTIL }));
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The definitions, implemented plainly over the readings
// ---------------------------------------------------------------------------------------------

const bucketOf = (t: number): number => Math.floor(t / MINUTE) * MINUTE;
const gpuKey = (r: TelemetryRecord): string => `${r.hostname}\u0000${r.gpu}`;

export interface ExpectedGroup {
  key: Record<string, string | number>;
  minutes: number;
  usum: number;
  ucount: number;
  joules: number;
  unallocatedMinutes: number;
  unallocatedJoules: number;
}

/** Usage per group over minutes starting in [from, to), from the readings. */
export function expectedUsage(
  records: readonly TelemetryRecord[],
  groupBy: UsageGroupBy,
  from: number,
  to: number,
): { groups: Map<string, ExpectedGroup>; unallocatedMinutes: number; unallocatedJoules: number } {
  const byGpu = new Map<string, TelemetryRecord[]>();
  for (const r of records) {
    const k = gpuKey(r);
    const list = byGpu.get(k) ?? [];
    list.push(r);
    byGpu.set(k, list);
  }
  const groups = new Map<string, ExpectedGroup>();
  let unallocatedMinutes = 0;
  let unallocatedJoules = 0;
  for (const readings of byGpu.values()) {
    const first = readings[0];
    if (first === undefined) continue;
    const inRange = readings.filter(
      (r) => bucketOf(r.timestamp) >= from && bucketOf(r.timestamp) < to,
    );
    const useProf = inRange.some((r) => r.metric === PROF);
    const hasCounter = inRange.some((r) => r.metric === ENERGY);
    // Energy per minute.
    const joules = new Map<number, number>();
    if (hasCounter) {
      const counter = readings
        .filter((r) => r.metric === ENERGY)
        .sort((a, b) => a.timestamp - b.timestamp);
      const perMinute = new Map<number, { min: number; last: number; lastTime: number }>();
      for (const r of counter) {
        const b = bucketOf(r.timestamp);
        const m = perMinute.get(b);
        if (m === undefined)
          perMinute.set(b, { min: r.value, last: r.value, lastTime: r.timestamp });
        else {
          m.min = Math.min(m.min, r.value);
          if (r.timestamp >= m.lastTime) {
            m.last = r.value;
            m.lastTime = r.timestamp;
          }
        }
      }
      let prev: number | undefined;
      for (const b of [...perMinute.keys()].sort((x, y) => x - y)) {
        const m = perMinute.get(b);
        if (m === undefined) continue;
        const mj = prev === undefined ? m.last - m.min : m.last < prev ? m.last : m.last - prev;
        joules.set(b, mj / 1000);
        prev = m.last;
      }
    } else {
      const power = new Map<number, { sum: number; count: number }>();
      for (const r of readings.filter((x) => x.metric === POWER)) {
        const b = bucketOf(r.timestamp);
        const p = power.get(b) ?? { sum: 0, count: 0 };
        p.sum += r.value;
        p.count += 1;
        power.set(b, p);
      }
      for (const [b, p] of power) joules.set(b, (p.sum / p.count) * 60);
    }
    // Utilisation per minute.
    const util = new Map<number, { sum: number; count: number }>();
    for (const r of readings.filter((x) => x.metric === (useProf ? PROF : UTIL))) {
      const b = bucketOf(r.timestamp);
      const u = util.get(b) ?? { sum: 0, count: 0 };
      u.sum += useProf ? r.value * 100 : r.value;
      u.count += 1;
      util.set(b, u);
    }
    // Allocation minutes.
    const minutes = new Map<number, Set<string>>();
    for (const r of inRange) {
      const b = bucketOf(r.timestamp);
      const pods = minutes.get(b) ?? new Set<string>();
      if (r.pod !== undefined && r.pod !== '') pods.add(`${r.namespace ?? ''}\u0000${r.pod}`);
      minutes.set(b, pods);
    }
    for (const [b, pods] of minutes) {
      const e = joules.get(b) ?? 0;
      const u = util.get(b) ?? { sum: 0, count: 0 };
      const add = (key: Record<string, string | number>, share: number | undefined): void => {
        const k = JSON.stringify(key);
        const g = groups.get(k) ?? {
          key,
          minutes: 0,
          usum: 0,
          ucount: 0,
          joules: 0,
          unallocatedMinutes: 0,
          unallocatedJoules: 0,
        };
        if (share === undefined) {
          g.unallocatedMinutes += 1;
          g.unallocatedJoules += e;
        } else {
          g.minutes += share;
          g.usum += share * u.sum;
          g.ucount += share * u.count;
          g.joules += share * e;
        }
        groups.set(k, g);
      };
      if (pods.size === 0) {
        unallocatedMinutes += 1;
        unallocatedJoules += e;
        if (groupBy === 'host') add({ host_id: first.hostname }, undefined);
        if (groupBy === 'gpu')
          add({ host_id: first.hostname, gpu_id: first.gpu, uuid: first.uuid ?? '' }, undefined);
        continue;
      }
      for (const p of pods) {
        const [namespace = '', pod = ''] = p.split('\u0000');
        const share = 1 / pods.size;
        if (groupBy === 'namespace') add({ namespace }, share);
        else if (groupBy === 'pod') add({ namespace, pod }, share);
        else if (groupBy === 'host') add({ host_id: first.hostname }, share);
        else add({ host_id: first.hostname, gpu_id: first.gpu, uuid: first.uuid ?? '' }, share);
      }
    }
  }
  return { groups, unallocatedMinutes, unallocatedJoules };
}

export const close = (actual: number | undefined, expected: number, what: string): void => {
  assert.ok(
    actual !== undefined && Math.abs(actual - expected) <= 1e-9 * Math.max(1, Math.abs(expected)),
    `${what}: ${String(actual)}, expected ${expected}`,
  );
};

function keyOfRow(groupBy: UsageGroupBy, r: UsageRow): Record<string, string | number> {
  if (groupBy === 'namespace') return { namespace: r.namespace ?? '' };
  if (groupBy === 'pod') return { namespace: r.namespace ?? '', pod: r.pod ?? '' };
  if (groupBy === 'host') return { host_id: r.hostname ?? '' };
  return { host_id: r.hostname ?? '', gpu_id: r.gpu_id ?? -1, uuid: r.uuid ?? '' };
}

async function assertUsage(
  store: TelemetryStore,
  records: readonly TelemetryRecord[],
  groupBy: UsageGroupBy,
  from: number,
  to: number,
): Promise<void> {
  const got = await store.reader.usage({ cluster: 'fleet', groupBy, from, to });
  const want = expectedUsage(records, groupBy, from, to);
  const wanted = [...want.groups.values()].filter(
    (g) => groupBy === 'host' || groupBy === 'gpu' || g.minutes > 0,
  );
  assert.deepEqual(
    got.groups.map((r) => JSON.stringify(keyOfRow(groupBy, r))).sort(),
    wanted.map((g) => JSON.stringify(g.key)).sort(),
    `${groupBy}: the groups`,
  );
  for (const r of got.groups) {
    const k = JSON.stringify(keyOfRow(groupBy, r));
    const w = want.groups.get(k);
    assert.ok(w !== undefined, `${groupBy}: group ${k} expected`);
    close(r.allocated_minutes, w.minutes, `${groupBy} ${k} minutes`);
    close(r.allocated_joules, w.joules, `${groupBy} ${k} joules`);
    if (w.ucount === 0) assert.equal(r.avg_utilization_percent, undefined);
    else close(r.avg_utilization_percent, w.usum / w.ucount, `${groupBy} ${k} utilisation`);
    close(r.unallocated_minutes, w.unallocatedMinutes, `${groupBy} ${k} unallocated minutes`);
    close(r.unallocated_joules, w.unallocatedJoules, `${groupBy} ${k} unallocated joules`);
  }
  // Sorted by GPU-hours, descending.
  for (let i = 1; i < got.groups.length; i++)
    assert.ok(
      (got.groups[i - 1]?.allocated_minutes ?? 0) >= (got.groups[i]?.allocated_minutes ?? 0),
      `${groupBy}: groups by GPU-hours, descending`,
    );
  close(got.unallocated_minutes, want.unallocatedMinutes, `${groupBy} unallocated minutes`);
  close(got.unallocated_joules, want.unallocatedJoules, `${groupBy} unallocated joules`);
}

/** Writes the records in batches of `size`, in time order. */
export async function writeAll(
  store: TelemetryStore,
  records: readonly TelemetryRecord[],
  size = 400,
): Promise<void> {
  const sorted = [...records].sort((a, b) => a.timestamp - b.timestamp);
  for (let i = 0; i < sorted.length; i += size)
    await store.write('fleet', sorted.slice(i, i + size));
}

/** A late reading: a pod on node-b GPU 1 in minute 45, after the fleet's readings were written. */
function lateReading(): TelemetryRecord {
  return rec(B + 45 * MINUTE, 97, {
    hostname: 'node-b',
    gpu: 1,
    metric: UTIL,
    pod: 'late-pod',
    namespace: 'late',
  });
}

async function rowCount(sql: SqlClient, table: string): Promise<number> {
  const res = await sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
  return res.rows[0]?.n ?? -1;
}

const DAY = 86_400_000;
/** The day (UTC) of the fleet's readings. */
const DAY0 = Math.floor(B / DAY) * DAY;
/** The month (UTC) of the fleet's readings, and the next. */
const MONTH0 = Date.UTC(2025, 6, 1);
const MONTH1 = Date.UTC(2025, 7, 1);

/** The kept usage and its marks, and the kept utilisation peaks (migrations 011, 015, 016). */
const USAGE_TABLES = [
  'util_peaks',
  'usage_10m',
  'usage_slices',
  'usage_1h',
  'usage_1d',
  'usage_days',
  'usage_1mo',
  'usage_months',
];

/** What a run of the usage job did: nothing but what is named. */
function jobRan(did: Partial<UsageRollUp> = {}): UsageRollUp {
  return { slices: 0, hours: 0, days: 0, months: 0, peaks: 0, busy: false, ...did };
}

/** Slices marked for the usage job (migration 015). */
async function markedSlices(sql: SqlClient): Promise<number> {
  return rowCount(sql, 'usage_slices WHERE marked_at IS NOT NULL');
}

/** The fleet conformance cases, for a harness of the store suite. */
export function fleetConformance(h: StoreHarness): void {
  describe(`fleet conformance: ${h.name}`, () => {
    const open = async (t: TestContext, over: StoreOptions = {}) => {
      const opened =
        h.createMigrated === undefined
          ? await h.create({ compactDelayMs: HOUR, ...over })
          : await h.createMigrated({ compactDelayMs: HOUR, ...over });
      t.after(() => opened.store.close());
      await opened.store.migrate();
      return opened;
    };

    for (const fold of [true, false]) {
      it(`usage per namespace, pod, host and GPU equals the definitions (foldOnWrite ${fold})`, async (t) => {
        const { store, sql } = await open(t, { foldOnWrite: fold });
        const records = fleetRecords();
        await writeAll(store, records);
        // Every GPU-minute observed once, plus one row per extra workload of a minute: node-a
        // GPU 0 has two in minutes 10-14.
        assert.equal(await rowCount(sql, 'gpu_allocations'), 4 * MINUTES + 5);
        // A redelivered batch adds nothing.
        await writeAll(store, records, 1000);
        assert.equal(await rowCount(sql, 'gpu_allocations'), 4 * MINUTES + 5);
        for (const groupBy of ['namespace', 'pod', 'host', 'gpu'] as const) {
          await assertUsage(store, records, groupBy, B, B + HOUR);
          // From minute 5: the counter's previous reading is looked up before the range.
          await assertUsage(store, records, groupBy, B + 5 * MINUTE, B + 30 * MINUTE);
        }
        // A few figures by hand. training: train-a 10 minutes + 5 half minutes, old 30 minutes.
        const ns = await store.reader.usage({
          cluster: 'fleet',
          groupBy: 'namespace',
          from: B,
          to: B + HOUR,
        });
        const training = ns.groups.find((g) => g.namespace === 'training');
        close(training?.allocated_minutes, 10 + 2.5 + 30, 'training minutes');
        const notebooks = ns.groups.find((g) => g.namespace === 'notebooks');
        close(notebooks?.allocated_minutes, 2.5, 'notebooks minutes');
        // nb-x shared node-a GPU 0 at 75 % (PROF 0.75 x 100).
        close(notebooks?.avg_utilization_percent, 75, 'notebooks utilisation');
        // node-a GPU 0's minutes 15-19 had no pod: 5 unallocated minutes over the cluster.
        close(ns.unallocated_minutes, 5, 'unallocated minutes');
        // research: nb-1 20 + nb-2 40 + nb-3 10 + nb-4 40 minutes.
        close(
          ns.groups.find((g) => g.namespace === 'research')?.allocated_minutes,
          110,
          'research',
        );
      });
    }

    it('the counter reset: the minute of the reset counts the counter value, not a negative increase', async (t) => {
      const { store } = await open(t);
      const records = fleetRecords();
      await writeAll(store, records);
      const res = await store.reader.usage({
        cluster: 'fleet',
        groupBy: 'gpu',
        from: B + 25 * MINUTE,
        to: B + 26 * MINUTE,
      });
      const g0 = res.groups.find((g) => g.hostname === 'node-a' && g.gpu_id === 0);
      // Minute 25: last 1000 + 2 readings of 62 W and 63 W after the reset (62*15 + 63*15 J),
      // against 24:50's value: the reset makes the minute's energy its last value, in mJ.
      close(g0?.allocated_joules, (1000 + 62 * 15_000 + 63 * 15_000) / 1000, 'minute 25 joules');
      // Minute 20 onwards: 60..63 W x 15 s each reading.
      const m21 = await store.reader.usage({
        cluster: 'fleet',
        groupBy: 'gpu',
        from: B + 21 * MINUTE,
        to: B + 22 * MINUTE,
      });
      close(
        m21.groups.find((g) => g.hostname === 'node-a' && g.gpu_id === 0)?.allocated_joules,
        (60 + 61 + 62 + 63) * 15,
        'minute 21 joules',
      );
      // node-a GPU 1 has no counter: its average power x 60 s (minute 21: 70 W).
      close(
        m21.groups.find((g) => g.hostname === 'node-a' && g.gpu_id === 1)?.allocated_joules,
        70 * 60,
        'power integrated',
      );
    });

    for (const fold of [true, false])
      it(`idle GPUs: below IDLE_UTIL since the later of the last busy minute and the pod's first reading, for at least IDLE_FOR (foldOnWrite ${fold}: the readings folded, or all pending)`, async (t) => {
        const { store } = await open(t, { foldOnWrite: fold });
        await writeAll(store, fleetRecords());
        const last = B + (MINUTES - 1) * MINUTE + 3 * STEP + 5 * SECOND; // 10:39:50
        const idle = await store.reader.idleGpus({
          cluster: 'fleet',
          utilPercent: 5,
          forMs: 15 * MINUTE,
        });
        assert.deepEqual(
          idle.map((g) => [g.hostname, g.gpu_id, g.namespace, g.pod, g.idle_since, g.last_seen]),
          [
            // 50 % until 10:09: idle since the end of that minute.
            ['node-a', 1, 'research', 'nb-2', B + 10 * MINUTE, last],
            // nb-1 since its first reading, 10:20:05 (idle minutes under another pod do not count).
            ['node-a', 0, 'research', 'nb-1', B + 20 * MINUTE + 5 * SECOND, last],
          ],
        );
        const a0 = idle.find((g) => g.gpu_id === 0);
        assert.equal(a0?.utilization_metric, PROF);
        close(a0.utilization_percent, 1, 'PROF 0.01 as a percentage');
        assert.equal(a0.container, 'main');
        assert.equal(a0.uuid, 'GPU-node-a-0');
        assert.equal(idle.find((g) => g.gpu_id === 1)?.utilization_metric, UTIL);
        // node-b GPU 0: its pod changed at 10:30: idle 9 min 45 s, listed with a shorter IDLE_FOR.
        const shorter = await store.reader.idleGpus({
          cluster: 'fleet',
          utilPercent: 5,
          forMs: 9 * MINUTE,
        });
        const b0 = shorter.find((g) => g.hostname === 'node-b' && g.gpu_id === 0);
        assert.equal(b0?.idle_since, B + 30 * MINUTE + 5 * SECOND);
        assert.equal(b0.pod, 'nb-3');
        // node-b GPU 1 is busy again: never listed; with a threshold of 90 % everything is idle.
        assert.equal(
          shorter.some((g) => g.hostname === 'node-b' && g.gpu_id === 1),
          false,
        );
        const high = await store.reader.idleGpus({
          cluster: 'fleet',
          utilPercent: 90,
          forMs: 15 * MINUTE,
        });
        assert.deepEqual(high.map((g) => `${g.hostname}/${g.gpu_id}`).sort(), [
          'node-a/0',
          'node-a/1',
          'node-b/1',
        ]);
        // node-b GPU 1 at 80 % since minute 25: under 90 % since nb-4's first reading, 10:00:05.
        assert.equal(
          high.find((g) => g.hostname === 'node-b' && g.gpu_id === 1)?.idle_since,
          B + 5 * SECOND,
        );
      });

    for (const fold of [true, false])
      it(`idle GPUs from util_peaks (migration 016): the same answers once the usage job has merged the slices, which are then read from util_peaks, and a late busy reading counts at once (foldOnWrite ${fold}: the readings folded, or all pending)`, async (t) => {
        const { store, sql } = await open(t, { foldOnWrite: fold, usageSettleMs: 0 });
        await writeAll(store, fleetRecords());
        const report = async () => {
          const out: unknown[] = [];
          for (const utilPercent of [5, 50, 90])
            for (const forMs of [9 * MINUTE, 15 * MINUTE])
              out.push(
                (await store.reader.idleGpus({ cluster: 'fleet', utilPercent, forMs })).map((g) => [
                  utilPercent,
                  forMs,
                  g.hostname,
                  g.gpu_id,
                  g.pod,
                  g.idle_since,
                  g.utilization_metric,
                ]),
              );
          return out;
        };
        // Every slice marked: the minutes are read, as before migration 016.
        const fromMinutes = await report();
        const res = await store.rollUpUsage();
        assert.equal(res.slices, 6);
        assert.equal(await rowCount(sql, 'usage_slices WHERE peaks_at IS NULL'), 0, 'all merged');
        assert.ok((await rowCount(sql, 'util_peaks')) > 0);
        assert.deepEqual(await report(), fromMinutes);
        // As the schema 15 job left the slices (computed, never merged): read from the minutes,
        // then merged by the job's last turn, newest first.
        await sql.query('UPDATE usage_slices SET peaks_at = NULL');
        await sql.query('DELETE FROM util_peaks');
        assert.deepEqual(await report(), fromMinutes);
        assert.deepEqual(await store.rollUpUsage(), jobRan({ peaks: 6 }));
        assert.deepEqual(await report(), fromMinutes);
        // A staircase: per GPU row and metric, each slice kept is above every later one.
        assert.equal(
          await rowCount(
            sql,
            `(SELECT max <= lead(max) OVER (PARTITION BY gpu_id, metric_id ORDER BY slice) AS up
            FROM util_peaks) x WHERE up`,
          ),
          0,
        );
        // node-a GPU 1 (50 % in minutes 0-9, then 2 %): slices 10:00 and 10:30 (the last one).
        const a1 = await sql.query<{ s: string; max: number }>(
          `SELECT nexus_ms(u.slice)::text AS s, u.max FROM util_peaks u
         JOIN gpus g ON g.id = u.gpu_id JOIN hosts h ON h.id = g.host_id
         WHERE h.hostname = 'node-a' AND g.gpu_index = 1 ORDER BY u.slice`,
        );
        assert.deepEqual(
          a1.rows.map((r) => [Number(r.s), r.max]),
          [
            [B, 50],
            [B + 30 * MINUTE, 2],
          ],
        );
        // The merged slices' minutes are not read: with util_peaks emptied (as if every merged
        // slice had stayed under every threshold), the GPUs busy in them are idle since their
        // pod's first reading. (Readings not folded in yet are read whatever their slice.)
        if (fold) {
          const peaks = await sql.query('SELECT * FROM util_peaks');
          await sql.query('DELETE FROM util_peaks');
          const blind = await store.reader.idleGpus({
            cluster: 'fleet',
            utilPercent: 5,
            forMs: 15 * MINUTE,
          });
          assert.equal(
            blind.find((g) => g.hostname === 'node-a' && g.gpu_id === 1)?.idle_since,
            B + 5 * SECOND,
            'idle since nb-2 first reading, 10:00:05',
          );
          await sql.query(
            `INSERT INTO util_peaks SELECT * FROM json_populate_recordset(NULL::util_peaks, $1::json)`,
            [JSON.stringify(peaks.rows)],
          );
        }
        assert.deepEqual(await report(), fromMinutes);
        // A late busy reading of node-a GPU 1 at 10:25:30 (its slice was merged): idle since
        // 10:26 at once (its slice is marked, and read from the minutes), and after the job.
        const lateA1 = (at: number, util: number) =>
          rec(at, util, {
            hostname: 'node-a',
            gpu: 1,
            metric: UTIL,
            namespace: 'research',
            pod: 'nb-2',
            container: 'main',
          });
        const a1Since = async () =>
          (await store.reader.idleGpus({ cluster: 'fleet', utilPercent: 5, forMs: MINUTE })).find(
            (g) => g.hostname === 'node-a' && g.gpu_id === 1,
          )?.idle_since;
        const a1Peaks = async () =>
          (
            await sql.query<{ s: string; max: number }>(
              `SELECT nexus_ms(u.slice)::text AS s, u.max FROM util_peaks u
             JOIN gpus g ON g.id = u.gpu_id JOIN hosts h ON h.id = g.host_id
             WHERE h.hostname = 'node-a' AND g.gpu_index = 1 ORDER BY u.slice`,
            )
          ).rows.map((r) => [Number(r.s), r.max]);
        await store.write('fleet', [lateA1(B + 25 * MINUTE + 30 * SECOND, 60)]);
        assert.equal(await a1Since(), B + 26 * MINUTE);
        assert.equal((await store.rollUpUsage()).slices, 1);
        assert.equal(await a1Since(), B + 26 * MINUTE);
        assert.deepEqual(
          await a1Peaks(),
          [
            [B + 20 * MINUTE, 60],
            [B + 30 * MINUTE, 2],
          ],
          'the late slice hides 10:00 (60 % >= 50 %)',
        );
        // Another at 10:33:30, its slice then computed by an earlier release's job during a rolling
        // upgrade (usage, not peaks): read from the minutes until this release's job merges it.
        await store.write('fleet', [lateA1(B + 33 * MINUTE + 30 * SECOND, 40)]);
        await sql.query(
          `UPDATE usage_slices SET marked_at = NULL, computed_at = clock_timestamp()
         WHERE marked_at IS NOT NULL`,
        );
        assert.equal(await a1Since(), B + 34 * MINUTE);
        assert.deepEqual(await store.rollUpUsage(), jobRan({ peaks: 1 }));
        assert.equal(await a1Since(), B + 34 * MINUTE);
        assert.deepEqual(await a1Peaks(), [
          [B + 20 * MINUTE, 60],
          [B + 30 * MINUTE, 40],
        ]);
        // An earlier release's collector marks the hour (usage_dirty): its six slices are marked
        // as the mark is made, and stay marked when that release's own job deletes the mark.
        assert.equal(await markedSlices(sql), 0);
        await sql.query(
          `INSERT INTO usage_dirty (hour, marked_at) VALUES (nexus_ts($1), clock_timestamp())
         ON CONFLICT (hour) DO UPDATE SET marked_at = excluded.marked_at`,
          [B],
        );
        await sql.query('DELETE FROM usage_dirty');
        assert.equal(await markedSlices(sql), 6);
      });

    it('usage from the kept tables (usage_1mo, usage_1d, usage_1h, usage_10m: migrations 011, 015) equals the minutes, and a late reading marks its slice again', async (t) => {
      // Marks taken as soon as made (the default waits 30 s: writes under a mark have landed).
      const { store, sql } = await open(t, { foldOnWrite: true, usageSettleMs: 0 });
      const records = fleetRecords();
      await writeAll(store, records);
      // Written slices are marked: those of the 40 minutes and the one of the minute after.
      assert.equal(await markedSlices(sql), 5);
      // The five, and the hour's sixth (10:50, never written: computed so the hour's sum misses
      // nothing), then the hour from them.
      // Then the day (UTC) from its hours.
      assert.deepEqual(
        await store.rollUpUsage(),
        jobRan({ slices: 6, hours: 1, days: 1, months: 1 }),
      );
      assert.equal(await markedSlices(sql), 0);
      assert.ok((await rowCount(sql, 'usage_10m')) > 0);
      assert.ok((await rowCount(sql, 'usage_1h')) > 0);
      assert.ok((await rowCount(sql, 'usage_1d')) > 0);
      assert.deepEqual(await store.rollUpUsage(), jobRan());
      for (const groupBy of ['namespace', 'pod', 'host', 'gpu'] as const) {
        await assertUsage(store, records, groupBy, DAY0, DAY0 + DAY); // the day, from usage_1d
        await assertUsage(store, records, groupBy, DAY0 - DAY, DAY0 + 2 * DAY); // days around it
        await assertUsage(store, records, groupBy, MONTH0, MONTH1); // the month, from usage_1mo
        await assertUsage(store, records, groupBy, MONTH0 - DAY, MONTH1 + DAY); // and days
        await assertUsage(store, records, groupBy, B, B + HOUR); // the hour, from usage_1h
        await assertUsage(store, records, groupBy, B - HOUR, B + 2 * HOUR); // hours around it
        await assertUsage(store, records, groupBy, B + 10 * MINUTE, B + 30 * MINUTE); // slices
        await assertUsage(store, records, groupBy, B + 5 * MINUTE, B + 2 * HOUR); // partial first
        await assertUsage(store, records, groupBy, B + 12 * MINUTE, B + 17 * MINUTE); // in one
      }
      // The day is read from usage_1d alone, the month from usage_1mo: without the hours (and
      // the days) their answers are the same.
      const hoursKept = await sql.query('SELECT * FROM usage_1h');
      await sql.query('DELETE FROM usage_1h');
      await assertUsage(store, records, 'pod', DAY0, DAY0 + DAY);
      const daysKept = await sql.query('SELECT * FROM usage_1d');
      await sql.query('DELETE FROM usage_1d');
      await assertUsage(store, records, 'pod', MONTH0, MONTH1);
      await sql.query(
        `INSERT INTO usage_1d SELECT * FROM json_populate_recordset(NULL::usage_1d, $1::json)`,
        [JSON.stringify(daysKept.rows)],
      );
      await sql.query(
        `INSERT INTO usage_1h SELECT * FROM json_populate_recordset(NULL::usage_1h, $1::json)`,
        [JSON.stringify(hoursKept.rows)],
      );
      // A late reading: a pod on node-b GPU 1 in minute 45, past what was computed.
      const late = lateReading();
      await store.write('fleet', [late]);
      assert.equal(await markedSlices(sql), 1, 'its slice marked again');
      for (const groupBy of ['namespace', 'host'] as const)
        await assertUsage(store, [...records, late], groupBy, B, B + HOUR); // slices + minutes
      for (const groupBy of ['namespace', 'host'] as const)
        await assertUsage(store, [...records, late], groupBy, DAY0, DAY0 + DAY); // not usage_1d
      for (const groupBy of ['namespace', 'host'] as const)
        await assertUsage(store, [...records, late], groupBy, MONTH0, MONTH1); // not usage_1mo
      assert.deepEqual(
        await store.rollUpUsage(),
        jobRan({ slices: 1, hours: 1, days: 1, months: 1 }),
      );
      for (const groupBy of ['namespace', 'pod', 'host', 'gpu'] as const) {
        await assertUsage(store, [...records, late], groupBy, B, B + HOUR); // from usage_1h again
        await assertUsage(store, [...records, late], groupBy, DAY0, DAY0 + DAY); // usage_1d again
        await assertUsage(store, [...records, late], groupBy, MONTH0, MONTH1); // usage_1mo again
        await assertUsage(store, [...records, late], groupBy, B + 40 * MINUTE, B + HOUR);
      }
      // A day marked and not summed again yet (the job between its turns): its month's sum is
      // stale, and is not read.
      await sql.query('UPDATE usage_days SET marked_at = clock_timestamp()');
      await sql.query('UPDATE usage_1mo SET minutes = 0, joules = 0');
      await assertUsage(store, [...records, late], 'pod', MONTH0, MONTH1);
    });

    it('usage of an hour computed whole before migration 015, or marked by an earlier release (usage_dirty), is recomputed by its six slices', async (t) => {
      const { store, sql } = await open(t, { foldOnWrite: true, usageSettleMs: 0 });
      const records = fleetRecords();
      await writeAll(store, records);
      await store.rollUpUsage();
      // As a schema 11 store left it (usage_1h, and no slice), migrated: its days marked.
      await sql.query('DELETE FROM usage_10m');
      await sql.query('DELETE FROM usage_slices');
      await sql.query('DELETE FROM usage_1d');
      await sql.query('DELETE FROM usage_1mo');
      await sql.query('DELETE FROM usage_months');
      await sql.query(
        `INSERT INTO usage_days (day, marked_at) VALUES (nexus_ts($1), timestamptz 'epoch')
         ON CONFLICT (day) DO UPDATE SET marked_at = excluded.marked_at, computed_at = NULL`,
        [DAY0],
      );
      for (const groupBy of ['namespace', 'gpu'] as const) {
        await assertUsage(store, records, groupBy, B, B + HOUR); // usage_1h
        await assertUsage(store, records, groupBy, B + 10 * MINUTE, B + 30 * MINUTE); // minutes
      }
      const late = lateReading();
      await store.write('fleet', [late]);
      assert.equal(await markedSlices(sql), 1);
      // The late slice, then the five never computed: the hour's sum is whole; then the day.
      assert.deepEqual(
        await store.rollUpUsage(),
        jobRan({ slices: 6, hours: 1, days: 1, months: 1 }),
      );
      for (const groupBy of ['namespace', 'pod', 'host', 'gpu'] as const)
        await assertUsage(store, [...records, late], groupBy, B, B + HOUR);
      // An earlier release's collector marks the hour (schema 11) during an upgrade: the whole
      // hour is read from the minutes until the job has turned the mark into slices.
      await sql.query(
        `INSERT INTO usage_dirty (hour, marked_at) VALUES (nexus_ts($1), timestamptz 'epoch')`,
        [B],
      );
      await sql.query('DELETE FROM usage_1h');
      await sql.query('DELETE FROM usage_10m');
      for (const groupBy of ['namespace', 'gpu'] as const) {
        await assertUsage(store, [...records, late], groupBy, B, B + HOUR);
        await assertUsage(store, [...records, late], groupBy, B + 10 * MINUTE, B + 30 * MINUTE);
      }
      await assertUsage(store, [...records, late], 'pod', DAY0, DAY0 + DAY);
      assert.deepEqual(
        await store.rollUpUsage(),
        jobRan({ slices: 6, hours: 1, days: 1, months: 1 }),
      );
      assert.equal(await rowCount(sql, 'usage_dirty'), 0);
      for (const groupBy of ['namespace', 'pod', 'host', 'gpu'] as const)
        await assertUsage(store, [...records, late], groupBy, B, B + HOUR);
    });

    it('a counter silent in the minute before a range or slice: its previous reading is looked up further back', async (t) => {
      const { store } = await open(t, { foldOnWrite: true, usageSettleMs: 0 });
      // node-a GPU 0's counter skips minutes 4 and 9: the minute before the range from minute 5,
      // and before the slice from minute 10.
      const records = fleetRecords().filter(
        (r) =>
          r.metric !== ENERGY ||
          (bucketOf(r.timestamp) !== B + 4 * MINUTE && bucketOf(r.timestamp) !== B + 9 * MINUTE),
      );
      await writeAll(store, records);
      for (const groupBy of ['namespace', 'gpu'] as const) {
        await assertUsage(store, records, groupBy, B + 5 * MINUTE, B + 30 * MINUTE);
        await assertUsage(store, records, groupBy, B + 10 * MINUTE, B + 20 * MINUTE);
      }
      await store.rollUpUsage();
      for (const groupBy of ['namespace', 'pod', 'host', 'gpu'] as const) {
        await assertUsage(store, records, groupBy, B, B + HOUR); // usage_1h
        await assertUsage(store, records, groupBy, B + 10 * MINUTE, B + 20 * MINUTE); // usage_10m
      }
    });

    it('the usage job marks no slice that has not begun (the current hour is summed from the slices written)', async (t) => {
      const { store, sql } = await open(t, { foldOnWrite: true, usageSettleMs: 0 });
      const now = Date.now();
      const records = [0, 1, 2].map((k) =>
        rec(now - (3 - k) * MINUTE, 40, {
          hostname: 'node-now',
          gpu: 0,
          metric: UTIL,
          pod: 'p',
          namespace: 'n',
        }),
      );
      await writeAll(store, records);
      const res = await store.rollUpUsage();
      // Those written, and the slices before them in their hours (never written: empty).
      assert.ok(res.slices >= 1 && res.slices <= 7, JSON.stringify(res));
      const future = await sql.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM usage_slices WHERE slice > clock_timestamp()',
      );
      assert.equal(future.rows[0]?.n, 0, 'no slice after now');
      const h = Math.floor((now - 3 * MINUTE) / HOUR) * HOUR;
      await assertUsage(store, records, 'pod', h, h + 2 * HOUR);
    });

    it('the usage job leaves a slice marked less than 30 s ago (writes under its mark may still land)', async (t) => {
      const { store, sql } = await open(t, { foldOnWrite: true });
      await writeAll(store, fleetRecords());
      assert.deepEqual(await store.rollUpUsage(), jobRan());
      assert.equal(await markedSlices(sql), 5);
      assert.equal(await rowCount(sql, 'usage_10m'), 0);
      assert.equal(await rowCount(sql, 'usage_1h'), 0);
    });

    for (const fold of [true, false]) {
      it(`idle and usage outlive the sealing job, which moves the fleet metrics' minutes to fleet_1m, and a late reading counts once (foldOnWrite ${fold})`, async (t) => {
        const { store, sql } = await open(t, { foldOnWrite: fold });
        const records = fleetRecords();
        await writeAll(store, records);
        // Without foldOnWrite the readings are still pending (the rollup job has not run): the
        // sealing job folds those of the fleet metrics into fleet_1m itself.
        const usage = () =>
          store.reader.usage({ cluster: 'fleet', groupBy: 'pod', from: B, to: B + HOUR });
        const idle = () =>
          store.reader.idleGpus({ cluster: 'fleet', utilPercent: 5, forMs: 15 * MINUTE });
        const before = await usage();
        const idleBefore = await idle();
        assert.equal(await rowCount(sql, 'fleet_1m'), 0, 'fleet_1m is written by sealing only');
        const res = await store.compact({ now: B + 10 * HOUR, delayMs: 0 });
        assert.ok(res.windows > 0, 'a window was sealed');
        assert.equal(await rowCount(sql, 'samples_1m'), 0, 'the hot rollup is gone');
        assert.equal(await rowCount(sql, 'samples_pending'), 0, 'nothing left pending');
        assert.equal(
          await rowCount(sql, 'fleet_1m'),
          (4 + 2 + 2 + 1) * MINUTES,
          'one row per GPU, fleet metric and minute',
        );
        assert.deepEqual(await usage(), before);
        assert.deepEqual(await idle(), idleBefore);

        // A late reading of the sealed window: counted at once (pending or folded into
        // samples_1m), after the rollup job (a row in samples_1m and one in fleet_1m for its
        // minute), and after the next sealing pass (one row), and never twice.
        const late = lateReading();
        await store.write('fleet', [late]);
        const all = [...records, late];
        for (const groupBy of ['namespace', 'host'] as const)
          await assertUsage(store, all, groupBy, B, B + HOUR);
        await store.rollUp();
        for (const groupBy of ['namespace', 'host'] as const)
          await assertUsage(store, all, groupBy, B, B + HOUR);
        await store.compact({ now: B + 10 * HOUR, delayMs: 0 });
        assert.equal(await rowCount(sql, 'samples_1m'), 0, 'the late minute is folded in');
        const keys = await sql.query<{ n: number; k: number; c: number }>(
          `SELECT count(*)::int AS n, count(DISTINCT (gpu_id, metric_id, bucket))::int AS k, sum(count)::int AS c
           FROM fleet_1m`,
        );
        assert.equal(keys.rows[0]?.n, keys.rows[0]?.k, 'one fleet_1m row per key');
        assert.equal(
          keys.rows[0]?.c,
          all.filter((r) => [UTIL, POWER, ENERGY, PROF].includes(r.metric)).length,
          'every fleet-metric reading folded once',
        );
        for (const groupBy of ['namespace', 'pod', 'host', 'gpu'] as const)
          await assertUsage(store, all, groupBy, B, B + HOUR);
      });
    }

    it('retention drops allocation minutes, the fleet rollup and the kept usage with the 1-minute rollup', async (t) => {
      const { store, sql } = await open(t, { rollupRetentionDays: 1, usageSettleMs: 0 });
      await writeAll(store, fleetRecords());
      await store.rollUp();
      await store.rollUpUsage();
      for (const table of USAGE_TABLES) assert.ok((await rowCount(sql, table)) > 0, table);
      assert.equal(
        await rowCount(sql, 'fleet_1m_folded'),
        (4 + 2 + 2 + 1) * MINUTES,
        'one row per GPU, fleet metric and minute',
      );
      await store.compact({ now: B + 10 * HOUR, delayMs: 0 });
      assert.equal(await rowCount(sql, 'fleet_1m'), (4 + 2 + 2 + 1) * MINUTES, 'sealed');
      await store.maintain(B + 2 * 86_400_000);
      assert.equal(await rowCount(sql, 'gpu_allocations'), 0);
      assert.equal(await rowCount(sql, 'fleet_1m_folded'), 0);
      for (const table of USAGE_TABLES) assert.equal(await rowCount(sql, table), 0, table);
    });

    it('an unknown cluster is NOT_FOUND', async (t) => {
      const { store } = await open(t);
      await writeAll(store, fleetRecords().slice(0, 10));
      await assert.rejects(
        store.reader.usage({ cluster: 'nope', groupBy: 'host', from: B, to: B + HOUR }),
        (err) => isNexusError(err) && err.code === 'NOT_FOUND',
      );
      await assert.rejects(
        store.reader.idleGpus({ cluster: 'nope', utilPercent: 5, forMs: MINUTE }),
        (err) => isNexusError(err) && err.code === 'NOT_FOUND',
      );
    });
  });
}
