import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  WHOLE_GPU,
  migInstanceOf,
  migProfileOf,
  utilizationPercent,
} from '../../../src/core/mig.js';

describe('MIG labels and utilisation', () => {
  it("reads the GPU instance id and profile from dcgm-exporter's labels, and the lower-case spelling", () => {
    assert.equal(migInstanceOf({ GPU_I_ID: '7', GPU_I_PROFILE: '1g.10gb' }), 7);
    assert.equal(migProfileOf({ GPU_I_ID: '7', GPU_I_PROFILE: '1g.10gb' }), '1g.10gb');
    assert.equal(migInstanceOf({ gpu_i_id: '0' }), 0);
    assert.equal(migProfileOf({ gpu_i_profile: '3g.40gb' }), '3g.40gb');
  });

  it('a reading without an id, with an empty one or with one that is not 0..32767 is the whole GPU', () => {
    for (const labels of [
      {},
      { GPU_I_ID: '' },
      { GPU_I_ID: 'x' },
      { GPU_I_ID: '-1' },
      { GPU_I_ID: '40000' },
    ])
      assert.equal(migInstanceOf(labels), WHOLE_GPU, JSON.stringify(labels));
    assert.equal(migProfileOf({ GPU_I_PROFILE: '' }), undefined);
  });

  it('utilisation: GR_ENGINE_ACTIVE x 100 where present, else GPU_UTIL, else none', () => {
    const engine = { metric: 'DCGM_FI_PROF_GR_ENGINE_ACTIVE', value: 0.25 };
    const util = { metric: 'DCGM_FI_DEV_GPU_UTIL', value: 40 };
    assert.equal(utilizationPercent([util, engine]), 25);
    assert.equal(utilizationPercent([util]), 40);
    assert.equal(utilizationPercent([{ metric: 'DCGM_FI_DEV_GPU_TEMP', value: 50 }]), undefined);
  });
});
