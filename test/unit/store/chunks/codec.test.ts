import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isNexusError } from '../../../../src/core/errors.js';
import { loadWords } from '../../../../src/store/chunks/bits.js';
import {
  chunkCount,
  chunkInfo,
  decodeChunk,
  decodeChunkInto,
  decodeRollup,
  encodeChunk,
  encodeRollup,
  MAX_CHUNK_READINGS,
  rollupOf,
  type EncodeOptions,
  type MinuteRollup,
  type ValueEncoding,
} from '../../../../src/store/chunks/codec.js';

/** mulberry32: uniform in [0, 1), reproducible. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A finite float64 from random bits (any sign, exponent and mantissa). */
function randomFloat(rand: () => number): number {
  const b = new Uint32Array(2);
  const f = new Float64Array(b.buffer);
  for (;;) {
    b[0] = Math.floor(rand() * 4294967296);
    b[1] = Math.floor(rand() * 4294967296);
    const v = f[0] ?? 0;
    if (Number.isFinite(v)) return v;
  }
}

const MODES: readonly NonNullable<EncodeOptions['values']>[] = [
  'auto',
  'smallest',
  'xor',
  'decimal',
];

/** Encodes in every mode, decodes, and checks every reading bit for bit. */
function roundTrip(times: ArrayLike<number>, values: ArrayLike<number>): Uint8Array {
  let auto: Uint8Array | undefined;
  for (const mode of MODES) {
    const chunk = encodeChunk(times, values, { values: mode });
    auto ??= chunk;
    const d = decodeChunk(chunk);
    assert.equal(chunkCount(chunk), times.length);
    assert.equal(d.times.length, times.length);
    for (let i = 0; i < times.length; i++) {
      if (!Object.is(d.times[i], times[i]) || !Object.is(d.values[i], values[i])) {
        assert.fail(
          `${mode}: reading ${i} decodes to (${d.times[i]}, ${d.values[i]}), was (${times[i]}, ${values[i]})`,
        );
      }
    }
  }
  assert.ok(auto !== undefined);
  return auto;
}

function encodingOf(chunk: Uint8Array): ValueEncoding | undefined {
  return chunkInfo(chunk).encoding;
}

const regular = (n: number, start = 1_752_796_800_000, step = 10_000): number[] =>
  Array.from({ length: n }, (_, i) => start + i * step);

function rejects(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isNexusError(e, 'STORE_REJECTED'), `expected STORE_REJECTED, got ${String(e)}`);
    assert.match(e.message, message);
    return true;
  });
}

describe('chunk codec: round trips', () => {
  it('0, 1 and 2 readings', () => {
    const empty = roundTrip([], []);
    assert.equal(chunkCount(empty), 0);
    assert.equal(encodingOf(empty), undefined);
    assert.equal(encodingOf(roundTrip([1_752_796_800_123], [42.5])), 'constant');
    roundTrip([0], [-0]);
    roundTrip([-5], [Number.MAX_VALUE]);
    roundTrip([10, 20], [1, 2]);
    roundTrip([-20, -10], [-0, 0]);
  });

  it('large gaps, negative times and times near 2^53', () => {
    roundTrip([0, 1, 2 ** 40, 2 ** 40 + 10, 2 ** 52, 2 ** 53 - 1], [1, 2, 3, 4, 5, 6]);
    roundTrip([-1e15, -5, 0, 3, 1e12], [0, 0, 0, 0, 0]);
    // Differences of 2^54 - 1 and 2^54 - 3 are not float64s: the escape carries the time itself.
    roundTrip([-(2 ** 53 - 1), 2 ** 53 - 2], [1, 1.5]);
    roundTrip([-(2 ** 53 - 1), -(2 ** 53 - 2), 2 ** 53 - 2, 2 ** 53 - 1], [7, 8, 9, 10]);
    roundTrip([2 ** 53 - 4, 2 ** 53 - 3, 2 ** 53 - 2, 2 ** 53 - 1], [0.1, 0.2, 0.3, 0.4]);
    // 2^53 + 1 - (2^53 - 3) rounds to a small, safe delta-of-delta that would decode wrong.
    roundTrip([-(2 ** 53 - 1), -2, 2 ** 53 - 1], [1, 2, 3]);
  });

  it('irregular timestamps and regular ones with jitter', () => {
    const rand = prng(11);
    const irregular: number[] = [1_700_000_000_000];
    for (let i = 1; i < 3000; i++) {
      const gap = rand() < 0.1 ? Math.floor(rand() * 1e9) : 1 + Math.floor(rand() * 20_000);
      irregular.push((irregular[i - 1] ?? 0) + gap);
    }
    roundTrip(
      irregular,
      irregular.map((_, i) => i % 7),
    );
    const jittered = regular(720).map((t) => t + Math.floor(rand() * 11) - 5);
    const chunk = roundTrip(jittered, new Array<number>(720).fill(0));
    // +-5 ms of jitter costs under 6 bits a reading; an exact step 1 bit.
    assert.ok(
      chunkInfo(chunk).timestampBytes <= (720 * 6) / 8,
      `${chunkInfo(chunk).timestampBytes}`,
    );
    const exact = roundTrip(regular(720), new Array<number>(720).fill(0));
    assert.equal(chunkInfo(exact).timestampBytes, Math.ceil(719 / 8));
  });

  it('identical values: a constant costs a few bytes whatever the count', () => {
    for (const v of [0, -0, 345, 1980.5, 0.1 + 0.2, 5e-324, -Number.MAX_VALUE]) {
      const chunk = roundTrip(regular(10_000), new Array<number>(10_000).fill(v));
      assert.equal(encodingOf(chunk), 'constant');
      assert.ok(chunkInfo(chunk).valueBytes <= 10, `${v}: ${chunkInfo(chunk).valueBytes} bytes`);
    }
  });

  it('long constant runs inside a varying series cost about a bit a reading', () => {
    const n = 7200;
    const values = Array.from({ length: n }, (_, i) =>
      Math.floor(i / 1000) % 2 === 0 ? 345 : 1980,
    );
    const chunk = roundTrip(regular(n), values);
    assert.equal(encodingOf(chunk), 'decimal');
    assert.ok(chunkInfo(chunk).valueBytes <= n / 8 + 32, `${chunkInfo(chunk).valueBytes} bytes`);
  });

  it('-0, subnormals, extreme floats and inexact decimals', () => {
    const t = regular(12);
    const special = [
      -0,
      0,
      5e-324,
      -5e-324,
      2.2250738585072014e-308,
      Number.MAX_VALUE,
      -Number.MAX_VALUE,
      Number.MIN_VALUE,
      0.1 + 0.2,
      1 / 3,
      2 ** 53,
      -(2 ** 60),
    ];
    assert.equal(encodingOf(roundTrip(t, special)), 'xor');
    // -0 among decimals: the decimal form would give +0, so the chunk is XOR.
    assert.equal(encodingOf(roundTrip(t.slice(0, 3), [1.5, -0, 2])), 'xor');
    assert.equal(encodingOf(roundTrip(t.slice(0, 3), [1.5, 0, 2])), 'decimal');
    roundTrip(t.slice(0, 4), [0.1, 0.2, 0.1 + 0.2, 0.3]);
    roundTrip(t.slice(0, 3), [1e-22, 1e22, 123456789.123]);
  });

  it('series that switch between integers and decimals', () => {
    const n = 2000;
    const values = Array.from({ length: n }, (_, i) =>
      Math.floor(i / 100) % 2 === 0
        ? 60 + (i % 40)
        : Math.round((150 + Math.sin(i) * 90) * 1000) / 1000,
    );
    const chunk = roundTrip(regular(n), values);
    assert.equal(encodingOf(chunk), 'decimal');
    // 3 decimals in a power-like range: well under a float64 a reading.
    assert.ok(chunk.length < n * 3, `${chunk.length} bytes`);
  });

  it('random float64 bit patterns', () => {
    const rand = prng(5);
    const values = Array.from({ length: 1000 }, () => randomFloat(rand));
    assert.equal(encodingOf(roundTrip(regular(1000), values)), 'xor');
  });

  it('a seeded property test over many chunks', () => {
    const rand = prng(2025);
    const gens: ((i: number) => number)[] = [
      () => randomFloat(rand),
      () => Math.floor(rand() * 100),
      () => Math.round(rand() * 700_000) / 1000,
      () => (rand() < 0.95 ? 1980 : 345),
      (i) => Math.round(Math.sin(i / 50) * 1e6) / 100,
      () => (rand() < 0.5 ? -0 : 0),
      () => (rand() - 0.5) * 10 ** Math.floor(rand() * 40 - 20),
      (i) => i * 0.1,
    ];
    for (let c = 0; c < 400; c++) {
      const n = 1 + Math.floor(rand() ** 2 * 3000);
      const times: number[] = [];
      let t = Math.floor((rand() - 0.5) * 2 ** 52);
      const style = Math.floor(rand() * 3);
      for (let i = 0; i < n; i++) {
        times.push(t);
        t +=
          style === 0
            ? 10_000
            : style === 1
              ? 10_000 + Math.floor(rand() * 11) - 5
              : 1 + Math.floor(rand() ** 4 * 1e8);
      }
      const g1 = gens[Math.floor(rand() * gens.length)] ?? gens[0];
      const g2 = gens[Math.floor(rand() * gens.length)] ?? gens[0];
      const switchAt = Math.floor(rand() * n);
      const values = times.map((_, i) => ((i < switchAt ? g1 : g2) ?? (() => 0))(i));
      roundTrip(times, values);
    }
  });
});

describe('chunk codec: bad input', () => {
  it('refuses readings it cannot store, naming the problem', () => {
    rejects(() => encodeChunk([1, 1], [0, 0]), /not strictly ascending at index 1/);
    rejects(() => encodeChunk([2, 1], [0, 0]), /not strictly ascending/);
    rejects(() => encodeChunk([1.5], [0]), /timestamp 1.5 at index 0/);
    rejects(() => encodeChunk([0, 2 ** 53], [0, 0]), /at index 1 is not an integer/);
    rejects(() => encodeChunk([1, 2], [0, NaN]), /value NaN at index 1 is not finite/);
    rejects(() => encodeChunk([1], [Infinity]), /not finite/);
    rejects(() => encodeChunk([1, 2], [0]), /2 timestamps but 1 values/);
    const many = new Float64Array(MAX_CHUNK_READINGS + 1).map((_, i) => i);
    rejects(() => encodeChunk(many, many), /8388609 readings, at most 8388608 in one chunk/);
  });

  const sample = (): Uint8Array => {
    const rand = prng(9);
    const times = regular(300).map((t) => t + Math.floor(rand() * 11) - 5);
    return encodeChunk(
      times,
      times.map((_, i) => (i < 150 ? Math.round(rand() * 1e5) / 1000 : rand())),
    );
  };

  it('every truncation is reported, never decoded', () => {
    const chunk = sample();
    for (let len = 0; len < chunk.length; len++) {
      rejects(() => decodeChunk(chunk.subarray(0, len)), /corrupt chunk/);
    }
  });

  it('every damaged byte is reported, never decoded', () => {
    const chunks = [
      sample(),
      encodeChunk([1, 2, 3], [1, 1, 1]),
      encodeChunk(
        regular(50),
        regular(50).map((_, i) => i),
      ),
    ];
    for (const chunk of chunks) {
      for (let i = 0; i < chunk.length; i++) {
        for (const flip of [1, 0x80, 0xff]) {
          const bad = chunk.slice();
          bad[i] = (bad[i] ?? 0) ^ flip;
          rejects(() => decodeChunk(bad), /corrupt chunk/);
        }
      }
    }
  });

  it('an unknown format tag names itself', () => {
    const bad = encodeChunk([1], [1]);
    bad[0] = 0x7f;
    rejects(() => decodeChunk(bad), /unknown chunk format tag 0x7f/);
    rejects(() => chunkCount(bad), /unknown chunk format tag 0x7f/);
    rejects(() => decodeChunk(new Uint8Array(0)), /empty chunk/);
    rejects(() => decodeChunk(Uint8Array.from([1, 0, 0])), /too short/);
    rejects(() => chunkCount(new Uint8Array(0)), /empty chunk/);
  });

  it('a consistent-looking header with an absurd count is refused without decoding', () => {
    // Re-sealed by hand so that the checksum passes: the count says 2^40 readings.
    const good = encodeChunk([1, 2, 3], [1, 2, 3]);
    const body = [0x01, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20, ...good.subarray(2, good.length - 4)];
    const bytes = Uint8Array.from(body);
    const hash = loadWords(bytes, bytes.length).hash;
    const bad = Uint8Array.from([
      ...body,
      hash >>> 24,
      (hash >>> 16) & 255,
      (hash >>> 8) & 255,
      hash & 255,
    ]);
    assert.equal(chunkCount(bad), 2 ** 40);
    rejects(() => decodeChunk(bad), /reading count 1099511627776 is larger than the chunk allows/);
  });
});

describe('chunk codec: header and partial reads', () => {
  it('chunkCount reads the header only', () => {
    const chunk = encodeChunk(
      regular(500),
      regular(500).map((_, i) => i % 13),
    );
    const damaged = chunk.slice();
    damaged[damaged.length - 10] = (damaged[damaged.length - 10] ?? 0) ^ 0x55;
    assert.equal(chunkCount(damaged), 500);
    rejects(() => decodeChunk(damaged), /checksum mismatch/);
  });

  it('decodeChunkInto writes each chunk at its offset and nothing else', () => {
    const a = { t: regular(5, 0), v: [1, 2, 3, 4, 5] };
    const b = { t: regular(3, 100_000), v: [0.5, -0, 7] };
    const c = { t: [200_000], v: [9] };
    const times = new Float64Array(12).fill(-1);
    const values = new Float64Array(12).fill(-1);
    let off = 1;
    for (const s of [a, b, c]) off += decodeChunkInto(encodeChunk(s.t, s.v), times, values, off);
    assert.equal(off, 10);
    assert.deepEqual(Array.from(times), [-1, ...a.t, ...b.t, ...c.t, -1, -1]);
    assert.deepEqual(Array.from(values), [-1, ...a.v, ...b.v, ...c.v, -1, -1]);
    assert.ok(Object.is(values[7], -0));
    assert.throws(
      () => decodeChunkInto(encodeChunk(a.t, a.v), times, values, 8),
      /5 readings do not fit at offset 8/,
    );
  });
});

/** The 1-minute aggregates computed the obvious way, for comparison. */
function naiveRollup(times: readonly number[], values: readonly number[]): MinuteRollup {
  const groups = new Map<number, { t: number[]; v: number[] }>();
  times.forEach((t, i) => {
    const b = Math.floor(t / 60_000) * 60_000;
    const g = groups.get(b) ?? { t: [], v: [] };
    g.t.push(t);
    g.v.push(values[i] ?? 0);
    groups.set(b, g);
  });
  const keys = [...groups.keys()].sort((x, y) => x - y);
  const col = (f: (g: { t: number[]; v: number[] }) => number): Float64Array =>
    Float64Array.from(keys.map((k) => f(groups.get(k) ?? { t: [], v: [] })));
  return {
    buckets: Float64Array.from(keys),
    counts: col((g) => g.v.length),
    min: col((g) => g.v.reduce((m, v) => (m < v ? m : v))),
    max: col((g) => g.v.reduce((m, v) => (m > v ? m : v))),
    sum: col((g) => g.v.reduce((s, v) => s + v)),
    lastTimes: col((g) => g.t.at(-1) ?? 0),
    lastValues: col((g) => g.v.at(-1) ?? 0),
  };
}

function assertSameRollup(actual: MinuteRollup, expected: MinuteRollup): void {
  for (const k of Object.keys(expected) as (keyof MinuteRollup)[]) {
    assert.equal(actual[k].length, expected[k].length, k);
    for (let i = 0; i < expected[k].length; i++) {
      assert.ok(
        Object.is(actual[k][i], expected[k][i]),
        `${k}[${i}]: ${actual[k][i]} vs ${expected[k][i]}`,
      );
    }
  }
}

describe('1-minute rollups', () => {
  it('rollupOf is exact and the rollup encoding round trips it', () => {
    const rand = prng(77);
    for (let c = 0; c < 50; c++) {
      const n = 1 + Math.floor(rand() * 2000);
      const times: number[] = [];
      let t = Math.floor((rand() - 0.5) * 1e13);
      for (let i = 0; i < n; i++) {
        times.push(t);
        t += rand() < 0.05 ? Math.floor(rand() * 1e7) : 1 + Math.floor(rand() * 15_000);
      }
      const kind = c % 3;
      const values = times.map(() =>
        kind === 0
          ? Math.floor(rand() * 100)
          : kind === 1
            ? Math.round(rand() * 1e6) / 1000
            : randomFloat(rand),
      );
      const r = rollupOf(times, values);
      assertSameRollup(r, naiveRollup(times, values));
      assertSameRollup(decodeRollup(encodeRollup(r)), r);
      // The first k readings only.
      const k = Math.floor(n / 2);
      assertSameRollup(
        rollupOf(times, values, k),
        naiveRollup(times.slice(0, k), values.slice(0, k)),
      );
    }
  });

  it('sums in reading order, ties of 0 and -0 take the later reading, as PostgreSQL does', () => {
    const r = rollupOf([0, 1, 2, 60_000, 60_001], [0.1, 0.2, 0.3, 0, -0]);
    assert.ok(Object.is(r.sum[0], 0.1 + 0.2 + 0.3));
    assert.ok(Object.is(r.min[1], -0));
    assert.ok(Object.is(r.max[1], -0));
    assertSameRollup(decodeRollup(encodeRollup(r)), r);
  });

  it('an empty rollup and a regular one', () => {
    assertSameRollup(decodeRollup(encodeRollup(rollupOf([], []))), rollupOf([], []));
    const times = regular(720).map((t, i) => t + (i % 3));
    const r = rollupOf(
      times,
      times.map(() => 1980),
    );
    const bytes = encodeRollup(r);
    assertSameRollup(decodeRollup(bytes), r);
    // 120 minutes of a constant series scraped with jitter: under 2 bytes a minute.
    assert.ok(bytes.length < 240, `${bytes.length} bytes`);
  });

  it('refuses malformed rollups and reports damaged ones', () => {
    const r = rollupOf([0, 60_000], [1, 2]);
    rejects(
      () => encodeRollup({ ...r, buckets: Float64Array.from([0, 60_001]) }),
      /60001 at index 1 is not a whole minute/,
    );
    rejects(() => encodeRollup({ ...r, counts: Float64Array.from([1, 0]) }), /count 0 at index 1/);
    rejects(
      () => encodeRollup({ ...r, lastTimes: Float64Array.from([0, 0]) }),
      /not within its minute/,
    );
    rejects(() => encodeRollup({ ...r, sum: Float64Array.from([1]) }), /different lengths/);
    const bytes = encodeRollup(r);
    for (let i = 0; i < bytes.length; i++) {
      const bad = bytes.slice();
      bad[i] = (bad[i] ?? 0) ^ 0x10;
      rejects(() => decodeRollup(bad), /corrupt chunk/);
      rejects(() => decodeRollup(bytes.subarray(0, i)), /corrupt chunk/);
    }
    rejects(() => decodeRollup(encodeChunk([1], [1])), /unknown rollup format tag 0x01/);
  });
});
