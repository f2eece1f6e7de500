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

  it("any filter without gpu_instance gets whole GPUs' readings only, as REST does", () => {
    assert.deepEqual(matches({ gpu_id: [2] }), [true, false]);
    assert.deepEqual(matches({ uuid: ['GPU-a100'] }), [true, false]);
    assert.deepEqual(matches({ host_id: ['node-a'] }), [true, false]);
    assert.deepEqual(matches({}), [true, false]);
  });

  it('gpu_instance picks instances (-1: the whole GPU), each reading saying which', () => {
    assert.deepEqual(matches({ gpu_instance: [7] }), [false, true]);
    assert.deepEqual(matches({ host_id: ['node-a'], gpu_instance: [-1, 7] }), [true, true]);
    assert.deepEqual(matches({ gpu_id: [2], gpu_instance: [3] }), [false, false]);
  });
});
