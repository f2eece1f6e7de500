import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { TelemetryRecord } from '../../src/core/record.js';
import { readDcgmCsv, readHeader } from '../../src/streamer/csv/reader.js';
import { DEFAULT_FLEET, generateFleetRecords } from '../../src/streamer/sim/fleet.js';
import { run, spawnNexus } from '../helpers/child.js';

const dir = mkdtempSync(join(tmpdir(), 'nexus-generate-fleet-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function readBack(path: string): Promise<{ records: TelemetryRecord[]; rejects: number }> {
  const { header, end, line } = await readHeader(path);
  const records: TelemetryRecord[] = [];
  let rejects = 0;
  for await (const chunk of readDcgmCsv(header, { path, startOffset: end, startLine: line })) {
    records.push(...chunk.records.map((r) => r.record));
    rejects += chunk.rejects.length + chunk.sentinels;
  }
  return { records, rejects };
}

describe('nexus generate --fleet', () => {
  it('writes the fleet model over --start/--duration/--interval as a DCGM CSV the reader takes whole', async () => {
    const out = join(dir, 'fleet.csv');
    const start = '2026-03-02T06:00:00Z';
    const gen = await run(
      spawnNexus([
        'generate',
        '--fleet',
        '--start',
        start,
        '--duration',
        '1h',
        '--interval',
        '1m',
        '--hosts',
        '2',
        '--gpus',
        '4',
        '--out',
        out,
      ]),
    );
    assert.equal(gen.code, 0, gen.stderr);
    const { records, rejects } = await readBack(out);
    assert.equal(rejects, 0);
    const expected = generateFleetRecords({
      ...DEFAULT_FLEET,
      hosts: 2,
      gpusPerHost: 4,
      startMs: Date.parse(start),
      intervalMs: 60_000,
      durationMs: 3_600_000,
    });
    assert.equal(records.length, expected.length);
    assert.match(gen.stderr, new RegExp(`^wrote ${expected.length} records `));
    assert.deepEqual(
      new Set(records.map((r) => r.hostname)),
      new Set(['gpu-node-01', 'gpu-node-02']),
    );
    const times = new Set(records.map((r) => r.timestamp));
    assert.equal(times.size, 60);
    assert.equal(Math.min(...times), Date.parse(start));
  });

  it('refuses the uniform generator options that mean nothing to the fleet model', async () => {
    const gen = await run(
      spawnNexus(['generate', '--fleet', '--timestamps', '5', '--out', join(dir, 'x.csv')]),
    );
    assert.equal(gen.code, 2);
    assert.match(gen.stderr, /--timestamps apply to the uniform generator only/);
  });
});
