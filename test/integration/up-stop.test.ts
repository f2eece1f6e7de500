import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { DEFAULT_GENERATE, generateCsv } from '../../src/streamer/csv/generator.js';
import { PGliteDatabase } from '../../src/store/pglite/database.js';
import { spawnNexus } from '../helpers/child.js';
import { createWriteStream, existsSync } from 'node:fs';

/**
 * `nexus up` on its embedded backends stops with everything its streamer published stored: the
 * in-process queue dies with the process, so the collector stores what it holds before the store
 * closes, whenever the signal comes (during start-up, before PGlite is ready, or during ingest).
 */
const dir = mkdtempSync(join(tmpdir(), 'nexus-up-stop-'));
const dataDir = join(dir, 'data');
const csv = join(dir, 'fleet.csv');
after(() => rmSync(dir, { recursive: true, force: true }));

/** 32 hosts x 8 GPUs x 10 metrics x 40 instants: 102,400 readings, each (GPU, metric, instant) once. */
async function writeCsv(): Promise<number> {
  const out = createWriteStream(csv);
  const rows = await generateCsv({ ...DEFAULT_GENERATE, timestamps: 40 }, out);
  await new Promise<void>((resolve, reject) =>
    out.end((err?: Error | null) => (err ? reject(err) : resolve())),
  );
  return rows;
}

interface Run {
  readonly cluster: string;
  readonly code: number | null;
  readonly signal: string | null;
  readonly lines: Record<string, unknown>[];
  readonly published: number | undefined;
  readonly stopAt: string;
}

function start(cluster: string): {
  child: ChildProcess;
  lines: Record<string, unknown>[];
  firstLine: Promise<void>;
  exit: Promise<{ code: number | null; signal: string | null }>;
} {
  const child = spawnNexus(['up', '--csv', csv], {
    NEXUS_DATA_DIR: dataDir,
    PORT: '0',
    CLUSTER_ID: cluster,
    LOG_LEVEL: 'debug',
    LOOP_MODE: 'false',
    TIMESTAMP_MODE: 'original',
    STREAM_INTERVAL: '0',
  });
  const lines: Record<string, unknown>[] = [];
  let buf = '';
  let first: () => void = () => undefined;
  const firstLine = new Promise<void>((resolve) => (first = resolve));
  child.stdout?.on('data', (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop() ?? '';
    for (const p of parts) {
      try {
        lines.push(JSON.parse(p) as Record<string, unknown>);
      } catch {
        lines.push({ msg: p });
      }
      first();
    }
  });
  child.stderr?.on('data', (d: Buffer) => lines.push({ stderr: d.toString() }));
  const exit = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, lines, firstLine, exit };
}

function publishedIn(lines: readonly Record<string, unknown>[]): number | undefined {
  for (const l of lines) {
    const s = l.summary as { records?: unknown } | undefined;
    if (typeof s?.records === 'number') return s.records;
  }
  return undefined;
}

function tail(run: Run): string {
  return run.lines
    .filter((l) => l.level !== 'debug')
    .map((l) => JSON.stringify(l))
    .join('\n')
    .slice(-4000);
}

async function storedByCluster(): Promise<Map<string, number>> {
  const db = new PGliteDatabase(join(dataDir, 'pglite'));
  try {
    await db.ready();
    const res = await db.query<{ name: string; n: number }>(
      `SELECT c.name, count(*)::int AS n FROM samples s JOIN gpus g ON g.id = s.gpu_id
       JOIN hosts h ON h.id = g.host_id JOIN clusters c ON c.id = h.cluster_id GROUP BY c.name`,
    );
    return new Map(res.rows.map((r) => [r.name, r.n]));
  } finally {
    await db.close();
  }
}

describe('nexus up stops with everything it published stored', () => {
  it('SIGTERM at random points of start-up and ingest: records stored = records published, summary printed, exit 0', async () => {
    const rows = await writeCsv();
    const runs: Run[] = [];
    const ITERATIONS = 16;
    for (let i = 0; i < ITERATIONS; i++) {
      const cluster = `stop-${i}`;
      const p = start(cluster);
      // Once it logs (the streamer is publishing, the signal handlers are installed), wait a random
      // time: up to ~2.5 s falls in start-up (PGlite is not ready yet), later in the ingest.
      await p.firstLine;
      const ms = Math.round(Math.random() * (i % 2 === 0 ? 2500 : 7000));
      await delay(ms);
      p.child.kill('SIGTERM');
      const { code, signal } = await p.exit;
      runs.push({
        cluster,
        code,
        signal,
        lines: p.lines,
        published: publishedIn(p.lines),
        stopAt: `${ms} ms after the first line`,
      });
    }
    const stored = await storedByCluster();
    const problems: string[] = [];
    for (const run of runs) {
      const got = stored.get(run.cluster) ?? 0;
      const what = [
        run.code === 0 ? '' : `exit ${run.code ?? run.signal ?? '?'}`,
        run.published === undefined ? 'no streamer summary' : '',
        run.published !== undefined && got !== run.published
          ? `${got} stored of ${run.published} published`
          : '',
      ].filter((w) => w !== '');
      if (what.length > 0)
        problems.push(`${run.cluster} (stopped ${run.stopAt}): ${what.join(', ')}`);
    }
    const first = runs.find((r) => problems.some((p) => p.startsWith(`${r.cluster} `)));
    assert.deepEqual(
      problems,
      [],
      first === undefined ? '' : `the first run with a problem logged:\n${tail(first)}`,
    );
    // The runs did stop mid-file, not only after it (the file takes several seconds at full speed).
    assert.ok(
      runs.some((r) => (r.published ?? 0) < rows),
      'every run finished the file before its signal: nothing was tested',
    );
  });

  it('a second signal exits at once, saying how many records it loses', async () => {
    const cluster = 'second-signal';
    const p = start(cluster);
    await p.firstLine;
    // The queue fills while PGlite starts (seconds): a second signal now loses what it holds.
    await delay(300);
    p.child.kill('SIGTERM');
    await delay(100);
    p.child.kill('SIGTERM');
    const { code } = await p.exit;
    const run: Run = {
      cluster,
      code,
      signal: null,
      lines: p.lines,
      published: publishedIn(p.lines),
      stopAt: '300 ms',
    };
    assert.equal(code, 130, tail(run));
    const line = p.lines.find((l) => String(l.msg).startsWith('second signal: exiting now'));
    assert.ok(line !== undefined, tail(run));
    const m =
      /: (\d+) records read and not yet stored are lost \((\d+) messages of the in-process queue\)/.exec(
        String(line.msg),
      );
    assert.ok(m !== null, String(line.msg));
    const lost = Number(m[1]);
    assert.ok(lost > 0);
    // What it says is lost covers what is missing: every record it published is stored or counted.
    const published = p.lines
      .filter((l) => l.msg === 'batch published')
      .reduce((n, l) => n + Number(l.records), 0);
    const stored = (await storedByCluster()).get(cluster) ?? 0;
    assert.ok(published > 0);
    assert.ok(
      stored + lost >= published,
      `${stored} stored + ${lost} lost < ${published} published`,
    );
  });
});

describe('nexus up on a data directory PGlite cannot open', () => {
  it('exits 1 saying which directory, why, and what to do', async () => {
    if (!existsSync(csv)) await writeCsv();
    const data = join(dir, 'old-release');
    mkdirSync(join(data, 'pglite'), { recursive: true });
    writeFileSync(join(data, 'pglite', 'PG_VERSION'), '9.6\n');
    const child = spawnNexus(['up', '--csv', csv], {
      NEXUS_DATA_DIR: data,
      PORT: '0',
      LOG_LEVEL: 'warn',
      LOOP_MODE: 'false',
    });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout?.resume();
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.equal(code, 1, stderr);
    assert.match(
      stderr,
      new RegExp(
        `nexus: the embedded store's data directory ${join(data, 'pglite')} was made by PostgreSQL 9\\.6, and this release's PGlite runs PostgreSQL \\d+, which cannot open it: move it away`,
      ),
    );
  });
});
