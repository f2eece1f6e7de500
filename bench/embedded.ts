import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../test/helpers/ports.js';
import { ROOT, log, table, type Section } from './lib.js';
import { generatedRecords } from './streamer.js';

const BENCH_DIR = join(ROOT, '.data', 'bench');

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

/** `nexus up` on a big file (in-process queue, PGlite): records/s end to end, and time to first data. */
export async function benchEmbedded(options: { records: number }): Promise<Section> {
  const file = await generatedRecords(options.records);
  const dataDir = mkdtempSync(join(BENCH_DIR, 'embedded-'));
  const rows: (string | number)[][] = [];
  try {
    // 1. Time to first data: a fresh data directory (PGlite runs initdb), the bundled sample.
    const port1 = await freePort();
    const first = up({ NEXUS_DATA_DIR: join(dataDir, 'first'), PORT: String(port1) });
    const line = await waitLine(first.lines, /Nexus is up/, 120_000);
    const upMs = Date.now() - first.started;
    const startupMs = (JSON.parse(line) as { startup_ms?: number }).startup_ms ?? upMs;
    await stop(first.proc);
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
      },
      ['--csv', file],
    );
    await waitLine(run.lines, /Nexus is up/, 120_000);
    const t0 = run.started;
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
    const seconds = (Date.now() - t0) / 1000;
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
    return {
      id: 'embedded',
      title: 'Embedded: nexus up (in-process queue, PGlite)',
      body: [
        'The compiled CLI (`node dist/cli/main.js up`), one process: streamer, in-process queue, collector, PGlite (embedded PostgreSQL 18 in WebAssembly, data on disk), gateway.',
        '',
        table(['run', 'records/s', 'seconds'], rows),
        '',
        table(
          ['start-up', 'ms'],
          [
            [
              '`nexus up` to first data stored and servable, fresh data directory (PGlite initdb included)',
              upMs,
            ],
            ['the same, as reported by the process itself', startupMs],
            ['`nexus up` to first data, restart on existing data', restartMs],
          ],
        ),
      ].join('\n'),
    };
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}
