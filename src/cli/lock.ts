import { mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { NexusError } from '../core/errors.js';
import { processAlive } from '../core/process.js';

/**
 * Holds `dir` for this process, so that no second process writes into it at the same time: a lock
 * file `<dir>.lock` holding this process's id, made only if absent, removed when this process
 * exits. The lock of a process that is gone (killed) is taken over. When a live process holds it,
 * throws CONFIG_INVALID naming that process.
 */
export function lockDirectory(dir: string, who: string): void {
  const file = `${dir}.lock`;
  mkdirSync(dirname(file), { recursive: true });
  for (;;) {
    try {
      writeFileSync(file, `${process.pid}\n`, { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let holder = Number.NaN;
    try {
      holder = Number(readFileSync(file, 'utf8').trim());
    } catch {
      // Removed in between: try again.
    }
    if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && processAlive(holder)) {
      throw new NexusError(
        'CONFIG_INVALID',
        `${dir} is in use by another ${who} (pid ${holder}): stop that one, or give this one another NEXUS_DATA_DIR (--data-dir). If no such process runs, delete ${file}`,
      );
    }
    // The holder is gone: take its lock over.
    try {
      unlinkSync(file);
    } catch {
      // Taken over by another process in between: the next round sees its lock.
    }
  }
  process.once('exit', () => {
    try {
      if (readFileSync(file, 'utf8').trim() === String(process.pid)) unlinkSync(file);
    } catch {
      // Gone already.
    }
  });
}
