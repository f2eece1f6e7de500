// Builds dist/store/pglite/template.tar.gz: a pristine PGlite data directory (what initdb makes),
// from which `nexus up` starts on a fresh data directory instead of running initdb (which costs
// ~2 s of one core, more while the streamer is busy). Rebuilt only when the PGlite version changes.
//
//   node scripts/build-pglite-template.mjs
import { PGlite } from '@electric-sql/pglite';
import { Buffer } from 'node:buffer';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = join(ROOT, 'dist', 'store', 'pglite', 'template.tar.gz');
const STAMP = `${OUT}.version`;
const version = JSON.parse(
  readFileSync(join(ROOT, 'node_modules', '@electric-sql', 'pglite', 'package.json'), 'utf8'),
).version;

if (existsSync(OUT) && existsSync(STAMP) && readFileSync(STAMP, 'utf8') === version) {
  console.log(`build-pglite-template: ${OUT} is current (PGlite ${version})`);
} else {
  const started = Date.now();
  const db = new PGlite('memory://');
  await db.waitReady;
  const dump = await db.dumpDataDir('gzip');
  await db.close();
  mkdirSync(dirname(OUT), { recursive: true });
  writeFileSync(OUT, Buffer.from(await dump.arrayBuffer()));
  writeFileSync(STAMP, version);
  console.log(
    `build-pglite-template: ${OUT} (PGlite ${version}, ${(dump.size / 1048576).toFixed(1)} MiB) in ${Date.now() - started} ms`,
  );
}
