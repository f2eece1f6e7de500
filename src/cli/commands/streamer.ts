import { Command } from 'commander';
import { hostname } from 'node:os';
import { basename, join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { createLogger } from '../../core/logger.js';
import { describeError, isNexusError } from '../../core/errors.js';
import { shortHash } from '../../streamer/fingerprint.js';
import {
  BarProgress,
  LogProgress,
  noProgress,
  type ProgressReporter,
} from '../../streamer/progress.js';
import { Streamer, type StreamSummary } from '../../streamer/streamer.js';
import type { Config } from '../../core/config.js';
import type { Logger } from '../../core/logger.js';
import type { Queue } from '../../queue/types.js';
import { createQueue } from '../backends.js';
import { dataDir, resolveInput } from '../paths.js';
import { readHeader } from '../../streamer/csv/reader.js';
import { addSettings, configFrom } from '../settings.js';
import { onShutdown } from '../signals.js';
import { VERSION } from '../version.js';
import { NexusMetrics } from '../../core/metrics.js';
import { startOpsServer } from '../ops-server.js';
import { readiness } from '../observability.js';
import { setupTracing } from '../tracing.js';

export function streamerOptionsFrom(
  config: Config,
  queue: Queue,
  logger: Logger,
  extra: { restart: boolean; maxLoops?: number },
) {
  const csvFile = resolveInput(config.csvFile);
  const file = basename(csvFile);
  const streamId =
    config.streamId !== ''
      ? config.streamId
      : `${file.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 80)}-${shortHash(`${config.clusterId}:${csvFile}`)}`;
  const progress: ProgressReporter =
    config.progress === 'off'
      ? noProgress
      : config.progress === 'bar' || (config.progress === 'auto' && process.stderr.isTTY)
        ? new BarProgress(process.stderr)
        : new LogProgress(logger);
  return {
    queue,
    csvFile,
    clusterId: config.clusterId,
    batchSize: config.batchSize,
    intervalMs: config.streamInterval,
    loop: config.loopMode,
    timestampMode:
      config.timestampMode === 'auto'
        ? config.loopMode
          ? 'live'
          : 'original'
        : config.timestampMode,
    maxQueueDepth: config.maxQueueDepth,
    concurrency: config.publishConcurrency,
    streamId,
    producerId: `streamer-${hostname()}-${process.pid}`,
    rejectsFile:
      config.rejectsFile !== ''
        ? config.rejectsFile
        : join(dataDir(config.dataDir), 'rejects', `${file}.rejects.csv`),
    rejectsMaxBytes: config.rejectsMaxBytes,
    restart: extra.restart,
    logger,
    progress,
    ...(extra.maxLoops === undefined ? {} : { maxLoops: extra.maxLoops }),
  } as const;
}

/**
 * Exit codes of `nexus streamer` (README, "The streamer"): 0 done (or stopped by a signal, resumable),
 * 1 failed while running, 2 bad configuration or an input file it cannot use (missing, a directory,
 * unreadable, empty, not a DCGM CSV header), 3 the file holds no reading to publish (every data row
 * rejected, or none at all).
 */
export const STREAMER_EXIT = { ok: 0, failed: 1, usage: 2, nothingValid: 3 } as const;

/** The exit code for an error that ended a streamer run. */
export function streamerExitCode(err: unknown): number {
  if (
    isNexusError(err, 'CONFIG_INVALID') ||
    isNexusError(err, 'CSV_FILE_UNREADABLE') ||
    isNexusError(err, 'CSV_HEADER_INVALID')
  )
    return STREAMER_EXIT.usage;
  return STREAMER_EXIT.failed;
}

/** What a run that published nothing valid says, or undefined. */
export function nothingValidLine(s: StreamSummary, file: string): string | undefined {
  if (!s.nothingValid) return undefined;
  if (s.dataRows === 0) return `nothing valid in ${file}: it has a header and no data rows`;
  const parts = [
    s.rejects > 0 ? `${s.rejects} rejected` : '',
    s.sentinels > 0 ? `${s.sentinels} DCGM "not supported" readings` : '',
  ].filter((p) => p !== '');
  return `nothing valid in ${file}: none of its ${s.dataRows} data rows is a reading (${parts.join(', ')})`;
}

export function summaryLine(s: StreamSummary): string {
  const rate = s.elapsedMs > 0 ? Math.round((s.records / s.elapsedMs) * 1000) : 0;
  const reasons = Object.entries(s.rejectsByReason)
    .map(([k, n]) => `${n} ${k}`)
    .join(', ');
  return (
    `summary: ${s.records} records published in ${s.batches} batches (${rate}/s), ` +
    `${s.rejects} malformed rows set aside${reasons === '' ? '' : ` (${reasons})`}` +
    (s.rejectsFile === undefined ? '' : ` -> ${s.rejectsFile}`) +
    (s.rejectsUnwritten > 0
      ? ` (${s.rejectsUnwritten} of them not written: ${s.rejectsUnwrittenWhy ?? 'unknown'})`
      : '') +
    ', ' +
    `${s.sentinels} not-supported readings skipped` +
    (s.skipped > 0 ? `, ${s.skipped} already published before restart` : '') +
    (s.stopped ? ', stopped early (resumable)' : '') +
    (s.nothingValid ? ', nothing valid read' : '')
  );
}

/**
 * A streamer holds little (the batches in flight and one label set per series) but allocates fast,
 * and V8's default heap growth lets garbage reach three to four times the live data before a full
 * collection: 300 MB of RSS on a 1 GB file. Growing the heap by half its live size at most keeps
 * the peak near 170 MB for a few percent of speed (docs/benchmarks.md). An operator's own
 * --heap-growing-percent (NODE_OPTIONS) wins.
 */
function boundHeapGrowth(): void {
  const given = `${process.env.NODE_OPTIONS ?? ''} ${process.execArgv.join(' ')}`;
  if (!given.includes('heap-growing-percent')) setFlagsFromString('--heap-growing-percent=50');
}

export function streamerCommand(): Command {
  const cmd = new Command('streamer')
    .description('Stream a DCGM CSV export into the queue (resumable, exactly once)')
    .option('--csv <file>', 'alias of --csv-file')
    .option('--restart', 'ignore the checkpoint of an interrupted run and start from the top')
    .option('--max-loops <n>', 'in loop mode, stop after this many passes')
    .addHelpText(
      'after',
      '\nExit status: 0 streamed (rows set aside are in the rejects file), or stopped by a signal;\n' +
        '1 failed while running; 2 bad configuration, or a CSV file it cannot use (missing, a\n' +
        'directory, unreadable, empty, not a DCGM header); 3 no reading to publish in the file\n' +
        '(a header and no data rows, or every data row rejected).',
    );
  addSettings(cmd, ['common', 'queue', 'streamer']);
  cmd.action(async (opts: { csv?: string; restart?: boolean; maxLoops?: string }) => {
    const config = configFrom(cmd, opts.csv === undefined ? {} : { csvFile: opts.csv });
    // A file it cannot use (missing, a directory, empty, not a DCGM header) stops it here, in
    // one line with exit 2, before anything starts.
    await readHeader(resolveInput(config.csvFile));
    boundHeapGrowth();
    const logger = createLogger({
      level: config.logLevel,
      base: { cluster_id: config.clusterId },
    });
    const queue = createQueue(config, logger);
    const metrics = new NexusMetrics({
      component: 'streamer',
      cluster: config.clusterId,
      version: VERSION,
    });
    const stopTracing = setupTracing('streamer', logger);
    const streamer = new Streamer({
      ...streamerOptionsFrom(config, queue, logger, {
        restart: opts.restart === true,
        ...(opts.maxLoops === undefined ? {} : { maxLoops: Number(opts.maxLoops) }),
      }),
      metrics,
    });
    let stopping = false;
    const ops =
      config.metricsPort > 0
        ? await startOpsServer(
            config.metricsPort,
            {
              health: readiness(
                [
                  {
                    name: 'etcd',
                    check: async () => {
                      await queue.depth();
                    },
                  },
                ],
                () => {
                  const own = streamer.health;
                  return stopping
                    ? { ready: false, reasons: ['shutting down', ...own.reasons] }
                    : own;
                },
                metrics,
                'streamer',
              ),
              metrics: () => metrics.exposition(),
            },
            logger,
          )
        : undefined;
    onShutdown(logger, async (_signal, progress) => {
      stopping = true;
      progress.step(
        'publishing the batches already read and saving the checkpoint (the next run resumes from the last checkpoint)',
      );
      await streamer.stop();
    });
    try {
      const summary = await streamer.run();
      const peakRssMb = Math.round(process.resourceUsage().maxRSS / 1024);
      logger.info({ summary: { ...summary, peakRssMb } }, summaryLine(summary));
      const nothing = nothingValidLine(summary, streamer.file);
      if (nothing !== undefined) {
        logger.error({ exit_code: STREAMER_EXIT.nothingValid }, nothing);
        process.stderr.write(`nexus streamer: ${nothing}\n`);
        process.exitCode = STREAMER_EXIT.nothingValid;
      }
    } catch (err) {
      const code = streamerExitCode(err);
      if (code === STREAMER_EXIT.usage) {
        // The input is the problem, not the program: one line, no stack.
        logger.error({ code: isNexusError(err) ? err.code : undefined }, describeError(err));
        process.stderr.write(`nexus streamer: ${describeError(err)}\n`);
      } else {
        logger.error({ err }, `streamer failed: ${describeError(err)}`);
      }
      process.exitCode = code;
    } finally {
      await queue.close();
      await stopTracing();
      ops?.close();
    }
  });
  return cmd;
}
