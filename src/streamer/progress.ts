import { formatDuration } from '../core/duration.js';
import type { Logger } from '../core/logger.js';

export interface ProgressSnapshot {
  readonly bytes: number;
  readonly totalBytes: number;
  readonly records: number;
  readonly rejects: number;
  readonly loop: number;
  readonly paused: string | undefined;
}

export interface ProgressReporter {
  update(p: ProgressSnapshot): void;
  finish(): void;
}

function rateText(perSecond: number): string {
  if (perSecond >= 1e6) return `${(perSecond / 1e6).toFixed(2)}M`;
  if (perSecond >= 1e3) return `${(perSecond / 1e3).toFixed(1)}k`;
  return perSecond.toFixed(0);
}

/** Rate over a sliding window of samples. */
class Rate {
  private samples: { t: number; records: number; bytes: number }[] = [];
  push(t: number, records: number, bytes: number): { recordsPerS: number; bytesPerS: number } {
    this.samples.push({ t, records, bytes });
    while (this.samples.length > 2 && t - (this.samples[0]?.t ?? t) > 10_000) this.samples.shift();
    const first = this.samples[0];
    if (first === undefined || t === first.t) return { recordsPerS: 0, bytesPerS: 0 };
    const dt = (t - first.t) / 1000;
    return { recordsPerS: (records - first.records) / dt, bytesPerS: (bytes - first.bytes) / dt };
  }
}

/** A progress bar with rate and ETA on a terminal (stderr), redrawn at most 10 times a second. */
export class BarProgress implements ProgressReporter {
  private last = 0;
  private readonly rate = new Rate();
  constructor(private readonly out: NodeJS.WriteStream) {}

  update(p: ProgressSnapshot): void {
    const now = Date.now();
    if (now - this.last < 100) return;
    this.last = now;
    const { recordsPerS, bytesPerS } = this.rate.push(now, p.records, p.bytes);
    const frac = p.totalBytes > 0 ? Math.min(1, p.bytes / p.totalBytes) : 0;
    const width = Math.max(10, Math.min(40, (this.out.columns || 80) - 70));
    const filled = Math.round(frac * width);
    const eta = bytesPerS > 0 ? formatDuration(((p.totalBytes - p.bytes) / bytesPerS) * 1000) : '?';
    const loop = p.loop > 0 ? ` loop ${p.loop + 1}` : '';
    const state = p.paused === undefined ? `ETA ${eta}` : `paused: ${p.paused}`;
    const line = `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(frac * 100).toFixed(1).padStart(5)}% ${p.records} records ${rateText(recordsPerS)}/s ${p.rejects} rejects${loop} ${state}`;
    this.out.write(`\r${line.slice(0, (this.out.columns || 120) - 1)}\x1b[K`);
  }

  finish(): void {
    this.out.write('\n');
  }
}

/** Progress as a log line every few seconds, for files and pipes. */
export class LogProgress implements ProgressReporter {
  private last = Date.now();
  private readonly rate = new Rate();
  constructor(
    private readonly logger: Logger,
    private readonly everyMs = 5000,
  ) {}

  update(p: ProgressSnapshot): void {
    const now = Date.now();
    const { recordsPerS } = this.rate.push(now, p.records, p.bytes);
    if (now - this.last < this.everyMs) return;
    this.last = now;
    this.logger.info(
      {
        records: p.records,
        rejects: p.rejects,
        percent: p.totalBytes > 0 ? Math.round((p.bytes / p.totalBytes) * 1000) / 10 : undefined,
        records_per_s: Math.round(recordsPerS),
        loop: p.loop,
        paused: p.paused,
      },
      'streaming',
    );
  }

  finish(): void {
    // The summary line says the rest.
  }
}

export const noProgress: ProgressReporter = { update: () => undefined, finish: () => undefined };
