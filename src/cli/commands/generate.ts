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
import { DEFAULT_FLEET, describeFleet, type FleetRange } from '../../streamer/sim/fleet.js';
import { writeFleetCsvFile } from '../../streamer/sim/fleet-csv.js';

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

/** Options of the uniform generator that mean nothing to the fleet model. */
const UNIFORM_ONLY = ['metrics', 'timestamps', 'records', 'size', 'pods'] as const;

/** `nexus generate --fleet`: the simulated fleet (src/streamer/sim/fleet.ts) over a time range. */
async function generateFleet(cmd: Command, o: Record<string, string | boolean | undefined>) {
  const given = (name: string): boolean => cmd.getOptionValueSource(name) === 'cli';
  const text = (name: string): string | undefined => {
    const v = o[name];
    return typeof v === 'string' && given(name) ? v : undefined;
  };
  const misplaced = UNIFORM_ONLY.filter(given);
  if (misplaced.length > 0) {
    throw new NexusError(
      'CONFIG_INVALID',
      `--fleet generates the fleet model's own fields, pods and instants: ${misplaced.map((m) => `--${m}`).join(', ')} apply to the uniform generator only (use --duration and --interval)`,
    );
  }
  const start = text('start');
  const startMs = start === undefined ? DEFAULT_FLEET.startMs : parseTimestamp(start);
  if (startMs === undefined)
    throw new NexusError('CONFIG_INVALID', `--start "${start}" is not a timestamp`);
  const intervalMs = parseDuration(text('interval') ?? '30s', '--interval');
  const durationMs = parseDuration(
    typeof o.duration === 'string' ? o.duration : '24h',
    '--duration',
  );
  if (intervalMs < 1000) throw new NexusError('CONFIG_INVALID', '--interval: at least 1s');
  if (durationMs < intervalMs)
    throw new NexusError('CONFIG_INVALID', '--duration: at least one --interval');
  const speed = Number(typeof o.speed === 'string' ? o.speed : '1');
  if (!Number.isFinite(speed) || speed < 1 || speed > 3600)
    throw new NexusError('CONFIG_INVALID', '--speed: a number from 1 to 3600');
  const options: FleetRange = {
    ...DEFAULT_FLEET,
    hosts: int('hosts', text('hosts'), DEFAULT_FLEET.hosts),
    gpusPerHost: int('gpus', text('gpus'), DEFAULT_FLEET.gpusPerHost),
    seed: int('seed', text('seed'), DEFAULT_FLEET.seed, 0),
    hostPrefix: text('hostPrefix') ?? DEFAULT_FLEET.hostPrefix,
    startMs,
    intervalMs,
    durationMs,
    speed,
  };
  if (options.hosts > 1000 || options.gpusPerHost > 64)
    throw new NexusError('CONFIG_INVALID', '--fleet: at most 1000 hosts of 64 GPUs');
  const out = typeof o.out === 'string' ? o.out : 'generated.csv';
  const t0 = Date.now();
  const rows = await writeFleetCsvFile(options, out);
  if (out !== '-') {
    process.stderr.write(
      `wrote ${rows} records (${describeFleet(options)}) from ${new Date(startMs).toISOString()} for ${durationMs / 1000} s to ${out} in ${Date.now() - t0} ms\n`,
    );
  }
}

export function generateCommand(): Command {
  const cmd = new Command('generate');
  return cmd
    .description(
      'Write a synthetic DCGM CSV export: of any size (hosts x GPUs x metrics x timestamps), or with --fleet a realistic simulated fleet over a time range (jobs, pods, incidents: docs/fleet.md)',
    )
    .option(
      '--fleet',
      'the fleet model: 4 hosts x 8 H100 by default, jobs with pods and namespaces, a thermal incident, XIDs, a reboot, a lost GPU, MIG (--start, --duration, --interval, --hosts, --gpus, --seed, --speed)',
    )
    .option('--duration <duration>', 'with --fleet: the time range to generate', '24h')
    .option('--speed <n>', 'with --fleet: jobs and incidents run this many times faster', '1')
    .option('-o, --out <file>', 'output file ("-" for stdout)', 'generated.csv')
    .option('--hosts <n>', 'hosts (--fleet: 4)', String(DEFAULT_GENERATE.hosts))
    .option('--gpus <n>', 'GPUs per host (--fleet: 8)', String(DEFAULT_GENERATE.gpusPerHost))
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
    .option('--interval <duration>', 'time between timestamps (--fleet: 30s)', '10s')
    .option(
      '--pods <fraction>',
      'fraction of GPUs running a pod',
      String(DEFAULT_GENERATE.podFraction),
    )
    .option(
      '--seed <n>',
      `random seed (same seed, same file; --fleet: ${DEFAULT_FLEET.seed})`,
      String(DEFAULT_GENERATE.seed),
    )
    .option('--host-prefix <text>', 'hostname prefix', DEFAULT_GENERATE.hostPrefix)
    .action(async (o: Record<string, string | undefined>) => {
      if (cmd.getOptionValue('fleet') === true) {
        await generateFleet(cmd, o);
        return;
      }
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
