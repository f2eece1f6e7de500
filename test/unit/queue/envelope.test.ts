import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NexusError } from '../../../src/core/errors.js';
import { parseLabels } from '../../../src/core/labels.js';
import type { TelemetryRecord } from '../../../src/core/record.js';
import { COMPACT_VERSION } from '../../../src/queue/compact.js';
import { readDcgmCsv, readHeader } from '../../../src/streamer/csv/reader.js';
import { deflateSync } from 'node:zlib';
import { SAMPLE } from '../../helpers/sample.js';
import {
  ENVELOPE_VERSION,
  MAX_INFLATED_BYTES,
  decodeEnvelope,
  encodeEnvelope,
  encodeEnvelopeAgain,
  encodeEnvelopeVerbatim,
  encodeEnvelopeWithin,
  envelopeProblem,
  isCompressedBody,
  type Envelope,
} from '../../../src/queue/envelope.js';

function envelope(): Envelope {
  return {
    v: 1,
    id: 'stream-1.batch-000042',
    producer: 'streamer-a',
    cluster: 'local-cluster',
    createdAt: 1_752_871_354_500,
    attempt: 0,
    records: [
      {
        timestamp: 1_752_871_354_000,
        metric: 'DCGM_FI_DEV_GPU_UTIL',
        gpu: 0,
        hostname: 'mtv5-dgx1-hgpu-031',
        value: 100,
        device: 'nvidia0',
        uuid: 'GPU-5fd4f087-86f3-7a43-b711-4771313afc50',
        model: 'NVIDIA H100 80GB HBM3',
        labels: { DCGM_FI_DRIVER_VERSION: '535.129.03', gpu: '0' },
      },
      {
        timestamp: 1_752_871_354_000,
        metric: 'DCGM_FI_DEV_POWER_USAGE',
        gpu: 7,
        hostname: 'nœud_日本/😀',
        value: -0.125,
        container: 'main',
        pod: 'train-1',
        namespace: 'research',
        labels: {},
      },
    ],
  };
}

/** Decodes `body` and asserts the ENVELOPE_INVALID error it must raise. */
function assertInvalid(body: unknown, message: RegExp): void {
  const bytes = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
  assert.throws(
    () => decodeEnvelope(bytes),
    (err: unknown) => {
      assert.ok(err instanceof NexusError, String(err));
      assert.equal(err.code, 'ENVELOPE_INVALID');
      assert.equal(err.retryable, false);
      assert.match(err.message, message);
      return true;
    },
  );
}

/** The real sample's 2,470 readings, as the streamer reads them. */
async function sampleRecords(): Promise<TelemetryRecord[]> {
  const { header, end, line } = await readHeader(SAMPLE);
  const records: TelemetryRecord[] = [];
  for await (const chunk of readDcgmCsv(header, {
    path: SAMPLE,
    startOffset: end,
    startLine: line,
  }))
    for (const r of chunk.records) records.push(r.record);
  assert.equal(records.length, 2470);
  return records;
}

describe('encodeEnvelope / decodeEnvelope', () => {
  it('round-trips an envelope, from a Buffer or a string', () => {
    const e = envelope();
    const bytes = encodeEnvelope(e);
    assert.ok(Buffer.isBuffer(bytes));
    assert.deepEqual(decodeEnvelope(bytes), e);
    assert.deepEqual(decodeEnvelope(bytes.toString('utf8')), e);
  });

  it('round-trips the optional trace, source and lastError', () => {
    const e: Envelope = {
      ...envelope(),
      attempt: 3,
      trace: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
      source: { file: 'samples/x.csv', firstLine: 2, lastLine: 101 },
      lastError: 'store unavailable: connection refused',
    };
    assert.deepEqual(decodeEnvelope(encodeEnvelope(e)), e);
  });

  it('writes the compact form (v2), which reads back as the expanded form (v1) does, with awkward strings, numbers and shared labels', () => {
    const shared = Object.freeze({ Hostname: 'h"1', job: 'dcgm\\x', note: 'line\nbreak \u2028 é' });
    const base = envelope().records[0];
    assert.ok(base !== undefined);
    const records: Envelope['records'] = [
      { ...base, labels: shared, hostname: 'host "quoted" \\ back', value: -0 },
      { ...base, labels: shared, value: 1e21, pod: 'p', namespace: 'ns', container: 'c' },
      { ...base, labels: { a: 'unfrozen' }, value: 5e-324 },
      { ...base, labels: Object.freeze({}), value: 123.456, model: 'NVIDIA H100 80GB HBM3' },
    ];
    const e: Envelope = {
      ...envelope(),
      trace: { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
      records,
    };
    const compact = encodeEnvelope(e).toString('utf8');
    assert.equal((JSON.parse(compact) as { v: number }).v, COMPACT_VERSION);
    assert.deepEqual(decodeEnvelope(compact), decodeEnvelope(encodeEnvelopeVerbatim(e)));
    // Twice, now that the shared label sets' shapes are remembered.
    assert.equal(encodeEnvelope(e).toString('utf8'), compact);
  });

  it('keeps labels exact when a shared label set comes back with other fields, message after message', () => {
    const shared = Object.freeze({ Hostname: 'a', gpu: '0', __name__: 'M', job: 'j' });
    const base = envelope().records[0];
    assert.ok(base !== undefined);
    const one = (r: Partial<TelemetryRecord>): Envelope => ({
      ...envelope(),
      records: [{ ...base, hostname: 'a', gpu: 0, metric: 'M', labels: shared, ...r }],
    });
    // The same series twice (its shape is remembered), then the same label set with a field
    // that no longer implies its label, each in a message of its own.
    for (const r of [
      {},
      { value: 2 },
      { hostname: 'b' },
      { hostname: 'a' },
      { metric: 'N' },
      { gpu: 1 },
      { gpu: 0, metric: 'M', value: 3 },
    ]) {
      const e = one(r);
      const decoded = decodeEnvelope(encodeEnvelope(e));
      assert.deepEqual(decoded.records[0]?.labels, { ...shared }, JSON.stringify(r));
      assert.deepEqual(decoded, decodeEnvelope(encodeEnvelopeVerbatim(e)), JSON.stringify(r));
    }
  });

  it('keeps labels exact when one record after another has a label set like the last but for one value or what a field implies', () => {
    const base = envelope().records[0];
    assert.ok(base !== undefined);
    // Fresh (unfrozen) label sets, one per record, as the reader makes them when it does not
    // share them (a fleet larger than its cache): each is compared with the last one written.
    const at = (
      hostname: string,
      gpu: number,
      labels: Record<string, string>,
    ): TelemetryRecord => ({
      ...base,
      hostname,
      gpu,
      metric: 'M',
      labels: { Hostname: hostname, gpu: String(gpu), __name__: 'M', ...labels },
    });
    const records = [
      at('a', 0, { instance: 'a:9400', job: 'j' }),
      at('a', 1, { instance: 'a:9400', job: 'j' }),
      at('b', 0, { instance: 'b:9400', job: 'j' }),
      at('b', 1, { instance: 'b:9400', job: 'k' }),
      at('b', 2, { job: 'k', instance: 'b:9400' }),
      { ...at('b', 3, { instance: 'b:9400', job: 'k' }), hostname: 'c' },
      at('c', 0, { instance: 'b:9400', job: 'k' }),
      at('c', 1, { instance: 'b:9400', job: 'k', extra: '' }),
      at('c', 2, { instance: 'b:9400', job: 'k' }),
    ];
    const e: Envelope = { ...envelope(), records };
    const compact = JSON.parse(encodeEnvelope(e).toString('utf8')) as { labelSets: unknown[] };
    const decoded = decodeEnvelope(encodeEnvelope(e));
    for (let i = 0; i < records.length; i++) {
      assert.deepEqual(decoded.records[i]?.labels, records[i]?.labels, `record ${i}`);
      assert.deepEqual(
        Object.keys(decoded.records[i]?.labels ?? {}),
        Object.keys(records[i]?.labels ?? {}),
      );
    }
    // a's, b's with job j, with job k (c's too: its Hostname is implied), b's in another order,
    // the record whose Hostname is not its host's, and the one with an extra label.
    assert.equal(compact.labelSets.length, 6);
  });

  it('carries the real sample exactly (labels in order) in a fraction of the bytes', async () => {
    const e: Envelope = { ...envelope(), records: await sampleRecords() };
    const { records } = e;
    const compact = encodeEnvelope(e);
    const decoded = decodeEnvelope(compact);
    // The reader's label maps have no prototype; JSON's do: compare with the expanded form's.
    assert.deepEqual(decoded, decodeEnvelope(encodeEnvelopeVerbatim(e)));
    for (let i = 0; i < records.length; i++) {
      assert.deepEqual(
        Object.keys(decoded.records[i]?.labels ?? {}),
        Object.keys(records[i]?.labels ?? {}),
      );
    }
    const expanded = Buffer.byteLength(JSON.stringify(e));
    assert.ok(
      compact.length * 4 < expanded,
      `${compact.length} bytes compact, ${expanded} expanded`,
    );
  });

  it('keeps a label that differs from its field, and one whose field is absent, as a value', () => {
    const base = envelope().records[0];
    assert.ok(base !== undefined);
    const odd: Envelope['records'] = [
      {
        ...base,
        labels: { Hostname: 'other-host', gpu: '00', pod: 'no-pod-field', UUID: base.uuid ?? '' },
      },
      { ...base, metric: 'DCGM_FI_DEV_FB_USED', labels: { __name__: 'DCGM_FI_DEV_GPU_UTIL' } },
      { ...base, metric: 'DCGM_FI_DEV_FB_USED', labels: { __name__: 'DCGM_FI_DEV_FB_USED' } },
    ];
    const e: Envelope = { ...envelope(), records: odd };
    assert.deepEqual(decodeEnvelope(encodeEnvelope(e)), e);
  });

  it('publishes again in the compact form, or the expanded one when a record has a field the model lacks', () => {
    const e = envelope();
    const again = JSON.parse(encodeEnvelopeVerbatim(e).toString('utf8')) as { v: number };
    assert.equal(again.v, COMPACT_VERSION);
    const first = e.records[0];
    assert.ok(first !== undefined);
    const record: TelemetryRecord & { firmware: string } = { ...first, firmware: '96.00.5E.00.01' };
    const foreign: Envelope & { note: string } = {
      ...e,
      note: 'header fields survive either way',
      records: [record],
    };
    const body = encodeEnvelopeVerbatim(foreign).toString('utf8');
    assert.equal((JSON.parse(body) as { v: number }).v, 1);
    assert.deepEqual(decodeEnvelope(body), foreign);
    const noted: Envelope & { note: string } = { ...e, note: 'kept' };
    const compact: Envelope & { note?: unknown } = decodeEnvelope(encodeEnvelopeVerbatim(noted));
    assert.equal(compact.note, 'kept');
  });

  it('carries a label named __proto__ as a plain label', () => {
    const parsed = parseLabels('__proto__="x",a="b"');
    assert.ok(parsed.ok);
    const e = envelope();
    const first = e.records[0];
    assert.ok(first !== undefined);
    const withLabels: Envelope = { ...e, records: [{ ...first, labels: parsed.labels }] };
    const labels = decodeEnvelope(encodeEnvelope(withLabels)).records[0]?.labels;
    assert.ok(labels !== undefined);
    assert.ok(Object.hasOwn(labels, '__proto__'));
    assert.equal(labels.__proto__, 'x');
    assert.equal(labels.a, 'b');
  });

  it('is at version 1 in memory and in its expanded form, version 2 in its compact form', () => {
    assert.equal(ENVELOPE_VERSION, 1);
    assert.equal(COMPACT_VERSION, 2);
    assert.equal(envelopeProblem(envelope()), undefined);
  });
});

describe('compressed message bodies (QUEUE_COMPRESSION)', () => {
  const LIMIT = 1_400_000;

  it('writes a batch as a zlib stream a fraction of its JSON, which reads back exactly', async () => {
    const records = await sampleRecords();
    for (const size of [100, 500, 2470]) {
      const e: Envelope = { ...envelope(), records: records.slice(0, size) };
      const json = encodeEnvelope(e);
      const body = encodeEnvelopeWithin(e, LIMIT, 'zlib');
      assert.ok(isCompressedBody(body));
      assert.equal(body[0], 0x78);
      assert.ok(body.length * 3 < json.length, `${size}: ${body.length} against ${json.length}`);
      assert.deepEqual(decodeEnvelope(body), decodeEnvelope(json));
      // Published again (a retry, a replay): compressed too, and the same envelope.
      const again = encodeEnvelopeVerbatim(decodeEnvelope(body), 'zlib');
      assert.ok(isCompressedBody(again));
      assert.deepEqual(decodeEnvelope(again), decodeEnvelope(json));
    }
  });

  it('writes JSON as it is with none, and for a body too small to gain', () => {
    const e = envelope();
    const json = encodeEnvelope(e);
    assert.ok(json.length < 1024);
    assert.deepEqual(encodeEnvelopeWithin(e, LIMIT, 'zlib'), json);
    assert.deepEqual(encodeEnvelopeVerbatim(e, 'zlib'), json);
    const big: Envelope = { ...e, records: Array.from({ length: 50 }, () => e.records).flat() };
    assert.deepEqual(encodeEnvelopeWithin(big, LIMIT, 'none'), encodeEnvelope(big));
    assert.equal(encodeEnvelopeWithin(big, LIMIT, 'none')[0], '{'.charCodeAt(0));
    assert.ok(!isCompressedBody(encodeEnvelopeWithin(big, LIMIT, 'none')));
  });

  it('keeps fields outside the record model in a compressed expanded form', () => {
    const e = envelope();
    const foreign = {
      ...e,
      records: Array.from({ length: 20 }, () => ({ ...e.records[0], note: 'kept' })),
    } as unknown as Envelope;
    const body = encodeEnvelopeVerbatim(foreign, 'zlib');
    assert.ok(isCompressedBody(body));
    const back = decodeEnvelope(body) as Envelope & { records: { note?: unknown }[] };
    assert.equal(back.v, 1);
    assert.equal(back.records[19]?.note, 'kept');
  });

  it('writes a message again compressed when its JSON is over the limit, whatever the setting', async () => {
    const e: Envelope = { ...envelope(), records: await sampleRecords() };
    const json = encodeEnvelope(e);
    assert.deepEqual(encodeEnvelopeAgain(e, 'none', json.length), json);
    const again = encodeEnvelopeAgain(e, 'none', json.length - 1);
    assert.ok(isCompressedBody(again));
    assert.deepEqual(decodeEnvelope(again), decodeEnvelope(json));
    assert.ok(isCompressedBody(encodeEnvelopeAgain(e, 'zlib', LIMIT)));
  });

  it('applies the size limit to the body as written', async () => {
    const records = await sampleRecords();
    const e: Envelope = { ...envelope(), records };
    const json = encodeEnvelope(e).length;
    const zipped = encodeEnvelopeWithin(e, LIMIT, 'zlib').length;
    // Between the two: refused as JSON, taken compressed.
    const limit = Math.floor((json + zipped) / 2);
    assert.throws(() => encodeEnvelopeWithin(e, limit, 'none'), {
      code: 'QUEUE_MESSAGE_TOO_LARGE',
    });
    assert.equal(encodeEnvelopeWithin(e, limit, 'zlib').length, zipped);
    assert.throws(() => encodeEnvelopeWithin(e, zipped - 1, 'zlib'), {
      code: 'QUEUE_MESSAGE_TOO_LARGE',
      message: new RegExp(`message of ${zipped} bytes exceeds the ${zipped - 1}-byte limit`),
    });
  });

  it('refuses a stream that does not inflate, inflates to what is not an envelope, or inflates too far', () => {
    const body = encodeEnvelopeWithin(
      { ...envelope(), records: Array.from({ length: 40 }, () => envelope().records).flat() },
      LIMIT,
      'zlib',
    );
    assert.ok(isCompressedBody(body));
    assertInvalid(body.subarray(0, body.length - 10), /^compressed message does not inflate: /);
    const flipped = Buffer.from(body);
    flipped[flipped.length - 1] = (flipped[flipped.length - 1] ?? 0) ^ 0xff; // the Adler-32
    assertInvalid(flipped, /^compressed message does not inflate: /);
    assertInvalid(Buffer.from([0x78]), /^compressed message does not inflate/);
    assertInvalid(deflateSync('{"v":1,'), /^message is not JSON: /);
    assertInvalid(deflateSync('{"v":9}'), /^message is not a valid envelope \(v=9\)/);
    // A body that would inflate past the bound (a zlib bomb: 65 MiB of spaces in about 65 KB)
    // is refused without inflating it whole.
    const bomb = deflateSync(Buffer.alloc(MAX_INFLATED_BYTES + 1024 * 1024, 0x20), { level: 9 });
    assert.ok(bomb.length < 200_000, String(bomb.length));
    assertInvalid(
      bomb,
      new RegExp(`^compressed message inflates past ${MAX_INFLATED_BYTES} bytes`),
    );
  });
});

describe('decodeEnvelope rejects', () => {
  const e = envelope();
  const first = e.records[0];
  assert.ok(first !== undefined);
  const { hostname: _dropped, ...noHostname } = first;

  it('non-JSON', () => {
    assertInvalid('{"v":1,', /^message is not JSON: /);
    assertInvalid('', /^message is not JSON/);
    assertInvalid('\u0000\u0001', /^message is not JSON/);
  });

  it('JSON that is not an object', () => {
    for (const body of ['null', '[]', '5', '"x"'])
      assertInvalid(body, /not a valid envelope at \/: /);
  });

  it('another version, saying which', () => {
    assertInvalid({ ...e, v: 3 }, /\(v=3\) at \/v/);
    assertInvalid({ ...e, v: '1' }, /\(v=1\) at \/v/);
  });

  it('missing records', () => {
    const { records: _records, ...rest } = e;
    assertInvalid(rest, /at \/records: Expected required property/);
  });

  it('an empty records array', () => {
    assertInvalid({ ...e, records: [] }, /at \/records: .*length/);
  });

  it('a record missing its hostname, with its index', () => {
    assertInvalid({ ...e, records: [first, noHostname] }, /at \/records\/1\/hostname: /);
    assertInvalid({ ...e, records: [{ ...first, hostname: '' }] }, /at \/records\/0\/hostname/);
  });

  it('bad record fields', () => {
    assertInvalid({ ...e, records: [{ ...first, gpu: -1 }] }, /at \/records\/0\/gpu/);
    assertInvalid({ ...e, records: [{ ...first, gpu: 1.5 }] }, /at \/records\/0\/gpu/);
    assertInvalid(
      { ...e, records: [{ ...first, timestamp: 'now' }] },
      /at \/records\/0\/timestamp/,
    );
    assertInvalid({ ...e, records: [{ ...first, value: '1' }] }, /at \/records\/0\/value/);
    assertInvalid({ ...e, records: [{ ...first, metric: '' }] }, /at \/records\/0\/metric/);
    assertInvalid(
      { ...e, records: [{ ...first, labels: { a: 1 } }] },
      /at \/records\/0\/labels\/a/,
    );
    assertInvalid(
      `{"v":1,"id":"a","producer":"p","cluster":"c","createdAt":0,"attempt":0,"records":[{"timestamp":0,"metric":"m","gpu":0,"hostname":"h","value":1e999,"labels":{}}]}`,
      /at \/records\/0\/value/,
    );
  });

  it('a compact envelope with an index out of range or a label nothing implies', () => {
    const c = JSON.parse(encodeEnvelope(e).toString('utf8')) as {
      records: number[][];
      series: { labelSet: number }[];
      labelSets: { keys: string[]; values: Record<string, string> }[];
    };
    const tweak = (f: (x: typeof c) => void): typeof c => {
      const x = structuredClone(c);
      f(x);
      return x;
    };
    assertInvalid(
      tweak((x) => (x.records[1] = [9, 0, 0, 1])),
      /\(v=2\) at \/records\/1\/0: series 9 out of range \(2 series\)/,
    );
    assertInvalid(
      tweak((x) => (x.records[0] = [0, 5, 0, 1])),
      /\(v=2\) at \/records\/0\/1: metric 5 out of range/,
    );
    assertInvalid(
      tweak((x) => x.labelSets[1]?.keys.push('device')),
      /\(v=2\) at \/series\/1: label "device" of label set 1 has no value and no field implies it/,
    );
    assertInvalid(
      tweak((x) => x.labelSets[0]?.keys.push('job')),
      /label "job" of label set 0 has no value/,
    );
    assertInvalid(
      tweak((x) => {
        if (x.series[0] !== undefined) x.series[0].labelSet = 7;
      }),
      /\(v=2\) at \/series\/0\/labelSet: label set 7 out of range \(2 label sets\)/,
    );
    assertInvalid(
      tweak((x) => (x.records[0] = [0, 0, 0])),
      /\(v=2\) at \/records\/0/,
    );
  });

  it('ids with characters a message name cannot hold', () => {
    for (const id of ['a_b', 'a/b', 'a b', '', 'x'.repeat(65), 'ü']) {
      assertInvalid({ ...e, id }, /at \/id: /);
    }
  });

  it('missing or empty producer and cluster, and a negative attempt', () => {
    assertInvalid({ ...e, producer: '' }, /at \/producer/);
    const { cluster: _cluster, ...noCluster } = e;
    assertInvalid(noCluster, /at \/cluster/);
    assertInvalid({ ...e, attempt: -1 }, /at \/attempt/);
  });
});
