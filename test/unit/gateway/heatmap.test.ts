/** The heatmap's grouping (docs/api.md, "GET /api/v1/clusters/{c}/heatmap"): pure functions. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { groupHosts, heatmapCells } from '../../../src/gateway/routes/heatmap.js';
import type { LatestValue } from '../../../src/store/reader.js';

const pad = (n: number, w: number): string => String(n).padStart(w, '0');
const value = (hostname: string, gpu_id: number, v: number): LatestValue => ({
  cluster_id: 'c',
  hostname,
  gpu_id,
  uuid: `GPU-${hostname}-${gpu_id}`,
  metric: 'DCGM_FI_DEV_GPU_UTIL',
  unit: '%',
  timestamp: 1_750_000_000_000,
  value: v,
});
const span = (names: readonly string[], g: { from: number; to: number }) => [
  names[g.from],
  names[g.to],
];

describe('heatmap grouping', () => {
  it('groups gpu-node-00000.. by the longest prefix giving at most max_cells/4 groups', () => {
    const names = Array.from({ length: 12_500 }, (_, i) => `gpu-node-${pad(i, 5)}`);
    const groups = groupHosts(names, 500, '');
    // gpu-node-000 .. gpu-node-124: 125 groups of 100 hosts (the next length gives 1250).
    assert.equal(groups.length, 125);
    assert.deepEqual(
      groups.slice(0, 2).map((g) => [g.prefix, ...span(names, g)]),
      [
        ['gpu-node-000', 'gpu-node-00000', 'gpu-node-00099'],
        ['gpu-node-001', 'gpu-node-00100', 'gpu-node-00199'],
      ],
    );
    assert.deepEqual(
      groups.map((g) => g.to - g.from + 1),
      Array.from({ length: 125 }, () => 100),
    );
    // gpu-node-012 (100 hosts) in at most 10 groups: by the next character, 10 groups of 10.
    const sub = names.filter((n) => n.startsWith('gpu-node-012'));
    const inner = groupHosts(sub, 10, 'gpu-node-012');
    assert.deepEqual(
      inner.map((g) => g.prefix),
      Array.from({ length: 10 }, (_, i) => `gpu-node-012${i}`),
    );
  });

  it('groups rack-a-.. names by rack when racks are few', () => {
    const names = ['a', 'b', 'c'].flatMap((r) =>
      Array.from({ length: 40 }, (_, i) => `rack-${r}-host-${pad(i, 2)}`),
    );
    const groups = groupHosts(names, 8, '');
    // The longest prefix with at most 8 groups: the rack (12 groups of 10 would be too many).
    assert.deepEqual(
      groups.map((g) => [g.prefix, g.to - g.from + 1]),
      [
        ['rack-a-host-', 40],
        ['rack-b-host-', 40],
        ['rack-c-host-', 40],
      ],
    );
  });

  it('without shared structure, runs of consecutive hosts with their common prefix', () => {
    // Random-looking names: every first character differs, so no prefix gives few groups.
    const names = Array.from({ length: 100 }, (_, i) => `${pad(i, 2)}x`).sort();
    const groups = groupHosts(names, 4, '');
    assert.deepEqual(
      groups.map((g) => [g.prefix, ...span(names, g)]),
      [
        ['', '00x', '24x'],
        ['', '25x', '49x'],
        ['', '50x', '74x'],
        ['', '75x', '99x'],
      ],
    );
  });
});

describe('heatmap cells', () => {
  const hosts = Array.from({ length: 30 }, (_, i) => ({ hostname: `node-${pad(i, 2)}`, gpus: 8 }));
  const values = hosts.flatMap((h, i) =>
    Array.from({ length: 8 }, (_, g) => value(h.hostname, g, i * 10 + g)),
  );

  it('one cell per GPU when hosts x GPUs fit', () => {
    const out = heatmapCells({ hosts, values, alerting: new Set(), maxCells: 240, prefix: '' });
    assert.equal(out.level, 'gpu');
    assert.equal(out.cells.length, 240);
    assert.deepEqual(out.cells[9], {
      key: 'node-01/1',
      host_id: 'node-01',
      gpu_id: 1,
      uuid: 'GPU-node-01-1',
      value: 11,
      time: new Date(1_750_000_000_000).toISOString(),
      alerting: 0,
    });
  });

  it('one cell per host with min, avg, max, reporting and alerting', () => {
    const alerting = new Set(['node-02\u00003', 'node-02\u00004']);
    // node-29 reports only 2 of its 8 GPUs.
    const some = values.filter((v) => v.hostname !== 'node-29' || v.gpu_id < 2);
    const out = heatmapCells({ hosts, values: some, alerting, maxCells: 100, prefix: '' });
    assert.equal(out.level, 'host');
    assert.equal(out.cells.length, 30);
    assert.deepEqual(out.cells[2], {
      key: 'node-02',
      host_id: 'node-02',
      gpus: 8,
      reporting: 8,
      min: 20,
      avg: 23.5,
      max: 27,
      alerting: 2,
    });
    assert.deepEqual(
      [out.cells[29]?.reporting, out.cells[29]?.avg, out.cells[29]?.gpus],
      [2, 290.5, 8],
    );
  });

  it('groups above max_cells hosts; the group figures add up the hosts', () => {
    const out = heatmapCells({ hosts, values, alerting: new Set(), maxCells: 16, prefix: '' });
    assert.equal(out.level, 'group');
    assert.deepEqual(
      out.cells.map((c) => [c.prefix, c.from, c.to, c.hosts, c.gpus, c.min, c.max, c.avg]),
      [
        ['node-0', 'node-00', 'node-09', 10, 80, 0, 97, 48.5],
        ['node-1', 'node-10', 'node-19', 10, 80, 100, 197, 148.5],
        ['node-2', 'node-20', 'node-29', 10, 80, 200, 297, 248.5],
      ],
    );
    assert.deepEqual([out.hosts, out.gpus], [30, 240]);
  });

  it('skips MIG instance readings and hosts outside the list', () => {
    const extra = [
      { ...value('node-00', 0, 1000), gpu_instance_id: 1 },
      value('elsewhere', 0, 1000),
    ];
    const out = heatmapCells({
      hosts: hosts.slice(0, 1),
      values: [...values, ...extra],
      alerting: new Set(),
      maxCells: 100,
      prefix: '',
    });
    assert.deepEqual(
      out.cells.map((c) => c.value),
      [0, 1, 2, 3, 4, 5, 6, 7],
    );
  });
});
