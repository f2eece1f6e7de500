/**
 * The simulated fleet as a DCGM CSV export (`nexus generate --fleet`): the columns, quoting and
 * `labels_raw` of the real export (samples/), so that the CSV reader turns each row back into the
 * record the model made.
 */
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import type { TelemetryRecord } from '../../core/record.js';
import { HEADER } from '../csv/generator.js';
import { fleetInstants, type FleetRange } from './fleet.js';

/** A label value as labels_raw writes it: Prometheus escapes, then the CSV's doubled quotes. */
function labelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\""');
}

const labelsText = new WeakMap<object, string>();

function labelsRaw(labels: Readonly<Record<string, string>>): string {
  const cached = labelsText.get(labels);
  if (cached !== undefined) return cached;
  const text = Object.entries(labels)
    .map(([k, v]) => `${k}=""${labelValue(v)}""`)
    .join(',');
  labelsText.set(labels, text);
  return text;
}

function timestampText(ms: number): string {
  const iso = new Date(ms).toISOString();
  return iso.endsWith('.000Z') ? `${iso.slice(0, -5)}Z` : iso;
}

/** One CSV line (with its newline) for a record. */
export function csvLine(r: TelemetryRecord): string {
  return `"${timestampText(r.timestamp)}","${r.metric}","${r.gpu}","${r.device ?? ''}","${r.uuid ?? ''}","${r.model ?? ''}","${r.hostname}","${r.container ?? ''}","${r.pod ?? ''}","${r.namespace ?? ''}","${String(r.value)}","${labelsRaw(r.labels)}"\n`;
}

/** Writes the fleet's readings over the range as a DCGM CSV; returns the rows written. */
export async function writeFleetCsv(options: FleetRange, out: Writable): Promise<number> {
  let rows = 0;
  let chunk = HEADER;
  for (const instant of fleetInstants(options)) {
    for (const r of instant) chunk += csvLine(r);
    rows += instant.length;
    if (chunk.length > 1 << 20) {
      if (!out.write(chunk)) await once(out, 'drain');
      chunk = '';
    }
  }
  if (chunk.length > 0 && !out.write(chunk)) await once(out, 'drain');
  return rows;
}

/** Writes to a file path, or to stdout for "-". */
export async function writeFleetCsvFile(options: FleetRange, path: string): Promise<number> {
  if (path === '-') return writeFleetCsv(options, process.stdout);
  const out = createWriteStream(path);
  const failed = new Promise<never>((_, reject) => out.once('error', reject));
  const rows = await Promise.race([writeFleetCsv(options, out), failed]);
  await Promise.race([new Promise<void>((resolve) => out.end(resolve)), failed]);
  return rows;
}
