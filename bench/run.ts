/**
 * `make bench`: runs every benchmark, prints the results and writes docs/benchmarks.md.
 * Figures are measured, never asserted; each section reports the ceilings it measured in the same
 * run and the ratios to them.
 *
 *   tsx bench/run.ts [--quick]
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, log, machine, type Section } from './lib.js';
import { benchStreamer } from './streamer.js';

const quick = process.argv.includes('--quick');
const started = Date.now();
log('building');
execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' });

const sections: Section[] = [];
sections.push(await benchStreamer({ fileBytes: quick ? 100 * 2 ** 20 : 2 ** 30 }));

const doc = [
  '# Benchmarks',
  '',
  `Written by \`make bench\`${quick ? ' --quick' : ''} on ${new Date().toISOString().slice(0, 10)} in ${Math.round((Date.now() - started) / 1000)} s. Figures are from one run on the machine below; every section measures its own ceilings in the same run, so ratios compare like with like.`,
  '',
  '## Machine',
  '',
  machine(),
  '',
  ...sections.flatMap((s) => [`## ${s.title}`, '', s.body, '']),
].join('\n');
writeFileSync(join(ROOT, 'docs', 'benchmarks.md'), doc);
process.stdout.write(`${doc}\n`);
log(`wrote docs/benchmarks.md in ${Math.round((Date.now() - started) / 1000)} s`);
