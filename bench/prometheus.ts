/**
 * Prometheus for the side-by-side history bench: the same readings written as OpenMetrics text,
 * backfilled with `promtool tsdb create-blocks-from openmetrics`, served by a `prometheus` process
 * of its own (Debian's 2.42: /usr/bin/prometheus and /usr/bin/promtool, installed by
 * `scripts/setup.sh --all`), and the bytes its TSDB keeps once it has compacted the blocks.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import {
  createWriteStream,
  existsSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { encodeWriteRequest } from '../src/gateway/remote-write/decoder.js';
import { readDcgmCsv, readHeader } from '../src/streamer/csv/reader.js';
import { freePort } from '../test/helpers/ports.js';
import type { FleetSeries } from './fleet-data.js';
import { cpuSeconds, log, stopChild } from './lib.js';

export const MODEL_NAME = 'NVIDIA H100 80GB HBM3';

/** A GPU's UUID as DCGM prints it, made up from its host and index (the same in both systems). */
export function gpuUuid(host: string, gpu: number): string {
  const d = createHash('sha1').update(`${host}/${gpu}`).digest('hex');
  return `GPU-${d.slice(0, 8)}-${d.slice(8, 12)}-${d.slice(12, 16)}-${d.slice(16, 20)}-${d.slice(20, 32)}`;
}

/** The series' labels as dcgm-exporter has them (the metric name apart), in OpenMetrics text. */
export function seriesLabels(s: Pick<FleetSeries, 'host' | 'gpu'>): string {
  return `gpu="${s.gpu}",UUID="${gpuUuid(s.host, s.gpu)}",Hostname="${s.host}",device="nvidia${s.gpu}",modelName="${MODEL_NAME}"`;
}

/**
 * Writes the series as OpenMetrics text, one file per window of `windowMs` from `start` to `end`
 * (promtool reads its whole input once for every block it writes: one file for a day of 2-hour
 * blocks would be read 13 times), each streamed (a few MB in memory at a time): each metric
 * family together under its `# TYPE ... gauge` line, each series' samples in time order,
 * timestamps in seconds with milliseconds, `# EOF` at the end. Values are printed by `String`,
 * which round-trips every float64 exactly, so both systems hold the same numbers.
 */
export async function writeOpenMetrics(
  series: readonly FleetSeries[],
  dir: string,
  window: { start: number; end: number; ms: number },
): Promise<{ files: string[]; samples: number; bytes: number }> {
  const families = [...new Set(series.map((s) => s.metric))];
  const prefixes = series.map((s) => `${s.metric}{${seriesLabels(s)}} `);
  const cursors = new Uint32Array(series.length);
  const files: string[] = [];
  let samples = 0;
  let bytes = 0;
  for (let w = window.start; w < window.end; w += window.ms) {
    const file = join(dir, `${w}.om`);
    const out = createWriteStream(file);
    const failed = once(out, 'error').then(([err]) => {
      throw err instanceof Error ? err : new Error(String(err));
    });
    failed.catch(() => undefined); // raced below
    let buf = '';
    const flush = async (): Promise<void> => {
      const ok = out.write(buf);
      buf = '';
      if (!ok) await Promise.race([once(out, 'drain'), failed]);
    };
    for (const metric of families) {
      buf += `# TYPE ${metric} gauge\n`;
      for (const [k, s] of series.entries()) {
        if (s.metric !== metric) continue;
        const prefix = prefixes[k] ?? '';
        let i = cursors[k] ?? 0;
        for (; i < s.times.length && (s.times[i] ?? 0) < w + window.ms; i++) {
          const t = s.times[i] ?? 0;
          if (t < w) throw new Error(`a reading at ${t} outside the windows from ${window.start}`);
          buf += `${prefix}${String(s.values[i])} ${Math.floor(t / 1000)}.${String(t % 1000).padStart(3, '0')}\n`;
          if (buf.length > 4 * 2 ** 20) await flush();
        }
        samples += i - (cursors[k] ?? 0);
        cursors[k] = i;
      }
    }
    buf += '# EOF\n';
    await flush();
    out.end();
    await Promise.race([once(out, 'finish'), failed]);
    files.push(file);
    bytes += statSync(file).size;
  }
  return { files, samples, bytes };
}

function run(cmd: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: 64 * 2 ** 20 }, (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** `2.42.0+ds` from `prometheus, version 2.42.0+ds (branch: ...)`. */
export function prometheusVersion(): Promise<string> {
  return run('prometheus', ['--version']).then(
    (out) => /version (\S+)/.exec(out)?.[1] ?? '?',
    () => 'not installed',
  );
}

/**
 * `promtool tsdb create-blocks-from openmetrics`: blocks of 2 hours (promtool's default, the
 * blocks a scraping Prometheus cuts from its head) into `dataDir`, which the server then
 * compacts as it would its own. Files of one window each make one block each.
 */
export async function createBlocks(file: string, dataDir: string): Promise<void> {
  if (!existsSync('/usr/bin/promtool') && !existsSync('/usr/local/bin/promtool')) {
    throw new Error('promtool not found: run make setup-dev (Debian package prometheus)');
  }
  await run('promtool', ['tsdb', 'create-blocks-from', 'openmetrics', '--quiet', file, dataDir]);
}

export interface PromBlock {
  readonly ulid: string;
  readonly minTime: number;
  readonly maxTime: number;
  readonly samples: number;
  readonly series: number;
  readonly level: number;
  /** Bytes of its files: index, chunks/*, meta.json, tombstones. */
  readonly bytes: number;
  readonly index: number;
  readonly chunks: number;
}

function dirBytes(dir: string): number {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    total += e.isDirectory() ? dirBytes(p) : statSync(p).size;
  }
  return total;
}

/** The blocks in a TSDB directory (those with a meta.json) and the bytes of every other file. */
export function tsdbSize(dataDir: string): { blocks: PromBlock[]; other: number } {
  const blocks: PromBlock[] = [];
  let other = 0;
  for (const e of readdirSync(dataDir, { withFileTypes: true })) {
    const p = join(dataDir, e.name);
    const metaFile = join(p, 'meta.json');
    if (!e.isDirectory() || !existsSync(metaFile)) {
      other += e.isDirectory() ? dirBytes(p) : statSync(p).size;
      continue;
    }
    const meta = JSON.parse(readFileSync(metaFile, 'utf8')) as {
      ulid: string;
      minTime: number;
      maxTime: number;
      stats?: { numSamples?: number; numSeries?: number };
      compaction?: { level?: number };
    };
    blocks.push({
      ulid: meta.ulid,
      minTime: meta.minTime,
      maxTime: meta.maxTime,
      samples: meta.stats?.numSamples ?? 0,
      series: meta.stats?.numSeries ?? 0,
      level: meta.compaction?.level ?? 0,
      bytes: dirBytes(p),
      index: statSync(join(p, 'index')).size,
      chunks: dirBytes(join(p, 'chunks')),
    });
  }
  blocks.sort((a, b) => a.minTime - b.minTime);
  return { blocks, other };
}

export interface PromServer {
  readonly url: string;
  readonly proc: ChildProcess;
  /** Resolves once the server has run its first compaction pass and it has finished. */
  compacted(): Promise<{ compactions: number; waitedMs: number }>;
  stop(): Promise<void>;
}

async function metricsText(url: string): Promise<string> {
  const res = await fetch(`${url}/metrics`);
  return res.text();
}

function metricValue(text: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m === null ? Number.NaN : Number(m[1]);
}

/**
 * Starts `prometheus` on the backfilled directory (no scrape targets, retention of 100 years so
 * that no backfilled block is deleted, on a free loopback port) and waits for /-/ready.
 * Prometheus compacts its blocks a minute after start (and every minute after), 2-hour blocks
 * into 6-hour and then 18-hour ones, always leaving out the newest block; `compacted()` waits
 * for that first pass to finish.
 */
export async function startPrometheus(
  dataDir: string,
  configDir: string,
  options: { remoteWrite?: boolean } = {},
): Promise<PromServer> {
  const port = await freePort();
  const config = join(configDir, `prometheus-${port}.yml`);
  writeFileSync(config, 'global:\n  scrape_interval: 1m\n');
  const url = `http://127.0.0.1:${port}`;
  const started = Date.now();
  const proc = spawn(
    'prometheus',
    [
      `--config.file=${config}`,
      `--storage.tsdb.path=${dataDir}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--storage.tsdb.retention.time=100y',
      '--log.level=warn',
      ...(options.remoteWrite === true ? ['--web.enable-remote-write-receiver'] : []),
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`prometheus exited ${proc.exitCode}: ${stderr}`);
    try {
      if ((await fetch(`${url}/-/ready`)).ok) break;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) {
      await stopChild(proc);
      throw new Error(`prometheus did not get ready in 60 s: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const compacted = async (): Promise<{ compactions: number; waitedMs: number }> => {
    // The first pass is triggered by a timer a minute after start; it runs until nothing is left
    // to plan. Done: triggered at least once, and the compaction and block counts no longer move.
    let last = '';
    let stableSince = Date.now();
    const limit = Date.now() + 180_000;
    for (;;) {
      const text = await metricsText(url);
      const triggered = metricValue(text, 'prometheus_tsdb_compactions_triggered_total');
      const state = [
        metricValue(text, 'prometheus_tsdb_compactions_total'),
        metricValue(text, 'prometheus_tsdb_blocks_loaded'),
        metricValue(text, 'prometheus_tsdb_compaction_populating_block'),
      ].join(',');
      if (state !== last) {
        last = state;
        stableSince = Date.now();
      }
      const busy = metricValue(text, 'prometheus_tsdb_compaction_populating_block') !== 0;
      if (triggered >= 1 && !busy && Date.now() - stableSince >= 3000) {
        const failed = metricValue(text, 'prometheus_tsdb_compactions_failed_total');
        if (failed > 0) throw new Error(`prometheus: ${failed} compactions failed: ${stderr}`);
        return {
          compactions: metricValue(text, 'prometheus_tsdb_compactions_total'),
          waitedMs: Date.now() - started,
        };
      }
      if (Date.now() > limit) throw new Error('prometheus did not compact within 3 minutes');
      await new Promise((r) => setTimeout(r, 500));
    }
  };
  log(`prometheus: ready on ${url} (pid ${proc.pid ?? '?'}) in ${Date.now() - started} ms`);
  return { url, proc, compacted, stop: () => stopChild(proc) };
}

/** Remote-write requests of a shard, as Prometheus's own sender makes them. */
const REMOTE_WRITE_SHARDS = 8;
const REMOTE_WRITE_SAMPLES = 500;

export interface RemoteWriteIngest {
  readonly readings: number;
  readonly series: number;
  readonly seconds: number;
  /** Prometheus's own CPU (utime + stime) from the first request to the last answer. */
  readonly cpuSeconds: number;
}

/**
 * The readings of a DCGM CSV written into a fresh Prometheus through its remote-write receiver,
 * as Prometheus's own remote-write queue sends them: series sharded by their labels' hash over 8
 * shards, each sending requests of 500 samples one after the other (in order per series), the
 * shards at once. The requests are encoded before the clock starts; every one must be accepted.
 */
export async function remoteWriteIngest(file: string, dir: string): Promise<RemoteWriteIngest> {
  type Series = { labels: Record<string, string>; samples: { value: number; timestamp: number }[] };
  const shards: Buffer[][] = Array.from({ length: REMOTE_WRITE_SHARDS }, () => []);
  const open: Series[][] = Array.from({ length: REMOTE_WRITE_SHARDS }, () => []);
  const hash = (s: string): number => {
    let h = 0;
    for (let i = 0; i < s.length; i++) h = (Math.imul(h, 31) + s.charCodeAt(i)) | 0;
    return h >>> 0;
  };
  let readings = 0;
  const { header, end, line } = await readHeader(file);
  for await (const chunk of readDcgmCsv(header, {
    path: file,
    startOffset: end,
    startLine: line,
  })) {
    for (const r of chunk.records) {
      const rec = r.record;
      const labels = { ...rec.labels, __name__: rec.metric };
      const k = hash(JSON.stringify(labels)) % REMOTE_WRITE_SHARDS;
      const batch = open[k] ?? [];
      batch.push({ labels, samples: [{ value: rec.value, timestamp: rec.timestamp }] });
      readings++;
      if (batch.length === REMOTE_WRITE_SAMPLES) {
        shards[k]?.push(encodeWriteRequest(batch));
        open[k] = [];
      } else open[k] = batch;
    }
  }
  open.forEach((batch, k) => {
    if (batch.length > 0) shards[k]?.push(encodeWriteRequest(batch));
  });
  const data = join(dir, `rw-${process.pid}-${Date.now()}`);
  const prom = await startPrometheus(data, dir, { remoteWrite: true });
  try {
    const pid = prom.proc.pid;
    const cpu0 = cpuSeconds(pid);
    const t0 = performance.now();
    await Promise.all(
      shards.map(async (queue) => {
        for (const body of queue) {
          const res = await fetch(`${prom.url}/api/v1/write`, {
            method: 'POST',
            body,
            headers: {
              'Content-Encoding': 'snappy',
              'Content-Type': 'application/x-protobuf',
              'X-Prometheus-Remote-Write-Version': '0.1.0',
            },
          });
          const text = await res.text();
          if (res.status >= 300)
            throw new Error(`prometheus refused a write: ${res.status} ${text.slice(0, 200)}`);
        }
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    const cpu = cpuSeconds(pid) - cpu0;
    const text = await metricsText(prom.url);
    const appended = /^prometheus_tsdb_head_samples_appended_total(?:\{[^}]*\})? (\S+)$/m.exec(
      text,
    );
    if (Number(appended?.[1]) !== readings)
      throw new Error(`prometheus appended ${appended?.[1] ?? '?'} of ${readings} samples`);
    return {
      readings,
      series: metricValue(text, 'prometheus_tsdb_head_series'),
      seconds,
      cpuSeconds: cpu,
    };
  } finally {
    await prom.stop();
    rmSync(data, { recursive: true, force: true });
  }
}
