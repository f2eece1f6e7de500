import { createWriteStream, mkdirSync, statSync, type WriteStream } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from '../core/logger.js';
import type { RejectedRow } from './csv/reader.js';

function csvField(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

const HEADER = 'line,reason,row\n';

export interface RejectsSinkOptions {
  /** The rejects file stops growing at this size (bytes); 0 writes no file. */
  readonly maxBytes: number;
  /** Rows logged one by one before the log only says where the rest went. */
  readonly logLimit?: number;
}

/**
 * Sets malformed rows aside: each goes to the rejects file (`line,reason,row`, CSV) and, up to a
 * limit, to the log; every reject is counted by reason. The file is bounded: once it holds
 * `maxBytes`, further rows are counted (`unwritten`) but not written, and closing it adds one last
 * row (no line number) saying how many were left out and why.
 */
export class RejectsSink {
  private out: WriteStream | undefined;
  private logged = 0;
  private bytes = 0;
  private append = false;
  private opened = false;
  /** Rows handed to the file stream (lost with it if it fails). */
  private rowsWritten = 0;
  /** The file could not be written: rows are counted, not written, and this says why. */
  private broken: string | undefined;
  private capLogged = false;
  readonly byReason = new Map<string, number>();
  total = 0;
  /** Rejected rows not written because the file reached maxBytes. */
  unwritten = 0;
  private readonly maxBytes: number;
  private readonly logLimit: number;

  constructor(
    readonly path: string,
    private readonly logger: Logger,
    options: RejectsSinkOptions,
  ) {
    this.maxBytes = options.maxBytes;
    this.logLimit = options.logLimit ?? 100;
  }

  /** The reason without the offending value, for counting: `bad timestamp "x"` -> `bad timestamp`. */
  static kind(reason: string): string {
    return reason
      .replace(/\s*"[^"]*"?.*$/, '')
      .replace(/: .*$/, '')
      .replace(/ \(.*$/, '')
      .replace(/ at (column|character|byte) \d+$/, '');
  }

  /**
   * Continue the file of an interrupted run (its rows up to the checkpoint are already there)
   * instead of starting a new one. Call before the first add().
   */
  resume(): void {
    this.append = true;
  }

  /** Whether this run wrote to the rejects file. */
  get written(): boolean {
    return this.opened && this.broken === undefined;
  }

  /** Why rows were left out of the file, when some were. */
  get unwrittenReason(): string | undefined {
    if (this.unwritten === 0) return undefined;
    if (this.broken !== undefined) return `cannot write the rejects file: ${this.broken}`;
    if (this.maxBytes <= 0) return 'REJECTS_MAX_BYTES is 0';
    return 'the file reached REJECTS_MAX_BYTES';
  }

  add(row: RejectedRow, write: boolean): void {
    this.total++;
    const kind = RejectsSink.kind(row.reason);
    this.byReason.set(kind, (this.byReason.get(kind) ?? 0) + 1);
    if (!write) return;
    this.log(row);
    const text = `${row.line},${csvField(row.reason)},${csvField(row.raw)}\n`;
    const size = Buffer.byteLength(text);
    const out = this.open();
    if (out === undefined || this.broken !== undefined || this.bytes + size > this.maxBytes) {
      this.unwritten++;
      if (!this.capLogged && this.broken === undefined) {
        this.capLogged = true;
        this.logger.warn(
          { rejects_file: this.path, rejects_max_bytes: this.maxBytes },
          'the rejects file reached REJECTS_MAX_BYTES: further malformed rows are counted, not written',
        );
      }
      return;
    }
    out.write(text);
    this.bytes += size;
    this.rowsWritten++;
  }

  private log(row: RejectedRow): void {
    if (this.logged >= this.logLimit) return;
    this.logged++;
    this.logger.warn(
      { line: row.line, reason: row.reason, rejects_file: this.path },
      'malformed CSV row set aside',
    );
    if (this.logged === this.logLimit) {
      this.logger.warn(
        { rejects_file: this.path },
        `logged ${this.logLimit} malformed rows; further ones only go to the rejects file`,
      );
    }
  }

  /** The file, opened on the first row: a new one, or the interrupted run's continued. */
  private open(): WriteStream | undefined {
    if (this.out !== undefined || this.maxBytes <= 0 || this.broken !== undefined) return this.out;
    try {
      mkdirSync(dirname(this.path), { recursive: true });
    } catch (err) {
      this.fail(err);
      return undefined;
    }
    let existing = 0;
    if (this.append) {
      try {
        existing = statSync(this.path).size;
      } catch {
        existing = 0;
      }
    }
    const out = createWriteStream(this.path, { flags: existing > 0 ? 'a' : 'w' });
    out.on('error', (err) => this.fail(err));
    this.out = out;
    this.opened = true;
    this.bytes = existing;
    if (existing === 0) {
      out.write(HEADER);
      this.bytes += HEADER.length;
    }
    return out;
  }

  /** Stops writing after a write error, saying so once; the rows are still counted. */
  private fail(err: unknown): void {
    if (this.broken !== undefined) return;
    this.broken = err instanceof Error ? err.message : String(err);
    this.unwritten += this.rowsWritten;
    this.rowsWritten = 0;
    this.logger.error(
      { err: this.broken, rejects_file: this.path },
      'cannot write the rejects file: malformed rows are counted and logged, not written',
    );
  }

  reasons(): Record<string, number> {
    return Object.fromEntries([...this.byReason.entries()].sort((a, b) => b[1] - a[1]));
  }

  close(): Promise<void> {
    const out = this.out;
    this.out = undefined;
    if (out === undefined || out.closed) return Promise.resolve();
    if (this.broken !== undefined) {
      return new Promise((resolve) => {
        out.once('close', () => resolve());
        out.destroy();
      });
    }
    if (this.unwritten > 0) {
      const note = `${this.unwritten} more malformed rows were not written: the file reached REJECTS_MAX_BYTES (${this.maxBytes} bytes)`;
      out.write(`,${csvField(note)},\n`);
    }
    // 'close' comes after the last write is flushed, and after an error too.
    return new Promise((resolve) => {
      out.once('close', () => resolve());
      out.end();
    });
  }
}
