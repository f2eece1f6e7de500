import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Where the build puts the pristine data directory (scripts/build-pglite-template.mjs). */
const TEMPLATE = new URL('./template.tar.gz', import.meta.url);

/**
 * The pristine PGlite data directory the build made (what initdb makes, gzipped tar), for a data
 * directory that holds no database yet: starting from it skips initdb. Undefined when `dataDir`
 * already holds a database, or when there is no template (running from the TypeScript sources):
 * PGlite then runs initdb, as it would anyway.
 */
export async function pristineTemplate(
  dataDir: string,
  file = fileURLToPath(TEMPLATE),
): Promise<Blob | undefined> {
  if (!dataDir.startsWith('memory://') && existsSync(join(dataDir, 'PG_VERSION'))) return undefined;
  if (!existsSync(file)) return undefined;
  return new Blob([await readFile(file)]);
}
