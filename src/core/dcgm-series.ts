/**
 * A Prometheus sample of a dcgm-exporter series, as a scrape or a remote_write brings it, turned
 * into the record a CSV row of the same GPU would give, so readings from every source land in one
 * series (cluster, Hostname, gpu, metric). The label names dcgm-exporter has used over its
 * versions are all understood.
 */
import {
  identityProblem,
  isDcgmSentinel,
  labelsProblem,
  timestampProblem,
  type TelemetryRecord,
} from './record.js';

export interface SeriesSample {
  /** The metric name (a remote_write series' `__name__`, a scrape line's name). */
  readonly name: string;
  /** Every label of the series; `__name__` may be among them. */
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
  /** Unix epoch milliseconds. */
  readonly timestamp: number;
}

export type SeriesResult =
  | { readonly kind: 'record'; readonly record: TelemetryRecord; readonly cluster?: string }
  /** A DCGM "no value" sentinel: skipped, as the CSV reader skips it. */
  | { readonly kind: 'sentinel' }
  /** Not a DCGM field (another exporter's series, or a Prometheus-made one such as `up`). */
  | { readonly kind: 'not-dcgm' }
  | { readonly kind: 'reject'; readonly reason: string };

/**
 * Where each record field is read from, first label present wins. `exported_*`: what Prometheus
 * renames a target's own label to when its scrape config attaches one of the same name (the
 * exporter pod's `pod` and `namespace` under Kubernetes service discovery), so the workload's is
 * the exported one.
 */
export const SERIES_LABELS = {
  hostname: ['Hostname', 'hostname', 'exported_Hostname'],
  gpu: ['gpu', 'exported_gpu'],
  uuid: ['UUID', 'uuid', 'exported_UUID'],
  device: ['device', 'exported_device'],
  model: ['modelName', 'exported_modelName'],
  pod: ['exported_pod', 'pod', 'pod_name'],
  namespace: ['exported_namespace', 'namespace', 'pod_namespace'],
  container: ['exported_container', 'container', 'container_name'],
} as const;

/** The label that names the telemetry cluster of a remote_write series (else the receiver's own). */
export const CLUSTER_LABEL = 'cluster';

const DCGM_NAME = /^DCGM_(FI|EXP)_/;

export function isDcgmMetric(name: string): boolean {
  return DCGM_NAME.test(name);
}

function first(
  labels: Readonly<Record<string, string>>,
  names: readonly string[],
): string | undefined {
  for (const n of names) {
    const v = labels[n];
    if (v !== undefined && v !== '') return v;
  }
  return undefined;
}

/**
 * The record of one sample, or why there is none. `acceptAll`: take series whose name is not a
 * DCGM field too (they still need a Hostname and gpu label to be a GPU's reading).
 */
export function recordFromSeries(
  s: SeriesSample,
  options: { readonly now?: number; readonly acceptAll?: boolean } = {},
): SeriesResult {
  const metric = s.name;
  if (options.acceptAll !== true && !isDcgmMetric(metric)) return { kind: 'not-dcgm' };
  const { labels } = s;
  if (!Number.isFinite(s.value)) {
    return { kind: 'reject', reason: `${metric}: value ${String(s.value)} is not a reading` };
  }
  if (isDcgmSentinel(s.value)) return { kind: 'sentinel' };
  const tsProblem = timestampProblem(s.timestamp, options.now);
  if (tsProblem !== undefined) return { kind: 'reject', reason: `${metric}: ${tsProblem}` };
  const gpuText = first(labels, SERIES_LABELS.gpu);
  if (gpuText === undefined) return { kind: 'reject', reason: `${metric}: no gpu label` };
  if (!/^\d{1,5}$/.test(gpuText)) {
    return { kind: 'reject', reason: `${metric}: bad gpu label "${gpuText.slice(0, 40)}"` };
  }
  const hostname = first(labels, SERIES_LABELS.hostname);
  if (hostname === undefined) {
    return { kind: 'reject', reason: `${metric}: no Hostname label (dcgm-exporter sets it)` };
  }
  const problem = labelsProblem(labels);
  if (problem !== undefined) return { kind: 'reject', reason: `${metric}: ${problem}` };
  const record: { -readonly [K in keyof TelemetryRecord]: TelemetryRecord[K] } = {
    timestamp: s.timestamp,
    metric,
    gpu: Number(gpuText),
    hostname,
    value: s.value,
    labels,
  };
  for (const field of ['uuid', 'device', 'model', 'pod', 'namespace', 'container'] as const) {
    const v = first(labels, SERIES_LABELS[field]);
    if (v !== undefined) record[field] = v;
  }
  const identity = identityProblem(record);
  if (identity !== undefined) return { kind: 'reject', reason: `${metric}: ${identity}` };
  const cluster = labels[CLUSTER_LABEL];
  return cluster === undefined || cluster === ''
    ? { kind: 'record', record }
    : { kind: 'record', record, cluster };
}
