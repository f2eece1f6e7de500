import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NexusError, describeError } from '../core/errors.js';

/** The repository (package) root: two levels above src/cli or dist/cli. */
export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** A relative path is looked up from the working directory, then from the package root. */
export function resolveInput(path: string): string {
  if (isAbsolute(path)) return path;
  const fromCwd = resolve(path);
  if (existsSync(fromCwd)) return fromCwd;
  const fromRoot = join(PACKAGE_ROOT, path);
  return existsSync(fromRoot) ? fromRoot : fromCwd;
}

/** The data directory: relative to the package root unless absolute. */
export function dataDir(path: string): string {
  return isAbsolute(path) ? path : join(PACKAGE_ROOT, path);
}

/** Throws CONFIG_INVALID, naming the file and why, unless `path` is a file (a CSV_FILE). */
export async function assertReadable(path: string): Promise<void> {
  let isFile: boolean;
  try {
    isFile = (await stat(path)).isFile();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new NexusError(
      'CONFIG_INVALID',
      `CSV_FILE: cannot read ${path}: ${code === 'ENOENT' ? 'no such file' : describeError(err)}`,
    );
  }
  if (!isFile) throw new NexusError('CONFIG_INVALID', `CSV_FILE: ${path} is not a file`);
}
