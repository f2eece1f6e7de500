// Builds the dashboard (dashboard/) into dist/dashboard/: one minified ES module and one stylesheet
// with content-hashed names and source maps, and index.html naming them. No CDN: everything the
// page loads comes from the gateway.
//
//   node scripts/build-dashboard.mjs
import { build } from 'esbuild';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SRC = join(ROOT, 'dashboard');
const OUT = join(ROOT, 'dist', 'dashboard');

const started = Date.now();
rmSync(OUT, { recursive: true, force: true });
mkdirSync(join(OUT, 'assets'), { recursive: true });

const result = await build({
  absWorkingDir: ROOT,
  entryPoints: { app: join(SRC, 'src', 'main.ts') },
  outdir: join(OUT, 'assets'),
  entryNames: '[name]-[hash]',
  assetNames: '[name]-[hash]',
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022', 'chrome109', 'firefox115', 'safari16'],
  minify: true,
  sourcemap: 'linked',
  legalComments: 'linked',
  tsconfig: join(SRC, 'tsconfig.json'),
  metafile: true,
  logLevel: 'warning',
});

/** The output of an entry point with the given extension, relative to dist/dashboard/. */
function output(ext) {
  for (const [file, meta] of Object.entries(result.metafile.outputs)) {
    if (file.endsWith(ext) && (meta.entryPoint !== undefined || ext === '.css')) {
      return relative(OUT, join(ROOT, file)).split('\\').join('/');
    }
  }
  throw new Error(`build-dashboard: no ${ext} output`);
}

const js = output('.js');
const css = output('.css');
const template = readFileSync(join(SRC, 'index.html'), 'utf8');
const html = template
  .replace('{{app.js}}', `./${js}`)
  .replace('{{app.css}}', `./${css}`)
  .replace(/\s*<!-- Replaced by scripts\/build-dashboard\.mjs[^>]*-->/, '');
if (html.includes('{{')) throw new Error('build-dashboard: index.html has a placeholder left');
writeFileSync(join(OUT, 'index.html'), html);

const sizes = Object.entries(result.metafile.outputs)
  .filter(([f]) => !f.endsWith('.map'))
  .map(([f, m]) => `${basename(f)} ${(m.bytes / 1024).toFixed(1)} KiB`);
process.stdout.write(
  `build-dashboard: ${relative(ROOT, OUT)}/ in ${Date.now() - started} ms (${sizes.join(', ')})\n`,
);
