import { readFileSync } from 'node:fs';
import { parse } from 'csv-parse/sync';
import { join } from 'node:path';
import { ROOT } from './child.js';

export const SAMPLE = join(ROOT, 'samples', 'dcgm_metrics_20250718_134233.csv');

/** The bundled export's header, as the CSV reader sees it. */
export const SAMPLE_HEADER =
  'timestamp,metric_name,gpu_id,device,uuid,modelName,Hostname,container,pod,namespace,value,labels_raw';

/** The bundled export's first row, as the CSV reader sees it, its labels_raw given by the caller. */
export function sampleFields(labelsRaw: string, timestamp = '2025-07-18T20:42:34Z'): string[] {
  return [
    timestamp,
    'DCGM_FI_DEV_GPU_UTIL',
    '0',
    'nvidia0',
    'GPU-5fd4f087-86f3-7a43-b711-4771313afc50',
    'NVIDIA H100 80GB HBM3',
    'mtv5-dgx1-hgpu-031',
    '',
    '',
    '',
    '37',
    labelsRaw,
  ];
}

export interface SampleRow {
  timestamp: number;
  metric: string;
  gpu: number;
  device: string;
  uuid: string;
  model: string;
  hostname: string;
  container: string;
  pod: string;
  namespace: string;
  value: number;
  labels: Record<string, string>;
}

/**
 * The bundled sample parsed independently of Nexus's reader: csv-parse for the CSV, a regular
 * expression for the labels, Date.parse for the timestamps.
 */
export function sampleRows(path = SAMPLE): SampleRow[] {
  const rows = parse<Record<string, string>>(readFileSync(path), {
    bom: true,
    columns: true,
    skip_empty_lines: true,
  });
  return rows.map((r) => {
    const labels: Record<string, string> = {};
    for (const m of (r.labels_raw ?? '').matchAll(/([A-Za-z_][A-Za-z0-9_]*)="([^"]*)"/g)) {
      labels[m[1] ?? ''] = m[2] ?? '';
    }
    return {
      timestamp: Date.parse(r.timestamp ?? ''),
      metric: r.metric_name ?? '',
      gpu: Number(r.gpu_id),
      device: r.device ?? '',
      uuid: r.uuid ?? '',
      model: r.modelName ?? '',
      hostname: r.Hostname ?? '',
      container: r.container ?? '',
      pod: r.pod ?? '',
      namespace: r.namespace ?? '',
      value: Number(r.value),
      labels,
    };
  });
}
