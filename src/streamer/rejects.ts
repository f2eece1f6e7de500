import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from '../core/logger.js';
import type { RejectedRow } from './csv/reader.js';

function csvField(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/**
 * Sets malformed rows aside: each goes to the rejects file (`line,reason,row`, CSV) and, up to a
 * limit, to the log; every reject is counted by reason.
 */
export class RejectsSink {
  private out: WriteStream | undefined;
  private logged = 0;
  readonly byReason = new Map<string, number>();
  total = 0;

  constructor(
    readonly path: string,
    private readonly logger: Logger,
    private readonly logLimit = 100,
  ) {}

  /** The reason without the offending value, for counting: `bad timestamp "x"` -> `bad timestamp`. */
  static kind(reason: string): string {
    return reason
      .replace(/\s*"[^"]*"?.*$/, '')
      .replace(/: .*$/, '')
      .replace(/ at column \d+$/, '')
      .replace(/ at character \d+$/, '');
  }

  add(row: RejectedRow, write: boolean): void {
    this.total++;
    const kind = RejectsSink.kind(row.reason);
    this.byReason.set(kind, (this.byReason.get(kind) ?? 0) + 1);
    if (!write) return;
    if (this.out === undefined) {
      mkdirSync(dirname(this.path), { recursive: true });
      this.out = createWriteStream(this.path, { flags: 'a' });
      this.out.on('error', (err) =>
        this.logger.error({ err, path: this.path }, 'cannot write the rejects file'),
      );
      this.out.write('line,reason,row\n');
    }
    this.out.write(`${row.line},${csvField(row.reason)},${csvField(row.raw)}\n`);
    if (this.logged < this.logLimit) {
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
  }

  reasons(): Record<string, number> {
    return Object.fromEntries([...this.byReason.entries()].sort((a, b) => b[1] - a[1]));
  }

  close(): Promise<void> {
    const out = this.out;
    this.out = undefined;
    if (out === undefined) return Promise.resolve();
    return new Promise((resolve) => out.end(resolve));
  }
}
