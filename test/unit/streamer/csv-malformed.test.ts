import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import {
  readDcgmCsv,
  readHeader,
  type ParsedRecord,
  type RejectedRow,
} from '../../../src/streamer/csv/reader.js';
import { writeMalformedCsv } from '../../fixtures/malformed.js';

const dir = mkdtempSync(join(tmpdir(), 'nexus-csv-malformed-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function readAll(
  path: string,
  highWaterMark?: number,
): Promise<{ records: ParsedRecord[]; rejects: RejectedRow[]; sentinels: number }> {
  const { header, end, line } = await readHeader(path);
  const records: ParsedRecord[] = [];
  const rejects: RejectedRow[] = [];
  let sentinels = 0;
  for await (const chunk of readDcgmCsv(header, {
    path,
    startOffset: end,
    startLine: line,
    ...(highWaterMark === undefined ? {} : { highWaterMark }),
  })) {
    records.push(...chunk.records);
    rejects.push(...chunk.rejects);
    sentinels += chunk.sentinels;
  }
  return { records, rejects, sentinels };
}

describe('malformed CSV fixture', () => {
  const path = join(dir, 'malformed.csv');
  const expected = writeMalformedCsv(path);
  const physicalLines = readFileSync(path, 'utf8').split('\n').slice(0, -1);

  it('holds at least ten bad rows and some valid ones', () => {
    assert.ok(expected.bad.length >= 10, `${expected.bad.length} bad rows`);
    assert.ok(expected.valid >= 5, `${expected.valid} valid rows`);
  });

  for (const highWaterMark of [undefined, 7]) {
    it(`gives every valid row as a record and every bad row as a reject (highWaterMark ${highWaterMark ?? 'default'})`, async () => {
      const { records, rejects, sentinels } = await readAll(path, highWaterMark);
      assert.equal(sentinels, 0);
      assert.equal(records.length, expected.valid);
      assert.deepEqual(
        rejects.map((r) => r.line),
        expected.bad.map((b) => b.line),
      );
      for (const [i, reject] of rejects.entries()) {
        const want = expected.bad[i];
        assert.ok(want !== undefined);
        assert.match(reject.reason, want.reason, `line ${reject.line}`);
        assert.equal(reject.raw, physicalLines[reject.line - 1], `raw of line ${reject.line}`);
      }
    });
  }

  it('puts every record on its own non-blank line, none on a bad line', async () => {
    const { records } = await readAll(path);
    const badLines = new Set(expected.bad.map((b) => b.line));
    const seen = new Set<number>();
    for (const r of records) {
      assert.equal(badLines.has(r.line), false, `record on bad line ${r.line}`);
      assert.equal(seen.has(r.line), false, `two records on line ${r.line}`);
      seen.add(r.line);
      const text = physicalLines[r.line - 1] ?? '';
      assert.ok(text.includes(r.record.hostname), `line ${r.line} holds ${r.record.hostname}`);
      assert.equal(r.record.metric, 'DCGM_FI_DEV_GPU_TEMP');
    }
    // Every non-blank line after the header is either a record or a reject.
    const nonBlank = physicalLines.filter((l) => l.trim() !== '').length - 1;
    assert.equal(records.length + expected.bad.length, nonBlank);
  });
});
