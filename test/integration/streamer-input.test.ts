import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parse } from 'csv-parse/sync';
import { run, spawnNexus } from '../helpers/child.js';
import { DCGM_HEADER } from '../fixtures/malformed.js';

/**
 * What `nexus streamer` says and how it exits for inputs it cannot use. The in-process queue is
 * enough: these runs are about the file, not etcd.
 */
const dir = mkdtempSync(join(tmpdir(), 'nexus-streamer-input-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function env(extra: Record<string, string> = {}): Record<string, string> {
  return {
    QUEUE_BACKEND: 'memory',
    CLUSTER_ID: 'input-test',
    LOOP_MODE: 'false',
    STREAM_INTERVAL: '0',
    LOG_LEVEL: 'info',
    PROGRESS: 'off',
    NEXUS_DATA_DIR: dir,
    ...extra,
  };
}

function streamer(file: string, extra: Record<string, string> = {}): ReturnType<typeof run> {
  return run(spawnNexus(['streamer', '--csv', file], env(extra)));
}

function row(i: number, value = String(i)): string {
  const host = `host-${i % 3}`;
  return [
    `2025-07-18T20:42:${String(i % 60).padStart(2, '0')}Z`,
    'DCGM_FI_DEV_GPU_TEMP',
    String(i % 8),
    `nvidia${i % 8}`,
    `GPU-${i}`,
    'NVIDIA H100 80GB HBM3',
    host,
    '',
    '',
    '',
    value,
    `Hostname=""${host}""`,
  ]
    .map((c) => `"${c}"`)
    .join(',');
}

function file(name: string, content: string | Buffer): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

/** The stderr lines of a run (node's own warnings aside). */
function errLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.startsWith('nexus'));
}

describe('nexus streamer: inputs it cannot use, and what it says', () => {
  it('a directory: exit 2 and one line naming the path and the problem', async () => {
    const d = join(dir, 'exports');
    mkdirSync(d);
    const res = await streamer(d);
    assert.equal(res.code, 2, res.stdout + res.stderr);
    assert.deepEqual(errLines(res.stderr), [
      `nexus: cannot read CSV file ${d}: it is a directory, not a file`,
    ]);
    assert.doesNotMatch(res.stdout + res.stderr, /EISDIR/);
  });

  it('a missing file: exit 2, "no such file"', async () => {
    const p = join(dir, 'nope.csv');
    const res = await streamer(p);
    assert.equal(res.code, 2);
    assert.deepEqual(errLines(res.stderr), [`nexus: cannot read CSV file ${p}: no such file`]);
  });

  it('an empty file: exit 2, no CSV header', async () => {
    const p = file('empty.csv', '');
    const res = await streamer(p);
    assert.equal(res.code, 2);
    assert.deepEqual(errLines(res.stderr), [`nexus: ${p} is empty: no CSV header`]);
  });

  it('a header and no data rows: exit 3, nothing valid', async () => {
    const p = file('header-only.csv', `${DCGM_HEADER}\n`);
    const res = await streamer(p);
    assert.equal(res.code, 3, res.stdout + res.stderr);
    assert.deepEqual(errLines(res.stderr), [
      `nexus streamer: nothing valid in ${p}: it has a header and no data rows`,
    ]);
  });

  it('every data row rejected: exit 3 with a summary saying nothing valid was read', async () => {
    const rows = Array.from({ length: 50 }, (_, i) => row(i, 'n/a'));
    const p = file('all-bad.csv', `${DCGM_HEADER}\n${rows.join('\n')}\n`);
    const res = await streamer(p);
    assert.equal(res.code, 3, res.stdout + res.stderr);
    assert.deepEqual(errLines(res.stderr), [
      `nexus streamer: nothing valid in ${p}: none of its 50 data rows is a reading (50 rejected)`,
    ]);
    assert.match(
      res.stdout,
      /summary: 0 records published .* 50 malformed rows set aside .*nothing valid read/,
    );
  });

  it('in loop mode too: a file with nothing valid ends the run (exit 3) instead of looping for ever', async () => {
    const p = file('all-bad-loop.csv', `${DCGM_HEADER}\n${row(1, 'x')}\n${row(2, 'y')}\n`);
    const child = spawnNexus(['streamer', '--csv', p], env({ LOOP_MODE: 'true' }));
    const exited = run(child);
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const res = await exited;
    clearTimeout(timer);
    assert.notEqual(res.signal, 'SIGKILL', 'still looping over the file after 30 s');
    assert.equal(res.code, 3, res.stdout + res.stderr);
  });

  it('one valid row among rejects: exit 0', async () => {
    const p = file('one-good.csv', `${DCGM_HEADER}\n${row(1, 'x')}\n${row(2)}\n`);
    const res = await streamer(p);
    assert.equal(res.code, 0, res.stdout + res.stderr);
    assert.match(res.stdout, /summary: 1 records published .* 1 malformed rows set aside/);
  });

  it('a file of bad rows larger than REJECTS_MAX_BYTES: the rejects file stops there and says how many rows it left out', async () => {
    const bad = Array.from({ length: 3000 }, (_, i) => row(i, `bad-${'x'.repeat(200)}`));
    const p = file(
      'many-bad.csv',
      `${DCGM_HEADER}\n${bad.slice(0, 1500).join('\n')}\n${row(7)}\n${bad.slice(1500).join('\n')}\n`,
    );
    const rejects = join(dir, 'many-bad.rejects.csv');
    const max = 64 * 1024;
    const res = await streamer(p, { REJECTS_FILE: rejects, REJECTS_MAX_BYTES: String(max) });
    assert.equal(res.code, 0, res.stdout + res.stderr);
    const text = readFileSync(rejects, 'utf8');
    const rows = parse<{ line: string; reason: string; row: string }>(text, { columns: true });
    const note = rows.at(-1);
    const written = rows.length - 1;
    assert.equal(note?.line, '');
    assert.equal(
      note.reason,
      `${3000 - written} more malformed rows were not written: the file reached REJECTS_MAX_BYTES (${max} bytes)`,
    );
    assert.ok(written > 100 && written < 3000, `${written} rows written`);
    assert.ok(
      statSync(rejects).size <= max + 200,
      `rejects file of ${statSync(rejects).size} bytes`,
    );
    // Counted all the same: in the summary, with what was not written.
    assert.match(
      res.stdout,
      new RegExp(
        `summary: 1 records published .* 3000 malformed rows set aside .*\\(${3000 - written} of them not written: the file reached REJECTS_MAX_BYTES\\)`,
      ),
    );
  });
});
