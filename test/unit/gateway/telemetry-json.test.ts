/**
 * GET /api/v1/telemetry's answers written as JSON text (src/gateway/telemetry-json.ts): each is
 * exactly JSON.stringify of the answer built as objects from the same columns, in the fields of
 * schemas/telemetry.ts, whatever the names hold (quotes, backslashes, non-ASCII) and whatever the
 * values (negative zero, exponents, NaN and infinities, written as null as JSON.stringify does).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { seriesOfOut } from '../../../src/gateway/presenters.js';
import {
  columnPageJson,
  readingPageJson,
  seriesResultJson,
} from '../../../src/gateway/telemetry-json.js';
import {
  Reading,
  Series as SeriesSchema,
  SeriesColumns as ColumnsSchema,
} from '../../../src/gateway/schemas/telemetry.js';
import type { Series, SeriesColumns } from '../../../src/store/reader.js';

const T0 = Date.parse('2025-07-18T13:42:33.000Z');
const VALUES = [42, 0.1 + 0.2, -0, 1e21, -5e-7, Number.NaN, Number.POSITIVE_INFINITY, 7];

const whole: SeriesColumns = {
  cluster_id: 'prod "east"',
  hostname: 'gpu-nöde\\01',
  gpu_id: 3,
  uuid: undefined,
  metric: 'DCGM_FI_DEV_GPU_UTIL',
  unit: '%',
  times: Float64Array.from(VALUES, (_, i) => T0 + i * 10_000),
  values: Float64Array.from(VALUES),
};
const mig: SeriesColumns = {
  cluster_id: 'c',
  hostname: 'h1',
  gpu_id: 0,
  uuid: 'GPU-1',
  gpu_instance_id: 2,
  mig_profile: undefined,
  metric: 'DCGM_FI_PROF_GR_ENGINE_ACTIVE',
  unit: 'ratio',
  times: Float64Array.of(T0, T0 + 1),
  values: Float64Array.of(0.5, 0.25),
};
const finite: SeriesColumns = { ...mig, gpu_instance_id: 1, mig_profile: '1g.10gb' };

const iso = (t: number): string => new Date(t).toISOString();

/** Every key of `o` is a property of `schema`, and every required property is there. */
function fitsSchema(
  o: object,
  schema: { properties: Record<string, unknown>; required?: string[] },
): void {
  for (const k of Object.keys(o)) assert.ok(k in schema.properties, `unexpected field ${k}`);
  for (const k of schema.required ?? []) assert.ok(k in o, `missing field ${k}`);
}

describe('telemetry answers as JSON text', () => {
  it('a page of readings is JSON.stringify of one object per reading', () => {
    const series = [whole, mig];
    const text = readingPageJson(series, 10, 'abc"d');
    const expected = {
      readings: series.flatMap((s) =>
        Array.from(s.times, (t, i) => ({
          ...seriesOfOut(s),
          timestamp: iso(t),
          value: s.values[i],
        })),
      ),
      count: 10,
      next_cursor: 'abc"d',
    };
    assert.equal(text, JSON.stringify(expected));
    const parsed = JSON.parse(text) as typeof expected;
    assert.equal(parsed.readings.length, VALUES.length + 2);
    for (const r of parsed.readings) fitsSchema(r, Reading);
    // Not finite: null, as JSON.stringify writes it; everything else exactly.
    assert.deepEqual(
      parsed.readings.slice(0, VALUES.length).map((r) => r.value),
      [42, 0.30000000000000004, 0, 1e21, -5e-7, null, null, 7],
    );
    assert.equal(parsed.readings[0]?.host_id, 'gpu-nöde\\01');
  });

  it('an empty page, and the last page (no cursor)', () => {
    assert.deepEqual(JSON.parse(readingPageJson([], 0, null)), {
      readings: [],
      count: 0,
      next_cursor: null,
    });
    assert.deepEqual(JSON.parse(columnPageJson([], 0, null)), {
      columns: [],
      count: 0,
      next_cursor: null,
    });
  });

  it('a page as columns is JSON.stringify of parallel arrays per series', () => {
    const series = [whole, finite];
    const text = columnPageJson(series, 10, null);
    const expected = {
      columns: series.map((s) => ({
        ...seriesOfOut(s),
        timestamps: Array.from(s.times),
        values: Array.from(s.values),
      })),
      count: 10,
      next_cursor: null,
    };
    assert.equal(text, JSON.stringify(expected));
    for (const c of expected.columns) fitsSchema(c, ColumnsSchema);
  });

  it('downsampled series, as points and as columns', () => {
    const points = (s: SeriesColumns) =>
      Array.from(s.times, (t, i) => [t, s.values[i] ?? 0, i + 1] as const);
    const series: Series[] = [whole, finite].map(({ times: _t, values: _v, ...s }, k) => ({
      ...s,
      points: points([whole, finite][k] ?? whole),
    }));
    const head = {
      step: '5m',
      agg: 'avg',
      from: iso(T0),
      to: iso(T0 + 3_600_000),
      source: 'rollup',
    };
    const asPoints = seriesResultJson(series, head, false);
    const expectedPoints = {
      series: series.map((s) => ({
        ...seriesOfOut(s),
        points: s.points.map(([t, value, count]) => ({ timestamp: iso(t), value, count })),
      })),
      ...head,
    };
    assert.equal(asPoints, JSON.stringify(expectedPoints));
    for (const s of expectedPoints.series) fitsSchema(s, SeriesSchema);

    const asColumns = seriesResultJson(series, head, true);
    const expectedColumns = {
      columns: series.map((s) => ({
        ...seriesOfOut(s),
        timestamps: s.points.map((p) => p[0]),
        values: s.points.map((p) => p[1]),
        counts: s.points.map((p) => p[2]),
      })),
      ...head,
    };
    assert.equal(asColumns, JSON.stringify(expectedColumns));
    for (const s of expectedColumns.columns) fitsSchema(s, ColumnsSchema);
  });
});
