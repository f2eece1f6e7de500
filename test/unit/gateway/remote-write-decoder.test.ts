import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import snappy from 'snappy';
import { NexusError } from '../../../src/core/errors.js';
import {
  decodeWriteRequest,
  encodeWriteRequest,
  isStaleNaN,
  snappyDeclaredLength,
} from '../../../src/gateway/remote-write/decoder.js';

const T0 = 1_752_845_000_000;

/** Prometheus's staleness marker, from its bits. */
function staleNaN(): number {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(0x7ff0000000000002n);
  return b.readDoubleLE(0);
}

function refusal(fn: () => unknown): NexusError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof NexusError, `a NexusError, not ${String(err)}`);
    return err;
  }
  assert.fail('no error');
}

describe('remote_write decoder', () => {
  it('decodes labels and several samples per series, timestamps in ms', () => {
    const body = encodeWriteRequest([
      {
        labels: { __name__: 'DCGM_FI_DEV_GPU_TEMP', gpu: '0', Hostname: 'node-1', UUID: 'GPU-a' },
        samples: [
          { value: 41, timestamp: T0 },
          { value: 42.5, timestamp: T0 + 1000 },
          { value: 43, timestamp: T0 + 2000 },
        ],
      },
      { labels: { __name__: 'up', job: 'dcgm' }, samples: [{ value: 1, timestamp: T0 }] },
    ]);
    const series = decodeWriteRequest(body, 1 << 20);
    assert.deepEqual(series, [
      {
        labels: { __name__: 'DCGM_FI_DEV_GPU_TEMP', gpu: '0', Hostname: 'node-1', UUID: 'GPU-a' },
        samples: [
          { value: 41, timestamp: T0, stale: false },
          { value: 42.5, timestamp: T0 + 1000, stale: false },
          { value: 43, timestamp: T0 + 2000, stale: false },
        ],
      },
      {
        labels: { __name__: 'up', job: 'dcgm' },
        samples: [{ value: 1, timestamp: T0, stale: false }],
      },
    ]);
  });

  it('marks the staleness NaN as stale, and only it', () => {
    assert.equal(isStaleNaN(staleNaN()), true);
    assert.equal(isStaleNaN(Number.NaN), false);
    assert.equal(isStaleNaN(0), false);
    const body = encodeWriteRequest([
      {
        labels: { __name__: 'DCGM_FI_DEV_GPU_TEMP', gpu: '0', Hostname: 'h' },
        samples: [
          { value: staleNaN(), timestamp: T0 },
          { value: Number.NaN, timestamp: T0 + 1 },
        ],
      },
    ]);
    const [s] = decodeWriteRequest(body, 1 << 20);
    assert.ok(s !== undefined);
    assert.deepEqual(
      s.samples.map((x) => x.stale),
      [true, false],
    );
    assert.ok(Number.isNaN(s.samples[1]?.value ?? 0));
  });

  it('refuses a body that is not snappy, saying so', () => {
    const e = refusal(() => decodeWriteRequest(Buffer.from([0x10, 0xff, 0xff, 0xff]), 1 << 20));
    assert.equal(e.code, 'BAD_REQUEST');
    assert.match(e.message, /not valid snappy block format/);
    assert.equal(refusal(() => decodeWriteRequest(Buffer.alloc(0), 1 << 20)).code, 'BAD_REQUEST');
    const cut = refusal(() => decodeWriteRequest(Buffer.from([0x80, 0x80]), 1 << 20));
    assert.match(cut.message, /header is cut short/);
  });

  it('refuses snappy that is not a WriteRequest', () => {
    const e = refusal(() =>
      decodeWriteRequest(snappy.compressSync(Buffer.from([0x0a, 0x05, 0x01])), 1 << 20),
    );
    assert.equal(e.code, 'BAD_REQUEST');
    assert.match(e.message, /not a protobuf WriteRequest/);
  });

  it('refuses a declared length over the limit before decompressing anything', () => {
    // A header declaring 4 GiB - 1 bytes and no data: decompressing would fail, so the limit's
    // message proves the length was checked first.
    const header = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert.equal(snappyDeclaredLength(header), 2 ** 32 - 1);
    const e = refusal(() => decodeWriteRequest(header, 1 << 20));
    assert.equal(e.code, 'LIMIT_EXCEEDED');
    assert.match(
      e.message,
      /decompresses to 4294967295 bytes, over REMOTE_WRITE_MAX_BYTES \(1048576\)/,
    );
    // A real body one byte over.
    const body = encodeWriteRequest([
      { labels: { __name__: 'DCGM_FI_DEV_GPU_TEMP' }, samples: [{ value: 1, timestamp: T0 }] },
    ]);
    const size = snappyDeclaredLength(body);
    assert.equal(decodeWriteRequest(body, size).length, 1);
    assert.equal(refusal(() => decodeWriteRequest(body, size - 1)).code, 'LIMIT_EXCEEDED');
  });
});
