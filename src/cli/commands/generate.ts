import { Command } from 'commander';
import {
  DEFAULT_GENERATE,
  bytesPerRow,
  generateToFile,
  metricsByCount,
  type GenerateOptions,
} from '../../streamer/csv/generator.js';
import { parseTimestamp } from '../../core/record.js';
import { parseDuration } from '../../core/duration.js';
import { NexusError } from '../../core/errors.js';

function int(name: string, v: string | undefined, fallback: number, min = 1): number {
  if (v === undefined) return fallback;
  if (!/^\d+$/.test(v) || Number(v) < min)
    throw new NexusError('CONFIG_INVALID', `--${name} must be an integer >= ${min}`);
  return Number(v);
}

function size(v: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(k|m|g|kb|mb|gb|kib|mib|gib)?$/i.exec(v.trim());
  if (m === null)
    throw new NexusError('CONFIG_INVALID', `--size "${v}" is not a size (e.g. 500MB, 1GB)`);
  const unit = (m[2] ?? '').toLowerCase()[0] ?? '';
  const mult = unit === 'k' ? 1024 : unit === 'm' ? 1024 ** 2 : unit === 'g' ? 1024 ** 3 : 1;
  return Number(m[1]) * mult;
}

export function generateCommand(): Command {
  return new Command('generate')
    .description(
      'Write a synthetic DCGM CSV export of any size (hosts x GPUs x metrics x timestamps)',
    )
    .option('-o, --out <file>', 'output file ("-" for stdout)', 'generated.csv')
    .option('--hosts <n>', 'hosts', String(DEFAULT_GENERATE.hosts))
    .option('--gpus <n>', 'GPUs per host', String(DEFAULT_GENERATE.gpusPerHost))
    .option('--metrics <n|names>', 'number of DCGM fields, or a comma-separated list', '10')
    .option(
      '--timestamps <n>',
      'timestamps per GPU and metric',
      String(DEFAULT_GENERATE.timestamps),
    )
    .option('--records <n>', 'target record count (sets --timestamps)')
    .option('--size <bytes>', 'target file size, e.g. 1GB (sets --timestamps)')
    .option(
      '--start <time>',
      'first timestamp (RFC 3339)',
      new Date(DEFAULT_GENERATE.startMs).toISOString(),
    )
    .option('--interval <duration>', 'time between timestamps', '10s')
    .option(
      '--pods <fraction>',
      'fraction of GPUs running a pod',
      String(DEFAULT_GENERATE.podFraction),
    )
    .option('--seed <n>', 'random seed (same seed, same file)', String(DEFAULT_GENERATE.seed))
    .option('--host-prefix <text>', 'hostname prefix', DEFAULT_GENERATE.hostPrefix)
    .action(async (o: Record<string, string | undefined>) => {
      const metrics = /^\d+$/.test(o.metrics ?? '10')
        ? metricsByCount(Number(o.metrics))
        : (o.metrics ?? '')
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean);
      const startMs = parseTimestamp(o.start ?? '');
      if (startMs === undefined)
        throw new NexusError('CONFIG_INVALID', `--start "${o.start}" is not a timestamp`);
      const base: GenerateOptions = {
        ...DEFAULT_GENERATE,
        hosts: int('hosts', o.hosts, DEFAULT_GENERATE.hosts),
        gpusPerHost: int('gpus', o.gpus, DEFAULT_GENERATE.gpusPerHost),
        metrics,
        startMs,
        intervalMs: parseDuration(o.interval ?? '10s', '--interval'),
        podFraction: Math.max(0, Math.min(1, Number(o.pods ?? DEFAULT_GENERATE.podFraction))),
        seed: int('seed', o.seed, DEFAULT_GENERATE.seed, 0),
        hostPrefix: o.hostPrefix ?? DEFAULT_GENERATE.hostPrefix,
        timestamps: int('timestamps', o.timestamps, DEFAULT_GENERATE.timestamps),
      };
      const perStep = base.hosts * base.gpusPerHost * base.metrics.length;
      let timestamps = base.timestamps;
      if (o.records !== undefined)
        timestamps = Math.max(1, Math.ceil(int('records', o.records, 1) / perStep));
      if (o.size !== undefined)
        timestamps = Math.max(1, Math.ceil(size(o.size) / ((await bytesPerRow(base)) * perStep)));
      const t0 = Date.now();
      const rows = await generateToFile({ ...base, timestamps }, o.out ?? 'generated.csv');
      if (o.out !== '-') {
        process.stderr.write(
          `wrote ${rows} records (${base.hosts} hosts x ${base.gpusPerHost} GPUs x ${base.metrics.length} metrics x ${timestamps} timestamps) to ${o.out} in ${Date.now() - t0} ms\n`,
        );
      }
    });
}
