import { NexusError } from '../core/errors.js';
import { parseDuration } from '../core/duration.js';
import { parseTimestamp } from '../core/record.js';

const bad = (message: string): NexusError => new NexusError('BAD_REQUEST', message);

/** The earliest instant a query may name: 0001-01-01T00:00:00Z. */
export const FIRST_INSTANT = -62_135_596_800_000;
/** The last instant a query may name: 9999-12-31T23:59:59.999Z (RFC 3339 has four-digit years). */
export const LAST_INSTANT = 253_402_300_799_999;

/**
 * An instant from a query parameter: RFC 3339 (`2025-07-18T20:42:34Z`), `now`, relative to now
 * (`-15m`, `now-1h`, `-7d`), or a bare number, read by its digits: 12 or more are epoch
 * milliseconds (`1752871354000`, as the API answers them), 9 to 11 are epoch seconds, optionally
 * with a fraction (`1752871354`, `1752871354.25`, as Prometheus-style clients send them). As
 * milliseconds, 9 to 11 digits would only name 1970-01-02 to 1973-03-03, long before any reading
 * (none before 2000 is stored), so they are read as seconds; fewer than 9 digits are refused,
 * saying what is accepted. Absolute instants outside years 1 to 9999 are refused; a relative one
 * reaching past them stops at the edge.
 */
export function parseInstant(name: string, text: string, now = Date.now()): number {
  const s = text.trim();
  if (s === 'now') return now;
  const rel = /^(?:now)?-(.+)$/.exec(s);
  if (rel !== null) {
    let ms: number;
    try {
      ms = parseDuration(rel[1] ?? '', name);
    } catch {
      throw bad(`${name}: "${clip(text)}" is not a relative time (use e.g. -15m, -1h, -7d)`);
    }
    return Math.max(FIRST_INSTANT, now - ms);
  }
  const t = /^[\d.]+$/.test(s) ? epochInstant(name, text, s) : parseTimestamp(s);
  if (t === undefined) {
    // Five or more digits of year: RFC 3339 has four, and the range ends with 9999.
    if (/^\d{5,}-\d\d-\d\d[Tt ]/.test(s)) throw outOfRange(name, text);
    throw bad(
      `${name}: "${clip(text)}" is not a time (RFC 3339 like 2025-07-18T20:42:34Z, epoch ms, now, or -15m)`,
    );
  }
  if (t < FIRST_INSTANT || t > LAST_INSTANT) throw outOfRange(name, text);
  return t;
}

function outOfRange(name: string, text: string): NexusError {
  return bad(`${name}: "${clip(text)}" is out of range (years 1 to 9999)`);
}

/**
 * A bare number as parseInstant reads it (`s` is `text` trimmed, digits and dots only). The two
 * forms meet at 1973-03-03T09:46:40Z: 100000000 seconds, 100000000000 milliseconds.
 */
function epochInstant(name: string, text: string, s: string): number {
  if (/^\d{12,}$/.test(s)) return Number(s);
  if (/^\d{9,11}(?:\.\d+)?$/.test(s)) {
    const t = parseTimestamp(s);
    if (t !== undefined) return t;
  }
  throw bad(
    `${name}: "${clip(text)}" is not a time: a number is epoch milliseconds, a whole number of 12 or more digits (100000000000 is 1973-03-03T09:46:40Z), or epoch seconds, 9 to 11 digits with an optional fraction; write earlier instants in RFC 3339 (1970-01-01T00:00:00Z)`,
  );
}

/** A value quoted back in an error message, cut short (a client's input may be long). */
export function clip(text: string, max = 64): string {
  return text.length <= max ? text : `${text.slice(0, max)}... (${text.length} characters)`;
}

/** Most values in one filter list (hosts, uuids, metrics, GPU indexes). */
export const MAX_LIST = 1000;

/** A filter's values, checked: at least one, at most MAX_LIST, each 1 to `maxLength` characters. */
export function boundedList(
  name: string,
  values: readonly string[] | undefined,
  maxLength: number,
): string[] | undefined {
  if (values === undefined) return undefined;
  if (values.length === 0) throw bad(`${name}: give at least one value, or leave ${name} out`);
  if (values.length > MAX_LIST) throw bad(`${name}: ${values.length} values; at most ${MAX_LIST}`);
  for (const v of values) {
    if (v.length === 0 || v.length > maxLength)
      throw bad(`${name}: "${clip(v, 40)}" must be 1 to ${maxLength} characters`);
  }
  return [...values];
}

/** A comma-separated list (also accepting repeated parameters). */
export function list(value: string | readonly string[] | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  const parts = (typeof value === 'string' ? [value] : value)
    .flatMap((v) => v.split(','))
    .map((v) => v.trim());
  const out = parts.filter((v) => v.length > 0);
  return out.length === 0 ? undefined : out;
}

/** A comma-separated filter, bounded as boundedList says. */
export function filterList(
  name: string,
  value: string | readonly string[] | undefined,
  maxLength: number,
): string[] | undefined {
  return boundedList(name, list(value), maxLength);
}

/** GPU ids: indexes on their host (`0`, `7`), or uuids (`GPU-...`). */
export function gpuIds(values: string[] | undefined): { indexes?: number[]; uuids?: string[] } {
  if (values === undefined) return {};
  const indexes: number[] = [];
  const uuids: string[] = [];
  for (const v of values) {
    if (/^\d{1,5}$/.test(v) && Number(v) <= 32767) indexes.push(Number(v));
    else if (/^GPU-[0-9A-Za-z-]+$/i.test(v)) uuids.push(v);
    else throw bad(`gpu_id: "${clip(v)}" is neither a GPU index (0, 1, ...) nor a uuid (GPU-...)`);
  }
  return { ...(indexes.length > 0 ? { indexes } : {}), ...(uuids.length > 0 ? { uuids } : {}) };
}

/**
 * MIG GPU instances of a query (`gpu_instance`): instance ids (`1,2`), `gpu` (the whole GPU's own
 * series, what a query without it reads) and `all` (whole GPUs and every instance).
 */
export function gpuInstances(values: string[] | undefined): number[] | 'all' | undefined {
  if (values === undefined) return undefined;
  if (values.includes('all')) return 'all';
  return values.map((v) => {
    if (v === 'gpu') return -1;
    return gpuInstanceId(v);
  });
}

/** A MIG GPU instance id (0..32767). */
export function gpuInstanceId(text: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) > 32767)
    throw bad(`gpu_instance: "${clip(text)}" is not a GPU instance id (0, 1, ...), "gpu" or "all"`);
  return Number(text);
}

export function gpuIndex(text: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) > 32767)
    throw bad(`gpu_id: "${clip(text)}" is not a GPU index (0, 1, ...)`);
  return Number(text);
}

export interface Cursor {
  readonly gpu: number;
  readonly metric: number;
  readonly time: number;
}

export function encodeCursor(c: Cursor): string {
  return Buffer.from(JSON.stringify([1, c.gpu, c.metric, c.time])).toString('base64url');
}

/** Surrogate ids are PostgreSQL integers (GPUs) and smallints (metrics). */
const MAX_GPU_ID = 2_147_483_647;
const MAX_METRIC_ID = 32_767;
const NOT_A_CURSOR = 'cursor: not a cursor this API returned (pass next_cursor as it came)';

export function decodeCursor(text: string): Cursor {
  // A cursor this API returns is under 60 characters; anything much longer is not one.
  if (text.length > 200) throw bad(NOT_A_CURSOR);
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    throw bad(NOT_A_CURSOR);
  }
  if (!Array.isArray(parsed) || parsed.length !== 4 || parsed[0] !== 1) throw bad(NOT_A_CURSOR);
  const [, gpu, metric, time] = parsed as unknown[];
  const within = (v: unknown, lo: number, hi: number): v is number =>
    typeof v === 'number' && Number.isSafeInteger(v) && v >= lo && v <= hi;
  if (
    !within(gpu, 0, MAX_GPU_ID) ||
    !within(metric, 0, MAX_METRIC_ID) ||
    !within(time, FIRST_INSTANT, LAST_INSTANT)
  ) {
    throw bad(NOT_A_CURSOR);
  }
  return { gpu, metric, time };
}

export function iso(ms: number | undefined): string | null {
  return ms === undefined ? null : new Date(ms).toISOString();
}

/** The longest downsampling step: a year (a longer one would still give one point). */
export const MAX_STEP_MS = 366 * 86_400_000;

export function parseStep(text: string): number {
  let ms: number;
  try {
    ms = parseDuration(text, 'step');
  } catch {
    throw new NexusError(
      'BAD_REQUEST',
      `step: "${clip(text)}" is not a duration (e.g. 10s, 1m, 5m, 1h)`,
    );
  }
  if (ms < 1000)
    throw new NexusError('BAD_REQUEST', `step: "${clip(text)}" is below the smallest step, 1s`);
  if (ms > MAX_STEP_MS)
    throw new NexusError('BAD_REQUEST', `step: "${clip(text)}" is above the largest step, 366d`);
  return ms;
}

export { DEFAULT_PAGE, MAX_PAGE } from './page-size.js';
import { DEFAULT_PAGE, MAX_PAGE } from './page-size.js';

/** A list's `limit`: 1 to `max`, default `fallback`. */
export function pageLimit(
  value: number | undefined,
  fallback = DEFAULT_PAGE,
  max = MAX_PAGE,
): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1 || value > max)
    throw bad(`limit: ${value} is out of range (1 to ${max})`);
  return value;
}

const INVALID_CURSOR = 'invalid cursor: pass next_cursor as the previous page returned it';

/** A list's cursor: the last item's sort key (names and GPU indexes), base64url of JSON. */
export function encodeListCursor(key: readonly (string | number)[]): string {
  return Buffer.from(JSON.stringify(key)).toString('base64url');
}

/** A list cursor back into its sort key, of `shape` ('s': a name, 'n': a GPU index). */
export function decodeListCursor(
  text: string | undefined,
  shape: readonly ('s' | 'n')[],
): (string | number)[] | undefined {
  if (text === undefined) return undefined;
  if (text.length > 1400 || !/^[A-Za-z0-9_-]+$/.test(text)) throw bad(INVALID_CURSOR);
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    throw bad(INVALID_CURSOR);
  }
  if (!Array.isArray(parsed) || parsed.length !== shape.length) throw bad(INVALID_CURSOR);
  const key = parsed as unknown[];
  shape.forEach((s, i) => {
    const v = key[i];
    if (s === 's' ? typeof v !== 'string' : !Number.isSafeInteger(v)) throw bad(INVALID_CURSOR);
  });
  return key as (string | number)[];
}
