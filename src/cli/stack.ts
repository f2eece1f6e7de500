import { NexusError, describeError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { ShutdownProgress } from './signals.js';

interface Entry {
  /** What closing it does, as a forced exit names the step it cut short. */
  readonly step: string;
  readonly close: () => unknown;
}

/**
 * What a command opened, closed in reverse order, exactly once: the graceful phase of the
 * two-phase shutdown (src/cli/signals.ts is the forced phase, and says which step it cut short).
 * Whatever opens something pushes how to close it; what stops first is pushed last. Every call to
 * `close()` returns the same promise. A close that fails does not keep the others open: the first
 * failure is thrown once everything has been closed, later ones are logged.
 */
export class ResourceStack {
  private readonly entries: Entry[] = [];
  private closing: Promise<void> | undefined;
  private progress: ShutdownProgress | undefined;
  private current: string | undefined;
  private markFinished: () => void = () => undefined;
  private readonly finishedAll = new Promise<void>((resolve) => {
    this.markFinished = resolve;
  });

  constructor(private readonly logger: Logger) {}

  /** Settles once a close() has closed everything (whether or not a close failed). */
  finished(): Promise<void> {
    return this.finishedAll;
  }

  /** True once close() has been called. */
  get closed(): boolean {
    return this.closing !== undefined;
  }

  /** Adds something to close before everything pushed so far. */
  push(step: string, close: () => unknown): void {
    if (this.closing !== undefined) {
      throw new NexusError('SHUTTING_DOWN', `shutting down: too late to open anything (${step})`);
    }
    this.entries.push({ step, close });
  }

  /**
   * Closes everything, last pushed first. `progress` hears the step under way, whichever caller
   * gives it (a signal may come while the command is already closing the stack).
   */
  close(progress?: ShutdownProgress): Promise<void> {
    if (progress !== undefined) {
      this.progress = progress;
      if (this.current !== undefined) progress.step(this.current);
    }
    this.closing ??= this.unwind().finally(() => this.markFinished());
    return this.closing;
  }

  private async unwind(): Promise<void> {
    let failure: { err: unknown } | undefined;
    for (let e = this.entries.pop(); e !== undefined; e = this.entries.pop()) {
      this.current = e.step;
      this.progress?.step(e.step);
      try {
        await e.close();
      } catch (err) {
        if (failure === undefined) failure = { err };
        else this.logger.warn({ err: describeError(err), step: e.step }, 'closing failed');
      }
    }
    if (failure !== undefined) throw failure.err;
  }
}
