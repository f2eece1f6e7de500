import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { DCGM_FIELDS, SAMPLE_METRICS } from '../../../src/core/dcgm-fields.js';
import type { TelemetryRecord } from '../../../src/core/record.js';
import {
  DEFAULT_GENERATE,
  HEADER,
  generateCsv,
  metricsByCount,
  type GenerateOptions,
} from '../../../src/streamer/csv/generator.js';
import { readDcgmCsv, readHeader } from '../../../src/streamer/csv/reader.js';

const dir = mkdtempSync(join(tmpdir(), 'nexus-csv-generator-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const SMALL: GenerateOptions = {
  ...DEFAULT_GENERATE,
  hosts: 3,
  gpusPerHost: 4,
  timestamps: 5,
  metrics: SAMPLE_METRICS,
};

/** A Writable that keeps everything; `slow` makes it signal backpressure on every write. */
class Collector extends Writable {
  readonly parts: string[] = [];
  constructor(slow = false) {
    super({ highWaterMark: slow ? 16 : 1 << 20, decodeStrings: false });
    this.slow = slow;
  }
  private readonly slow: boolean;
  override _write(chunk: unknown, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.parts.push(String(chunk));
    if (this.slow) setImmediate(done);
    else done();
  }
  text(): string {
    return this.parts.join('');
  }
}

async function generate(options: GenerateOptions, slow = false): Promise<[number, string]> {
  const out = new Collector(slow);
  const rows = await generateCsv(options, out);
  return [rows, out.text()];
}

let fileCount = 0;
async function parseText(text: string) {
  const path = join(dir, `g${++fileCount}.csv`);
  writeFileSync(path, text);
  const { header, end, line } = await readHeader(path);
  const records: TelemetryRecord[] = [];
  let rejects = 0;
  let sentinels = 0;
  for await (const chunk of readDcgmCsv(header, { path, startOffset: end, startLine: line })) {
    records.push(...chunk.records.map((r) => r.record));
    rejects += chunk.rejects.length;
    sentinels += chunk.sentinels;
  }
  return { records, rejects, sentinels };
}

describe('generateCsv', () => {
  it('writes hosts x gpus x metrics x timestamps rows after the header', async () => {
    const [rows, text] = await generate(SMALL);
    assert.equal(rows, 3 * 4 * 10 * 5);
    assert.ok(text.startsWith(HEADER));
    assert.ok(text.endsWith('\n'));
    assert.equal(text.split('\n').length - 1, rows + 1);
  });

  it('names hosts so that they sort in number order, past 9,999 hosts too', async () => {
    const hosts = 10_001;
    const [, text] = await generate({
      ...SMALL,
      hosts,
      gpusPerHost: 1,
      timestamps: 1,
      metrics: ['DCGM_FI_DEV_GPU_UTIL'],
    });
    const names = [...new Set((await parseText(text)).records.map((r) => r.hostname))];
    assert.equal(names.length, hosts);
    assert.equal(names[0], 'gpu-node-00001');
    assert.equal(names.at(-1), 'gpu-node-10001');
    assert.deepEqual([...names].sort(), names, 'sorted by name is sorted by number');
    // Up to 9,999 hosts the names keep four digits, as before.
    const [, small] = await generate(SMALL);
    assert.ok(small.includes('gpu-node-0003') && !small.includes('gpu-node-00003'));
  });

  it('writes output that the reader takes with no rejects and no sentinels', async () => {
    const [rows, text] = await generate(SMALL);
    const { records, rejects, sentinels } = await parseText(text);
    assert.equal(rejects, 0);
    assert.equal(sentinels, 0);
    assert.equal(records.length, rows);
  });

  it('covers every host, GPU, metric and timestamp exactly once', async () => {
    const [, text] = await generate(SMALL);
    const { records } = await parseText(text);
    const keys = new Set(records.map((r) => `${r.hostname}|${r.gpu}|${r.metric}|${r.timestamp}`));
    assert.equal(keys.size, records.length);
    assert.equal(new Set(records.map((r) => r.hostname)).size, SMALL.hosts);
    assert.equal(new Set(records.map((r) => r.uuid)).size, SMALL.hosts * SMALL.gpusPerHost);
    assert.deepEqual(new Set(records.map((r) => r.metric)), new Set(SAMPLE_METRICS));
    const times = [...new Set(records.map((r) => r.timestamp))].sort((a, b) => a - b);
    assert.deepEqual(
      times,
      Array.from({ length: SMALL.timestamps }, (_, t) => SMALL.startMs + t * SMALL.intervalMs),
    );
    assert.deepEqual([...new Set(records.map((r) => r.gpu))].sort(), [0, 1, 2, 3]);
  });

  it('writes labels that agree with the columns', async () => {
    const [, text] = await generate(SMALL);
    const { records } = await parseText(text);
    for (const r of records) {
      assert.equal(r.labels.Hostname, r.hostname);
      assert.equal(r.labels.__name__, r.metric);
      assert.equal(r.labels.gpu, String(r.gpu));
      assert.equal(r.labels.UUID, r.uuid);
      assert.equal(r.labels.device, r.device);
      assert.equal(r.labels.modelName, r.model);
      assert.equal(r.device, `nvidia${r.gpu}`);
      assert.equal(r.model, SMALL.model);
      assert.match(
        r.uuid ?? '',
        /^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
      );
    }
  });

  it('keeps FB_USED + FB_FREE constant per GPU and timestamp', async () => {
    const [, text] = await generate({ ...SMALL, hosts: 4, timestamps: 20 });
    const { records } = await parseText(text);
    const used = new Map<string, number>();
    const free = new Map<string, number>();
    for (const r of records) {
      const key = `${r.hostname}|${r.gpu}|${r.timestamp}`;
      if (r.metric === 'DCGM_FI_DEV_FB_USED') used.set(key, r.value);
      if (r.metric === 'DCGM_FI_DEV_FB_FREE') free.set(key, r.value);
    }
    assert.equal(used.size, 4 * 4 * 20);
    assert.equal(free.size, used.size);
    const sums = new Set<number>();
    for (const [key, u] of used) {
      const f = free.get(key);
      assert.ok(f !== undefined, key);
      assert.ok(u >= 0 && f >= 0, `${key}: used ${u}, free ${f}`);
      sums.add(u + f);
    }
    assert.equal(sums.size, 1, `sums: ${[...sums].join(', ')}`);
    // Memory use actually varies, so the constant sum is not trivially two constants.
    assert.ok(new Set(used.values()).size > 1);
  });

  it('keeps utilisations within 0..100 and varies them', async () => {
    const [, text] = await generate({ ...SMALL, hosts: 8, timestamps: 30 });
    const { records } = await parseText(text);
    const utilMetrics = new Set([
      'DCGM_FI_DEV_GPU_UTIL',
      'DCGM_FI_DEV_MEM_COPY_UTIL',
      'DCGM_FI_DEV_ENC_UTIL',
      'DCGM_FI_DEV_DEC_UTIL',
    ]);
    const util = records.filter((r) => utilMetrics.has(r.metric));
    assert.equal(util.length, 8 * 4 * 30 * 4);
    for (const r of util) assert.ok(r.value >= 0 && r.value <= 100, `${r.metric} ${r.value}`);
    const gpuUtil = util.filter((r) => r.metric === 'DCGM_FI_DEV_GPU_UTIL').map((r) => r.value);
    assert.ok(Math.max(...gpuUtil) > 50 && Math.min(...gpuUtil) < 10);
  });

  it('is deterministic for a seed and differs between seeds', async () => {
    const [, a] = await generate(SMALL);
    const [, b] = await generate(SMALL);
    const [, c] = await generate({ ...SMALL, seed: SMALL.seed + 1 });
    assert.equal(a, b);
    assert.notEqual(a, c);
    assert.equal(c.split('\n').length, a.split('\n').length);
  });

  it('gives no GPU a pod when podFraction is 0', async () => {
    const [, text] = await generate({ ...SMALL, podFraction: 0 });
    const { records } = await parseText(text);
    assert.ok(records.length > 0);
    for (const r of records) {
      assert.equal('container' in r || 'pod' in r || 'namespace' in r, false);
      assert.equal('pod' in r.labels || 'namespace' in r.labels || 'container' in r.labels, false);
    }
  });

  it('gives every GPU a pod, in columns and labels, when podFraction is 1', async () => {
    const [, text] = await generate({ ...SMALL, podFraction: 1 });
    const { records } = await parseText(text);
    assert.ok(records.length > 0);
    for (const r of records) {
      assert.ok(r.container !== undefined && r.pod !== undefined && r.namespace !== undefined);
      assert.equal(r.labels.container, r.container);
      assert.equal(r.labels.pod, r.pod);
      assert.equal(r.labels.namespace, r.namespace);
      assert.ok(r.pod.startsWith(`${r.namespace}-job-`), r.pod);
    }
  });

  it('completes through a writer that applies backpressure on every write', async () => {
    const options = { ...SMALL, hosts: 20, gpusPerHost: 8, timestamps: 6 };
    const [fastRows, fast] = await generate(options);
    const [slowRows, slow] = await generate(options, true);
    assert.equal(slowRows, fastRows);
    assert.equal(slow, fast);
    assert.ok(fast.length > 1 << 20, 'output spans several flushes');
  });
});

describe('metricsByCount', () => {
  it('starts with the ten sample metrics', () => {
    assert.deepEqual(metricsByCount(10), [...SAMPLE_METRICS]);
    assert.deepEqual(metricsByCount(3), SAMPLE_METRICS.slice(0, 3));
  });

  it('clamps to at least one and at most the whole catalogue, without duplicates', () => {
    assert.deepEqual(metricsByCount(0), [SAMPLE_METRICS[0]]);
    const all = metricsByCount(1000);
    assert.equal(all.length, new Set(all).size);
    assert.deepEqual(new Set(all), new Set(DCGM_FIELDS.map((f) => f.name)));
  });
});
