/**
 * Prometheus remote_write 1.0: a snappy-compressed (block format) protobuf `prometheus.WriteRequest`.
 * Only what Nexus uses is declared (WriteRequest.timeseries, TimeSeries.labels and samples, Label,
 * Sample); exemplars, histograms and metadata are other field numbers, skipped by the decoder.
 * The decompressed length is read from snappy's header and checked against the limit before
 * anything is decompressed, so a small body cannot inflate into gigabytes.
 */
import protobuf from 'protobufjs';
import snappy from 'snappy';
import { NexusError } from '../../core/errors.js';

/** From prometheus/prompb types.proto and remote.proto (the field numbers are the wire format). */
const PROTO = `
syntax = "proto3";
package prometheus;
message WriteRequest { repeated TimeSeries timeseries = 1; }
message TimeSeries { repeated Label labels = 1; repeated Sample samples = 2; }
message Label { string name = 1; string value = 2; }
message Sample { double value = 1; int64 timestamp = 2; }
`;

const WriteRequestType = protobuf
  .parse(PROTO, { keepCase: true })
  .root.lookupType('prometheus.WriteRequest');

export interface RemoteSample {
  readonly value: number;
  /** Unix epoch milliseconds. */
  readonly timestamp: number;
  /** Prometheus's staleness marker (a series ended): not a reading, not bad input either. */
  readonly stale: boolean;
}

export interface RemoteSeries {
  readonly labels: Readonly<Record<string, string>>;
  readonly samples: readonly RemoteSample[];
}

/** Prometheus's staleness marker: the NaN with bits 0x7ff0000000000002 (value.StaleNaN). */
const STALE_HI = 0x7ff00000;
const STALE_LO = 0x00000002;
const f64 = new Float64Array(1);
const u32 = new Uint32Array(f64.buffer);
const LITTLE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export function isStaleNaN(v: number): boolean {
  if (!Number.isNaN(v)) return false;
  f64[0] = v;
  const [lo, hi] = LITTLE ? [u32[0], u32[1]] : [u32[1], u32[0]];
  return hi === STALE_HI && lo === STALE_LO;
}

/** A malformed body: Prometheus drops the request on the 400 this becomes. */
function bad(message: string): NexusError {
  return new NexusError('BAD_REQUEST', `remote_write: ${message}`);
}

/**
 * The uncompressed length that a snappy block's header declares (a little-endian base-128
 * varint of at most 5 bytes, below 2^32).
 */
export function snappyDeclaredLength(body: Uint8Array): number {
  let result = 0;
  for (let i = 0; i < 5; i++) {
    const b = body[i];
    if (b === undefined) throw bad('the body is not snappy-compressed (its header is cut short)');
    result += (b & 0x7f) * 2 ** (7 * i);
    if ((b & 0x80) === 0) {
      if (result >= 2 ** 32) break;
      return result;
    }
  }
  throw bad('the body is not snappy-compressed (its length header is invalid)');
}

function toMs(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'object' && v !== null && 'toNumber' in v) {
    const n = (v as { toNumber(): unknown }).toNumber();
    if (typeof n === 'number') return n;
  }
  return Number.NaN;
}

interface RawLabel {
  name?: string;
  value?: string;
}
interface RawSample {
  value?: number;
  timestamp?: unknown;
}
interface RawSeries {
  labels?: RawLabel[];
  samples?: RawSample[];
}

/**
 * The series of a remote_write body (snappy block format, protobuf WriteRequest). Throws a
 * BAD_REQUEST NexusError saying what is wrong: not snappy, declared larger than `maxBytes`,
 * not a WriteRequest.
 */
export function decodeWriteRequest(body: Uint8Array, maxBytes: number): RemoteSeries[] {
  if (body.length === 0) throw bad('the body is empty (a snappy-compressed WriteRequest)');
  const declared = snappyDeclaredLength(body);
  if (declared > maxBytes) {
    throw new NexusError(
      'LIMIT_EXCEEDED',
      `remote_write: the body decompresses to ${declared} bytes, over REMOTE_WRITE_MAX_BYTES (${maxBytes}): lower queue_config.max_samples_per_send`,
    );
  }
  let raw: Buffer;
  try {
    const out = snappy.uncompressSync(Buffer.from(body.buffer, body.byteOffset, body.length));
    raw = typeof out === 'string' ? Buffer.from(out) : out;
  } catch (err) {
    throw bad(
      `the body is not valid snappy block format (${err instanceof Error ? err.message : String(err)})`,
    );
  }
  if (raw.length !== declared) {
    throw bad(`the body decompresses to ${raw.length} bytes, its header said ${declared}`);
  }
  let message: { timeseries?: RawSeries[] };
  try {
    message = WriteRequestType.decode(raw) as unknown as { timeseries?: RawSeries[] };
  } catch (err) {
    throw bad(
      `the body is not a protobuf WriteRequest (${err instanceof Error ? err.message : String(err)})`,
    );
  }
  return (message.timeseries ?? []).map((ts) => {
    const labels: Record<string, string> = {};
    for (const l of ts.labels ?? []) labels[l.name ?? ''] = l.value ?? '';
    const samples = (ts.samples ?? []).map((s) => {
      const value = s.value ?? 0;
      return { value, timestamp: toMs(s.timestamp ?? 0), stale: isStaleNaN(value) };
    });
    return { labels, samples };
  });
}

/** A WriteRequest body as Prometheus sends it (for tests and tools). */
export function encodeWriteRequest(
  series: readonly {
    readonly labels: Readonly<Record<string, string>>;
    readonly samples: readonly { readonly value: number; readonly timestamp: number }[];
  }[],
): Buffer {
  const message = WriteRequestType.fromObject({
    timeseries: series.map((s) => ({
      labels: Object.entries(s.labels).map(([name, value]) => ({ name, value })),
      samples: s.samples.map((x) => ({ value: x.value, timestamp: x.timestamp })),
    })),
  });
  return snappy.compressSync(Buffer.from(WriteRequestType.encode(message).finish()));
}
