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

/** 400 Gregorian years: 146,097 days, the same weekdays and leap years again. */
const GREGORIAN_CYCLE_MS = 146_097 * 86_400_000;

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31] as const;

function daysIn(year: number, month: number): number {
  if (month === 2 && ((year % 4 === 0 && year % 100 !== 0) || year % 400 === 0)) return 29;
  return DAYS_IN_MONTH[month - 1] ?? 0;
}

/**
 * Parses an RFC 3339 / ISO 8601 timestamp (fractions of any length, `Z` or `±hh:mm` offsets; no
 * offset means UTC) or a Unix epoch in seconds (9 to 11 digits, optionally with a fraction) or
 * milliseconds (12 to 14 digits). Returns epoch milliseconds, truncated to the millisecond, or
 * undefined. Years are read as written, 0000 to 9999 (proleptic Gregorian; 0000 is 1 BC): whether
 * an instant is acceptable (a reading's window, a query's years 1 to 9999) is for the caller.
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
  // Date.UTC reads years 0 to 99 as 1900 to 1999: those are computed 400 years later (the
  // Gregorian calendar repeats every 400 years) and moved back.
  const utc =
    year < 100
      ? Date.UTC(year + 400, month - 1, day, hour, minute, second, millis) - GREGORIAN_CYCLE_MS
      : Date.UTC(year, month - 1, day, hour, minute, second, millis);
  return utc - offsetMin * 60_000;
}

const NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/** True for decimal text (`12`, `-0.5`, `1e3`), whether or not it fits in a double. */
export function isDecimalText(text: string): boolean {
  return NUMBER.test(text.trim());
}

/**
 * Parses a decimal reading; rejects empty text, NaN, infinities, hexadecimal and anything not a
 * decimal number, and numbers too large for a double (`1e400`). `-0` reads as 0.
 */
export function parseValue(text: string): number | undefined {
  const s = text.trim();
  if (!NUMBER.test(s)) return undefined;
  const v = Number(s);
  if (!Number.isFinite(v)) return undefined;
  return v === 0 ? 0 : v;
}

/** Formats epoch milliseconds as RFC 3339 UTC with milliseconds. */
export function formatTimestamp(ms: number): string {
  return new Date(ms).toISOString();
}

/**
 * Bounds on what a record may hold, whatever brought it in (a CSV row today, a scrape or a
 * remote_write later, a queue message from another producer). Real fleets fit well inside them;
 * anything beyond is garbage that would otherwise reach PostgreSQL and etcd keys (README,
 * "Limits of a record").
 */
export const RECORD_LIMITS = {
  /** A DNS name is at most 253 characters (also the gateway's host_id bound). */
  hostname: 253,
  /** A metric name: Prometheus' form, [A-Za-z_:][A-Za-z0-9_:]*. */
  metric: 128,
  uuid: 128,
  device: 128,
  model: 256,
  /** Kubernetes names (pod, namespace, container) are at most 253 characters. */
  container: 253,
  pod: 253,
  namespace: 253,
  /** GPU index on its host: 0 to 99999 (five digits, the gateway's gpu_id bound). */
  gpu: 99_999,
  /** Labels per record, and the length of a label's name ([A-Za-z_][A-Za-z0-9_.:-]*) and value. */
  labels: 64,
  labelName: 128,
  labelValue: 1024,
  /** Readings before 2000-01-01T00:00:00Z are refused. */
  earliestTimestamp: Date.UTC(2000, 0, 1),
  /** Readings more than a day ahead of the clock of the process reading them are refused. */
  futureMs: 86_400_000,
} as const;

const METRIC_NAME = /^[A-Za-z_:][A-Za-z0-9_:]*$/;
const LABEL_NAME = /^[A-Za-z_][A-Za-z0-9_.:-]*$/;
// Control characters are exactly what this looks for.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

function controlProblem(field: string, value: string): string | undefined {
  const m = CONTROL.exec(value);
  if (m === null) return undefined;
  const code = m[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0');
  return `${field} holds a control character (U+${code}) at character ${m.index + 1}`;
}

/** Why an identifier field is out of bounds, or undefined. */
function identifierProblem(field: string, value: string, max: number): string | undefined {
  if (value.length > max) return `${field} longer than ${max} characters (${value.length})`;
  return controlProblem(field, value);
}

/** Why a timestamp is outside the accepted window (see RECORD_LIMITS), or undefined. */
export function timestampProblem(ms: number, now: number = Date.now()): string | undefined {
  if (!Number.isInteger(ms)) return 'timestamp is not a whole number of milliseconds';
  if (ms < RECORD_LIMITS.earliestTimestamp || ms > now + RECORD_LIMITS.futureMs) {
    const text = Number.isFinite(new Date(ms).getTime()) ? formatTimestamp(ms) : String(ms);
    return `timestamp out of range "${text}" (accepted: 2000-01-01 to 24 hours ahead)`;
  }
  return undefined;
}

/** Why a label set is out of bounds (too many labels, bad names, long values, NUL), or undefined. */
export function labelsProblem(labels: Readonly<Record<string, string>>): string | undefined {
  let n = 0;
  for (const name in labels) {
    if (!Object.hasOwn(labels, name)) continue;
    if (++n > RECORD_LIMITS.labels) return `more than ${RECORD_LIMITS.labels} labels`;
    if (name.length > RECORD_LIMITS.labelName)
      return `label name longer than ${RECORD_LIMITS.labelName} characters`;
    if (!LABEL_NAME.test(name)) return `bad label name "${name}" (not [A-Za-z_][A-Za-z0-9_.:-]*)`;
    const value = labels[name];
    if (typeof value !== 'string') return `label ${name} is not text`;
    if (value.length > RECORD_LIMITS.labelValue)
      return `label ${name} longer than ${RECORD_LIMITS.labelValue} characters (${value.length})`;
    if (value.includes('\u0000')) return `label ${name} holds a NUL character`;
  }
  return undefined;
}

/**
 * Why a record's identity (hostname, metric, GPU index, the optional identifiers) is out of bounds,
 * or undefined: lengths, the metric name's form, and no control characters (C0, DEL, C1, NUL).
 */
export function identityProblem(r: TelemetryRecord): string | undefined {
  // Written out field by field: this runs for every row the streamer reads.
  const L = RECORD_LIMITS;
  const host = r.hostname;
  if (host === '') return 'missing Hostname';
  if (host.length > L.hostname || CONTROL.test(host))
    return identifierProblem('Hostname', host, L.hostname);
  const metric = r.metric;
  if (metric.length > L.metric)
    return `metric_name longer than ${L.metric} characters (${metric.length})`;
  if (!METRIC_NAME.test(metric))
    return `bad metric_name "${metric.length > 40 ? `${metric.slice(0, 40)}...` : metric}" (not [A-Za-z_:][A-Za-z0-9_:]*)`;
  if (!(r.gpu >= 0 && r.gpu <= L.gpu && Number.isInteger(r.gpu)))
    return `gpu_id out of range (0 to ${L.gpu})`;
  const { device, uuid, model, container, pod, namespace } = r;
  if (device !== undefined && (device.length > L.device || CONTROL.test(device)))
    return identifierProblem('device', device, L.device);
  if (uuid !== undefined && (uuid.length > L.uuid || CONTROL.test(uuid)))
    return identifierProblem('uuid', uuid, L.uuid);
  if (model !== undefined && (model.length > L.model || CONTROL.test(model)))
    return identifierProblem('model', model, L.model);
  if (container !== undefined && (container.length > L.container || CONTROL.test(container)))
    return identifierProblem('container', container, L.container);
  if (pod !== undefined && (pod.length > L.pod || CONTROL.test(pod)))
    return identifierProblem('pod', pod, L.pod);
  if (namespace !== undefined && (namespace.length > L.namespace || CONTROL.test(namespace)))
    return identifierProblem('namespace', namespace, L.namespace);
  return undefined;
}

/** Frozen label sets already found within bounds (the CSV reader shares one per series). */
const goodLabels = new WeakSet<object>();

/**
 * Why a record may not be stored, or undefined: the checks every ingest path and the collector
 * apply (RECORD_LIMITS), beyond what its schema already says. `labelsChecked`: its labels are
 * known to be within bounds once its identity is (the compact decoder checks each label set of a
 * message once: src/queue/compact.ts, labelsInBounds).
 */
export function recordProblem(
  r: TelemetryRecord,
  now: number = Date.now(),
  labelsChecked = false,
): string | undefined {
  const ts = timestampProblem(r.timestamp, now);
  if (ts !== undefined) return ts;
  if (!Number.isFinite(r.value)) return 'value is not a finite number';
  const id = identityProblem(r);
  if (id !== undefined) return id;
  if (labelsChecked || goodLabels.has(r.labels)) return undefined;
  const labels = labelsProblem(r.labels);
  if (labels === undefined && Object.isFrozen(r.labels)) goodLabels.add(r.labels);
  return labels;
}
