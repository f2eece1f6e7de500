/**
 * The record model: one DCGM reading of one metric on one GPU at one instant.
 */
export interface TelemetryRecord {
  /** Unix epoch milliseconds (UTC). */
  readonly timestamp: number;
  /** DCGM field name, e.g. DCGM_FI_DEV_GPU_TEMP. */
  readonly metric: string;
  /** GPU index on its host (DCGM's `gpu`). */
  readonly gpu: number;
  readonly hostname: string;
  readonly value: number;
  readonly device?: string;
  readonly uuid?: string;
  readonly model?: string;
  readonly container?: string;
  readonly pod?: string;
  readonly namespace?: string;
  /** Prometheus labels from `labels_raw`, unescaped. */
  readonly labels: Readonly<Record<string, string>>;
}

/** The optional string fields of a record, in CSV column order. */
export const OPTIONAL_RECORD_FIELDS = [
  'device',
  'uuid',
  'model',
  'container',
  'pod',
  'namespace',
] as const;

/**
 * DCGM reports "no value" with sentinels instead of an empty field: the INT64 blank family sits just
 * under 2^63 (0x7ffffffffffffff0..), the INT32 family under 2^31 (0x7ffffff0..) and the FP64 family
 * at 2^47 (140737488355328.0 ..+3). None of them is a real reading.
 */
const INT64_BLANK = 2 ** 63 - 16;
const INT32_SENTINELS = new Set([0x7ffffff0, 0x7ffffff1, 0x7ffffff2, 0x7ffffff3, 0x7ffffff4]);
const FP64_BLANK = 2 ** 47;

export function isDcgmSentinel(value: number): boolean {
  if (value >= INT64_BLANK - 1024) return true; // 2^63 region, as parsed into a double
  if (value >= FP64_BLANK && value <= FP64_BLANK + 4 && Number.isInteger(value)) return true;
  return INT32_SENTINELS.has(value);
}

const TIMESTAMP =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?$/;

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31] as const;

function daysIn(year: number, month: number): number {
  if (month === 2 && ((year % 4 === 0 && year % 100 !== 0) || year % 400 === 0)) return 29;
  return DAYS_IN_MONTH[month - 1] ?? 0;
}

/**
 * Parses an RFC 3339 / ISO 8601 timestamp (fractions of any length, `Z` or `±hh:mm` offsets; no
 * offset means UTC) or a Unix epoch in seconds (10 digits, optionally with a fraction) or
 * milliseconds (13 digits). Returns epoch milliseconds, truncated to the millisecond, or undefined.
 */
export function parseTimestamp(text: string): number | undefined {
  const s = text.trim();
  const epoch = /^(\d{9,11})(?:\.(\d+))?$/.exec(s);
  if (epoch !== null) {
    // Integer arithmetic: Number(s) * 1000 can land just under the true value and truncate 1 ms low.
    return Number(epoch[1]) * 1000 + Number((epoch[2] ?? '').slice(0, 3).padEnd(3, '0'));
  }
  if (/^\d{12,14}$/.test(s)) return Number(s);
  const m = TIMESTAMP.exec(s);
  if (m === null) return undefined;
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  const hour = Number(m[4]);
  const minute = Number(m[5]);
  const second = m[6] === undefined ? 0 : Number(m[6]);
  if (month < 1 || month > 12 || day < 1 || day > daysIn(year, month)) return undefined;
  if (hour > 23 || minute > 59 || second > 60) return undefined;
  const millis = m[7] === undefined ? 0 : Number(m[7].slice(0, 3).padEnd(3, '0'));
  let offsetMin = 0;
  const zone = m[8];
  if (zone !== undefined && zone !== 'Z' && zone !== 'z') {
    const sign = zone.startsWith('-') ? -1 : 1;
    const digits = zone.slice(1).replace(':', '');
    const oh = Number(digits.slice(0, 2));
    const om = digits.length > 2 ? Number(digits.slice(2, 4)) : 0;
    if (oh > 23 || om > 59) return undefined;
    offsetMin = sign * (oh * 60 + om);
  }
  return Date.UTC(year, month - 1, day, hour, minute, second, millis) - offsetMin * 60_000;
}

const NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/** Parses a decimal reading; rejects empty text, NaN, infinities and anything not a number. */
export function parseValue(text: string): number | undefined {
  const s = text.trim();
  if (!NUMBER.test(s)) return undefined;
  const v = Number(s);
  return Number.isFinite(v) ? v : undefined;
}

/** Formats epoch milliseconds as RFC 3339 UTC with milliseconds. */
export function formatTimestamp(ms: number): string {
  return new Date(ms).toISOString();
}
