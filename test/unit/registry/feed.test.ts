import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { TelemetryRecord } from '../../../src/core/record.js';
import { decodeFeed, encodeFeed, type FeedBatch } from '../../../src/registry/feed.js';
import { MemoryFeed } from '../../../src/registry/memory/memory-feed.js';
import { T0, rec } from '../../conformance/store-fixtures.js';

describe('live feed', () => {
  /** The same reading without a uuid (dcgm-exporter omits it for some devices). */
  const withoutUuid = (r: TelemetryRecord): TelemetryRecord => {
    const { uuid, ...rest } = r;
    assert.ok(uuid !== undefined);
    return rest;
  };
  const records: TelemetryRecord[] = [
    rec(T0, 41.5, { hostname: 'node-a', gpu: 0 }),
    withoutUuid(
      rec(T0 + 1000, 7, { hostname: 'node-b', gpu: 3, metric: 'DCGM_FI_DEV_POWER_USAGE' }),
    ),
  ];

  it('the in-process feed delivers exactly what the etcd feed delivers after its wire round trip', async () => {
    const feed = new MemoryFeed();
    const got: FeedBatch[] = [];
    await feed.subscribe('c1', (b) => got.push(b));
    await feed.publish('c1', records);
    await feed.publish('c2', records);
    assert.equal(got.length, 1);
    const batch = got[0];
    assert.ok(batch !== undefined);
    const wire = decodeFeed(encodeFeed('c1', records, batch.committed_at));
    assert.deepEqual(batch, wire);
    // Only the feed's fields: no labels, model or other attributes of the stored records.
    assert.deepEqual(Object.keys(batch.records[0] ?? {}), [
      'hostname',
      'gpu',
      'uuid',
      'metric',
      'timestamp',
      'value',
    ]);
    assert.equal('uuid' in (batch.records[1] ?? {}), false);
    await feed.close();
  });

  it("a MIG instance's reading carries its GPU instance id, in memory and on the wire; a whole GPU's none", async () => {
    const mig = [
      rec(T0, 0.5, {
        gpu: 2,
        metric: 'DCGM_FI_PROF_GR_ENGINE_ACTIVE',
        labels: { GPU_I_ID: '7', GPU_I_PROFILE: '1g.10gb' },
      }),
      rec(T0, 40, { gpu: 2 }),
    ];
    const feed = new MemoryFeed();
    const got: FeedBatch[] = [];
    await feed.subscribe('c1', (b) => got.push(b));
    await feed.publish('c1', mig);
    const batch = got[0];
    assert.ok(batch !== undefined);
    assert.deepEqual(
      batch.records.map((r) => [r.gpu, r.gpu_instance_id]),
      [
        [2, 7],
        [2, undefined],
      ],
    );
    const encoded = encodeFeed('c1', mig, batch.committed_at);
    // Seven numbers for the instance's row, the six every gateway reads for the GPU's.
    assert.deepEqual(
      encoded.r.map((row) => row.length),
      [7, 6],
    );
    assert.deepEqual(decodeFeed(encoded), batch);
    await feed.close();
  });
});
