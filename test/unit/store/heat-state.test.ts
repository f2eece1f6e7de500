import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DirCluster, DirGpu, DirHost } from '../../../src/store/fleet-directory.js';
import { HEAT_METRICS_KEPT, HeatKeeper } from '../../../src/store/heat-state.js';
import { TEMP } from '../../../src/store/overview-state.js';

const UTIL = 1;
const TEMP_ID = 2;
const cluster = { name: 'c' } as DirCluster;

/** A host with `whole` live whole GPUs, a MIG instance of GPU 0 and a retired GPU. */
function host(id: number, whole: number): DirHost {
  const h = {
    id,
    cluster,
    hostname: `node-${id}`,
    first_seen: 0,
    rows: [] as DirGpu[],
    liveRows: whole + 1,
    liveWhole: whole,
    retiredWhole: 1,
  };
  const row = (gpu: number, instance: number, retired: boolean): DirGpu => ({
    id: id * 100 + gpu * 10 + instance + 1,
    cluster_id: 'c',
    hostname: h.hostname,
    gpu_id: gpu,
    uuid: null,
    gpu_instance_id: instance,
    mig_profile: instance >= 0 ? '1g.10gb' : null,
    retired,
    host: h,
    model: null,
    device: null,
    first_seen: 0,
  });
  for (let g = 0; g < whole; g++) h.rows.push(row(g, -1, false));
  h.rows.push(row(0, 0, false), row(whole, -1, true));
  return h;
}

function keeper(): { k: HeatKeeper; values: Map<string, number> } {
  const values = new Map<string, number>();
  const k = new HeatKeeper(
    (gpu, metric) => values.get(`${gpu}/${metric}`),
    () => TEMP_ID,
  );
  return { k, values };
}

const set = (values: Map<string, number>, g: DirGpu | undefined, metric: number, v: number) => {
  assert.ok(g !== undefined);
  values.set(`${g.id}/${metric}`, v);
};

describe('HeatKeeper', () => {
  it('counts live whole GPUs, and over those reporting the metric its sum, min, max and the hot ones', () => {
    const { k, values } = keeper();
    const a = host(1, 4);
    const empty = host(2, 0);
    const b = host(3, 2);
    a.rows.forEach((g, i) => set(values, g, UTIL, 10 * (i + 1))); // MIG and retired rows too
    set(values, a.rows[0], TEMP_ID, 90);
    set(values, a.rows[3], TEMP_ID, 50);
    set(values, a.rows[4], TEMP_ID, 99); // the MIG instance: not a whole GPU
    values.delete(`${a.rows[3]?.id}/${UTIL}`); // GPU 3 does not report the metric
    assert.deepEqual(k.figures([a, empty, b], 0, 3, UTIL), [
      { hostname: 'node-1', gpus: 4, reporting: 3, sum: 60, min: 10, max: 30, alerting: 1 },
      {
        hostname: 'node-3',
        gpus: 2,
        reporting: 0,
        sum: 0,
        min: Infinity,
        max: -Infinity,
        alerting: 0,
      },
    ]);
    assert.deepEqual(
      k.figures([a, empty, b], 1, 3, UTIL).map((f) => f.hostname),
      ['node-3'],
    );
  });

  it("keeps a host's figures until a value of the metric, a temperature or a GPU row of it changes", () => {
    const { k, values } = keeper();
    const a = host(1, 2);
    const b = host(2, 2);
    for (const g of [...a.rows, ...b.rows]) set(values, g, UTIL, 10);
    const max = () => k.figures([a, b], 0, 2, UTIL).map((f) => [f.max, f.alerting]);
    assert.deepEqual(max(), [
      [10, 0],
      [10, 0],
    ]);
    set(values, a.rows[0], UTIL, 70);
    set(values, b.rows[0], UTIL, 80);
    assert.deepEqual(
      max(),
      [
        [10, 0],
        [10, 0],
      ],
      'kept: nothing said',
    );
    k.onValue(a.rows[0] as DirGpu, 7, 'DCGM_FI_DEV_SM_CLOCK');
    assert.deepEqual(max()[0], [10, 0], 'another metric changes nothing');
    k.onValue(a.rows[0] as DirGpu, UTIL, 'DCGM_FI_DEV_GPU_UTIL');
    assert.deepEqual(max(), [
      [70, 0],
      [10, 0],
    ]);
    set(values, b.rows[1], TEMP_ID, 95);
    k.onValue(b.rows[1] as DirGpu, TEMP_ID, TEMP);
    assert.deepEqual(max(), [
      [70, 0],
      [80, 1],
    ]);
    set(values, a.rows[1], UTIL, 75);
    k.onGpu(a.rows[1] as DirGpu);
    assert.deepEqual(max()[0], [75, 0]);
    set(values, a.rows[1], UTIL, 76);
    k.clear();
    assert.deepEqual(max()[0], [76, 0]);
  });

  it(`keeps ${HEAT_METRICS_KEPT} metrics, dropping the one asked for least recently`, () => {
    const { k, values } = keeper();
    const a = host(1, 1);
    const g = a.rows[0] as DirGpu;
    const metrics = Array.from({ length: HEAT_METRICS_KEPT + 1 }, (_, i) => 10 + i);
    for (const m of metrics) set(values, g, m, 1);
    const sum = (m: number) => k.figures([a], 0, 1, m)[0]?.sum;
    for (const m of metrics.slice(0, HEAT_METRICS_KEPT)) assert.equal(sum(m), 1);
    assert.equal(sum(10), 1); // asked again: the least recent is now 11
    for (const m of metrics) set(values, g, m, 2);
    assert.equal(sum(metrics[HEAT_METRICS_KEPT] as number), 2); // a ninth: 11 is dropped
    assert.equal(sum(10), 1, 'still kept');
    assert.equal(sum(11), 2, 'dropped, computed again');
  });
});
