import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { recordFromSeries } from '../../../src/core/dcgm-series.js';
import { EXPOSITION_LIMITS, parseExposition, parseValue } from '../../../src/scraper/exposition.js';
import { FIXTURES } from '../../helpers/dcgm-exporter.js';

const fixture = (name: string): string => readFileSync(join(FIXTURES, name), 'utf8');
const NOW = Date.UTC(2026, 0, 1);

describe('parseExposition on the dcgm-exporter fixtures', () => {
  it('reads every sample of node-1.prom with its labels and TYPE', () => {
    const p = parseExposition(fixture('node-1.prom'));
    assert.equal(p.samples.length, 11);
    assert.equal(p.malformedCount, 0);
    assert.equal(p.truncated, false);
    assert.equal(p.types.get('DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION'), 'counter');
    assert.equal(p.types.get('DCGM_FI_DEV_GPU_TEMP'), 'gauge');
    const xid = p.samples.find((s) => s.name === 'DCGM_FI_DEV_XID_ERRORS');
    assert.ok(xid);
    assert.equal(xid.value, 79);
    assert.equal(xid.labels.err_msg, 'GPU has fallen off the bus');
    assert.equal(xid.labels.pod, 'llm-train-0');
    assert.equal(xid.timestamp, undefined);
    const energy = p.samples.find((s) => s.name === 'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION');
    assert.equal(energy?.value, 8.2519223e10);
    const mig = p.samples.find((s) => s.name === 'DCGM_FI_PROF_GR_ENGINE_ACTIVE');
    assert.equal(mig?.labels.GPU_I_PROFILE, '1g.10gb');
    // Every sample maps to a record.
    for (const s of p.samples) {
      const r = recordFromSeries({ ...s, timestamp: NOW }, { now: NOW });
      assert.equal(r.kind, 'record', `${s.name} line ${s.line}`);
    }
  });

  it('reads the older label spellings of node-2-legacy.prom', () => {
    const p = parseExposition(fixture('node-2-legacy.prom'));
    assert.equal(p.samples.length, 2);
    assert.equal(p.malformedCount, 0);
    const r = recordFromSeries(
      { ...(p.samples[0] as (typeof p.samples)[0]), timestamp: NOW },
      { now: NOW },
    );
    assert.ok(r.kind === 'record');
    assert.equal(r.record.hostname, 'fixture-node-2');
    assert.equal(r.record.pod, 'etl-7f9c');
    assert.equal(r.record.namespace, 'data');
    assert.equal(r.record.container, 'worker');
    assert.equal(r.record.uuid, 'GPU-77777777-8888-9999-aaaa-bbbbccccdddd');
  });
});

describe('parseExposition details', () => {
  it('unescapes \\\\, \\" and \\n in label values, keeps other escapes as written', () => {
    const p = parseExposition('m{a="x\\\\y",b="say \\"hi\\"",c="l1\\nl2",d="\\t"} 1\n');
    assert.equal(p.malformedCount, 0);
    assert.deepEqual(p.samples[0]?.labels, { a: 'x\\y', b: 'say "hi"', c: 'l1\nl2', d: '\\t' });
  });

  it('takes an optional timestamp, a trailing comma, spaces, CRLF, and no labels', () => {
    const p = parseExposition('a{x="1",} 2 1700000000000\r\nb 3\n c  4.5e3 \nd {y="2"} 5\n');
    assert.equal(p.malformedCount, 0);
    assert.deepEqual(
      p.samples.map((s) => [s.name, s.value, s.timestamp]),
      [
        ['a', 2, 1_700_000_000_000],
        ['b', 3, undefined],
        ['c', 4500, undefined],
        ['d', 5, undefined],
      ],
    );
  });

  it('ignores HELP, plain comments and exemplars, and stops at # EOF', () => {
    const body = [
      '# HELP m some help with "quotes" and \\n',
      '# a plain comment',
      '# TYPE m counter',
      'm_total{a="1"} 5 # {trace_id="abc"} 1 1700000000.000',
      '# EOF',
      'after 1',
    ].join('\n');
    const p = parseExposition(body);
    assert.equal(p.malformedCount, 0);
    assert.equal(p.samples.length, 1);
    assert.equal(p.samples[0]?.value, 5);
    assert.equal(p.types.get('m'), 'counter');
  });

  it('parses NaN, +Inf and -Inf, counts them, and recordFromSeries rejects them as readings', () => {
    const labels = 'gpu="0",Hostname="h"';
    const p = parseExposition(
      `DCGM_FI_DEV_GPU_TEMP{${labels}} NaN\nDCGM_FI_DEV_GPU_TEMP{${labels}} +Inf\nDCGM_FI_DEV_GPU_TEMP{${labels}} -Inf\nDCGM_FI_DEV_GPU_TEMP{${labels}} 40\n`,
    );
    assert.equal(p.samples.length, 4);
    assert.equal(p.nonFinite, 3);
    assert.ok(Number.isNaN(p.samples[0]?.value));
    assert.equal(p.samples[1]?.value, Number.POSITIVE_INFINITY);
    assert.equal(p.samples[2]?.value, Number.NEGATIVE_INFINITY);
    const kinds = p.samples.map(
      (s) => recordFromSeries({ ...s, timestamp: NOW }, { now: NOW }).kind,
    );
    assert.deepEqual(kinds, ['reject', 'reject', 'reject', 'record']);
    assert.equal(parseValue('inf'), Number.POSITIVE_INFINITY);
    assert.equal(parseValue('1e'), undefined);
  });

  it('counts a malformed line by reason, skips it and keeps the rest', () => {
    const body = [
      'good 1',
      '9bad 1',
      'm{a="unterminated} 1',
      'm{a="1",a="2"} 1',
      'm{a=1} 1',
      'm{a="1"} abc',
      'm{a="1"}',
      'm{a="1"} 1 2 3',
      'm{a="1"} 1 1.5',
      '# TYPE m nonsense',
      'also_good{x="y"} 2',
    ].join('\n');
    const p = parseExposition(body);
    assert.deepEqual(
      p.samples.map((s) => s.name),
      ['good', 'also_good'],
    );
    assert.equal(p.malformedCount, 9);
    assert.deepEqual(p.malformed, {
      'bad-metric-name': 1,
      'bad-label-set': 2,
      'duplicate-label': 1,
      'bad-value': 3,
      'bad-timestamp': 1,
      'bad-comment': 1,
    });
    assert.deepEqual(
      p.examples.slice(0, 1).map((e) => [e.line, e.reason]),
      [[2, 'bad-metric-name']],
    );
  });

  it('bounds labels per sample, label sizes and lines (RECORD_LIMITS)', () => {
    const many = Array.from({ length: EXPOSITION_LIMITS.labels + 1 }, (_, i) => `l${i}="v"`).join(
      ',',
    );
    const longValue = 'x'.repeat(EXPOSITION_LIMITS.labelValue + 1);
    const longName = 'n'.repeat(EXPOSITION_LIMITS.labelName + 1);
    const okMany = Array.from({ length: EXPOSITION_LIMITS.labels }, (_, i) => `l${i}="v"`).join(
      ',',
    );
    const p = parseExposition(
      `a{${many}} 1\nb{v="${longValue}"} 1\nc{${longName}="1"} 1\nd{${okMany}} 1\n`,
    );
    assert.deepEqual(p.malformed, { 'too-many-labels': 1, 'label-too-long': 2 });
    assert.deepEqual(
      p.samples.map((s) => s.name),
      ['d'],
    );
    const limited = parseExposition('a 1\nb 2\nc 3\nd 4\n', { ...EXPOSITION_LIMITS, lines: 2 });
    assert.equal(limited.truncated, true);
    assert.equal(limited.samples.length, 2);
    const longLine = parseExposition(`a{v="${'y'.repeat(200)}"} 1\nb 1`, {
      ...EXPOSITION_LIMITS,
      lineLength: 100,
    });
    assert.deepEqual(longLine.malformed, { 'line-too-long': 1 });
    assert.equal(longLine.samples.length, 1);
  });
});
