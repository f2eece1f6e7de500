/**
 * Refreshes the dashboard screenshots of the docs: builds the dashboard if needed, starts
 * `nexus up` on a free port with a throwaway data directory, opens the overview and a GPU page in
 * Debian's Chromium at 1280x800, and writes docs/img/overview.png, gpu.png, host.png (its multi-GPU
 * panels), idle.png, events.png and usage.png.
 *
 *   npx tsx scripts/screenshots.ts [--theme light|dark]
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { DEFAULT_FLEET } from '../src/streamer/sim/fleet.js';
import { writeFleetCsvFile } from '../src/streamer/sim/fleet-csv.js';
import { ROOT } from '../test/helpers/child.js';
import {
  ensureDashboardBuilt,
  launchChromium,
  startNexusUp,
  type NexusUp,
} from '../test/helpers/nexus-up.js';

const args = process.argv.slice(2);
const theme = args[args.indexOf('--theme') + 1] === 'dark' ? 'dark' : 'light';
const OUT = join(ROOT, 'docs', 'img');
/** A GPU of the sample that is busy, so that its charts have something to show. */
const GPU = { host: 'mtv5-dgx1-hgpu-017', gpu: 4 };
/** The generated fleet's host with the thermal incident. */
const FLEET_HOST = 'gpu-node-03';
const FLEET_CSV = join(mkdtempSync(join(tmpdir(), 'nexus-screenshots-')), 'fleet.csv');
let fleet: NexusUp | undefined;
/** Let the looped sample run a while, so that the charts hold a few loops. */
const WARM_UP_MS = 45_000;

mkdirSync(OUT, { recursive: true });
ensureDashboardBuilt();
const nexus = await startNexusUp();
const browser = await launchChromium().catch(async (err: unknown) => {
  await nexus.stop();
  throw err;
});
try {
  process.stdout.write(
    `screenshots: nexus up at ${nexus.url}, warming up ${WARM_UP_MS / 1000} s\n`,
  );
  await new Promise((r) => setTimeout(r, WARM_UP_MS));
  const page = await browser.newPage({
    viewport: { width: 1280, height: 800 },
    colorScheme: theme,
  });
  page.on('pageerror', (e) => process.stderr.write(`page error: ${e.message}\n`));
  await page.goto(`${nexus.url}/`);
  await page.waitForSelector('canvas.heatmap-canvas[data-gpus="247"]', { timeout: 60_000 });
  await page.waitForSelector('[data-testid="stat-gpus"]:text-is("247")');
  await page.waitForTimeout(500);
  await page.screenshot({ path: join(OUT, 'overview.png') });
  await page.goto(`${nexus.url}/#/gpu/local-cluster/${GPU.host}/${GPU.gpu}?range=15m`);
  await page.waitForSelector('[data-testid="chart"][data-points]:not([data-points="0"]) .uplot');
  await page.waitForSelector('.facts dd');
  await page.waitForTimeout(1000);
  await page.screenshot({ path: join(OUT, 'gpu.png') });
  await nexus.stop();
  // The host page's multi-GPU panels and the fleet pages on a generated fleet (two hours of the
  // simulated day at 12x, ending an hour ago: jobs, idle notebooks, a thermal incident, XIDs),
  // streamed once with its timestamps: the real sample has one instant per GPU.
  const start = Math.floor((Date.now() - 3 * 3_600_000) / 60_000) * 60_000;
  const rows = await writeFleetCsvFile(
    { ...DEFAULT_FLEET, startMs: start, durationMs: 2 * 3_600_000, speed: 12 },
    FLEET_CSV,
  );
  fleet = await startNexusUp(120_000, {
    CSV_FILE: FLEET_CSV,
    LOOP_MODE: 'false',
    TIMESTAMP_MODE: 'original',
    STREAM_INTERVAL: '0',
    BATCH_SIZE: '1000',
  });
  const url = fleet.url;
  for (let stored = 0; stored < rows;) {
    await new Promise((r) => setTimeout(r, 1000));
    const stats = (await (await fetch(`${url}/api/v1/clusters/local-cluster/stats`)).json()) as {
      samples?: number;
    };
    stored = stats.samples ?? 0;
  }
  await page.goto(`${url}/#/host/local-cluster/${FLEET_HOST}?range=6h`);
  await page.waitForSelector('[data-testid="multi-gpu"][data-gpus]');
  await page.waitForSelector('[data-testid="multi-chart"][data-key="power"] .uplot');
  await page.waitForTimeout(1000);
  await page.screenshot({ path: join(OUT, 'host.png'), fullPage: true });
  // The fleet pages (issue 19): each once its answer is shown (a table, a list or a notice).
  for (const [name, ready] of [
    ['idle', '[data-testid="page-idle"] :is(table, .notice)'],
    [
      'events',
      '[data-testid="page-events"][data-query], [data-testid="page-events"] .notice-error',
    ],
    ['usage', '[data-testid="page-usage"] :is(table, .notice)'],
  ] as const) {
    await page.goto(`${url}/#/${name}`);
    await page.waitForSelector(ready);
    await page.waitForTimeout(500);
    await page.screenshot({ path: join(OUT, `${name}.png`) });
  }
  process.stdout.write(
    'screenshots: wrote docs/img/overview.png, gpu.png, host.png, idle.png, events.png, usage.png\n',
  );
} finally {
  await browser.close();
  await nexus.stop();
  await fleet?.stop();
  rmSync(dirname(FLEET_CSV), { recursive: true, force: true });
}
