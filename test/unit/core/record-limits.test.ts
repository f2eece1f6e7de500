import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseLabels } from '../../../src/core/labels.js';
import {
  RECORD_LIMITS,
  parseValue,
  recordProblem,
  type TelemetryRecord,
} from '../../../src/core/record.js';
import { parseHeader, rowToRecord } from '../../../src/streamer/csv/dcgm-row.js';
import { SAMPLE_HEADER, sampleFields } from '../../helpers/sample.js';

const NOW = Date.UTC(2025, 6, 18, 21, 0, 0);

const GOOD: TelemetryRecord = {
  timestamp: Date.UTC(2025, 6, 18, 20, 42, 34),
  metric: 'DCGM_FI_DEV_GPU_UTIL',
  gpu: 3,
  hostname: 'mtv5-dgx1-hgpu-031',
  value: 87.5,
  device: 'nvidia3',
  uuid: 'GPU-9ba418e1-59be-2f2e-6031-e3f6b7c64ad7',
  model: 'NVIDIA H100 80GB HBM3',
  container: 'main',
  pod: 'train-7f9c-0',
  namespace: 'ml',
  labels: { Hostname: 'mtv5-dgx1-hgpu-031', gpu: '3', 'k8s.io:zone-a': 'x' },
};

function problem(over: Partial<TelemetryRecord>): string | undefined {
  return recordProblem({ ...GOOD, ...over }, NOW);
}

describe('recordProblem: the bounds of every record', () => {
  it('accepts a real DCGM record, and identifiers exactly at their bounds', () => {
    assert.equal(problem({}), undefined);
    assert.equal(problem({ hostname: 'h'.repeat(253) }), undefined);
    assert.equal(problem({ metric: `M${'_'.repeat(127)}` }), undefined);
    assert.equal(problem({ uuid: 'u'.repeat(128), pod: 'p'.repeat(253) }), undefined);
    assert.equal(problem({ gpu: 99_999 }), undefined);
    assert.equal(problem({ hostname: 'höst-ünïcode-主机' }), undefined);
    const labels = Object.fromEntries(
      Array.from({ length: 64 }, (_, i) => [`l${i}`, 'v'.repeat(1024)]),
    );
    assert.equal(problem({ labels }), undefined);
  });

  it('refuses identifiers longer than their bound, naming the field and the length', () => {
    assert.equal(
      problem({ hostname: 'h'.repeat(200_000) }),
      'Hostname longer than 253 characters (200000)',
    );
    assert.equal(
      problem({ metric: `M${'_'.repeat(128)}` }),
      'metric_name longer than 128 characters (129)',
    );
    assert.equal(problem({ uuid: 'u'.repeat(129) }), 'uuid longer than 128 characters (129)');
    assert.equal(problem({ device: 'd'.repeat(129) }), 'device longer than 128 characters (129)');
    assert.equal(problem({ model: 'm'.repeat(257) }), 'model longer than 256 characters (257)');
    for (const f of ['container', 'pod', 'namespace'] as const) {
      assert.equal(problem({ [f]: 'k'.repeat(254) }), `${f} longer than 253 characters (254)`);
    }
  });

  it('refuses control characters (C0, DEL, C1, NUL) in every identifier', () => {
    const cases: [Partial<TelemetryRecord>, string][] = [
      [{ hostname: 'a\u0000b' }, 'Hostname holds a control character (U+0000) at character 2'],
      [{ hostname: 'a\tb' }, 'Hostname holds a control character (U+0009) at character 2'],
      [{ uuid: 'GPU-\u001b[31m' }, 'uuid holds a control character (U+001B) at character 5'],
      [{ device: 'nv\u007f' }, 'device holds a control character (U+007F) at character 3'],
      [{ model: 'H100\u0085' }, 'model holds a control character (U+0085) at character 5'],
      [{ pod: '\u009fpod' }, 'pod holds a control character (U+009F) at character 1'],
      [{ namespace: 'ns\n' }, 'namespace holds a control character (U+000A) at character 3'],
      [{ container: 'c\r' }, 'container holds a control character (U+000D) at character 2'],
    ];
    for (const [over, reason] of cases) assert.equal(problem(over), reason, JSON.stringify(over));
  });

  it('refuses a metric name that is not a metric name, and a GPU index out of range', () => {
    assert.equal(
      problem({ metric: 'DCGM FI TEMP' }),
      'bad metric_name "DCGM FI TEMP" (not [A-Za-z_:][A-Za-z0-9_:]*)',
    );
    assert.match(problem({ metric: '9lives' }) ?? '', /^bad metric_name/);
    assert.match(problem({ metric: 'temp\u0000' }) ?? '', /^bad metric_name/);
    assert.equal(problem({ gpu: 100_000 }), 'gpu_id out of range (0 to 99999)');
    assert.equal(problem({ gpu: -1 }), 'gpu_id out of range (0 to 99999)');
    assert.equal(problem({ gpu: 1.5 }), 'gpu_id out of range (0 to 99999)');
  });

  it('bounds labels: how many, their names, their values, no NUL', () => {
    const many = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`l${i}`, 'v']));
    assert.equal(problem({ labels: many }), 'more than 64 labels');
    assert.equal(
      problem({ labels: { ['n'.repeat(129)]: 'v' } }),
      'label name longer than 128 characters',
    );
    assert.equal(
      problem({ labels: { 'bad name': 'v' } }),
      'bad label name "bad name" (not [A-Za-z_][A-Za-z0-9_.:-]*)',
    );
    assert.equal(
      problem({ labels: { job: 'v'.repeat(1025) } }),
      'label job longer than 1024 characters (1025)',
    );
    assert.equal(problem({ labels: { job: 'a\u0000b' } }), 'label job holds a NUL character');
    // A newline in a value is Prometheus' own escape (\n): allowed.
    assert.equal(problem({ labels: { help: 'line one\nline two' } }), undefined);
  });

  it('refuses a CSV row stamped in years 0000 to 0099 naming its year as written, not as 19xx', () => {
    const header = parseHeader(SAMPLE_HEADER.split(','));
    const row = (timestamp: string): string[] => sampleFields('gpu="0"', timestamp);
    const cases: [string, string][] = [
      ['0050-01-01T00:00:00Z', '0050-01-01T00:00:00.000Z'],
      ['0001-01-01T00:00:00Z', '0001-01-01T00:00:00.000Z'],
      ['0099-12-31T23:59:59Z', '0099-12-31T23:59:59.000Z'],
      ['0000-12-31T00:00:00Z', '0000-12-31T00:00:00.000Z'],
    ];
    for (const [timestamp, shown] of cases) {
      assert.deepEqual(rowToRecord(header, row(timestamp), NOW), {
        kind: 'reject',
        reason: `timestamp out of range "${shown}" (accepted: 2000-01-01 to 24 hours ahead)`,
      });
    }
    assert.equal(rowToRecord(header, row('2025-07-18T20:42:34Z'), NOW).kind, 'record');
  });

  it('accepts timestamps from 2000-01-01 to a day ahead of the clock, and nothing outside', () => {
    assert.equal(problem({ timestamp: Date.UTC(2000, 0, 1) }), undefined);
    assert.equal(problem({ timestamp: NOW + RECORD_LIMITS.futureMs }), undefined);
    assert.equal(
      problem({ timestamp: Date.UTC(1999, 11, 31, 23, 59, 59, 999) }),
      'timestamp out of range "1999-12-31T23:59:59.999Z" (accepted: 2000-01-01 to 24 hours ahead)',
    );
    assert.match(
      problem({ timestamp: NOW + RECORD_LIMITS.futureMs + 1 }) ?? '',
      /^timestamp out of range "2025-07-19T21:00:00.001Z"/,
    );
    assert.match(problem({ timestamp: 0 }) ?? '', /^timestamp out of range "1970-01-01/);
    assert.match(
      problem({ timestamp: 8.64e15 + 1 }) ?? '',
      /^timestamp out of range "8640000000000001"/,
    );
    assert.equal(
      problem({ timestamp: 1.5e12 + 0.5 }),
      'timestamp is not a whole number of milliseconds',
    );
  });

  it('refuses a value that is not a finite number', () => {
    assert.equal(problem({ value: Number.NaN }), 'value is not a finite number');
    assert.equal(problem({ value: Number.POSITIVE_INFINITY }), 'value is not a finite number');
  });
});

describe('parseValue: numeric edge cases', () => {
  it('reads -0 as 0, and refuses what does not fit in a double', () => {
    assert.ok(Object.is(parseValue('-0'), 0));
    assert.ok(Object.is(parseValue('-0.0e5'), 0));
    assert.equal(parseValue('1e400'), undefined);
    assert.equal(parseValue('-1e400'), undefined);
    assert.equal(parseValue('1e-400'), 0);
    assert.equal(parseValue('1.7976931348623157e308'), Number.MAX_VALUE);
    for (const text of ['0x1A', 'Infinity', '-Infinity', 'NaN', '1_000', '1e', '.', '']) {
      assert.equal(parseValue(text), undefined, text);
    }
  });
});

describe('parseLabels: a bound on the count', () => {
  it('stops after maxLabels labels instead of parsing thousands', () => {
    const raw = Array.from({ length: 5000 }, (_, i) => `l${i}="v"`).join(',');
    assert.deepEqual(parseLabels(raw, 64), {
      ok: false,
      error: 'labels_raw: more than 64 labels',
    });
    const ok = parseLabels(raw.split(',').slice(0, 64).join(','), 64);
    assert.equal(ok.ok, true);
  });
});
