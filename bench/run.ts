/**
 * `make bench`: runs every benchmark, prints the results and writes docs/benchmarks.md.
 * Figures are measured, never asserted; each section reports the ceilings it measured in the same
 * run and the ratios to them.
 *
 *   tsx bench/run.ts [--quick] [--small] [--only=streamer,collector,gateway,history,embedded,end-to-end,cardinality]
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, log, machine, type Section } from './lib.js';
import { benchCardinality } from './cardinality.js';
import { benchCollector } from './collector.js';
import { benchEmbedded } from './embedded.js';
import { benchEndToEnd } from './end-to-end.js';
import { benchGateway } from './gateway.js';
import { benchHistory } from './history.js';
import { benchStreamer, generatedFile, generatedRecords } from './streamer.js';

const quick = process.argv.includes('--quick');
/** The history section at its smallest (2 hosts x 2 GPUs x 2 h): checks the pipeline end to end. */
const small = process.argv.includes('--small');
const started = Date.now();
log('building');
execFileSync('npm', ['run', '-s', 'build'], { cwd: ROOT, stdio: 'inherit' });

const sections: Section[] = [];
/** Runs one section and logs its wall time. */
async function timed(id: string, fn: () => Promise<Section>): Promise<Section> {
  const t0 = Date.now();
  try {
    return await fn();
  } finally {
    log(`section ${id}: ${Math.round((Date.now() - t0) / 1000)} s`);
  }
}
const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length);
const wanted = (id: string): boolean => only === undefined || only.split(',').includes(id);
// Sized so that the full run stays under 15 minutes on a 2-core machine (see the wall time of each
// section in the log): generated files are made once and kept under .data/bench. The streamer,
// embedded and end-to-end sections share one file of 2,042,880 records, just over 1 GB.
const bigRecords = quick ? 200_000 : 2_040_000;
if (wanted('streamer')) {
  const file = await generatedRecords(bigRecords);
  sections.push(await timed('streamer', () => benchStreamer({ file })));
}
if (wanted('collector')) {
  const file = await generatedFile(quick ? 50 * 2 ** 20 : 100 * 2 ** 20);
  sections.push(
    await timed('collector', () => benchCollector({ records: quick ? 50_000 : 80_000, file })),
  );
}
if (wanted('gateway')) {
  sections.push(
    await timed('gateway', () =>
      benchGateway({
        clients: quick ? 50 : 1000,
        clusterClients: quick ? 50 : 100,
        seconds: 4,
      }),
    ),
  );
}
if (wanted('history')) {
  sections.push(
    await timed('history', () =>
      benchHistory({
        scale: small
          ? { hosts: 2, gpusPerHost: 2, hours: 2 }
          : { hosts: quick ? 2 : 15, gpusPerHost: 8, hours: 24 },
        requests: quick || small ? 20 : 100,
        budgetSeconds: quick || small ? 3 : 6,
        loadSeconds: quick || small ? 2 : 3,
        noisyQueries: small,
      }),
    ),
  );
}
if (wanted('embedded')) {
  sections.push(await timed('embedded', () => benchEmbedded({ records: bigRecords })));
}
if (wanted('end-to-end')) {
  const file = await generatedRecords(bigRecords);
  sections.push(
    await timed('end-to-end', () =>
      benchEndToEnd({
        file,
        collectors: [1, 2, 4],
        steadyRate: 50_000,
        steadySeconds: quick ? 5 : 10,
        ceilingSeconds: 5,
      }),
    ),
  );
}
if (wanted('cardinality')) {
  // The same readings for every fleet (hosts x 8 GPUs x 3 fields x instants), twice (first sight,
  // then known series): 600,000 a file, so the 100,000-GPU fleet sends 2 instants in each; --quick
  // 60,000, without the 100,000-GPU fleet; the small fleet ingested again before each larger one.
  // About 10 minutes on 2 cores.
  sections.push(
    await timed('cardinality', () =>
      benchCardinality({
        fleets: [
          { label: 'small fleet', hosts: 10, reference: true },
          { label: '1,000 GPUs', hosts: 125, reference: false },
          { label: '10,000 GPUs', hosts: 1250, reference: false },
          ...(quick ? [] : [{ label: '100,000 GPUs', hosts: 12_500, reference: false }]),
        ],
        readings: quick ? 60_000 : 600_000,
        sequential: 50,
        sequentialSeconds: 5,
        concurrentSeconds: 2,
        connections: 8,
        dashboardMinGpus: 10_000,
        full: !quick,
      }),
    ),
  );
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
const order = [
  'streamer',
  'collector',
  'gateway',
  'history',
  'embedded',
  'end-to-end',
  'cardinality',
];
const ids = [...kept.keys()].sort(
  (a, b) => (order.indexOf(a) + 1 || 99) - (order.indexOf(b) + 1 || 99),
);
const doc = [
  '# Benchmarks',
  '',
  'Written by `make bench` (`npx tsx bench/run.ts [--quick] [--small] [--only=streamer,collector,gateway,history,embedded,end-to-end,cardinality]`; `--small` runs the history section at 2 hosts x 2 GPUs x 2 hours; `--quick` runs smaller sizes everywhere, and the cardinality section without its 100,000-GPU fleet). Figures are from one run on the machine below; every section measures its own ceilings in the same run, so ratios compare like with like. Nothing here is asserted by a test.',
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
