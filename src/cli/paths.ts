import { existsSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository (package) root: two levels above src/cli or dist/cli. */
export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * A relative path is looked up from the working directory, then from the package root, then, for
 * a bare file name (the seed's `CSV_FILE=dcgm_metrics_20250718_134233.csv`), among the package's
 * samples. Not found: the path from the working directory (the error names it).
 */
export function resolveInput(path: string): string {
  if (isAbsolute(path)) return path;
  const fromCwd = resolve(path);
  if (existsSync(fromCwd)) return fromCwd;
  const fromRoot = join(PACKAGE_ROOT, path);
  if (existsSync(fromRoot)) return fromRoot;
  const sample = join(PACKAGE_ROOT, 'samples', path);
  return basename(path) === path && existsSync(sample) ? sample : fromCwd;
}

/** The data directory: relative to the package root unless absolute. */
export function dataDir(path: string): string {
  return isAbsolute(path) ? path : join(PACKAGE_ROOT, path);
}

/** The embedded database's directory (`nexus up`): `pglite` in the data directory. */
export function pgliteDir(dataDirSetting: string): string {
  return join(dataDir(dataDirSetting), 'pglite');
}
