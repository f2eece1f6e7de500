/**
 * `make bench`: runs every benchmark, prints the results and writes docs/benchmarks.md.
 * Figures are measured, never asserted; each section reports the ceilings it measured in the same
 * run and the ratios to them.
 *
 *   tsx bench/run.ts [--quick]
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, log, machine, type Section } from './lib.js';
import { benchCollector } from './collector.js';
import { benchEmbedded } from './embedded.js';
import { benchGateway } from './gateway.js';
import { benchStreamer, generatedFile } from './streamer.js';

const quick = process.argv.includes('--quick');
const started = Date.now();
log('building');
execFileSync('npm', ['run', '-s', 'build'], { cwd: ROOT, stdio: 'inherit' });

const sections: Section[] = [];
const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length);
if (only === undefined || only === 'streamer') {
  sections.push(await benchStreamer({ fileBytes: quick ? 100 * 2 ** 20 : 2 ** 30 }));
}
if (only === undefined || only === 'collector') {
  const file = await generatedFile(quick ? 50 * 2 ** 20 : 200 * 2 ** 20);
  sections.push(await benchCollector({ records: quick ? 100_000 : 400_000, file }));
}
if (only === undefined || only === 'gateway') {
  sections.push(await benchGateway({ clients: quick ? 50 : 100, seconds: quick ? 5 : 10 }));
}
if (only === undefined || only === 'embedded') {
  sections.push(await benchEmbedded({ records: quick ? 200_000 : 2_000_000 }));
}

const path = join(ROOT, 'docs', 'benchmarks.md');
const previous = existsSync(path) ? readFileSync(path, 'utf8') : '';
const kept = new Map<string, string>();
for (const m of previous.matchAll(/<!-- bench:([a-z-]+) -->\n([\s\S]*?)<!-- \/bench:\1 -->/g)) {
  kept.set(m[1] ?? '', m[2] ?? '');
}
for (const s of sections)
  kept.set(
    s.id,
    [
      `## ${s.title}`,
      '',
      `_Measured ${new Date().toISOString().slice(0, 10)}._`,
      '',
      s.body,
      '',
    ].join('\n'),
  );
const order = ['streamer', 'collector', 'gateway', 'embedded', 'end-to-end'];
const ids = [...kept.keys()].sort(
  (a, b) => (order.indexOf(a) + 1 || 99) - (order.indexOf(b) + 1 || 99),
);
const doc = [
  '# Benchmarks',
  '',
  'Written by `make bench` (`npx tsx bench/run.ts [--quick] [--only=streamer|collector|...]`). Figures are from one run on the machine below; every section measures its own ceilings in the same run, so ratios compare like with like. Nothing here is asserted by a test.',
  '',
  '## Machine',
  '',
  machine(),
  '',
  ...ids.map((id) => `<!-- bench:${id} -->\n${kept.get(id) ?? ''}<!-- /bench:${id} -->\n`),
].join('\n');
writeFileSync(path, doc);
process.stdout.write(`${doc}\n`);
log(`wrote docs/benchmarks.md in ${Math.round((Date.now() - started) / 1000)} s`);
