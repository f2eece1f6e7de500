import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NexusMetrics } from '../../../src/core/metrics.js';
import { exportFleetGauges } from '../../../src/gateway/instrumentation.js';
import type { ClusterSummary, LatestValue, Selection } from '../../../src/store/reader.js';

const T = Date.UTC(2026, 0, 2, 3, 4, 5);

function reading(metric: string, unit: string, value: number): LatestValue {
  return {
    cluster_id: 'c1',
    hostname: 'h1',
    gpu_id: 0,
    uuid: 'GPU-a',
    metric,
    unit,
    timestamp: T,
    value,
  };
}

/** The latest readings a store would hold for one GPU, as the gateway reads them. */
const STORED = [
  // dcgm-exporter's fixture value (test/fixtures/dcgm-exporter/node-1.prom): 1,234,567,000 ns.
  reading('DCGM_FI_DEV_POWER_VIOLATION', 'ns', 1_234_567_000),
  reading('DCGM_FI_DEV_FB_USED', 'MiB', 1024),
  reading('DCGM_FI_DEV_FB_FREE', 'MiB', 80_000),
  reading('DCGM_FI_DEV_POWER_USAGE', 'W', 312.5),
  reading('DCGM_FI_DEV_GPU_TEMP', 'C', 61),
  reading('DCGM_FI_DEV_GPU_UTIL', '%', 37),
];

/** A fleet of `gpus` live GPUs in one cluster, as the reader counts it. */
const fleetOf = (gpus: number) => (): Promise<ClusterSummary[]> =>
  Promise.resolve([
    { cluster_id: 'c1', hosts: 1, gpus, retired_gpus: 0, first_seen: T, last_seen: T },
  ]);

const reader = {
  latest(q: Selection): Promise<LatestValue[]> {
    const want = new Set(q.metrics ?? []);
    return Promise.resolve(STORED.filter((r) => want.has(r.metric)));
  },
  currentWorkloads: () => Promise.resolve([]),
  clusters: fleetOf(1),
};

/** The value of the one sample of `name` in an exposition. */
function sampleOf(body: string, name: string): number {
  const lines = body.split('\n').filter((l) => l.startsWith(`${name}{`));
  assert.equal(lines.length, 1, name);
  return Number(lines[0]?.slice(lines[0].lastIndexOf(' ') + 1));
}

describe('fleet gauges', () => {
  it("convert DCGM's units to the gauges' base units through the field catalogue", async () => {
    const metrics = new NexusMetrics({ component: 'gateway', processMetrics: false });
    exportFleetGauges(metrics, reader);
    const { body } = await metrics.exposition();
    assert.equal(sampleOf(body, 'nexus_gpu_power_violation_seconds'), 1.234567);
    assert.equal(sampleOf(body, 'nexus_gpu_memory_used_bytes'), 1024 * 1024 * 1024);
    assert.equal(sampleOf(body, 'nexus_gpu_memory_free_bytes'), 80_000 * 1024 * 1024);
    assert.equal(sampleOf(body, 'nexus_gpu_power_watts'), 312.5);
    assert.equal(sampleOf(body, 'nexus_gpu_temperature_celsius'), 61);
    assert.equal(sampleOf(body, 'nexus_gpu_utilization_percent'), 37);
    const help = body
      .split('\n')
      .find((l) => l.startsWith('# HELP nexus_gpu_power_violation_seconds'));
    assert.equal(
      help,
      '# HELP nexus_gpu_power_violation_seconds Time throttled by power limits (DCGM_FI_DEV_POWER_VIOLATION, which DCGM gives in ns)',
    );
  });

  it("a GPU reported only by its MIG instances is seen (last seen), its instances' values are no gauges of its", async () => {
    const mig: LatestValue = {
      ...reading('DCGM_FI_DEV_GPU_TEMP', 'C', 55),
      gpu_id: 3,
      uuid: 'GPU-b',
      gpu_instance_id: 7,
      mig_profile: '1g.10gb',
      timestamp: T + 5000,
    };
    const asked: Selection[] = [];
    const metrics = new NexusMetrics({ component: 'gateway', processMetrics: false });
    exportFleetGauges(metrics, {
      latest(q: Selection): Promise<LatestValue[]> {
        asked.push(q);
        const want = new Set(q.metrics ?? []);
        return Promise.resolve([...STORED, mig].filter((r) => want.has(r.metric)));
      },
      currentWorkloads: () => Promise.resolve([]),
      clusters: fleetOf(2),
    });
    const { body } = await metrics.exposition();
    assert.ok(asked.length > 0 && asked.every((q) => q.instances === 'all'));
    // One temperature: GPU 0's; GPU 3's instance reading sets no GPU 3 temperature.
    assert.equal(sampleOf(body, 'nexus_gpu_temperature_celsius'), 61);
    const seen = body
      .split('\n')
      .filter((l) => l.startsWith('nexus_gpu_last_reading_timestamp_seconds{'));
    assert.equal(seen.length, 2);
    assert.ok(seen.some((l) => l.includes('gpu="3"') && l.endsWith(` ${(T + 5000) / 1000}`)));
  });

  it('leave the per-GPU gauges out above FLEET_GAUGES_MAX_GPUS, saying how many GPUs, without reading them', async () => {
    let reads = 0;
    const metrics = new NexusMetrics({ component: 'gateway', processMetrics: false });
    exportFleetGauges(
      metrics,
      {
        ...reader,
        latest: (q: Selection) => {
          reads++;
          return reader.latest(q);
        },
        clusters: fleetOf(3),
      },
      2,
    );
    const { body } = await metrics.exposition();
    assert.equal(reads, 0);
    assert.equal(
      body.split('\n').filter((l) => l.startsWith('nexus_gpu_')).length,
      0,
      'no per-GPU series',
    );
    assert.equal(sampleOf(body, 'nexus_fleet_gauges_gpus_left_out'), 3);
    // At the limit, every GPU is exported and none is left out.
    const within = new NexusMetrics({ component: 'gateway', processMetrics: false });
    exportFleetGauges(within, { ...reader, clusters: fleetOf(2) }, 2);
    const all = (await within.exposition()).body;
    assert.equal(sampleOf(all, 'nexus_gpu_temperature_celsius'), 61);
    assert.equal(sampleOf(all, 'nexus_fleet_gauges_gpus_left_out'), 0);
  });
});
