import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import type { TelemetryRecord } from '../src/core/record.js';
import { PGliteDatabase } from '../src/store/pglite/database.js';
import { metricSum } from '../test/helpers/metrics.js';
import { CHROMIUM } from '../test/helpers/nexus-up.js';
import { freePort } from '../test/helpers/ports.js';
import {
  loadRecords,
  benchStore,
  peakRssMb,
  BENCH_DIR,
  ROOT,
  log,
  table,
  type Section,
} from './lib.js';
import { generatedRecords } from './streamer.js';

function up(
  env: Record<string, string>,
  args: string[] = [],
): { proc: ChildProcess; lines: string[]; started: number } {
  const started = Date.now();
  const proc = spawn(process.execPath, [join(ROOT, 'dist', 'cli', 'main.js'), 'up', ...args], {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let buf = '';
  proc.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop() ?? '';
    lines.push(...parts);
  });
  return { proc, lines, started };
}

async function waitLine(lines: string[], pattern: RegExp, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const hit = lines.find((l) => pattern.test(l));
    if (hit !== undefined) return hit;
    if (Date.now() > deadline) throw new Error(`no log line matching ${String(pattern)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function stop(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null) return;
  const gone = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGINT');
  await gone;
}

/**
 * `nexus up` on a fresh data directory to the dashboard's heatmap showing GPUs with data, in
 * Debian's Chromium (launched before the clock starts: opening a browser is not Nexus's time). The
 * page is loaded as soon as the gateway answers. Undefined when Chromium is missing.
 */
async function timeToScreen(dataDir: string): Promise<number | undefined> {
  if (!existsSync(CHROMIUM)) return undefined;
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run'],
  });
  const port = await freePort();
  let run: ReturnType<typeof up> | undefined;
  try {
    const page = await browser.newPage();
    run = up({ NEXUS_DATA_DIR: dataDir, PORT: String(port) });
    const deadline = run.started + 120_000;
    for (;;) {
      const ok = await page
        .goto(`http://127.0.0.1:${port}/`, { timeout: 5_000 })
        .then((r) => r?.ok() === true)
        .catch(() => false);
      if (ok) break;
      if (Date.now() > deadline) throw new Error('the dashboard never answered');
      await new Promise((r) => setTimeout(r, 50));
    }
    // The summary under the heatmap is filled in once it holds GPUs with a reading.
    await page.waitForSelector(
      '[data-testid="heatmap-summary"][data-gpus]:not([data-gpus="0"]):not([data-newest=""])',
      { state: 'attached', timeout: Math.max(1_000, deadline - Date.now()) },
    );
    return Date.now() - run.started;
  } finally {
    await browser.close();
    if (run !== undefined) await stop(run.proc);
  }
}

/**
 * What `nexus up`'s PGlite worker has done so far (its `/metrics` counters), and the readings
 * stored, at one instant.
 */
async function engineWork(
  port: number,
): Promise<{ at: number; busySeconds: number; statements: number; samples: number }> {
  const at = Date.now();
  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const stats = (await (
    await fetch(`http://127.0.0.1:${port}/api/v1/clusters/bench/stats`)
  ).json()) as { samples?: number };
  return {
    at,
    busySeconds: metricSum(metrics, 'nexus_pglite_busy_seconds_total') ?? 0,
    statements: metricSum(metrics, 'nexus_pglite_statements_total') ?? 0,
    samples: stats.samples ?? 0,
  };
}

/**
 * The store path without the pipeline, in the same run on the same data directory (after `nexus
 * up` has stopped): the collector's write (`SqlStore.write`, the same records as a new cluster, in
 * the collector's batch) and a raw insert of the same rows into `samples` alone.
 */
async function storeCeilings(
  file: string,
  pgliteDir: string,
  batch: number,
  limit: number,
): Promise<{ write: number; raw: number }> {
  const records = await loadRecords(file, limit);
  const db = new PGliteDatabase(pgliteDir);
  await db.ready();
  const store = benchStore(db);
  try {
    let t = performance.now();
    for (let i = 0; i < records.length; i += batch)
      await store.write('ceiling', records.slice(i, i + batch));
    await store.rollUp();
    const write = records.length / ((performance.now() - t) / 1000);
    // Raw: the same values and times under GPU ids no one uses.
    const base = await db.query<{ m: number }>(
      'SELECT coalesce(max(gpu_id), 0) + 1 AS m FROM samples',
    );
    const off = base.rows[0]?.m ?? 1_000_000;
    const gpus = new Map<string, number>();
    const metrics = new Map<string, number>();
    const gpuOf = (r: TelemetryRecord): number => {
      const k = `${r.hostname}\u0000${r.gpu}`;
      let id = gpus.get(k);
      if (id === undefined) gpus.set(k, (id = off + gpus.size));
      return id;
    };
    const metricOf = (r: TelemetryRecord): number => {
      let id = metrics.get(r.metric);
      if (id === undefined) metrics.set(r.metric, (id = metrics.size + 1));
      return id;
    };
    t = performance.now();
    for (let i = 0; i < records.length; i += batch) {
      const part = records.slice(i, i + batch);
      const lit = (f: (r: TelemetryRecord, j: number) => number): string =>
        `{${part.map(f).join(',')}}`;
      await db.transaction((tx) =>
        tx.query(
          `INSERT INTO samples (time, gpu_id, metric_id, value)
           SELECT nexus_ts(t), g, m, v FROM unnest($1::bigint[], $2::int[], $3::smallint[], $4::float8[]) AS u(t, g, m, v)`,
          [lit((r) => r.timestamp), lit(gpuOf), lit(metricOf), lit((r) => r.value)],
        ),
      );
    }
    const raw = records.length / ((performance.now() - t) / 1000);
    return { write: Math.round(write), raw: Math.round(raw) };
  } finally {
    await db.close();
  }
}

/** `nexus up` on a big file (in-process queue, PGlite): records/s end to end, and time to first data. */
export async function benchEmbedded(options: { records: number }): Promise<Section> {
  const file = await generatedRecords(options.records);
  const dataDir = mkdtempSync(join(BENCH_DIR, 'embedded-'));
  const rows: (string | number)[][] = [];
  try {
    // 1. Time to first data: a fresh data directory (PGlite unpacks the build's pristine data
    // directory), the bundled sample.
    const port1 = await freePort();
    const first = up({ NEXUS_DATA_DIR: join(dataDir, 'first'), PORT: String(port1) });
    const line = await waitLine(first.lines, /Nexus is up/, 120_000);
    const upMs = Date.now() - first.started;
    const startupMs = (JSON.parse(line) as { startup_ms?: number }).startup_ms ?? upMs;
    await stop(first.proc);
    const screenMs = await timeToScreen(join(dataDir, 'screen'));
    if (screenMs === undefined)
      log(`nexus up: ${CHROMIUM} is missing: time to first data on screen skipped`);
    else log(`nexus up: first data on screen after ${screenMs} ms (fresh)`);
    const port2 = await freePort();
    const again = up({ NEXUS_DATA_DIR: join(dataDir, 'first'), PORT: String(port2) });
    await waitLine(again.lines, /Nexus is up/, 120_000);
    const restartMs = Date.now() - again.started;
    await stop(again.proc);
    log(`nexus up: first data servable after ${upMs} ms (fresh), ${restartMs} ms (restart)`);

    // 2. Throughput: the whole file, as fast as it goes.
    const port3 = await freePort();
    const run = up(
      {
        NEXUS_DATA_DIR: join(dataDir, 'big'),
        PORT: String(port3),
        LOOP_MODE: 'false',
        STREAM_INTERVAL: '0',
        BATCH_SIZE: '1000',
        MAX_QUEUE_DEPTH: '200',
        TIMESTAMP_MODE: 'original',
        CLUSTER_ID: 'bench',
        // The file's readings are of 2025: the sealing job would seal the window being written.
        COMPACT_INTERVAL: '0',
      },
      ['--csv', file],
    );
    const readyLine = await waitLine(run.lines, /PGlite\) ready/, 120_000);
    const storeReadyAt = run.started + ((JSON.parse(readyLine) as { ms?: number }).ms ?? 0);
    await waitLine(run.lines, /Nexus is up/, 120_000);
    const t0 = run.started;
    const engineAtUp = await engineWork(port3);
    const summary = JSON.parse(await waitLine(run.lines, /"msg":"summary:/, 1_800_000)) as {
      summary: { records: number };
    };
    const total = summary.summary.records;
    // Stored and acked: the queue is empty (acks follow commits).
    for (;;) {
      const o = (await (await fetch(`http://127.0.0.1:${port3}/api/v1/overview`)).json()) as {
        queue: { ready: number; in_flight: number } | null;
      };
      if (o.queue !== null && o.queue.ready + o.queue.in_flight === 0) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const doneAt = Date.now();
    const engineAtEnd = await engineWork(port3);
    const peakMb = peakRssMb(run.proc.pid);
    const seconds = (doneAt - t0) / 1000;
    const afterReady = (doneAt - storeReadyAt) / 1000;
    const stats = (await (
      await fetch(`http://127.0.0.1:${port3}/api/v1/clusters/bench/stats`)
    ).json()) as { samples: number };
    await stop(run.proc);
    if (stats.samples !== total) throw new Error(`stored ${stats.samples} of ${total}`);
    log(
      `nexus up: ${total} records in ${seconds.toFixed(1)} s = ${Math.round(total / seconds)} records/s`,
    );
    rows.push([
      `${total.toLocaleString('en-US')}-record generated file, end to end (process start to last row stored)`,
      Math.round(total / seconds),
      seconds,
    ]);
    rows.push([
      "the same run, from PGlite ready (started from the build's pristine data directory; the streamer has been filling the queue meanwhile) to last row stored",
      Math.round(total / afterReady),
      afterReady,
    ]);
    // The first 500,000 records are enough for a rate, and keep the section short.
    const sample = Math.min(total, 500_000);
    const wall = (engineAtEnd.at - engineAtUp.at) / 1000;
    const busy = engineAtEnd.busySeconds - engineAtUp.busySeconds;
    const storedMeanwhile = engineAtEnd.samples - engineAtUp.samples;
    log(
      `nexus up: PGlite worker busy ${busy.toFixed(1)} s of ${wall.toFixed(1)} s, ${((busy / storedMeanwhile) * 1e6).toFixed(1)} us per record; peak RSS ${peakMb} MB`,
    );
    const ceilings = await storeCeilings(file, join(dataDir, 'big', 'pglite'), 100_000, sample);
    log(
      `PGlite alone, same data directory: SqlStore.write ${ceilings.write} records/s, raw insert ${ceilings.raw} rows/s`,
    );
    rows.push([
      `ceiling: \`SqlStore.write\` alone, which on PGlite folds the rollup and latest values in itself (in process, same data directory, the first ${sample.toLocaleString('en-US')} records as a new cluster, 100,000 per transaction)`,
      ceilings.write,
      sample / ceilings.write,
    ]);
    rows.push([
      'ceiling: raw `INSERT ... SELECT FROM unnest` of the same rows into `samples` alone (no rollup, latest values, dimensions)',
      ceilings.raw,
      sample / ceilings.raw,
    ]);
    return {
      id: 'embedded',
      title: 'Embedded: nexus up (in-process queue, PGlite)',
      body: [
        "The compiled CLI (`node dist/cli/main.js up`), one process: streamer, in-process queue, collector, PGlite (embedded PostgreSQL 18 in WebAssembly, data on disk), gateway. The throughput run sets `COMPACT_INTERVAL=0`: the file's readings are of 2025, so the sealing job would seal the window being written and make the rest of the run late readings.",
        '',
        table(['run', 'records/s', 'seconds'], rows),
        '',
        table(
          ['start-up', 'ms'],
          [
            [
              "`nexus up` to first data stored and servable, fresh data directory (PGlite started from the build's pristine data directory, no initdb)",
              upMs,
            ],
            ['the same, as reported by the process itself', startupMs],
            [
              '`nexus up` to first data on screen: the dashboard heatmap showing GPUs with data in Chromium, fresh data directory',
              screenMs ?? `skipped (${CHROMIUM} missing)`,
            ],
            ['`nexus up` to first data, restart on existing data', restartMs],
          ],
        ),
        '',
        table(
          [
            'the PGlite worker in the big run, from `Nexus is up` to last row stored (`nexus_pglite_*` on `/metrics`)',
            'value',
          ],
          [
            [
              'busy executing statements, % of the wall time',
              `${Math.round((busy / wall) * 100)} %`,
            ],
            ['busy time per record stored, µs', ((busy / storedMeanwhile) * 1e6).toFixed(1)],
            ['statements', engineAtEnd.statements - engineAtUp.statements],
            ['records stored meanwhile', storedMeanwhile],
            ['peak RSS of the `nexus up` process (`VmHWM`, whole run), MB', peakMb],
          ],
        ),
      ].join('\n'),
    };
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}
