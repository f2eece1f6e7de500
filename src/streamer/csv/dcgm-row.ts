import { NexusError } from '../../core/errors.js';
import { parseLabels } from '../../core/labels.js';
import { LabelCache } from './label-cache.js';
import {
  identityProblem,
  isDcgmSentinel,
  isDecimalText,
  labelsProblem,
  RECORD_LIMITS,
  parseTimestamp,
  parseValue,
  timestampProblem,
  type TelemetryRecord,
} from '../../core/record.js';

/** The columns of a DCGM export, by their record field. */
const COLUMNS = {
  timestamp: 'timestamp',
  metric: 'metric_name',
  gpu: 'gpu_id',
  device: 'device',
  uuid: 'uuid',
  model: 'modelname',
  hostname: 'hostname',
  container: 'container',
  pod: 'pod',
  namespace: 'namespace',
  value: 'value',
  labels: 'labels_raw',
} as const;

type Field = keyof typeof COLUMNS;
const REQUIRED: readonly Field[] = ['timestamp', 'metric', 'gpu', 'hostname', 'value'];

/** Where each field sits in a row, from the header. Header names match case-insensitively. */
export interface DcgmHeader {
  readonly width: number;
  readonly index: Readonly<Record<Field, number>>;
  readonly names: readonly string[];
}

export function parseHeader(fields: readonly string[]): DcgmHeader {
  const lower = fields.map((f) => f.trim().toLowerCase());
  const index = {} as Record<Field, number>;
  for (const [field, column] of Object.entries(COLUMNS) as [Field, string][]) {
    index[field] = lower.indexOf(column);
    if (index[field] !== -1 && lower.indexOf(column, index[field] + 1) !== -1) {
      throw new NexusError(
        'CSV_HEADER_INVALID',
        `CSV header names column ${column} twice (columns ${index[field] + 1} and ${lower.indexOf(column, index[field] + 1) + 1}): which one holds the data is ambiguous`,
      );
    }
  }
  const missing = REQUIRED.filter((f) => index[f] === -1).map((f) => COLUMNS[f]);
  if (missing.length > 0) {
    throw new NexusError(
      'CSV_HEADER_INVALID',
      `CSV header lacks required column(s) ${missing.join(', ')}; got: ${fields.join(',')}`,
    );
  }
  return { width: fields.length, index, names: fields };
}

export type RowResult =
  | { readonly kind: 'record'; readonly record: TelemetryRecord }
  | { readonly kind: 'sentinel' }
  | { readonly kind: 'reject'; readonly reason: string };

function field(fields: readonly string[], i: number): string {
  return i < 0 ? '' : (fields[i] ?? '');
}

function clip(s: string): string {
  return s.length > 40 ? `${s.slice(0, 40)}...` : s;
}

/**
 * Parsed label sets by their `labels_raw` text (label-cache.ts): up to 32,768 of them (a DCGM
 * label set is a few hundred characters, 16 million characters in all; one longer than 4,096 is
 * parsed every time), about 10,000 GPUs' series of 3 fields, where it pays (measured on the same
 * 600,000 readings: 80 GPUs 2.7 against 7.7 µs a record without it, 10,000 GPUs 4.6-5.0 against
 * 8-13). Past that it rests, as holding a fleet it cannot hold costs more than it saves.
 */
const labelCache = new LabelCache<Readonly<Record<string, string>>>(32_768, 16_000_000, 4096);

/**
 * Calls `full` each time the label cache fills (the file has more series than it holds: its
 * entries are then tens of MB of long-lived objects, and rows it does not hold allocate a parse
 * each), and `emptied` each time it empties to rest (too few hits: it holds nothing for a while).
 * The streamer bounds its heap growth while the cache is full (src/cli/commands/streamer.ts).
 */
export function whenLabelCache(on: { full: () => void; emptied: () => void }): void {
  labelCache.onFull = on.full;
  labelCache.onEmptied = on.emptied;
}
const NO_LABELS: Readonly<Record<string, string>> = Object.freeze({});
/** The last timestamp text parsed and its value: an export's rows come a scrape at a time. */
let lastTsText = '';
let lastTs: number | undefined;

/**
 * Turns the fields of one data row into a record, or says exactly why it cannot. The record is
 * within the bounds of every record (src/core/record.ts RECORD_LIMITS); `now` is the clock the
 * timestamp window is measured against.
 */
export function rowToRecord(
  header: DcgmHeader,
  fields: readonly string[],
  now: number = Date.now(),
): RowResult {
  if (fields.length !== header.width) {
    return {
      kind: 'reject',
      reason: `wrong column count: expected ${header.width} fields, got ${fields.length}`,
    };
  }
  const ix = header.index;
  const tsText = field(fields, ix.timestamp);
  if (tsText.trim() === '') return { kind: 'reject', reason: 'missing timestamp' };
  if (tsText !== lastTsText) {
    lastTs = parseTimestamp(tsText);
    lastTsText = tsText;
  }
  const timestamp = lastTs;
  if (timestamp === undefined) return { kind: 'reject', reason: `bad timestamp "${clip(tsText)}"` };
  const tsProblem = timestampProblem(timestamp, now);
  if (tsProblem !== undefined) return { kind: 'reject', reason: tsProblem };
  const metric = field(fields, ix.metric).trim();
  if (metric === '') return { kind: 'reject', reason: 'missing metric_name' };
  const gpuText = field(fields, ix.gpu).trim();
  if (gpuText === '') return { kind: 'reject', reason: 'missing gpu_id' };
  if (!/^\d{1,5}$/.test(gpuText))
    return { kind: 'reject', reason: `bad gpu_id "${clip(gpuText)}"` };
  const hostname = field(fields, ix.hostname).trim();
  if (hostname === '') return { kind: 'reject', reason: 'missing Hostname' };
  const valueText = field(fields, ix.value);
  if (valueText.trim() === '') return { kind: 'reject', reason: 'missing value' };
  const value = parseValue(valueText);
  if (value === undefined) {
    const why = isDecimalText(valueText) ? 'value out of range' : 'non-numeric value';
    return { kind: 'reject', reason: `${why} "${clip(valueText)}"` };
  }
  if (isDcgmSentinel(value)) return { kind: 'sentinel' };
  const rawLabels = field(fields, ix.labels);
  let labels = NO_LABELS;
  if (rawLabels.trim() !== '') {
    const cached = labelCache.get(rawLabels);
    if (cached !== undefined) labels = cached;
    else {
      const parsed = parseLabels(rawLabels, RECORD_LIMITS.labels);
      if (!parsed.ok) return { kind: 'reject', reason: parsed.error };
      const problem = labelsProblem(parsed.labels);
      if (problem !== undefined) return { kind: 'reject', reason: `labels_raw: ${problem}` };
      // Only a label set the cache keeps is frozen: the envelope encoder remembers the shape of a
      // frozen one (src/queue/compact.ts), which is worth it only for a set that comes back.
      if (labelCache.keeps(rawLabels)) {
        labels = Object.freeze(parsed.labels);
        labelCache.set(rawLabels, labels);
      } else labels = parsed.labels;
    }
  }
  const record: {
    -readonly [K in keyof TelemetryRecord]: TelemetryRecord[K];
  } = { timestamp, metric, gpu: Number(gpuText), hostname, value, labels };
  const device = field(fields, ix.device);
  if (device !== '') record.device = device;
  const uuid = field(fields, ix.uuid);
  if (uuid !== '') record.uuid = uuid;
  const model = field(fields, ix.model);
  if (model !== '') record.model = model;
  const container = field(fields, ix.container);
  if (container !== '') record.container = container;
  const pod = field(fields, ix.pod);
  if (pod !== '') record.pod = pod;
  const namespace = field(fields, ix.namespace);
  if (namespace !== '') record.namespace = namespace;
  const problem = identityProblem(record);
  if (problem !== undefined) return { kind: 'reject', reason: problem };
  return { kind: 'record', record };
}
