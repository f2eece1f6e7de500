import { Command } from 'commander';
import { describeError, isNexusError } from '../../core/errors.js';
import type { StreamSummary } from '../../streamer/streamer.js';
import { readHeader } from '../../streamer/csv/reader.js';
import { whenLabelCache } from '../../streamer/csv/dcgm-row.js';
import { buildQueue, configuredBackends } from '../backends.js';
import {
  buildStreamer,
  closeOnSignal,
  openRoot,
  processMetrics,
  startOps,
  startTracing,
} from '../compose.js';
import { exitStatusOf } from '../exit.js';
import { readiness } from '../observability.js';
import { queueWatch } from '../etcd-alarms.js';
import { boundHeapGrowth } from '../heap.js';
import { resolveInput } from '../paths.js';
import { exitIfStillRunning } from '../signals.js';
import { addSettings, configFrom } from '../settings.js';

/**
 * Exit codes of `nexus streamer` (README, "The streamer"): 0 done (or stopped by a signal, resumable),
 * 1 failed while running, 2 bad configuration or an input file it cannot use (missing, a directory,
 * unreadable, empty, not a DCGM CSV header), 3 the file holds no reading to publish (every data row
 * rejected, or none at all).
 */
export const STREAMER_EXIT = { ok: 0, failed: 1, usage: 2, nothingValid: 3 } as const;

/** The exit code for an error that ended a streamer run. */
export function streamerExitCode(err: unknown): number {
  return exitStatusOf(err) === 2 ? STREAMER_EXIT.usage : STREAMER_EXIT.failed;
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
    const root = openRoot(config);
    const { logger, stack } = root;
    // V8 sizes the heap's growth itself (a bound costs CPU for nothing while the live data is a few
    // MB) until the label cache is full of a file with more series than it holds: its entries
    // are then about 100 MB, every other row is parsed, and the heap would grow to 3.5 times that
    // (peak RSS 476-488 MB on the 100,000-GPU file; 301-305 MB bounded). Once the cache empties to
    // rest, the live data is a few tens of MB and that bound made every few MB of garbage a full
    // collection: the growth is then a fixed 300 %, V8's largest factor (on that file, 6
    // alternated runs each: 22.0 µs a record on average with 100 % throughout, 19.5 with 300 %
    // once the cache rests; the peak unchanged, 310-327 MB, reached while the cache is full).
    whenLabelCache({ full: () => boundHeapGrowth(100), emptied: () => boundHeapGrowth(300) });
    const queue = buildQueue(root, configuredBackends(root));
    const metrics = processMetrics(root, 'streamer');
    startTracing(root, 'streamer');
    const { probes, alarms } = queueWatch(root, queue, metrics);
    const streamer = await buildStreamer(root, queue, metrics, {
      ...(alarms === undefined ? {} : { space: alarms.space }),
      restart: opts.restart === true,
      ...(opts.maxLoops === undefined ? {} : { maxLoops: Number(opts.maxLoops) }),
    });
    let stopping = false;
    await startOps(root, {
      health: readiness(
        probes,
        () => {
          const own = streamer.health;
          return stopping ? { ready: false, reasons: ['shutting down', ...own.reasons] } : own;
        },
        metrics,
        'streamer',
      ),
      metrics: () => metrics.exposition(),
    });
    stack.push(
      'publishing the batches already read and saving the checkpoint (the next run resumes from the last checkpoint)',
      () => {
        stopping = true;
        return streamer.stop();
      },
    );
    closeOnSignal(root);
    try {
      const summary = await streamer.run();
      const usage = process.resourceUsage();
      const peakRssMb = Math.round(usage.maxRSS / 1024);
      // CPU time of the whole run (user + system), what a reading costs the streamer.
      const cpuSeconds = Math.round((usage.userCPUTime + usage.systemCPUTime) / 1000) / 1000;
      logger.info({ summary: { ...summary, peakRssMb, cpuSeconds } }, summaryLine(summary));
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
        // The JSON log goes to stdout; whoever started it (a terminal, a Job) sees why here.
        process.stderr.write(`nexus streamer: ${describeError(err)}\n`);
      }
      process.exitCode = code;
    } finally {
      await stack.close();
      // The file is done (or the run failed): whoever waits for the process (a Job, a script)
      // must see it end, whatever a library left open.
      exitIfStillRunning(logger);
    }
  });
  return cmd;
}
