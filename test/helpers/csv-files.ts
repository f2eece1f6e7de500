import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';

/** A throwaway directory of CSV files for a test file, removed when its tests are done. */
export function csvFiles(prefix: string): {
  dir: string;
  write: (content: string | Buffer) => string;
} {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  after(() => rmSync(dir, { recursive: true, force: true }));
  let count = 0;
  return {
    dir,
    write: (content) => {
      const path = join(dir, `f${++count}.csv`);
      writeFileSync(path, content);
      return path;
    },
  };
}
