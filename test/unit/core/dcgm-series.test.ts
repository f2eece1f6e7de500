import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { recordFromSeries, type SeriesSample } from '../../../src/core/dcgm-series.js';
import { parseLabels } from '../../../src/core/labels.js';
import { parseHeader, rowToRecord } from '../../../src/streamer/csv/dcgm-row.js';
import { SAMPLE_HEADER, sampleFields } from '../../helpers/sample.js';

const NOW = Date.UTC(2025, 6, 18, 21, 0, 0);
const TS = Date.UTC(2025, 6, 18, 20, 42, 34);

const LABELS_RAW =
  'DCGM_FI_DRIVER_VERSION="535.129.03",Hostname="mtv5-dgx1-hgpu-031",UUID="GPU-5fd4f087-86f3-7a43-b711-4771313afc50",__name__="DCGM_FI_DEV_GPU_UTIL",device="nvidia0",gpu="0",instance="mtv5-dgx1-hgpu-031:9400",job="dgx_dcgm_exporter",modelName="NVIDIA H100 80GB HBM3"';
/** The first row of the bundled export, as the CSV reader sees it. */
const ROW = sampleFields(LABELS_RAW);

function labelsOf(raw: string): Record<string, string> {
  const parsed = parseLabels(raw);
  assert.ok(parsed.ok);
  return { ...parsed.labels };
}

const sample = (over: Partial<SeriesSample> = {}): SeriesSample => ({
  name: 'DCGM_FI_DEV_GPU_UTIL',
  labels: labelsOf(LABELS_RAW),
  value: 37,
  timestamp: TS,
  ...over,
});

describe('recordFromSeries: a dcgm-exporter sample as a record', () => {
  it('gives the record the CSV row of the same reading gives (one series whatever the source)', () => {
    const csv = rowToRecord(parseHeader(SAMPLE_HEADER.split(',')), ROW, NOW);
    const prom = recordFromSeries(sample(), { now: NOW });
    assert.ok(csv.kind === 'record' && prom.kind === 'record');
    assert.deepEqual(
      { ...prom.record, labels: { ...prom.record.labels } },
      {
        ...csv.record,
        labels: { ...csv.record.labels },
      },
    );
    assert.equal(prom.cluster, undefined);
  });

  it('reads the label spellings dcgm-exporter has used, the workload over the exporter pod', () => {
    const old = recordFromSeries(
      sample({
        labels: {
          hostname: 'node-7',
          gpu: '3',
          uuid: 'GPU-1',
          pod_name: 'trainer-0',
          pod_namespace: 'ml',
          container_name: 'main',
        },
      }),
      { now: NOW },
    );
    assert.ok(old.kind === 'record');
    assert.deepEqual(
      [
        old.record.hostname,
        old.record.gpu,
        old.record.uuid,
        old.record.pod,
        old.record.namespace,
        old.record.container,
      ],
      ['node-7', 3, 'GPU-1', 'trainer-0', 'ml', 'main'],
    );
    // Kubernetes service discovery: Prometheus renames the workload's labels exported_* when the
    // target's own (the exporter pod's) take the plain names.
    const sd = recordFromSeries(
      sample({
        labels: {
          Hostname: 'node-7',
          gpu: '0',
          pod: 'dcgm-exporter-x2x',
          namespace: 'gpu-operator',
          exported_pod: 'trainer-0',
          exported_namespace: 'ml',
        },
      }),
      { now: NOW },
    );
    assert.ok(
      sd.kind === 'record' && sd.record.pod === 'trainer-0' && sd.record.namespace === 'ml',
    );
  });

  it('keeps MIG, driver and XID labels on the record', () => {
    const r = recordFromSeries(
      sample({
        name: 'DCGM_FI_DEV_XID_ERRORS',
        labels: {
          Hostname: 'h',
          gpu: '1',
          GPU_I_PROFILE: '1g.10gb',
          GPU_I_ID: '7',
          DCGM_FI_DRIVER_VERSION: '550.54.15',
          err_code: '79',
          err_msg: 'GPU has fallen off the bus',
        },
        value: 79,
      }),
      { now: NOW },
    );
    assert.ok(r.kind === 'record');
    assert.equal(r.record.labels.GPU_I_PROFILE, '1g.10gb');
    assert.equal(r.record.labels.err_msg, 'GPU has fallen off the bus');
  });

  it('says why a sample is not a reading', () => {
    const cases: [Partial<SeriesSample>, string][] = [
      [{ value: Number.NaN }, 'value NaN is not a reading'],
      [{ value: Number.POSITIVE_INFINITY }, 'value Infinity is not a reading'],
      [{ labels: { Hostname: 'h' } }, 'no gpu label'],
      [{ labels: { Hostname: 'h', gpu: 'x1' } }, 'bad gpu label "x1"'],
      [{ labels: { gpu: '0' } }, 'no Hostname label'],
      [{ timestamp: Date.UTC(1999, 0, 1) }, 'timestamp out of range'],
      [{ labels: { Hostname: 'h\u0001', gpu: '0' } }, 'control character'],
    ];
    for (const [over, why] of cases) {
      const r = recordFromSeries(sample(over), { now: NOW });
      assert.ok(r.kind === 'reject', `${why}: ${JSON.stringify(r)}`);
      assert.ok(r.reason.includes(why), `${why}: ${r.reason}`);
    }
  });

  it('skips sentinels, leaves other exporters\u2019 series out unless asked, and reads the cluster label', () => {
    assert.equal(recordFromSeries(sample({ value: 2 ** 63 }), { now: NOW }).kind, 'sentinel');
    assert.equal(recordFromSeries(sample({ name: 'node_load1' }), { now: NOW }).kind, 'not-dcgm');
    assert.equal(recordFromSeries(sample({ name: 'up' }), { now: NOW }).kind, 'not-dcgm');
    assert.equal(
      recordFromSeries(sample({ name: 'gpu_custom_metric' }), { now: NOW, acceptAll: true }).kind,
      'record',
    );
    const r = recordFromSeries(sample({ labels: { ...labelsOf(LABELS_RAW), cluster: 'eu-1' } }), {
      now: NOW,
    });
    assert.ok(r.kind === 'record' && r.cluster === 'eu-1');
  });
});
