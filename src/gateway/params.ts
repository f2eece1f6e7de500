import { NexusError } from '../core/errors.js';
import { parseDuration } from '../core/duration.js';
import { parseTimestamp } from '../core/record.js';

const bad = (message: string): NexusError => new NexusError('BAD_REQUEST', message);

/**
 * An instant from a query parameter: RFC 3339 (`2025-07-18T20:42:34Z`), epoch milliseconds,
 * `now`, or relative to now (`-15m`, `now-1h`, `-7d`).
 */
export function parseInstant(name: string, text: string, now = Date.now()): number {
  const s = text.trim();
  if (s === 'now') return now;
  const rel = /^(?:now)?-(.+)$/.exec(s);
  if (rel !== null) {
    try {
      return now - parseDuration(rel[1] ?? '', name);
    } catch {
      throw bad(`${name}: "${text}" is not a relative time (use e.g. -15m, -1h, -7d)`);
    }
  }
  if (/^\d{12,16}$/.test(s)) return Number(s);
  const t = parseTimestamp(s);
  if (t === undefined)
    throw bad(
      `${name}: "${text}" is not a time (RFC 3339 like 2025-07-18T20:42:34Z, epoch ms, now, or -15m)`,
    );
  return t;
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

/** GPU ids: indexes on their host (`0`, `7`), or uuids (`GPU-...`). */
export function gpuIds(values: string[] | undefined): { indexes?: number[]; uuids?: string[] } {
  if (values === undefined) return {};
  const indexes: number[] = [];
  const uuids: string[] = [];
  for (const v of values) {
    if (/^\d{1,5}$/.test(v)) indexes.push(Number(v));
    else if (/^GPU-[0-9A-Za-z-]+$/i.test(v)) uuids.push(v);
    else throw bad(`gpu_id: "${v}" is neither a GPU index (0, 1, ...) nor a uuid (GPU-...)`);
  }
  return { ...(indexes.length > 0 ? { indexes } : {}), ...(uuids.length > 0 ? { uuids } : {}) };
}

export function gpuIndex(text: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) > 32767)
    throw bad(`gpu_id: "${text}" is not a GPU index (0, 1, ...)`);
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

export function decodeCursor(text: string): Cursor {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    throw bad('cursor: not a cursor this API returned (pass next_cursor as it came)');
  }
  if (
    !Array.isArray(parsed) ||
    parsed.length !== 4 ||
    parsed[0] !== 1 ||
    !parsed.slice(1).every((n) => typeof n === 'number' && Number.isInteger(n))
  ) {
    throw bad('cursor: not a cursor this API returned (pass next_cursor as it came)');
  }
  const [, gpu, metric, time] = parsed as [number, number, number, number];
  return { gpu, metric, time };
}

export function iso(ms: number | undefined): string | null {
  return ms === undefined ? null : new Date(ms).toISOString();
}
