import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { TelemetryRecord } from '../../../src/core/record.js';
import { FleetState } from '../../../src/registry/fleet-state.js';

const reading = (
  hostname: string,
  gpu: number,
  metric: string,
  timestamp: number,
  value: number,
  uuid = `GPU-${hostname}-${gpu}`,
): TelemetryRecord => ({ hostname, gpu, metric, timestamp, value, uuid, labels: {} });

describe('fleet state (what a collector tells the registry)', () => {
  it('coalesces the readings of a batch into one entry per cluster, host and GPU, with the newest value of each metric', () => {
    const s = new FleetState();
    s.observe('c1', [
      reading('h1', 0, 'util', 1000, 10),
      reading('h1', 1, 'util', 1000, 11),
      reading('h2', 0, 'util', 1000, 20),
      reading('h1', 0, 'util', 2000, 12),
      reading('h1', 0, 'temp', 1500, 40),
      // An older reading does not replace a newer value.
      reading('h1', 0, 'util', 500, 99),
    ]);
    const d = s.take(100);
    assert.deepEqual(d.clusters, [{ cluster_id: 'c1', first_seen: 500, last_seen: 2000 }]);
    assert.deepEqual(
      d.hosts.map((h) => [h.hostname, h.first_seen, h.last_seen]),
      [
        ['h1', 500, 2000],
        ['h2', 1000, 1000],
      ],
    );
    assert.deepEqual(
      d.gpus.map((g) => [g.hostname, g.gpu, g.uuid, g.first_seen, g.last_seen]),
      [
        ['h1', 0, 'GPU-h1-0', 500, 2000],
        ['h1', 1, 'GPU-h1-1', 1000, 1000],
        ['h2', 0, 'GPU-h2-0', 1000, 1000],
      ],
    );
    const live = d.live.find((l) => l.hostname === 'h1' && l.gpu === 0);
    assert.deepEqual(live, {
      cluster_id: 'c1',
      hostname: 'h1',
      gpu: 0,
      uuid: 'GPU-h1-0',
      time: 2000,
      metrics: { util: { value: 12, time: 2000 }, temp: { value: 40, time: 1500 } },
    });
    // Every entry is written for the first time.
    assert.equal(d.first.size, 1 + 2 + 3);
    assert.ok([...d.clusters, ...d.hosts, ...d.gpus].every((e) => d.first.has(e)));
    // Nothing moved since: nothing to write.
    const again = s.take(100);
    assert.deepEqual(
      [again.clusters.length, again.hosts.length, again.gpus.length, again.live.length],
      [0, 0, 0, 0],
    );
  });

  it('marks a GPU again when its attributes change, a newer reading says so, or a minute has passed', () => {
    const s = new FleetState();
    s.observe('c1', [reading('h1', 0, 'util', 1000, 1)]);
    s.take(100);
    // An older reading with another uuid does not revert it.
    s.observe('c1', [reading('h1', 0, 'util', 900, 1, 'GPU-old')]);
    assert.deepEqual(s.take(100).gpus, [
      // Its first_seen moved: written, with the newer uuid kept.
      {
        cluster_id: 'c1',
        hostname: 'h1',
        gpu: 0,
        uuid: 'GPU-h1-0',
        model: undefined,
        device: undefined,
        first_seen: 900,
        last_seen: 1000,
      },
    ]);
    s.observe('c1', [reading('h1', 0, 'util', 2000, 1, 'GPU-new')]);
    assert.equal(s.take(100).gpus[0]?.uuid, 'GPU-new');
    s.observe('c1', [reading('h1', 0, 'util', 2000 + 61_000, 1, 'GPU-new')]);
    const d = s.take(100);
    assert.equal(d.gpus.length, 1, 'last_seen touched after a minute');
    assert.equal(d.hosts.length, 1);
    assert.equal(d.clusters.length, 1);
    assert.equal(d.first.size, 0, 'written before: merged with what is there, not created');
  });

  it('writes at most maxLive GPUs per flush, the rest at the next, and puts a failed write back', () => {
    const s = new FleetState();
    s.observe(
      'c1',
      Array.from({ length: 10 }, (_, i) => reading(`h${i % 3}`, i, 'util', 1000, i)),
    );
    const first = s.take(4);
    assert.equal(first.live.length, 4);
    assert.equal(first.gpus.length, 10);
    s.restore(first);
    const second = s.take(100);
    // Put back after a failed first write: written again the safe way (read and merged).
    assert.equal(second.first.size, 0);
    assert.equal(second.live.length, 10, 'the 6 left and the 4 put back');
    assert.equal(second.gpus.length, 10);
    assert.equal(second.hosts.length, 3);
    assert.equal(second.clusters.length, 1);
  });

  it('takes the GPUs that have waited longest first: one dirtied again goes to the back', () => {
    const s = new FleetState();
    s.observe(
      'c1',
      Array.from({ length: 10 }, (_, i) => reading('h0', i, 'util', 1000, i)),
    );
    const gpus = (d: { live: readonly { gpu: number }[] }): number[] => d.live.map((l) => l.gpu);
    assert.deepEqual(gpus(s.take(4)), [0, 1, 2, 3]);
    // GPU 0 and 5 report again: 5 keeps its place (still waiting), 0 waits behind the rest.
    s.observe('c1', [reading('h0', 0, 'util', 2000, 7), reading('h0', 5, 'util', 2000, 8)]);
    assert.deepEqual(gpus(s.take(4)), [4, 5, 6, 7]);
    assert.deepEqual(gpus(s.take(4)), [8, 9, 0]);
    assert.deepEqual(gpus(s.take(4)), []);
  });
});
