/**
 * `nexus up` with ENABLE_REMOTE_WRITE=true: remote_write goes into its in-process queue and its
 * collector stores it (PGlite), under the host and GPU in the REST API; a reading for another
 * cluster than the one it stores is refused with a 400 saying why.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeWriteRequest } from '../../src/gateway/remote-write/decoder.js';
import { until } from '../helpers/pipeline.js';
import { startNexusUp } from '../helpers/nexus-up.js';

const HEADERS = {
  'content-type': 'application/x-protobuf',
  'content-encoding': 'snappy',
  'x-prometheus-remote-write-version': '0.1.0',
};

describe('nexus up with ENABLE_REMOTE_WRITE', () => {
  it('stores remote_write readings of its cluster; refuses another cluster with 400', async (t) => {
    const up = await startNexusUp(120_000, { ENABLE_REMOTE_WRITE: 'true' });
    t.after(() => up.stop());
    const now = Date.now() - 5000;
    const labels = {
      __name__: 'DCGM_FI_DEV_GPU_TEMP',
      gpu: '3',
      UUID: 'GPU-remote-write-up',
      Hostname: 'rw-up-host',
      instance: 'rw-up-host:9400',
      job: 'dcgm',
    };
    const res = await fetch(`${up.url}/api/v1/write`, {
      method: 'POST',
      headers: HEADERS,
      body: encodeWriteRequest([
        {
          labels,
          samples: [
            { value: 40, timestamp: now },
            { value: 41, timestamp: now + 1000 },
          ],
        },
      ]),
    });
    assert.equal(res.status, 204, await res.text());
    const readings = async (): Promise<number[]> => {
      const r = await fetch(
        `${up.url}/api/v1/telemetry?cluster_id=local-cluster&host_id=rw-up-host&gpu_id=3&metric=DCGM_FI_DEV_GPU_TEMP`,
      );
      if (r.status !== 200) return [];
      const body = (await r.json()) as { readings: { value: number }[] };
      return body.readings.map((x) => x.value);
    };
    let got: number[] = [];
    assert.ok(
      await until(async () => {
        got = await readings();
        return got.length === 2;
      }, 30_000),
      `readings ${JSON.stringify(got)}\n${up.logs().slice(-2000)}`,
    );
    assert.deepEqual(got.sort(), [40, 41]);

    const other = await fetch(`${up.url}/api/v1/write`, {
      method: 'POST',
      headers: HEADERS,
      body: encodeWriteRequest([
        { labels: { ...labels, cluster: 'elsewhere' }, samples: [{ value: 1, timestamp: now }] },
      ]),
    });
    const text = await other.text();
    assert.equal(other.status, 400, text);
    assert.ok(
      text.includes('nexus up stores the readings of one cluster, \\"local-cluster\\"'),
      text,
    );
  });
});
