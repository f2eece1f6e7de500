import type { Series, SeriesColumns } from '../store/reader.js';
import { isoOf, seriesOfOut } from './presenters.js';

/**
 * GET /api/v1/telemetry's answers written straight to JSON text, in the shapes of
 * schemas/telemetry.ts (TelemetryResult). A history answer is mostly readings that share their
 * series' name. An object per reading, serialised field by field against the schema, was about
 * half of the gateway's busy time on a 1-hour page of 360 readings (profiled: the serialiser 15 %,
 * building the objects 9 %, garbage collection 13 %, escaping 3 %). Here each series' name is
 * serialised once and each reading adds its time and value to that text. A/B on the same database
 * (120 GPUs, 64 connections): 390-420 -> 1,340-1,490 requests/s on that page, 13 -> 113 on a
 * 24-hour page of 8,640 readings; the history bench's figures are in docs/benchmarks.md.
 *
 * Numbers are written as JSON.stringify writes them, a value that is not finite as null (the schema
 * serialiser refused NaN with a 500; no store holds one, but an answer must not fail on it).
 */

/** A number as JSON text. */
function num(v: number): string {
  return Number.isFinite(v) ? String(v) : 'null';
}

/** A column of numbers as the text inside a JSON array. */
function numbers(column: Float64Array | readonly number[]): string {
  for (const v of column) if (!Number.isFinite(v)) return Array.from(column, num).join(',');
  return column.join(',');
}

/** A series' name as the start of a JSON object, without its closing brace. */
function nameOpen(s: Omit<SeriesColumns, 'times' | 'values'>): string {
  return JSON.stringify(seriesOfOut(s)).slice(0, -1);
}

/** A page of readings (no step): `{"readings":[...],"count":n,"next_cursor":...}`. */
export function readingPageJson(
  series: readonly SeriesColumns[],
  count: number,
  nextCursor: string | null,
): string {
  const readings: string[] = [];
  for (const s of series) {
    const head = `${nameOpen(s)},"timestamp":"`;
    const { times, values } = s;
    for (let i = 0; i < times.length; i++)
      readings.push(`${head}${isoOf(times[i] ?? 0)}","value":${num(values[i] ?? 0)}}`);
  }
  return `{"readings":[${readings.join(',')}],"count":${count},"next_cursor":${JSON.stringify(nextCursor)}}`;
}

/** A page of readings as columns (format=columns, no step). */
export function columnPageJson(
  series: readonly SeriesColumns[],
  count: number,
  nextCursor: string | null,
): string {
  const columns = series.map(
    (s) => `${nameOpen(s)},"timestamps":[${numbers(s.times)}],"values":[${numbers(s.values)}]}`,
  );
  return `{"columns":[${columns.join(',')}],"count":${count},"next_cursor":${JSON.stringify(nextCursor)}}`;
}

/** What a downsampled answer says besides its series. */
export interface SeriesHead {
  readonly step: string;
  readonly agg: string;
  readonly from: string;
  readonly to: string;
  readonly source: string;
}

/** A downsampled answer (with step): series of points, or with `columns` parallel arrays. */
export function seriesResultJson(
  series: readonly Series[],
  head: SeriesHead,
  columns: boolean,
): string {
  const body = columns
    ? series.map((s) => {
        const n = s.points.length;
        const times = new Float64Array(n);
        const values = new Float64Array(n);
        const counts = new Float64Array(n);
        s.points.forEach(([t, v, c], i) => {
          times[i] = t;
          values[i] = v;
          counts[i] = c;
        });
        return `${nameOpen(s)},"timestamps":[${numbers(times)}],"values":[${numbers(values)}],"counts":[${numbers(counts)}]}`;
      })
    : series.map((s) => {
        const points = s.points.map(
          ([t, v, c]) => `{"timestamp":"${isoOf(t)}","value":${num(v)},"count":${num(c)}}`,
        );
        return `${nameOpen(s)},"points":[${points.join(',')}]}`;
      });
  const tail = JSON.stringify(head).slice(1);
  return `{"${columns ? 'columns' : 'series'}":[${body.join(',')}],${tail}`;
}
