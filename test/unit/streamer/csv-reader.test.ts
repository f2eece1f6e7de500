import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { parse } from 'csv-parse/sync';
import { NexusError, type ErrorCode } from '../../../src/core/errors.js';
import {
  readDcgmCsv,
  readHeader,
  type CsvChunk,
  type CsvReadOptions,
  type ParsedRecord,
  type RejectedRow,
} from '../../../src/streamer/csv/reader.js';
import { DCGM_HEADER } from '../../fixtures/malformed.js';
import { csvFiles } from '../../helpers/csv-files.js';

const files = csvFiles('nexus-csv-reader-');
const dir = files.dir;
const writeCsv = files.write;
const HEADER = DCGM_HEADER;

interface RowSpec {
  readonly ts?: string;
  readonly metric?: string;
  readonly gpu?: number;
  readonly host?: string;
  readonly value?: string;
  readonly pod?: string;
}

/** One data row in the quoting style of the real export. */
function row(spec: RowSpec = {}): string {
  const host = spec.host ?? 'mtv5-dgx1-hgpu-031';
  const gpu = spec.gpu ?? 0;
  const metric = spec.metric ?? 'DCGM_FI_DEV_GPU_UTIL';
  const pod = spec.pod ?? '';
  const cols = [
    spec.ts ?? '2025-07-18T20:42:34Z',
    metric,
    String(gpu),
    `nvidia${gpu}`,
    `GPU-0000000${gpu}-86f3-7a43-b711-4771313afc50`,
    'NVIDIA H100 80GB HBM3',
    host,
    pod === '' ? '' : 'main',
    pod,
    pod === '' ? '' : 'research',
    spec.value ?? '42',
    `Hostname=""${host}"",__name__=""${metric}"",gpu=""${gpu}""`,
  ];
  return cols.map((c) => `"${c}"`).join(',');
}

interface ReadResult {
  readonly records: ParsedRecord[];
  readonly rejects: RejectedRow[];
  readonly sentinels: number;
  readonly chunks: CsvChunk[];
}

async function readFrom(
  path: string,
  options: Partial<Omit<CsvReadOptions, 'path'>> = {},
): Promise<ReadResult> {
  const { header, end, line } = await readHeader(path);
  const chunks: CsvChunk[] = [];
  for await (const chunk of readDcgmCsv(header, {
    path,
    startOffset: end,
    startLine: line,
    ...options,
  })) {
    chunks.push(chunk);
  }
  return {
    records: chunks.flatMap((c) => c.records),
    rejects: chunks.flatMap((c) => c.rejects),
    sentinels: chunks.reduce((n, c) => n + c.sentinels, 0),
    chunks,
  };
}

/** Byte offsets just past each physical line (index 0 = line 1), from the file itself. */
function lineEnds(path: string): number[] {
  const bytes = readFileSync(path);
  const ends: number[] = [];
  for (let i = 0; i < bytes.length; i++) if (bytes[i] === 10) ends.push(i + 1);
  if (bytes.length > 0 && bytes[bytes.length - 1] !== 10) ends.push(bytes.length);
  return ends;
}

function assertEndsMatchLines(path: string, records: readonly ParsedRecord[]): void {
  const ends = lineEnds(path);
  for (const r of records) assert.equal(r.end, ends[r.line - 1], `end of line ${r.line}`);
}

async function assertRejects(
  promise: Promise<unknown>,
  code: ErrorCode,
  message: RegExp,
): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof NexusError, String(err));
    assert.equal(err.code, code);
    assert.match(err.message, message);
    return true;
  });
}

describe('readHeader', () => {
  it('returns the header, its line and the offset of the first data line', async () => {
    const path = writeCsv(`${HEADER}\n${row()}\n`);
    const got = await readHeader(path);
    assert.equal(got.line, 1);
    assert.equal(got.end, Buffer.byteLength(HEADER) + 1);
    assert.equal(got.header.width, 12);
    assert.equal(got.header.index.hostname, 6);
  });

  it('strips a UTF-8 BOM and counts its bytes in the offset', async () => {
    const path = writeCsv(`\uFEFF${HEADER}\r\n${row()}\r\n`);
    const got = await readHeader(path);
    assert.equal(got.header.names[0], 'timestamp');
    assert.equal(got.header.index.timestamp, 0);
    assert.equal(got.end, 3 + Buffer.byteLength(HEADER) + 2);
  });

  it('skips blank lines before the header', async () => {
    const path = writeCsv(`\n  \r\n\t\n${HEADER}\n${row()}\n`);
    const got = await readHeader(path);
    assert.equal(got.line, 4);
    assert.equal(got.end, 1 + 4 + 2 + Buffer.byteLength(HEADER) + 1);
  });

  it('reads a header without a trailing newline', async () => {
    const path = writeCsv(HEADER);
    const got = await readHeader(path);
    assert.equal(got.end, Buffer.byteLength(HEADER));
    assert.equal(got.header.width, 12);
  });

  it('rejects an empty file, a file of blank lines and a bad header', async () => {
    await assertRejects(readHeader(writeCsv('')), 'CSV_HEADER_INVALID', /empty/);
    await assertRejects(readHeader(writeCsv('\n \n\n  ')), 'CSV_HEADER_INVALID', /no CSV header/);
    await assertRejects(
      readHeader(writeCsv('timestamp,metric_name,gpu_id,Hostname\n')),
      'CSV_HEADER_INVALID',
      /value/,
    );
    await assertRejects(
      readHeader(writeCsv('"timestamp,metric_name\n')),
      'CSV_HEADER_INVALID',
      /unterminated/,
    );
  });

  it('reports a missing file as CSV_FILE_UNREADABLE', async () => {
    await assertRejects(
      readHeader(join(dir, 'does-not-exist.csv')),
      'CSV_FILE_UNREADABLE',
      /does-not-exist\.csv/,
    );
  });
});

describe('readDcgmCsv', () => {
  const rows = [
    row({ gpu: 0, value: '0' }),
    row({ gpu: 1, value: '100' }),
    row({ gpu: 2, value: '12.5', host: 'mtv5-dgx1-hgpu-032' }),
  ];

  it('reads LF rows with 1-based line numbers and line-end offsets', async () => {
    const path = writeCsv(`${HEADER}\n${rows.join('\n')}\n`);
    const { records, rejects, sentinels, chunks } = await readFrom(path);
    assert.deepEqual(rejects, []);
    assert.equal(sentinels, 0);
    assert.deepEqual(
      records.map((r) => [r.line, r.record.gpu, r.record.value, r.record.hostname]),
      [
        [2, 0, 0, 'mtv5-dgx1-hgpu-031'],
        [3, 1, 100, 'mtv5-dgx1-hgpu-031'],
        [4, 2, 12.5, 'mtv5-dgx1-hgpu-032'],
      ],
    );
    const first = Buffer.byteLength(HEADER) + 1 + Buffer.byteLength(rows[0] ?? '') + 1;
    assert.equal(records[0]?.end, first);
    assertEndsMatchLines(path, records);
    const last = chunks.at(-1);
    assert.ok(last !== undefined);
    assert.equal(last.end, readFileSync(path).length);
    assert.equal(last.line, 4);
  });

  it('produces the full record of a row', async () => {
    const path = writeCsv(`${HEADER}\n${row({ gpu: 3, value: '87.5', pod: 'train-1' })}\n`);
    const { records } = await readFrom(path);
    assert.equal(records.length, 1);
    const record = records[0]?.record;
    assert.deepEqual(record && { ...record, labels: { ...record.labels } }, {
      timestamp: Date.UTC(2025, 6, 18, 20, 42, 34),
      metric: 'DCGM_FI_DEV_GPU_UTIL',
      gpu: 3,
      hostname: 'mtv5-dgx1-hgpu-031',
      value: 87.5,
      device: 'nvidia3',
      uuid: 'GPU-00000003-86f3-7a43-b711-4771313afc50',
      model: 'NVIDIA H100 80GB HBM3',
      container: 'main',
      pod: 'train-1',
      namespace: 'research',
      labels: { Hostname: 'mtv5-dgx1-hgpu-031', __name__: 'DCGM_FI_DEV_GPU_UTIL', gpu: '3' },
    });
  });

  it('gives CRLF, mixed endings and a BOM the same records as LF', async () => {
    const lf = await readFrom(writeCsv(`${HEADER}\n${rows.join('\n')}\n`));
    const variants = [
      `${HEADER}\r\n${rows.join('\r\n')}\r\n`,
      `${HEADER}\r\n${rows[0] ?? ''}\n${rows[1] ?? ''}\r\n${rows[2] ?? ''}\n`,
      `\uFEFF${HEADER}\n${rows.join('\n')}\n`,
      `\uFEFF${HEADER}\r\n${rows.join('\r\n')}`,
    ];
    for (const [v, content] of variants.entries()) {
      const path = writeCsv(content);
      const got = await readFrom(path);
      assert.deepEqual(got.rejects, []);
      assert.deepEqual(
        got.records.map((r) => ({ line: r.line, record: r.record })),
        lf.records.map((r) => ({ line: r.line, record: r.record })),
        `variant ${v}`,
      );
      assertEndsMatchLines(path, got.records);
    }
  });

  it('strips CR only at the end of the line, not inside fields (where an identifier refuses it)', async () => {
    const path = writeCsv(`${HEADER}\r\n${row({ host: 'a\rb' })}\r\n${row({ gpu: 1 })}\r\n`);
    const { records, rejects } = await readFrom(path);
    assert.deepEqual(
      rejects.map((r) => [r.line, r.reason]),
      [[2, 'Hostname holds a control character (U+000D) at character 2']],
    );
    assert.deepEqual(
      records.map((r) => r.line),
      [3],
    );
  });

  it('skips blank and whitespace-only lines but counts them', async () => {
    const path = writeCsv(
      `${HEADER}\n\n${rows[0] ?? ''}\n   \n\t\r\n\r\n${rows[1] ?? ''}\n \t \n${rows[2] ?? ''}\n\n`,
    );
    const { records, rejects, chunks } = await readFrom(path);
    assert.deepEqual(rejects, []);
    assert.deepEqual(
      records.map((r) => r.line),
      [3, 7, 9],
    );
    assertEndsMatchLines(path, records);
    assert.equal(chunks.at(-1)?.line, 10);
    assert.equal(chunks.at(-1)?.end, readFileSync(path).length);
  });

  it('reads a final line that has no newline', async () => {
    const path = writeCsv(`${HEADER}\n${rows.join('\n')}`);
    const { records } = await readFrom(path);
    assert.equal(records.length, 3);
    const last = records[2];
    assert.ok(last !== undefined);
    assert.equal(last.line, 4);
    assert.equal(last.end, readFileSync(path).length);
  });

  it('skips a repeated header line mid-file without a reject', async () => {
    const path = writeCsv(`${HEADER}\n${rows[0] ?? ''}\n${HEADER}\n${rows[1] ?? ''}\n`);
    const { records, rejects } = await readFrom(path);
    assert.deepEqual(rejects, []);
    assert.deepEqual(
      records.map((r) => r.line),
      [2, 4],
    );
  });

  it('reading from offset 0 skips the header line itself, BOM or not', async () => {
    for (const bom of ['', '\uFEFF']) {
      const path = writeCsv(`${bom}${HEADER}\n${rows.join('\n')}\n`);
      const { header } = await readHeader(path);
      const records: ParsedRecord[] = [];
      const rejects: RejectedRow[] = [];
      for await (const chunk of readDcgmCsv(header, { path })) {
        records.push(...chunk.records);
        rejects.push(...chunk.rejects);
      }
      assert.deepEqual(rejects, []);
      assert.deepEqual(
        records.map((r) => r.line),
        [2, 3, 4],
      );
    }
  });

  it('counts sentinel rows instead of returning them', async () => {
    const path = writeCsv(
      `${HEADER}\n${rows[0] ?? ''}\n${row({ value: '9223372036854775794' })}\n${row({ value: '140737488355328.0' })}\n${rows[1] ?? ''}\n`,
    );
    const { records, rejects, sentinels } = await readFrom(path);
    assert.deepEqual(rejects, []);
    assert.equal(sentinels, 2);
    assert.deepEqual(
      records.map((r) => r.line),
      [2, 5],
    );
  });

  it('keeps multi-byte UTF-8 intact even when it straddles chunk boundaries', async () => {
    const host = 'nœud-日本-😀-ü';
    const content = `${HEADER}\n${row({ host, gpu: 1 })}\n${row({ host: 'ß€', gpu: 2 })}\n`;
    const path = writeCsv(content);
    for (const highWaterMark of [1, 2, 3, 5, 7, 1 << 16]) {
      const { records, rejects } = await readFrom(path, { highWaterMark });
      assert.deepEqual(rejects, [], `hwm ${highWaterMark}`);
      assert.deepEqual(
        records.map((r) => [r.record.hostname, r.record.labels.Hostname]),
        [
          [host, host],
          ['ß€', 'ß€'],
        ],
        `hwm ${highWaterMark}`,
      );
      assertEndsMatchLines(path, records);
    }
  });

  it('reports a bad row with its line number and the raw text', async () => {
    const bad = row({ value: 'abc' });
    const path = writeCsv(`${HEADER}\n${rows[0] ?? ''}\n\n${bad}\n${rows[1] ?? ''}\n`);
    const { records, rejects } = await readFrom(path);
    assert.deepEqual(rejects, [{ line: 4, reason: 'non-numeric value "abc"', raw: bad }]);
    assert.deepEqual(
      records.map((r) => r.line),
      [2, 5],
    );
  });

  it('reports a missing file as CSV_FILE_UNREADABLE', async () => {
    const header = (await readHeader(writeCsv(`${HEADER}\n`))).header;
    const gen = readDcgmCsv(header, { path: join(dir, 'gone.csv') });
    await assertRejects(gen.next(), 'CSV_FILE_UNREADABLE', /gone\.csv/);
  });
});

describe('readDcgmCsv: over-long lines', () => {
  const good = row({ gpu: 1 });
  const long = row({ gpu: 2, host: 'h'.repeat(250) });
  const maxLineBytes = 300;

  for (const highWaterMark of [7, 64, 1 << 16]) {
    it(`rejects a line longer than maxLineBytes and goes on (highWaterMark ${highWaterMark})`, async () => {
      assert.ok(Buffer.byteLength(good) < maxLineBytes);
      assert.ok(Buffer.byteLength(long) > maxLineBytes);
      const path = writeCsv(
        `${HEADER}\n${good}\n${long}\n${good}\r\n${long}\r\n\n${good}\n${long}`,
      );
      const { records, rejects, chunks } = await readFrom(path, { maxLineBytes, highWaterMark });
      assert.deepEqual(
        records.map((r) => r.line),
        [2, 4, 7],
      );
      assert.deepEqual(rejects, [
        { line: 3, reason: 'line longer than 300 bytes', raw: '' },
        { line: 5, reason: 'line longer than 300 bytes', raw: '' },
        { line: 8, reason: 'line longer than 300 bytes', raw: '' },
      ]);
      assertEndsMatchLines(path, records);
      assert.equal(chunks.at(-1)?.line, 8);
      assert.equal(chunks.at(-1)?.end, readFileSync(path).length);
    });
  }

  it('accepts a line of exactly maxLineBytes bytes (before the newline) and rejects one more', async () => {
    const exact = Buffer.byteLength(long);
    const path = writeCsv(`${HEADER}\n${long}\n`);
    for (const highWaterMark of [7, 64, 1 << 16]) {
      const fits = await readFrom(path, { maxLineBytes: exact, highWaterMark });
      assert.deepEqual(
        fits.records.map((r) => r.line),
        [2],
      );
      const over = await readFrom(path, { maxLineBytes: exact - 1, highWaterMark });
      assert.deepEqual(over.records, []);
      assert.deepEqual(
        over.rejects.map((r) => r.line),
        [2],
      );
    }
  });
});

describe('readDcgmCsv: chunking and resuming', () => {
  // Every feature at once: BOM, CRLF and LF, blank lines, a repeated header, a bad row, a
  // sentinel, unicode, and a last line without newline.
  const content =
    `\uFEFF${HEADER}\r\n` +
    `${row({ gpu: 0 })}\r\n` +
    `${row({ gpu: 1, host: 'hôte-😀' })}\n` +
    '\n' +
    `${row({ gpu: 2, value: 'x' })}\n` +
    `${row({ gpu: 3, value: '2147483632' })}\n` +
    '  \r\n' +
    `${HEADER}\n` +
    `${row({ gpu: 4, pod: 'p-1' })}\r\n` +
    `${row({ gpu: 5, ts: '1752871354.25' })}\n` +
    `${row({ gpu: 6, metric: 'DCGM_FI_DEV_POWER_USAGE', value: '301.125' })}\n` +
    '"broken\n' +
    row({ gpu: 7 });

  it('gives the same result for every highWaterMark', async () => {
    const path = writeCsv(content);
    const reference = await readFrom(path);
    assert.deepEqual(
      reference.records.map((r) => r.line),
      [2, 3, 9, 10, 11, 13],
    );
    assert.deepEqual(
      reference.rejects.map((r) => r.line),
      [5, 12],
    );
    assert.equal(reference.sentinels, 1);
    assertEndsMatchLines(path, reference.records);
    for (const highWaterMark of [1, 2, 7, 13, 100, 1 << 20]) {
      const got = await readFrom(path, { highWaterMark });
      assert.deepEqual(got.records, reference.records, `hwm ${highWaterMark}`);
      assert.deepEqual(got.rejects, reference.rejects, `hwm ${highWaterMark}`);
      assert.equal(got.sentinels, reference.sentinels);
      assert.equal(got.chunks.at(-1)?.end, readFileSync(path).length);
      assert.equal(got.chunks.at(-1)?.line, 13);
    }
  });

  it('yields chunks whose end and line only move forward', async () => {
    const path = writeCsv(content);
    const { chunks } = await readFrom(path, { highWaterMark: 7 });
    assert.ok(chunks.length > 5, `${chunks.length} chunks`);
    for (let i = 1; i < chunks.length; i++) {
      const prev = chunks[i - 1];
      const cur = chunks[i];
      assert.ok(prev !== undefined && cur !== undefined);
      assert.ok(cur.end > prev.end);
      assert.ok(cur.line > prev.line);
    }
    const ends = lineEnds(path);
    for (const c of chunks) assert.equal(c.end, ends[c.line - 1], `chunk at line ${c.line}`);
  });

  it('resuming after record k yields exactly the remaining records', async () => {
    const path = writeCsv(content);
    const all = await readFrom(path);
    for (const [k, rec] of all.records.entries()) {
      for (const highWaterMark of [7, 1 << 16]) {
        const rest = await readFrom(path, {
          startOffset: rec.end,
          startLine: rec.line,
          highWaterMark,
        });
        assert.deepEqual(rest.records, all.records.slice(k + 1), `after record ${k}`);
        assert.deepEqual(
          rest.rejects,
          all.rejects.filter((r) => r.line > rec.line),
        );
      }
    }
  });

  it('resuming at the end of the file yields nothing', async () => {
    const path = writeCsv(`${HEADER}\n${row()}\n`);
    const size = readFileSync(path).length;
    const rest = await readFrom(path, { startOffset: size, startLine: 2 });
    assert.deepEqual(rest.records, []);
    assert.deepEqual(rest.rejects, []);
  });
});

describe('readDcgmCsv: the real export', () => {
  // The repository's copy of the real export (byte-identical to shared/data/ of the same name).
  const REAL = fileURLToPath(
    new URL('../../../samples/dcgm_metrics_20250718_134233.csv', import.meta.url),
  );

  /** labels_raw, parsed here without Nexus: `name="value"` pairs with backslash escapes. */
  function ownLabels(raw: string): Record<string, string> {
    const labels: Record<string, string> = {};
    const pair = /([A-Za-z_][A-Za-z0-9_.:-]*)="((?:[^"\\]|\\.)*)"(?:,|$)/gy;
    let m: RegExpExecArray | null;
    let consumed = 0;
    while ((m = pair.exec(raw)) !== null) {
      labels[m[1] ?? ''] = (m[2] ?? '').replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
      consumed = pair.lastIndex;
    }
    assert.equal(consumed, raw.length, `labels_raw fully consumed: ${raw}`);
    return labels;
  }

  it('matches an independent csv-parse reading field by field', async () => {
    const expected = parse<Record<string, string>>(readFileSync(REAL), {
      bom: true,
      columns: true,
      skip_empty_lines: true,
    });
    const { records, rejects, sentinels } = await readFrom(REAL);
    assert.deepEqual(rejects, []);
    assert.equal(sentinels, 0);
    assert.equal(expected.length, 2470);
    assert.equal(records.length, 2470);

    for (const [i, exp] of expected.entries()) {
      const got = records[i];
      assert.ok(got !== undefined);
      const r = got.record;
      const where = `record ${i} (line ${got.line})`;
      assert.equal(got.line, i + 2, where);
      assert.equal(r.timestamp, Date.parse(exp.timestamp ?? ''), where);
      assert.equal(r.metric, exp.metric_name, where);
      assert.equal(r.gpu, Number(exp.gpu_id), where);
      assert.equal(r.device, exp.device, where);
      assert.equal(r.uuid, exp.uuid, where);
      assert.equal(r.model, exp.modelName, where);
      assert.equal(r.hostname, exp.Hostname, where);
      for (const key of ['container', 'pod', 'namespace'] as const) {
        const value = exp[key] ?? '';
        if (value === '') assert.equal(key in r, false, `${where}: ${key} absent`);
        else assert.equal(r[key], value, where);
      }
      assert.equal(r.value, Number(exp.value), where);
      assert.deepEqual({ ...r.labels }, ownLabels(exp.labels_raw ?? ''), where);
    }
    assertEndsMatchLines(REAL, records);

    assert.equal(new Set(records.map((r) => r.record.hostname)).size, 31);
    assert.equal(new Set(records.map((r) => r.record.uuid)).size, 247);
    assert.equal(new Set(records.map((r) => r.record.metric)).size, 10);
  });
});
