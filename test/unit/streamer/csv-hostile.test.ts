import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { silentLogger } from '../../../src/core/logger.js';
import { parseHeader, rowToRecord } from '../../../src/streamer/csv/dcgm-row.js';
import { splitCsvLine } from '../../../src/streamer/csv/line-parser.js';
import {
  readDcgmCsv,
  readHeader,
  type ParsedRecord,
  type RejectedRow,
} from '../../../src/streamer/csv/reader.js';
import { RejectsSink } from '../../../src/streamer/rejects.js';
import { DCGM_HEADER } from '../../fixtures/malformed.js';
import { csvFiles } from '../../helpers/csv-files.js';

const files = csvFiles('nexus-csv-hostile-');
const dir = files.dir;
const writeCsv = files.write;
const HEADER = DCGM_HEADER;

function row(
  spec: { host?: string; gpu?: number; value?: string; ts?: string; labels?: string } = {},
): string {
  const host = spec.host ?? 'mtv5-dgx1-hgpu-031';
  const gpu = spec.gpu ?? 0;
  return [
    spec.ts ?? '2025-07-18T20:42:34Z',
    'DCGM_FI_DEV_GPU_UTIL',
    String(gpu),
    `nvidia${gpu}`,
    `GPU-0000000${gpu}-86f3-7a43-b711-4771313afc50`,
    'NVIDIA H100 80GB HBM3',
    host,
    '',
    '',
    '',
    spec.value ?? '42',
    spec.labels ?? `Hostname=""${host}"",gpu=""${gpu}""`,
  ]
    .map((c) => `"${c}"`)
    .join(',');
}

const header = parseHeader(HEADER.split(','));

function parse(line: string): ReturnType<typeof rowToRecord> {
  const split = splitCsvLine(line);
  if (!split.ok) assert.fail(split.error);
  return rowToRecord(header, split.fields, Date.UTC(2025, 6, 19));
}

function reasonOf(line: string): string {
  const r = parse(line);
  if (r.kind !== 'reject') assert.fail(`expected a reject, got ${JSON.stringify(r)}`);
  return r.reason;
}

async function readFrom(
  path: string,
  highWaterMark?: number,
): Promise<{ records: ParsedRecord[]; rejects: RejectedRow[] }> {
  const { header: h, end, line } = await readHeader(path);
  const records: ParsedRecord[] = [];
  const rejects: RejectedRow[] = [];
  for await (const c of readDcgmCsv(h, {
    path,
    startOffset: end,
    startLine: line,
    ...(highWaterMark === undefined ? {} : { highWaterMark }),
  })) {
    records.push(...c.records);
    rejects.push(...c.rejects);
  }
  return { records, rejects };
}

describe('a CSV row against the bounds of a record', () => {
  it('refuses a 200,000-character hostname instead of carrying it to PostgreSQL and etcd keys', () => {
    assert.equal(
      reasonOf(row({ host: 'h'.repeat(200_000), labels: '' })),
      'Hostname longer than 253 characters (200000)',
    );
  });

  it('refuses NUL and other control characters in identifiers', () => {
    assert.equal(
      reasonOf(row({ host: 'gpu\u0000node', labels: '' })),
      'Hostname holds a control character (U+0000) at character 4',
    );
  });

  it('refuses thousands of labels without parsing them all', () => {
    const labels = Array.from({ length: 5000 }, (_, i) => `l${i}=""v""`).join(',');
    assert.equal(reasonOf(row({ labels })), 'labels_raw: more than 64 labels');
  });

  it('refuses a label value longer than 1024 characters', () => {
    assert.equal(
      reasonOf(row({ labels: `job=""${'v'.repeat(2000)}""` })),
      'labels_raw: label job longer than 1024 characters (2000)',
    );
  });

  it('says a number too large for a double is out of range, reads -0 as 0, refuses hex', () => {
    assert.equal(reasonOf(row({ value: '1e400' })), 'value out of range "1e400"');
    assert.equal(reasonOf(row({ value: '0x1A' })), 'non-numeric value "0x1A"');
    const r = parse(row({ value: '-0' }));
    assert.ok(r.kind === 'record' && Object.is(r.record.value, 0));
  });

  it('refuses timestamps before 2000 or more than a day ahead', () => {
    assert.match(reasonOf(row({ ts: '1999-12-31T23:59:59Z' })), /^timestamp out of range/);
    assert.match(reasonOf(row({ ts: '2999-01-01T00:00:00Z' })), /^timestamp out of range/);
    assert.match(reasonOf(row({ ts: '0000000001' })), /^timestamp out of range "1970/);
    assert.equal(parse(row({ ts: '2025-07-19T23:59:59Z' })).kind, 'record');
  });
});

describe('a CSV header', () => {
  it('naming a column twice is refused: which one holds the data is ambiguous', () => {
    assert.throws(
      () => parseHeader([...HEADER.split(','), 'Hostname']),
      /CSV header names column hostname twice \(columns 7 and 13\)/,
    );
  });

  it('in another order reads the same records', async () => {
    const names = HEADER.split(',');
    const order = names.map((_, i) => names.length - 1 - i);
    const reorder = (line: string): string => {
      const split = splitCsvLine(line);
      if (!split.ok) assert.fail(split.error);
      return order.map((i) => `"${(split.fields[i] ?? '').replace(/"/g, '""')}"`).join(',');
    };
    const straight = await readFrom(writeCsv(`${HEADER}\n${row()}\n${row({ gpu: 1 })}\n`));
    const reversed = await readFrom(
      writeCsv(
        `${order.map((i) => names[i]).join(',')}\n${reorder(row())}\n${reorder(row({ gpu: 1 }))}\n`,
      ),
    );
    assert.deepEqual(
      reversed.records.map((r) => r.record),
      straight.records.map((r) => r.record),
    );
    assert.equal(reversed.records.length, 2);
  });
});

describe('bytes that are not valid UTF-8', () => {
  const bad = Buffer.concat([
    Buffer.from(
      `"2025-07-18T20:42:34Z","DCGM_FI_DEV_GPU_UTIL","1","nvidia1","GPU-1","H100","host-`,
    ),
    Buffer.from([0xff, 0xfe]),
    Buffer.from(`x","","","","42",""`),
  ]);
  const file = Buffer.concat([
    Buffer.from(`${HEADER}\n${row()}\n`),
    bad,
    Buffer.from(`\n${row({ gpu: 2, labels: 'note=""\ufffd is a valid character""' })}\n`),
  ]);

  for (const highWaterMark of [7, 64, 1 << 16]) {
    it(`are a reject with the byte where they start, never rewritten (highWaterMark ${highWaterMark})`, async () => {
      const { records, rejects } = await readFrom(writeCsv(file), highWaterMark);
      assert.deepEqual(
        rejects.map((r) => [r.line, r.reason]),
        [[3, `invalid UTF-8 at byte ${bad.indexOf(0xff) + 1}`]],
      );
      // The real U+FFFD (EF BF BD) of line 4 is valid UTF-8 and kept.
      assert.deepEqual(
        records.map((r) => [r.line, r.record.labels.note ?? null]),
        [
          [2, null],
          [4, '\ufffd is a valid character'],
        ],
      );
      assert.ok(!records.some((r) => r.record.hostname.includes('\ufffd')));
    });
  }

  it('in the header is a header error naming the byte', async () => {
    const path = writeCsv(
      Buffer.concat([Buffer.from('timestamp,metric_name,gpu_id,Host'), Buffer.from([0xc3])]),
    );
    await assert.rejects(readHeader(path), {
      code: 'CSV_HEADER_INVALID',
      message: /line 1 \(the CSV header\) is not valid UTF-8 \(at byte 34\)/,
    });
  });
});

describe('files joined with cat', () => {
  it('a BOM and a repeated header in the middle are neither data nor rejects', async () => {
    const part = (value: string): string => `\ufeff${HEADER}\r\n${row({ value })}\r\n`;
    const { records, rejects } = await readFrom(writeCsv(part('42') + part('43')));
    assert.deepEqual(rejects, []);
    assert.deepEqual(
      records.map((r) => [r.line, r.record.value]),
      [
        [2, 42],
        [4, 43],
      ],
    );
  });
});

describe('lines of several megabytes with no newline', () => {
  it('as the header: refused once 1 MiB is read, whatever the file holds after it', async () => {
    const path = writeCsv(`timestamp,${'x'.repeat(5 * 1024 * 1024)}`);
    await assert.rejects(readHeader(path), {
      code: 'CSV_HEADER_INVALID',
      message: /header line longer than 1 MiB/,
    });
  });

  it('as the last data row: one reject, the rows before it kept', async () => {
    const path = writeCsv(
      `${HEADER}\n${row()}\n"2025-07-18T20:42:34Z",${'x'.repeat(5 * 1024 * 1024)}`,
    );
    const { records, rejects } = await readFrom(path);
    assert.equal(records.length, 1);
    assert.deepEqual(rejects, [{ line: 3, reason: 'line longer than 1048576 bytes', raw: '' }]);
  });
});

describe('a path that is not a readable file', () => {
  it('a directory gets one clear line, not EISDIR', async () => {
    const d = join(dir, 'a-directory.csv');
    mkdirSync(d);
    await assert.rejects(readHeader(d), {
      code: 'CSV_FILE_UNREADABLE',
      message: `cannot read CSV file ${d}: it is a directory, not a file`,
    });
  });

  it('a missing file says so', async () => {
    const p = join(dir, 'missing.csv');
    await assert.rejects(readHeader(p), {
      code: 'CSV_FILE_UNREADABLE',
      message: `cannot read CSV file ${p}: no such file`,
    });
  });
});

describe('the rejects file', () => {
  const rejected = (line: number): RejectedRow => ({
    line,
    reason: 'non-numeric value "x"',
    raw: `"2025-07-18T20:42:34Z","M","0","","","","h","","","","x","" ${'#'.repeat(100)}`,
  });

  it('stops growing at maxBytes, counts what it did not write and says so in its last row', async () => {
    const path = join(dir, 'capped.rejects.csv');
    const sink = new RejectsSink(path, silentLogger(), { maxBytes: 2000 });
    for (let i = 1; i <= 100; i++) sink.add(rejected(i), true);
    await sink.close();
    const text = readFileSync(path, 'utf8');
    const lines = text.trimEnd().split('\n');
    const written = lines.length - 2; // header and the closing note
    assert.equal(sink.total, 100);
    assert.equal(sink.unwritten, 100 - written);
    assert.ok(written > 5 && written < 100, `${written} rows written`);
    assert.ok(Buffer.byteLength(text) - Buffer.byteLength(`${lines.at(-1) ?? ''}\n`) <= 2000);
    assert.equal(
      lines.at(-1),
      `,${100 - written} more malformed rows were not written: the file reached REJECTS_MAX_BYTES (2000 bytes),`,
    );
  });

  it('a new run starts a new file; a resumed run continues the one there, within the same bound', async () => {
    const path = join(dir, 'runs.rejects.csv');
    for (let run = 0; run < 3; run++) {
      const sink = new RejectsSink(path, silentLogger(), { maxBytes: 1_000_000 });
      sink.add(rejected(10 + run), true);
      await sink.close();
    }
    assert.equal(readFileSync(path, 'utf8').trimEnd().split('\n').length, 2);
    const resumed = new RejectsSink(path, silentLogger(), { maxBytes: 1_000_000 });
    resumed.resume();
    resumed.add(rejected(20), true);
    await resumed.close();
    const lines = readFileSync(path, 'utf8').trimEnd().split('\n');
    assert.deepEqual(
      lines.map((l) => l.split(',')[0]),
      ['line', '12', '20'],
    );
  });

  it('that cannot be written (a directory): rows counted as not written, and why', async () => {
    const path = join(dir, 'rejects-is-a-dir');
    mkdirSync(path);
    const sink = new RejectsSink(path, silentLogger(), { maxBytes: 1_000_000 });
    for (let i = 1; i <= 3; i++) sink.add(rejected(i), true);
    // The error surfaces after a while, as in a long run; closing still ends.
    await new Promise((r) => setTimeout(r, 100));
    await sink.close();
    assert.equal(sink.total, 3);
    assert.equal(sink.unwritten, 3);
    assert.equal(sink.written, false);
    assert.match(sink.unwrittenReason ?? '', /^cannot write the rejects file: EISDIR/);
  });

  it('with maxBytes 0 nothing is written, everything is counted', async () => {
    const path = join(dir, 'none.rejects.csv');
    const sink = new RejectsSink(path, silentLogger(), { maxBytes: 0 });
    sink.add(rejected(1), true);
    await sink.close();
    assert.equal(sink.total, 1);
    assert.equal(sink.unwritten, 1);
    assert.equal(sink.written, false);
    assert.throws(() => readFileSync(path));
  });
});
