import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { detached } from '../core/detached.js';
import { setLabel } from '../core/labels.js';
import { labelsProblem, OPTIONAL_RECORD_FIELDS, type TelemetryRecord } from '../core/record.js';
import { ENVELOPE_HEADER, GPU_IDENTITY } from './envelope-fields.js';

/**
 * The compact wire form of an envelope (version 2, docs/queue.md "The envelope"). A DCGM row's
 * Prometheus labels mostly repeat the row's own fields (Hostname, UUID, device, gpu, modelName,
 * __name__, ...), and the rows of one GPU repeat its identity for every metric. Version 2 writes
 * each GPU's identity and labels once per message ("series"), names each label that only repeats a
 * field instead of its value, and each reading as a 4-tuple [series, metric, timestamp, value]:
 * about a sixth of the bytes of version 1 for DCGM exports, for etcd, producers and consumers alike.
 */
export const COMPACT_VERSION = 2;

/** Labels whose value, when equal to the record's field, is implied by that field. */
const IMPLIED = {
  Hostname: 'hostname',
  UUID: 'uuid',
  __name__: 'metric',
  device: 'device',
  gpu: 'gpu',
  modelName: 'model',
  container: 'container',
  pod: 'pod',
  namespace: 'namespace',
} as const satisfies Record<string, keyof TelemetryRecord>;
type ImpliedKey = keyof typeof IMPLIED;
type ImpliedField = (typeof IMPLIED)[ImpliedKey];

function impliedField(key: string): ImpliedField | undefined {
  return Object.hasOwn(IMPLIED, key) ? IMPLIED[key as ImpliedKey] : undefined;
}

/** A record's field as its label would say it. */
function fieldText(r: TelemetryRecord, field: keyof TelemetryRecord): string | undefined {
  const v = r[field];
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return String(v);
  return undefined;
}

const SeriesSchema = Type.Object({
  ...GPU_IDENTITY,
  /** Index of the series' label set in `labelSets`. */
  labelSet: Type.Integer({ minimum: 0 }),
});

const LabelSetSchema = Type.Object({
  /** Every label name of the readings, in order. */
  keys: Type.Array(Type.String()),
  /** Values of the labels that are not implied by a field of the series or the reading. */
  values: Type.Record(Type.String(), Type.String()),
});

export const CompactEnvelopeSchema = Type.Object({
  v: Type.Literal(COMPACT_VERSION),
  ...ENVELOPE_HEADER,
  metrics: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
  labelSets: Type.Array(LabelSetSchema, { minItems: 1 }),
  series: Type.Array(SeriesSchema, { minItems: 1 }),
  /** [series index, metric index, timestamp (epoch ms), value] */
  records: Type.Array(
    Type.Tuple([
      Type.Integer({ minimum: 0 }),
      Type.Integer({ minimum: 0 }),
      Type.Integer(),
      Type.Number(),
    ]),
    { minItems: 1 },
  ),
});
export type CompactEnvelope = Static<typeof CompactEnvelopeSchema>;
type Series = Static<typeof SeriesSchema>;
type LabelSet = Static<typeof LabelSetSchema>;

const check = TypeCompiler.Compile(CompactEnvelopeSchema);

/** The optional identity fields a series carries: the record's optional fields. */
const SERIES_FIELDS = OPTIONAL_RECORD_FIELDS;

/** How a label set splits into names and the values no field implies, for one record. */
interface LabelShape {
  /** JSON of the label set entry: the names in order, and the values that are not implied. */
  readonly setJson: string;
  /** Which names are implied (bit i: the i-th name of `keys`). */
  readonly impliedMask: number;
  /** The series identity JSON last written with this shape, and the record it was written for. */
  last?: { readonly record: TelemetryRecord; readonly json: string };
}

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The names (and their JSON), the values no field implies and the shape of the last label set
 * shapeOf worked out: the next record's is most often the same (the GPUs of one host, one after
 * the other), and is then known without writing its JSON again; a fleet's label sets share their
 * names.
 */
let lastShaped:
  { keys: readonly string[]; keysJson: string; values: string[]; shape: LabelShape } | undefined;

function shapeOf(labels: Readonly<Record<string, string>>, r: TelemetryRecord): LabelShape {
  const keys = Object.keys(labels);
  // Which names the record implies, and the values of the others.
  let mask = 0;
  const plain: string[] = [];
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i] as string;
    const v = labels[k] as string;
    const field = i < 31 ? impliedField(k) : undefined;
    if (field !== undefined && fieldText(r, field) === v) mask |= 1 << i;
    else plain.push(v);
  }
  const last = lastShaped;
  const sameNames = last !== undefined && sameStrings(keys, last.keys);
  if (sameNames && mask === last.shape.impliedMask && sameStrings(plain, last.values))
    return { setJson: last.shape.setJson, impliedMask: mask };
  // The JSON of `values`, written directly (no object made for it).
  let values = '';
  for (let i = 0, j = 0; i < keys.length; i++) {
    if (i < 31 && (mask & (1 << i)) !== 0) continue;
    const v = plain[j++] as string;
    values += `${values === '' ? '' : ','}${JSON.stringify(keys[i])}:${JSON.stringify(v)}`;
  }
  const keysJson = sameNames ? last.keysJson : JSON.stringify(keys);
  const shape = { setJson: `{"keys":${keysJson},"values":{${values}}}`, impliedMask: mask };
  lastShaped = { keys, keysJson, values: plain.map(detached), shape: { ...shape } };
  return shape;
}

/** Which of a label set's names a record implies, as shapeOf counts them. */
function impliedMaskOf(labels: Readonly<Record<string, string>>, r: TelemetryRecord): number {
  let mask = 0;
  let i = 0;
  for (const k in labels) {
    if (!Object.hasOwn(labels, k)) continue;
    const field = i < 31 ? impliedField(k) : undefined;
    if (field !== undefined && fieldText(r, field) === labels[k]) mask |= 1 << i;
    i++;
  }
  return mask;
}

/**
 * Shapes of frozen label sets (the CSV reader shares one per series), worked out once. A shape is
 * used for a record only when the record implies the same names, which holds for every row of a
 * DCGM series; anything else gets its own shape.
 */
const shapes = new WeakMap<object, LabelShape>();

function labelShape(r: TelemetryRecord): LabelShape {
  const labels = r.labels;
  if (!Object.isFrozen(labels)) return shapeOf(labels, r);
  let shape = shapes.get(labels);
  if (shape === undefined) {
    shape = keptShape(shapeOf(labels, r));
    shapes.set(labels, shape);
    return shape;
  }
  // The same fields as the last record written with this shape imply the same names: the shape
  // holds without looking at the labels again (the rows of a series, message after message).
  const last = shape.last?.record;
  if (last !== undefined && last.metric === r.metric && sameSeries(last, r)) return shape;
  return impliedMaskOf(labels, r) === shape.impliedMask ? shape : shapeOf(labels, r);
}

/** A record's label shape and the JSON of its series identity (see identityJson). */
function shapeAndIdentity(r: TelemetryRecord): { shape: LabelShape; identity: string } {
  const labels = r.labels;
  const known = Object.isFrozen(labels) ? shapes.get(labels) : undefined;
  const last = known?.last;
  // The fast path of labelShape also says that the identity is the one remembered.
  if (known !== undefined && last !== undefined && last.record.metric === r.metric) {
    if (sameSeries(last.record, r)) return { shape: known, identity: last.json };
  }
  const shape = labelShape(r);
  return { shape, identity: identityJson(r, shape) };
}

function sameSeries(a: TelemetryRecord, b: TelemetryRecord): boolean {
  return (
    a.hostname === b.hostname &&
    a.gpu === b.gpu &&
    a.device === b.device &&
    a.uuid === b.uuid &&
    a.model === b.model &&
    a.container === b.container &&
    a.pod === b.pod &&
    a.namespace === b.namespace
  );
}

/**
 * The JSON of a record's series identity, without its label set and closing brace (remembered on
 * its label shape: the rows of a series share it).
 */
function identityJson(r: TelemetryRecord, shape: LabelShape): string {
  const last = shape.last;
  if (last !== undefined && sameSeries(last.record, r)) return last.json;
  let json = `{"hostname":${JSON.stringify(r.hostname)},"gpu":${r.gpu}`;
  for (const f of SERIES_FIELDS) {
    const v = r[f];
    if (v !== undefined) json += `,"${f}":${JSON.stringify(v)}`;
  }
  // Only a frozen (shared, remembered) label set's shape is kept beyond this message: it keeps a
  // copy of the fields sameSeries compares, not the record, whose strings are slices of the CSV
  // line they came from and would keep each line alive as long as its series is remembered. Two
  // object literals: the kept one's allocation site is not the short-lived one's (keptShape).
  if (Object.isFrozen(r.labels)) shape.last = { record: identityOf(r), json };
  else shape.last = { record: r, json };
  return json;
}

/**
 * A copy of a shape to keep (with its frozen label set, as long as the label set lives), made by
 * its own object literal. V8 decides for each allocation site whether to allocate its objects
 * straight in the old generation (pretenuring), from how many of them survived. Kept as shapeOf
 * made them, the shapes of the label sets the streamer's label cache keeps while it fills made
 * shapeOf's literals long-lived; on a fleet the cache cannot hold (where it then rests) the shape
 * of every record, garbage within its message, then went to the old generation. At 100,000 GPUs
 * the streamer promoted 1.46 GB of the 4.9 GB it allocated, 0.10 GB with the copies, and took
 * 23.9-25.6 against 16.7-18.3 µs a record (docs/benchmarks.md, the eleventh session).
 */
function keptShape(shape: LabelShape): LabelShape {
  return { setJson: shape.setJson, impliedMask: shape.impliedMask };
}

/** The fields of a record sameSeries compares, and its metric, as detached copies. */
function identityOf(r: TelemetryRecord): TelemetryRecord {
  const out: { -readonly [K in keyof TelemetryRecord]: TelemetryRecord[K] } = {
    timestamp: 0,
    value: 0,
    labels: {},
    metric: detached(r.metric),
    hostname: detached(r.hostname),
    gpu: r.gpu,
  };
  for (const f of SERIES_FIELDS) {
    const v = r[f];
    if (v !== undefined) out[f] = detached(v);
  }
  return out;
}

function num(n: number): string {
  return Number.isFinite(n) ? String(n) : 'null';
}

/** Packs a label set index and a series index in one number (both are below it: 2^26). */
const SERIES_PACK = 2 ** 26;

/** The index of `key` in a dictionary being built, adding it when new. */
function indexOf(dict: Map<string, number>, key: string): number {
  let i = dict.get(key);
  if (i === undefined) {
    i = dict.size;
    dict.set(key, i);
  }
  return i;
}

/**
 * The compact body of an envelope's records:
 * `"metrics":[...],"labelSets":[...],"series":[...],"records":[...]`, to be placed in the envelope
 * object after its header fields.
 */
export function compactRecordsJson(records: readonly TelemetryRecord[]): string {
  const metrics = new Map<string, number>();
  const labelSets = new Map<string, number>();
  /**
   * Series index by identity JSON: the first label set seen with an identity, as
   * `labelSet * SERIES_PACK + series` (no map per identity: nearly every identity has one), and
   * the others in `moreSeries`.
   */
  const series = new Map<string, number>();
  const moreSeries = new Map<string, Map<number, number>>();
  const seriesParts: string[] = [];
  const recordParts = new Array<string>(records.length);
  // Rows of one scrape share their timestamp: its text is made once.
  let lastTime = Number.NaN;
  let lastTimeText = '';
  for (let i = 0; i < records.length; i++) {
    const r = records[i] as TelemetryRecord;
    const m = indexOf(metrics, r.metric);
    const { shape, identity } = shapeAndIdentity(r);
    const l = indexOf(labelSets, shape.setJson);
    let s: number | undefined;
    const packed = series.get(identity);
    if (packed !== undefined && Math.floor(packed / SERIES_PACK) === l) s = packed % SERIES_PACK;
    else if (packed !== undefined) s = moreSeries.get(identity)?.get(l);
    if (s === undefined) {
      s = seriesParts.length;
      seriesParts.push(`${identity},"labelSet":${l}}`);
      if (packed === undefined) series.set(identity, l * SERIES_PACK + s);
      else {
        let byLabelSet = moreSeries.get(identity);
        if (byLabelSet === undefined)
          moreSeries.set(identity, (byLabelSet = new Map<number, number>()));
        byLabelSet.set(l, s);
      }
    }
    if (r.timestamp !== lastTime) {
      lastTime = r.timestamp;
      lastTimeText = num(lastTime);
    }
    recordParts[i] = `[${s},${m},${lastTimeText},${num(r.value)}]`;
  }
  return `"metrics":${JSON.stringify([...metrics.keys()])},"labelSets":[${[...labelSets.keys()].join(',')}],"series":[${seriesParts.join(',')}],"records":[${recordParts.join(',')}]`;
}

/** A series' string field that a label can name (gpu is a number, always there). */
type SeriesTextField = Exclude<ImpliedField, 'metric' | 'gpu'>;

/**
 * What a label set says, worked out once per message (a message's series share a few label sets,
 * often one): for each label, its value from `values` or the field that gives it, which labels a
 * series must hold a field for, and whether the names and values are within the bounds of every
 * record.
 */
interface SetPlan {
  /**
   * A reading's labels with the values `values` gives, and '' for those a field gives: each
   * reading's labels start as a copy of it (one copy of an object of the same shape, instead of a
   * store of each name, which costs a property transition each), then take the fields' values.
   */
  readonly template: Readonly<Record<string, string>>;
  /** The labels a field gives (never `__proto__`: no field implies it), and the field. */
  readonly implied: readonly (readonly [key: string, field: ImpliedField])[];
  /**
   * In key order, the labels a series must give a value for: with the field it must hold, or none
   * when no field implies the label (every series of the set is then invalid).
   */
  readonly needs: readonly { readonly key: string; readonly field: SeriesTextField | undefined }[];
  /**
   * Whether the labels of every reading of the set are within bounds (labelsProblem says nothing)
   * once the reading's own fields are (identityProblem; they are the values the fields give).
   */
  readonly inBounds: boolean;
}

function planOf(set: LabelSet): SetPlan {
  const template: Record<string, string> = {};
  const implied: (readonly [string, ImpliedField])[] = [];
  const needs: { key: string; field: SeriesTextField | undefined }[] = [];
  for (const key of set.keys) {
    if (Object.hasOwn(set.values, key)) {
      setLabel(template, key, set.values[key] as string);
      continue;
    }
    setLabel(template, key, '');
    const field = impliedField(key);
    if (field !== undefined) implied.push([key, field]);
    if (field !== 'metric' && field !== 'gpu') needs.push({ key, field });
  }
  // The names, and the values `values` gives; the others are the series' and the reading's own
  // fields, whose bounds (RECORD_LIMITS) are within a label value's.
  return { template, implied, needs, inBounds: labelsProblem(template) === undefined };
}

/** Records of compact messages whose labels were found within bounds as their label sets were. */
const boundedLabels = new WeakSet<readonly TelemetryRecord[]>();

/**
 * Whether every record of `records` (an envelope's, as decodeEnvelope gave them) has labels within
 * the bounds of every record (labelsProblem) once its own fields are: the compact decoder checks
 * each label set once per message instead of each reading's labels (recordProblem).
 */
export function labelsInBounds(records: readonly TelemetryRecord[]): boolean {
  return boundedLabels.has(records);
}

/**
 * The records of a parsed message of version 2 (`v` is COMPACT_VERSION), in the record model, or
 * why it is not a valid compact envelope (what follows "message is not a valid envelope (v=2)").
 */
export function decodeCompact(
  value: unknown,
): { readonly records: TelemetryRecord[] } | { readonly problem: string } {
  if (!check.Check(value)) {
    const first = check.Errors(value).First();
    return { problem: first === undefined ? '' : ` at ${first.path || '/'}: ${first.message}` };
  }
  const e = value;
  const plans = e.labelSets.map(planOf);
  for (let i = 0; i < e.series.length; i++) {
    const s = e.series[i] as Series;
    const plan = plans[s.labelSet];
    if (plan === undefined)
      return {
        problem: ` at /series/${i}/labelSet: label set ${s.labelSet} out of range (${e.labelSets.length} label sets)`,
      };
    for (const { key, field } of plan.needs)
      if (field === undefined || s[field] === undefined)
        return {
          problem: ` at /series/${i}: label "${key}" of label set ${s.labelSet} has no value and no field implies it`,
        };
  }
  for (let i = 0; i < e.records.length; i++) {
    const [s, m] = e.records[i] as [number, number, number, number];
    if (s >= e.series.length)
      return {
        problem: ` at /records/${i}/0: series ${s} out of range (${e.series.length} series)`,
      };
    if (m >= e.metrics.length)
      return {
        problem: ` at /records/${i}/1: metric ${m} out of range (${e.metrics.length} metrics)`,
      };
  }
  const records = expandRecords(e, plans);
  if (plans.every((p) => p.inBounds)) boundedLabels.add(records);
  return { records };
}

/** A label's value from the field that gives it (the metric is the reading's). */
function fieldValue(s: Series, field: ImpliedField, metric: string): string {
  if (field === 'metric') return metric;
  if (field === 'gpu') return String(s.gpu);
  return s[field] as string;
}

/** The records of a valid compact envelope (decodeCompact checked it), in the record model. */
function expandRecords(e: CompactEnvelope, plans: readonly SetPlan[]): TelemetryRecord[] {
  const labelSets = new Map<number, Record<string, string>>();
  const out = new Array<TelemetryRecord>(e.records.length);
  for (let i = 0; i < e.records.length; i++) {
    const [si, mi, timestamp, value] = e.records[i] as [number, number, number, number];
    const s = e.series[si] as Series;
    const metric = e.metrics[mi] as string;
    const cacheKey = si * e.metrics.length + mi;
    let labels = labelSets.get(cacheKey);
    if (labels === undefined) {
      const { template, implied } = plans[s.labelSet] as SetPlan;
      labels = { ...template };
      for (const [key, field] of implied) labels[key] = fieldValue(s, field, metric);
      labelSets.set(cacheKey, labels);
    }
    const r: { -readonly [K in keyof TelemetryRecord]: TelemetryRecord[K] } = {
      timestamp,
      metric,
      gpu: s.gpu,
      hostname: s.hostname,
      value,
      labels,
    };
    for (const f of SERIES_FIELDS) {
      const v = s[f];
      if (v !== undefined) r[f] = v;
    }
    out[i] = r;
  }
  return out;
}
