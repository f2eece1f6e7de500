/**
 * The Prometheus text exposition format (0.0.4, what dcgm-exporter serves on /metrics), parsed
 * line by line and bounded. No maintained npm parser fits: `parse-prometheus-text-format` (one
 * maintainer, last release years old) and `exposition` throw on the first bad line and bound
 * nothing, while a scrape must keep every good line of a body with one bad line in it, and say
 * why the bad one was left out.
 *
 * What it understands: `# HELP` and `# TYPE` (types kept, help ignored), other comments, blank
 * lines, label values with the escapes `\\`, `\"` and `\n`, a trailing comma in the label set, an
 * optional timestamp (integer milliseconds), an OpenMetrics exemplar (` # {...} v [ts]`, ignored)
 * and `# EOF` (the end). NaN, +Inf and -Inf are parsed as numbers: what to do with them is the
 * caller's (the scraper rejects them as readings, with a count). A malformed line is skipped with
 * one of a few fixed reasons (MALFORMED) and the rest of the body is kept.
 */
import { RECORD_LIMITS } from '../core/record.js';

/** Bounds on one body (what a line beyond them is told: see MALFORMED). */
export const EXPOSITION_LIMITS = {
  /** Lines read from one body; the rest is left out and the parse says it was truncated. */
  lines: 100_000,
  /** A line longer than this is malformed (a label set of 64 labels of 1 KiB fits). */
  lineLength: 128 * 1024,
  labels: RECORD_LIMITS.labels,
  labelName: RECORD_LIMITS.labelName,
  labelValue: RECORD_LIMITS.labelValue,
  metricName: RECORD_LIMITS.metric,
} as const;

export interface ExpositionLimits {
  readonly lines: number;
  readonly lineLength: number;
  readonly labels: number;
  readonly labelName: number;
  readonly labelValue: number;
  readonly metricName: number;
}

/** The reasons a line is malformed: a fixed set, so they can label a metric. */
export const MALFORMED = [
  'bad-metric-name',
  'bad-label-set',
  'duplicate-label',
  'too-many-labels',
  'label-too-long',
  'bad-value',
  'bad-timestamp',
  'line-too-long',
  'bad-comment',
] as const;
export type MalformedReason = (typeof MALFORMED)[number];

export interface ExpositionSample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  /** May be NaN or ±Infinity: the text format allows them. */
  readonly value: number;
  /** Unix epoch milliseconds, when the line carries one. */
  readonly timestamp?: number;
  /** 1-based line number in the body. */
  readonly line: number;
}

export interface MalformedLine {
  readonly line: number;
  readonly reason: MalformedReason;
  /** What exactly was wrong, for a log line (bounded). */
  readonly detail: string;
}

export interface ExpositionParse {
  readonly samples: ExpositionSample[];
  /** Metric name -> its `# TYPE` (counter, gauge, ...). */
  readonly types: ReadonlyMap<string, string>;
  /** Malformed lines by reason. */
  readonly malformed: Readonly<Partial<Record<MalformedReason, number>>>;
  readonly malformedCount: number;
  /** The first few malformed lines (at most 10), for a log line. */
  readonly examples: readonly MalformedLine[];
  /** Lines beyond the line bound were left out. */
  readonly truncated: boolean;
  /** Samples whose value is NaN or ±Inf (still among `samples`). */
  readonly nonFinite: number;
}

const METRIC_NAME = /^[A-Za-z_:][A-Za-z0-9_:]*$/;
const LABEL_NAME_START = /[A-Za-z_]/;
const LABEL_NAME_CHAR = /[A-Za-z0-9_]/;
const FLOAT = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const INT = /^-?\d{1,16}$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped', 'unknown', 'info']);

class Malformed extends Error {
  constructor(
    readonly reason: MalformedReason,
    readonly detail: string,
  ) {
    super(detail);
  }
}

/** A number of the text format: a float, NaN, or an infinity (any case, as Go's ParseFloat). */
export function parseValue(text: string): number | undefined {
  const t = text.toLowerCase();
  if (t === 'nan') return Number.NaN;
  if (t === '+inf' || t === 'inf') return Number.POSITIVE_INFINITY;
  if (t === '-inf') return Number.NEGATIVE_INFINITY;
  return FLOAT.test(text) ? Number(text) : undefined;
}

function clip(s: string, n = 60): string {
  return s.length > n ? `${s.slice(0, n)}...` : s;
}

/** Reads `{a="b",...}` from position `i` (at the `{`); returns the labels and the index after `}`. */
function readLabels(
  line: string,
  start: number,
  limits: ExpositionLimits,
): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = Object.create(null) as Record<string, string>;
  let n = 0;
  let i = start + 1;
  const skipSpace = (): void => {
    while (line[i] === ' ' || line[i] === '\t') i++;
  };
  for (;;) {
    skipSpace();
    if (line[i] === '}') return { labels, end: i + 1 };
    const nameStart = i;
    if (!LABEL_NAME_START.test(line[i] ?? '')) {
      throw new Malformed('bad-label-set', `expected a label name at character ${i + 1}`);
    }
    while (LABEL_NAME_CHAR.test(line[i] ?? '')) i++;
    const name = line.slice(nameStart, i);
    if (name.length > limits.labelName) {
      throw new Malformed(
        'label-too-long',
        `label name longer than ${limits.labelName} characters`,
      );
    }
    skipSpace();
    if (line[i] !== '=') throw new Malformed('bad-label-set', `expected = after label ${name}`);
    i++;
    skipSpace();
    if (line[i] !== '"') throw new Malformed('bad-label-set', `expected " after ${name}=`);
    i++;
    let value = '';
    let closed = false;
    while (i < line.length) {
      const c = line[i] as string;
      if (c === '"') {
        closed = true;
        i++;
        break;
      }
      if (c === '\\') {
        const e = line[i + 1];
        if (e === undefined) break;
        // Prometheus' own parser: \\, \" and \n are escapes, any other is kept as written.
        value += e === 'n' ? '\n' : e === '\\' || e === '"' ? e : `\\${e}`;
        i += 2;
      } else {
        value += c;
        i++;
      }
      if (value.length > limits.labelValue) {
        throw new Malformed(
          'label-too-long',
          `label ${name} longer than ${limits.labelValue} characters`,
        );
      }
    }
    if (!closed) throw new Malformed('bad-label-set', `label ${name}: unterminated value`);
    if (Object.hasOwn(labels, name)) {
      throw new Malformed('duplicate-label', `label ${name} given twice`);
    }
    if (++n > limits.labels) {
      throw new Malformed('too-many-labels', `more than ${limits.labels} labels`);
    }
    labels[name] = value;
    skipSpace();
    if (line[i] === ',') {
      i++;
      continue;
    }
    if (line[i] === '}') return { labels, end: i + 1 };
    throw new Malformed('bad-label-set', `expected , or } after label ${name}`);
  }
}

function readSample(line: string, n: number, limits: ExpositionLimits): ExpositionSample {
  let i = 0;
  while (i < line.length && line[i] !== '{' && line[i] !== ' ' && line[i] !== '\t') i++;
  const name = line.slice(0, i);
  if (!METRIC_NAME.test(name) || name.length > limits.metricName) {
    throw new Malformed('bad-metric-name', `bad metric name "${clip(name)}"`);
  }
  let labels: Record<string, string> = {};
  // Blanks may stand between the name and its label set (Prometheus' own parser allows them).
  let j = i;
  while (line[j] === ' ' || line[j] === '\t') j++;
  if (line[j] === '{') i = j;
  if (line[i] === '{') {
    const read = readLabels(line, i, limits);
    labels = { ...read.labels };
    i = read.end;
  }
  let rest = line.slice(i).trim();
  // An OpenMetrics exemplar: ` # {trace_id="..."} 1 [ts]` after the value.
  const hash = rest.indexOf('#');
  if (hash >= 0) rest = rest.slice(0, hash).trim();
  const parts = rest === '' ? [] : rest.split(/[ \t]+/);
  if (parts.length === 0 || parts.length > 2) {
    throw new Malformed('bad-value', `expected a value and an optional timestamp after ${name}`);
  }
  const value = parseValue(parts[0] as string);
  if (value === undefined) {
    throw new Malformed(
      'bad-value',
      `${name}: value "${clip(parts[0] as string)}" is not a number`,
    );
  }
  const ts = parts[1];
  if (ts === undefined) return { name, labels, value, line: n };
  if (!INT.test(ts)) {
    throw new Malformed('bad-timestamp', `${name}: timestamp "${clip(ts)}" is not integer ms`);
  }
  return { name, labels, value, timestamp: Number(ts), line: n };
}

/** Parses one body. Never throws on content: a bad line is counted and skipped. */
export function parseExposition(
  body: string,
  limits: ExpositionLimits = EXPOSITION_LIMITS,
): ExpositionParse {
  const samples: ExpositionSample[] = [];
  const types = new Map<string, string>();
  const malformed: Partial<Record<MalformedReason, number>> = {};
  const examples: MalformedLine[] = [];
  let malformedCount = 0;
  let nonFinite = 0;
  let truncated = false;
  const bad = (line: number, reason: MalformedReason, detail: string): void => {
    malformed[reason] = (malformed[reason] ?? 0) + 1;
    malformedCount++;
    if (examples.length < 10) examples.push({ line, reason, detail });
  };
  let pos = 0;
  let n = 0;
  while (pos < body.length) {
    let end = body.indexOf('\n', pos);
    if (end < 0) end = body.length;
    n++;
    if (n > limits.lines) {
      truncated = true;
      break;
    }
    const raw = body.slice(pos, end);
    pos = end + 1;
    const line = (raw.endsWith('\r') ? raw.slice(0, -1) : raw).trim();
    if (line === '') continue;
    if (raw.length > limits.lineLength) {
      bad(n, 'line-too-long', `line longer than ${limits.lineLength} characters`);
      continue;
    }
    if (line.startsWith('#')) {
      if (line === '# EOF') break;
      const m = /^#[ \t]+(HELP|TYPE)[ \t]+(\S+)(?:[ \t]+(.*))?$/.exec(line);
      if (m === null) continue; // a plain comment
      if (m[1] === 'TYPE') {
        const type = (m[3] ?? '').trim();
        if (!METRIC_NAME.test(m[2] ?? '') || !TYPES.has(type)) {
          bad(n, 'bad-comment', `bad TYPE line for "${clip(m[2] ?? '')}"`);
        } else types.set(m[2] as string, type);
      }
      continue;
    }
    try {
      const s = readSample(line, n, limits);
      if (!Number.isFinite(s.value)) nonFinite++;
      samples.push(s);
    } catch (err) {
      if (!(err instanceof Malformed)) throw err;
      bad(n, err.reason, err.detail);
    }
  }
  return { samples, types, malformed, malformedCount, examples, truncated, nonFinite };
}
