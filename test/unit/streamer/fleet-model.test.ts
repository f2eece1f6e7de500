import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { TelemetryRecord } from '../../../src/core/record.js';
import { readDcgmCsv, readHeader } from '../../../src/streamer/csv/reader.js';
import {
  CLOCK_REASON,
  DEFAULT_FLEET,
  FleetModel,
  fleetIncidents,
  fleetInstants,
  fleetMig,
  generateFleetRecords,
  type FleetRange,
} from '../../../src/streamer/sim/fleet.js';
import { writeFleetCsv } from '../../../src/streamer/sim/fleet-csv.js';

const dir = mkdtempSync(join(tmpdir(), 'nexus-fleet-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY: FleetRange = { ...DEFAULT_FLEET, intervalMs: 60_000, durationMs: 24 * HOUR };
const START = DEFAULT_FLEET.startMs;
const THERMAL = CLOCK_REASON.swThermal | CLOCK_REASON.hwThermal;

const gpuKey = (r: TelemetryRecord): string =>
  `${r.hostname}/${r.gpu}${r.labels.GPU_I_ID === undefined ? '' : `/mig${r.labels.GPU_I_ID}`}`;

/** One pass over a day of the default fleet at 60 s, keeping what the properties need. */
interface Reading {
  t: number;
  power?: number;
  energy?: number;
  gr?: number;
  util?: number;
  reasons?: number;
  clock?: number;
  xid?: number;
  pod?: string;
}
const series = new Map<string, Reading[]>();
const metricsOf = new Map<string, Set<string>>();
const xidLabels = new Map<string, Readonly<Record<string, string>>>();
const namespaces = new Set<string>();
let total = 0;
for (const instant of fleetInstants(DAY)) {
  const byGpu = new Map<string, Reading>();
  for (const r of instant) {
    total++;
    const k = gpuKey(r);
    let reading = byGpu.get(k);
    if (reading === undefined) {
      reading = { t: r.timestamp };
      byGpu.set(k, reading);
      if (r.pod !== undefined) reading.pod = `${r.namespace}/${r.pod}`;
    }
    if (r.namespace !== undefined) namespaces.add(r.namespace);
    const ms = metricsOf.get(k) ?? new Set<string>();
    ms.add(r.metric);
    metricsOf.set(k, ms);
    switch (r.metric) {
      case 'DCGM_FI_DEV_POWER_USAGE':
        reading.power = r.value;
        break;
      case 'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION':
        reading.energy = r.value;
        break;
      case 'DCGM_FI_PROF_GR_ENGINE_ACTIVE':
        reading.gr = r.value;
        break;
      case 'DCGM_FI_DEV_GPU_UTIL':
        reading.util = r.value;
        break;
      case 'DCGM_FI_DEV_CLOCK_THROTTLE_REASONS':
        reading.reasons = r.value;
        break;
      case 'DCGM_FI_DEV_SM_CLOCK':
        reading.clock = r.value;
        break;
      case 'DCGM_FI_DEV_XID_ERRORS':
        reading.xid = r.value;
        if (r.value !== 0) xidLabels.set(`${k}=${r.value}`, r.labels);
        break;
    }
  }
  for (const [k, reading] of byGpu) {
    const s = series.get(k) ?? [];
    s.push(reading);
    series.set(k, s);
  }
}
const wholeGpus = [...series.keys()].filter((k) => !k.includes('/mig'));

describe('the fleet model', () => {
  it('is deterministic per seed, and another seed makes another fleet', () => {
    const range: FleetRange = { ...DEFAULT_FLEET, durationMs: 2 * HOUR };
    const a = generateFleetRecords(range);
    const b = generateFleetRecords(range);
    assert.equal(a.length, b.length);
    assert.deepEqual(a, b);
    const c = generateFleetRecords({ ...range, seed: 20 });
    assert.notDeepEqual(
      c.map((r) => r.value),
      a.map((r) => r.value),
    );
    assert.notDeepEqual(
      c.map((r) => r.uuid),
      a.map((r) => r.uuid),
    );
  });

  it('runs the same jobs at any interval (the schedule does not depend on the readings)', () => {
    const pods = (intervalMs: number): string[] => {
      const out = new Set<string>();
      for (const r of generateFleetRecords({ ...DEFAULT_FLEET, intervalMs, durationMs: 6 * HOUR }))
        if (r.pod !== undefined)
          out.add(`${r.hostname}/${r.gpu}/${r.labels.GPU_I_ID ?? ''}/${r.pod}`);
      return [...out].sort();
    };
    const at30s = pods(30_000);
    assert.ok(at30s.length > 50, `${at30s.length} pods`);
    assert.deepEqual(pods(60_000), at30s);
  });

  it('has 4 hosts x 8 GPUs, jobs of all four namespaces, a reading per GPU per interval', () => {
    assert.equal(wholeGpus.length, 30); // 32 less the two MIG GPUs, counted by instance
    assert.equal(series.size, 34);
    assert.deepEqual([...namespaces].sort(), ['batch', 'inference', 'research', 'training']);
    // A GPU with no incident reports every minute of the day.
    assert.equal(series.get('gpu-node-04/0')?.length, 24 * 60);
    assert.ok(total > 24 * 60 * 30 * 15, `${total} records`);
  });

  it('drives power with utilisation: idle 60-90 W, busy near the 700 W limit, never above', () => {
    const idle: number[] = [];
    const busy: number[] = [];
    for (const k of wholeGpus) {
      for (const r of series.get(k) ?? []) {
        assert.ok(r.power !== undefined && r.power > 50 && r.power <= 700, `${k}: ${r.power}`);
        if (r.util === 0 && r.pod === undefined) idle.push(r.power);
        if ((r.util ?? 0) >= 85) busy.push(r.power);
      }
    }
    const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    assert.ok(idle.length > 1000 && busy.length > 1000);
    assert.ok(mean(idle) > 60 && mean(idle) < 95, `idle mean ${mean(idle)}`);
    assert.ok(mean(busy) > 550, `busy mean ${mean(busy)}`);
  });

  it('counts energy as the integral of the reported power, restarting at 0 on the reboot only', () => {
    const reboot = fleetIncidents(DEFAULT_FLEET).find((i) => i.kind === 'reboot');
    assert.ok(reboot?.kind === 'reboot');
    let steps = 0;
    const resets: string[] = [];
    for (const k of wholeGpus) {
      const s = series.get(k) ?? [];
      for (let i = 1; i < s.length; i++) {
        const prev = s[i - 1] as Reading;
        const cur = s[i] as Reading;
        const dt = cur.t - prev.t;
        if ((cur.energy ?? 0) < (prev.energy ?? 0)) {
          resets.push(`${k}@${(cur.t - START) / MIN}`);
          // Since the reboot: the power of each instant since it, times the interval.
          assert.ok(
            (cur.energy ?? 0) <= 700 * (cur.t - reboot.end + DAY.intervalMs),
            `${k} at ${cur.t}: ${prev.energy} then ${cur.energy}`,
          );
          continue;
        }
        if (dt !== DAY.intervalMs) continue;
        assert.equal(
          (cur.energy ?? 0) - (prev.energy ?? 0),
          Math.round((cur.power ?? 0) * dt),
          `${k} at ${cur.t}`,
        );
        steps++;
      }
    }
    assert.ok(steps > 40_000, `${steps} steps`);
    const rebootMin = (reboot.end - START) / MIN;
    assert.deepEqual(
      resets.sort(),
      [0, 1, 2, 3, 4, 5, 6, 7].map((g) => `gpu-node-01/${g}@${rebootMin}`),
    );
  });

  it('runs jobs on the rebooted host again 10 minutes after it is back', () => {
    const reboot = fleetIncidents(DEFAULT_FLEET).find((i) => i.kind === 'reboot');
    assert.ok(reboot?.kind === 'reboot');
    const back = reboot.end;
    for (let g = 0; g < 8; g++) {
      const readings = series.get(`gpu-node-01/${g}`) ?? [];
      const first = readings.find((r) => r.t >= back && r.pod !== undefined);
      assert.equal((first?.t ?? 0) - back, 10 * MIN, `gpu-node-01/${g}`);
    }
  });

  it('has exactly one thermal incident: one host throttles on temperature, clocks drop', () => {
    const [thermal, ...more] = fleetIncidents(DEFAULT_FLEET).filter((i) => i.kind === 'thermal');
    assert.equal(more.length, 0);
    assert.ok(thermal?.kind === 'thermal');
    assert.equal(thermal.host, 'gpu-node-03');
    let throttled = 0;
    let hw = 0;
    for (const [k, s] of series) {
      for (const r of s) {
        if (((r.reasons ?? 0) & THERMAL) === 0) continue;
        throttled++;
        assert.ok(k.startsWith('gpu-node-03/'), k);
        assert.ok(r.t >= thermal.start && r.t < thermal.end + 15 * MIN, `${k} at ${r.t}`);
        if (((r.reasons ?? 0) & CLOCK_REASON.hwThermal) !== 0) {
          hw++;
          if ((r.util ?? 0) > 0) assert.ok((r.clock ?? 0) <= 1095, `${k} ${r.clock}`);
        } else if ((r.util ?? 0) > 0) assert.ok((r.clock ?? 0) <= 1410, `${k} ${r.clock}`);
      }
    }
    assert.ok(throttled >= 10 && hw >= 3, `throttled ${throttled}, HW ${hw}`);
  });

  it('raises exactly the XIDs listed, latched with err_code and err_msg until the reboot', () => {
    const listed = fleetIncidents(DEFAULT_FLEET).flatMap((i) =>
      i.kind === 'xid' ? [`${i.host}/${i.gpu}=${i.code}@${(i.at - START) / MIN}`] : [],
    );
    assert.deepEqual(listed, [
      'gpu-node-01/3=13@40',
      'gpu-node-02/5=31@180',
      'gpu-node-02/6=79@300',
      'gpu-node-03/1=43@540',
    ]);
    const seen: string[] = [];
    for (const [k, s] of series) {
      let latched = 0;
      for (const r of s) {
        if (r.xid !== latched) {
          if (r.xid !== 0) seen.push(`${k}=${r.xid}@${(r.t - START) / MIN}`);
          else assert.equal(k.startsWith('gpu-node-01/'), true, `${k} cleared at ${r.t}`);
          latched = r.xid ?? 0;
        }
      }
    }
    assert.deepEqual(seen.sort(), [...listed].sort());
    assert.deepEqual(
      { ...xidLabels.get('gpu-node-02/6=79') },
      {
        ...xidLabels.get('gpu-node-02/6=79'),
        err_code: '79',
        err_msg: 'GPU has fallen off the bus',
      },
    );
    assert.equal(xidLabels.get('gpu-node-01/3=13')?.err_msg, 'Graphics Engine Exception');
  });

  it('loses one GPU for good after its XID 79, and one that comes back after 40 minutes', () => {
    assert.deepEqual(
      fleetIncidents(DAY).flatMap((i) =>
        i.kind === 'stopped'
          ? [
              [
                i.host,
                i.gpu,
                (i.at - START) / MIN,
                i.back === undefined ? null : (i.back - START) / MIN,
              ],
            ]
          : [],
      ),
      [
        ['gpu-node-02', 6, 302, null],
        ['gpu-node-03', 4, 420, 460],
      ],
    );
    const lost = series.get('gpu-node-02/6') ?? [];
    assert.equal((lost.at(-1)?.t ?? 0) - START, 5 * HOUR + 1 * MIN);
    assert.equal(lost.filter((r) => r.xid === 79).length, 2);
    assert.equal(lost.at(-1)?.xid, 79);
    const back = series.get('gpu-node-03/4') ?? [];
    const gap = back.filter((r) => r.t >= START + 7 * HOUR && r.t < START + 7 * HOUR + 40 * MIN);
    assert.equal(gap.length, 0);
    assert.equal(back.length, 24 * 60 - 40);
    // The reboot: no readings of gpu-node-01 for five minutes.
    assert.equal(series.get('gpu-node-01/0')?.length, 24 * 60 - 5);
  });

  it('has MIG instances on one host: GPU_I_ID and profile, GR_ENGINE_ACTIVE, no DEV_GPU_UTIL', () => {
    assert.deepEqual(fleetMig(DEFAULT_FLEET), [
      { host: 'gpu-node-04', gpu: 6, instances: [1, 2] },
      { host: 'gpu-node-04', gpu: 7, instances: [1, 2] },
    ]);
    const migs = [...metricsOf.keys()].filter((k) => k.includes('/mig')).sort();
    assert.deepEqual(migs, [
      'gpu-node-04/6/mig1',
      'gpu-node-04/6/mig2',
      'gpu-node-04/7/mig1',
      'gpu-node-04/7/mig2',
    ]);
    for (const k of migs) {
      const ms = metricsOf.get(k) ?? new Set();
      assert.equal(ms.has('DCGM_FI_DEV_GPU_UTIL'), false);
      assert.equal(ms.has('DCGM_FI_PROF_GR_ENGINE_ACTIVE'), true);
    }
    assert.equal(metricsOf.get('gpu-node-04/5')?.has('DCGM_FI_DEV_GPU_UTIL'), true);
    const record = generateFleetRecords({ ...DEFAULT_FLEET, durationMs: 30_000 }).find(
      (r) => r.hostname === 'gpu-node-04' && r.gpu === 7,
    );
    assert.equal(record?.labels.GPU_I_PROFILE, '3g.40gb');
  });

  it('has GPUs allocated to a pod but idle for at least 15 minutes', () => {
    let idleStretches = 0;
    for (const [, s] of series) {
      let since: number | undefined;
      let pod: string | undefined;
      for (const r of s) {
        const idle = r.pod !== undefined && (r.gr ?? 1) < 0.05 && r.pod === (pod ?? r.pod);
        if (idle && since === undefined) {
          since = r.t;
          pod = r.pod;
        } else if (!idle) {
          if (since !== undefined && r.t - since >= 15 * MIN) idleStretches++;
          since = undefined;
          pod = undefined;
        }
      }
    }
    assert.ok(idleStretches >= 5, `idle stretches ${idleStretches}`);
  });

  it('speeds up jobs and incidents, not physics: the thermal incident at 10x is 2 minutes in', () => {
    const fast = fleetIncidents({ ...DEFAULT_FLEET, speed: 10, intervalMs: 10_000 });
    const thermal = fast.find((i) => i.kind === 'thermal');
    assert.ok(thermal?.kind === 'thermal');
    assert.equal(thermal.start - START, 6 * MIN);
    assert.equal(thermal.end - START, 8 * MIN);
    const model = new FleetModel({ ...DEFAULT_FLEET, speed: 10, intervalMs: 10_000 });
    let maxReasons = 0;
    while (model.nextTime < START + 12 * MIN) {
      for (const r of model.next()) {
        if (r.metric === 'DCGM_FI_DEV_CLOCK_THROTTLE_REASONS' && r.hostname === 'gpu-node-03')
          maxReasons |= r.value;
      }
    }
    assert.ok((maxReasons & CLOCK_REASON.swThermal) !== 0);
  });
});

describe('nexus generate --fleet output', () => {
  it('reads back through the CSV reader as the same records, with no rejects', async () => {
    const range: FleetRange = { ...DEFAULT_FLEET, durationMs: 90 * MIN, startMs: START + 4 * HOUR };
    const path = join(dir, 'fleet.csv');
    const out = createWriteStream(path);
    const rows = await writeFleetCsv(range, out);
    await new Promise<void>((resolve) => out.end(resolve));
    const { header, end, line } = await readHeader(path);
    const read: TelemetryRecord[] = [];
    let rejects = 0;
    for await (const chunk of readDcgmCsv(header, { path, startOffset: end, startLine: line })) {
      read.push(...chunk.records.map((r) => r.record));
      rejects += chunk.rejects.length + chunk.sentinels;
    }
    assert.equal(rejects, 0);
    assert.equal(read.length, rows);
    const plain = (rs: readonly TelemetryRecord[]): unknown =>
      rs.map((r) => ({ ...r, labels: { ...r.labels } }));
    assert.deepEqual(plain(read), plain(generateFleetRecords(range)));
  });
});
