import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NexusError } from '../../../src/core/errors.js';
import type { TelemetryRecord } from '../../../src/core/record.js';
import { parseHeader, rowToRecord, type DcgmHeader } from '../../../src/streamer/csv/dcgm-row.js';

const HEADER_FIELDS = [
  'timestamp',
  'metric_name',
  'gpu_id',
  'device',
  'uuid',
  'modelName',
  'Hostname',
  'container',
  'pod',
  'namespace',
  'value',
  'labels_raw',
];

const header = parseHeader(HEADER_FIELDS);

type Row = Record<string, string>;

const GOOD: Row = {
  timestamp: '2025-07-18T20:42:34Z',
  metric_name: 'DCGM_FI_DEV_GPU_UTIL',
  gpu_id: '3',
  device: 'nvidia3',
  uuid: 'GPU-9ba418e1-59be-2f2e-6031-e3f6b7c64ad7',
  modelName: 'NVIDIA H100 80GB HBM3',
  Hostname: 'mtv5-dgx1-hgpu-031',
  container: '',
  pod: '',
  namespace: '',
  value: '87.5',
  labels_raw: 'Hostname="mtv5-dgx1-hgpu-031",gpu="3"',
};

function fields(overrides: Row = {}, h: DcgmHeader = header): string[] {
  const row: Row = { ...GOOD, ...overrides };
  return h.names.map((n) => row[n] ?? '');
}

function recordOf(f: readonly string[], h: DcgmHeader = header): TelemetryRecord {
  const result = rowToRecord(h, f);
  if (result.kind !== 'record') assert.fail(`expected a record, got ${JSON.stringify(result)}`);
  return result.record;
}

function rejectOf(f: readonly string[]): string {
  const result = rowToRecord(header, f);
  if (result.kind !== 'reject') assert.fail(`expected a reject, got ${JSON.stringify(result)}`);
  return result.reason;
}

describe('parseHeader', () => {
  it('maps every column of the real header to its index', () => {
    assert.equal(header.width, 12);
    assert.deepEqual(header.names, HEADER_FIELDS);
    assert.deepEqual(
      { ...header.index },
      {
        timestamp: 0,
        metric: 1,
        gpu: 2,
        device: 3,
        uuid: 4,
        model: 5,
        hostname: 6,
        container: 7,
        pod: 8,
        namespace: 9,
        value: 10,
        labels: 11,
      },
    );
  });

  it('matches names case-insensitively and ignores surrounding spaces', () => {
    const h = parseHeader([' VALUE', 'HOSTNAME ', 'Gpu_Id', 'Metric_Name', 'TimeStamp']);
    assert.equal(h.index.value, 0);
    assert.equal(h.index.hostname, 1);
    assert.equal(h.index.gpu, 2);
    assert.equal(h.index.metric, 3);
    assert.equal(h.index.timestamp, 4);
    assert.equal(h.index.labels, -1);
    assert.equal(h.index.uuid, -1);
  });

  it('throws CSV_HEADER_INVALID naming each missing required column', () => {
    for (const column of ['timestamp', 'metric_name', 'gpu_id', 'Hostname', 'value']) {
      const without = HEADER_FIELDS.filter((f) => f !== column);
      assert.throws(
        () => parseHeader(without),
        (err: unknown) => {
          assert.ok(err instanceof NexusError);
          assert.equal(err.code, 'CSV_HEADER_INVALID');
          assert.match(err.message, new RegExp(`required column\\(s\\) ${column.toLowerCase()}`));
          return true;
        },
        column,
      );
    }
  });

  it('lists all missing columns at once', () => {
    assert.throws(
      () => parseHeader(['device', 'uuid']),
      (err: unknown) =>
        err instanceof NexusError &&
        err.code === 'CSV_HEADER_INVALID' &&
        /timestamp, metric_name, gpu_id, hostname, value/.test(err.message),
    );
  });

  it('does not require the optional columns', () => {
    const h = parseHeader(['timestamp', 'metric_name', 'gpu_id', 'Hostname', 'value']);
    const record = recordOf(['2025-07-18T20:42:34Z', 'M', '0', 'h', '1'], h);
    assert.deepEqual(record, {
      timestamp: Date.UTC(2025, 6, 18, 20, 42, 34),
      metric: 'M',
      gpu: 0,
      hostname: 'h',
      value: 1,
      labels: {},
    });
  });
});

describe('rowToRecord', () => {
  it("reads each row's own timestamp when rows repeat, change and go bad in turn", () => {
    const a = Date.UTC(2025, 6, 18, 20, 42, 34);
    assert.equal(recordOf(fields()).timestamp, a);
    assert.equal(recordOf(fields()).timestamp, a);
    assert.equal(recordOf(fields({ timestamp: '2025-07-18T20:42:44Z' })).timestamp, a + 10_000);
    assert.match(rejectOf(fields({ timestamp: '2025-13-01T00:00:00Z' })), /bad timestamp/);
    assert.match(rejectOf(fields({ timestamp: '2025-13-01T00:00:00Z' })), /bad timestamp/);
    assert.equal(recordOf(fields()).timestamp, a);
  });
  it('turns a good row into a record with every field', () => {
    const record = recordOf(fields());
    assert.deepEqual(
      { ...record, labels: { ...record.labels } },
      {
        timestamp: Date.UTC(2025, 6, 18, 20, 42, 34),
        metric: 'DCGM_FI_DEV_GPU_UTIL',
        gpu: 3,
        hostname: 'mtv5-dgx1-hgpu-031',
        value: 87.5,
        device: 'nvidia3',
        uuid: 'GPU-9ba418e1-59be-2f2e-6031-e3f6b7c64ad7',
        model: 'NVIDIA H100 80GB HBM3',
        labels: { Hostname: 'mtv5-dgx1-hgpu-031', gpu: '3' },
      },
    );
  });

  it('leaves empty container, pod and namespace out of the record', () => {
    const record = recordOf(fields());
    assert.equal('container' in record, false);
    assert.equal('pod' in record, false);
    assert.equal('namespace' in record, false);
  });

  it('keeps container, pod and namespace when present', () => {
    const record = recordOf(fields({ container: 'main', pod: 'train-7', namespace: 'research' }));
    assert.equal(record.container, 'main');
    assert.equal(record.pod, 'train-7');
    assert.equal(record.namespace, 'research');
  });

  it('leaves empty device, uuid and model out of the record', () => {
    const record = recordOf(fields({ device: '', uuid: '', modelName: '' }));
    assert.deepEqual(Object.keys(record).sort(), [
      'gpu',
      'hostname',
      'labels',
      'metric',
      'timestamp',
      'value',
    ]);
  });

  it('gives an empty labels_raw empty labels', () => {
    assert.deepEqual(recordOf(fields({ labels_raw: '' })).labels, {});
    assert.deepEqual(recordOf(fields({ labels_raw: '  ' })).labels, {});
  });

  it('trims metric, gpu_id and Hostname', () => {
    const record = recordOf(fields({ metric_name: ' M ', gpu_id: ' 7 ', Hostname: ' h1 ' }));
    assert.equal(record.metric, 'M');
    assert.equal(record.gpu, 7);
    assert.equal(record.hostname, 'h1');
  });

  it('reports a DCGM sentinel value as kind sentinel', () => {
    for (const value of ['9223372036854775794', '140737488355328', '2147483632']) {
      assert.deepEqual(rowToRecord(header, fields({ value })), { kind: 'sentinel' }, value);
    }
  });

  it('rejects a wrong column count, giving both counts', () => {
    assert.equal(rejectOf(fields().slice(0, 11)), 'wrong column count: expected 12 fields, got 11');
    assert.equal(
      rejectOf([...fields(), 'extra']),
      'wrong column count: expected 12 fields, got 13',
    );
    assert.equal(rejectOf(['']), 'wrong column count: expected 12 fields, got 1');
  });

  it('rejects a missing or bad timestamp', () => {
    assert.equal(rejectOf(fields({ timestamp: '' })), 'missing timestamp');
    assert.equal(rejectOf(fields({ timestamp: '   ' })), 'missing timestamp');
    assert.equal(rejectOf(fields({ timestamp: 'yesterday' })), 'bad timestamp "yesterday"');
    assert.equal(
      rejectOf(fields({ timestamp: '2025-02-30T00:00:00Z' })),
      'bad timestamp "2025-02-30T00:00:00Z"',
    );
  });

  it('clips long bad text in a reason to 40 characters', () => {
    const reason = rejectOf(fields({ timestamp: 'x'.repeat(100) }));
    assert.equal(reason, `bad timestamp "${'x'.repeat(40)}..."`);
  });

  it('rejects a missing metric_name', () => {
    assert.equal(rejectOf(fields({ metric_name: '' })), 'missing metric_name');
    assert.equal(rejectOf(fields({ metric_name: ' ' })), 'missing metric_name');
  });

  it('rejects a missing or bad gpu_id', () => {
    assert.equal(rejectOf(fields({ gpu_id: '' })), 'missing gpu_id');
    for (const gpu_id of ['-1', '1.5', 'gpu0', '0x1', '123456']) {
      assert.equal(rejectOf(fields({ gpu_id })), `bad gpu_id "${gpu_id}"`, gpu_id);
    }
  });

  it('rejects a missing Hostname', () => {
    assert.equal(rejectOf(fields({ Hostname: '' })), 'missing Hostname');
    assert.equal(rejectOf(fields({ Hostname: '  ' })), 'missing Hostname');
  });

  it('rejects a missing or non-numeric value', () => {
    assert.equal(rejectOf(fields({ value: '' })), 'missing value');
    assert.equal(rejectOf(fields({ value: ' ' })), 'missing value');
    for (const value of ['abc', 'NaN', 'Infinity', '1,5']) {
      assert.equal(rejectOf(fields({ value })), `non-numeric value "${value}"`, value);
    }
  });

  it('rejects malformed labels_raw with the label parser’s reason', () => {
    assert.equal(rejectOf(fields({ labels_raw: 'a="b' })), 'labels_raw: value of a is not closed');
    assert.equal(
      rejectOf(fields({ labels_raw: 'a=b' })),
      'labels_raw: quoted value expected for a',
    );
    assert.equal(
      rejectOf(fields({ labels_raw: 'a="1",a="2"' })),
      'labels_raw: label a appears twice',
    );
  });

  it('checks in column order: the first problem is the one reported', () => {
    assert.equal(
      rejectOf(fields({ timestamp: '', metric_name: '', value: 'x' })),
      'missing timestamp',
    );
    assert.equal(rejectOf(fields({ gpu_id: 'x', Hostname: '' })), 'bad gpu_id "x"');
  });
});

describe('label sets the cache keeps', () => {
  it('are frozen, shared by the rows of a series, with a label named __proto__ kept as a label', () => {
    const raw = 'Hostname="cache-copy-host",__proto__="p",gpu="3",job="dcgm"';
    const first = recordOf(fields({ labels_raw: raw }));
    const second = recordOf(fields({ labels_raw: raw, value: '12' }));
    assert.equal(second.labels, first.labels);
    assert.ok(Object.isFrozen(first.labels));
    assert.equal(Object.getPrototypeOf(first.labels), Object.prototype);
    assert.deepEqual(Object.keys(first.labels), ['Hostname', '__proto__', 'gpu', 'job']);
    assert.equal(Object.getOwnPropertyDescriptor(first.labels, '__proto__')?.value, 'p');
    assert.deepEqual(Object.entries(first.labels), [
      ['Hostname', 'cache-copy-host'],
      ['__proto__', 'p'],
      ['gpu', '3'],
      ['job', 'dcgm'],
    ]);
  });
});
