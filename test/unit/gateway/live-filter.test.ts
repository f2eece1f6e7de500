import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { matcher } from '../../../src/gateway/live/hub.js';
import type { FeedRecord } from '../../../src/registry/feed.js';

describe('live filters and MIG instances', () => {
  const whole: FeedRecord = {
    hostname: 'node-a',
    gpu: 2,
    uuid: 'GPU-a100',
    metric: 'DCGM_FI_DEV_GPU_TEMP',
    timestamp: 0,
    value: 40,
  };
  const instance: FeedRecord = {
    hostname: 'node-a',
    gpu: 2,
    gpu_instance_id: 7,
    uuid: 'GPU-a100',
    metric: 'DCGM_FI_PROF_GR_ENGINE_ACTIVE',
    timestamp: 0,
    value: 0.5,
  };
  const matches = (f: Parameters<typeof matcher>[0]): boolean[] =>
    [whole, instance].map((r) => matcher(f)('c1', r));

  it("a filter naming the GPU (by index or uuid) gets the GPU's own readings, not its instances'", () => {
    assert.deepEqual(matches({ gpu_id: [2] }), [true, false]);
    assert.deepEqual(matches({ uuid: ['GPU-a100'] }), [true, false]);
  });

  it('a filter of a host or cluster gets both, the instance reading saying which instance', () => {
    assert.deepEqual(matches({ host_id: ['node-a'] }), [true, true]);
    assert.deepEqual(matches({ cluster_id: 'c1' }), [true, true]);
    assert.deepEqual(matches({}), [true, true]);
  });
});
