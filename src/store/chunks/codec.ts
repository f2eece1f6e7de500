/**
 * The chunk codec of the cold tier: one series' readings (one GPU, one metric) over a window, and
 * the 1-minute rollups kept after the raw readings age out. The format, byte by byte, and the
 * measurements behind each choice are in docs/storage.md ("The chunk format, byte by byte").
 *
 * Timestamps are delta-of-delta coded in four bit buckets whose widths are chosen per chunk (scrape
 * jitter of a few ms costs ~7 bits, a regular scrape 1 bit). Values take the smallest of three
 * column encodings: constant (one float64), decimal (v = m / 10^k with integer m, every value
 * checked to round trip bit for bit, then deltas of m in the same kind of bit buckets) and Gorilla
 * XOR (any float64). A checksum ends every chunk, so corruption is reported, never decoded.
 *
 * Pure TypeScript on 32-bit operations and float64 arithmetic: no BigInt, no dependency.
 */
import { NexusError } from '../../core/errors.js';
import {
  BitWriter,
  ByteReader,
  ByteWriter,
  HI,
  LO,
  corrupt,
  fromBits,
  hiBits,
  loBitsOfLast,
  loadWords,
  peek,
  widthOf,
} from './bits.js';

/** First byte of a chunk of raw readings, format 1. */
export const CHUNK_TAG_V1 = 0x01;
/** First byte of a chunk of 1-minute rollups, format 1. */
export const ROLLUP_TAG_V1 = 0x10;

/** How a value column is encoded (its first byte). */
export type ValueEncoding = 'constant' | 'xor' | 'decimal';
const ENC_CONSTANT = 0;
const ENC_XOR = 1;
const ENC_DECIMAL = 2;
const ENCODINGS: readonly ValueEncoding[] = ['constant', 'xor', 'decimal'];

/** Largest decimal exponent k (v = m / 10^k): 10^22 is the largest exact power of ten. */
const MAX_DECIMAL_DIGITS = 22;
const POW10 = Array.from({ length: MAX_DECIMAL_DIGITS + 1 }, (_, k) => 10 ** k);
/** Largest |m| of the decimal form: deltas of two such stay safe integers. */
const MAX_MANTISSA = 2 ** 52 - 1;
const TWO32 = 4294967296;
const MINUTE_MS = 60_000;
const CHECKSUM_BYTES = 4;
/**
 * Most readings in one chunk: bit positions stay below 2^31 (a reading costs at most 19 bytes).
 * A 2-hour window at one reading a second holds 7,200.
 */
export const MAX_CHUNK_READINGS = 8_388_608;

export interface DecodedChunk {
  readonly times: Float64Array;
  readonly values: Float64Array;
}

export interface EncodeOptions {
  /**
   * How to choose the value encoding. 'auto' (the default): constant if every value is the same,
   * else decimal if every value has an exact decimal form costing at most 24 bits a reading, else
   * the smaller of decimal and XOR. 'smallest': constant, or the smaller of decimal and XOR always
   * (both written; measured no smaller than 'auto' on the fleet, see docs/storage.md ("The chunk format, byte by byte")).
   * 'xor' and 'decimal' force one (decimal falls back to XOR for values it cannot represent).
   */
  readonly values?: 'auto' | 'smallest' | 'xor' | 'decimal';
}

/* ------------------------------------------------------------------------------------------ */
/* Integer bit buckets: '0' = 0, '10' + a bits, '110' + b bits, '1110' + c bits, '1111' escape. */

interface Widths {
  readonly a: number;
  readonly b: number;
  readonly c: number;
}

/** The histogram of an integer stream: how many values need each width, zeros, escapes. */
class WidthHistogram {
  readonly counts = new Int32Array(55);
  zeros = 0;
  escapes = 0;
  max = 1;

  add(d: number): void {
    if (d === 0) {
      this.zeros++;
      return;
    }
    const w = widthOf(d);
    this.counts[w] = (this.counts[w] ?? 0) + 1;
    if (w > this.max) this.max = w;
  }

  /** The bucket widths that make the stream smallest (a <= b <= 29 fit one 32-bit look). */
  choose(): { widths: Widths; bits: number } {
    const atMost = new Float64Array(56);
    for (let w = 1; w <= 54; w++) atMost[w] = (atMost[w - 1] ?? 0) + (this.counts[w] ?? 0);
    const total = atMost[54] ?? 0;
    const c = this.max;
    let best = Infinity;
    let widths: Widths = { a: 1, b: 1, c };
    const top = Math.min(29, c);
    for (let a = 1; a <= top; a++) {
      const inA = atMost[a] ?? 0;
      for (let b = a; b <= top; b++) {
        const inB = atMost[b] ?? 0;
        const bits = inA * (2 + a) + (inB - inA) * (3 + b) + (total - inB) * (4 + c);
        if (bits < best) {
          best = bits;
          widths = { a, b, c };
        }
      }
    }
    return { widths, bits: this.zeros + best + this.escapes * 68 };
  }
}

/** Writes one integer of a stream (the escape is the caller's). */
function writeBucket(out: BitWriter, d: number, w: Widths): void {
  if (d === 0) {
    out.write(0, 1);
    return;
  }
  const k = widthOf(d);
  if (k <= w.a) {
    out.write(2, 2);
    out.writeSigned(d, w.a);
  } else if (k <= w.b) {
    out.write(6, 3);
    out.writeSigned(d, w.b);
  } else {
    out.write(14, 4);
    out.writeSigned(d, w.c);
  }
}

function readWidths(r: ByteReader, what: string): Widths {
  const a = r.byte(what);
  const b = r.byte(what);
  const c = r.byte(what);
  if (a < 1 || a > 29 || b < a || b > 29 || c < 1 || c > 54) {
    throw corrupt(`${what} bit widths ${a}/${b}/${c} are out of range`);
  }
  return { a, b, c };
}

/** A signed integer of c bits (1..54) at pos. */
function readSigned(words: Int32Array, pos: number, c: number): number {
  if (c <= 32) return peek(words, pos) >> (32 - c);
  const hi = peek(words, pos) >> (64 - c);
  return hi * TWO32 + (peek(words, pos + c - 32) >>> 0);
}

/**
 * Decodes n integers of a bucket stream starting at bit `pos` into out[off..]; returns the bit
 * position after them. An escape is corruption here (only timestamps have one).
 */
function readInts(
  words: Int32Array,
  pos: number,
  n: number,
  w: Widths,
  out: Float64Array,
  off: number,
): number {
  const { a, b, c } = w;
  const sa = 32 - a;
  const sb = 32 - b;
  let p = pos;
  for (let i = 0; i < n; i++) {
    const x = peek(words, p);
    if (x >= 0) {
      out[off + i] = 0;
      p += 1;
    } else if (x << 1 >= 0) {
      out[off + i] = (x << 2) >> sa;
      p += 2 + a;
    } else if (x << 2 >= 0) {
      out[off + i] = (x << 3) >> sb;
      p += 3 + b;
    } else if (x << 3 >= 0) {
      out[off + i] = readSigned(words, p + 4, c);
      p += 4 + c;
    } else {
      throw corrupt('unexpected escape code in an integer stream');
    }
  }
  return p;
}

/** Checks that a bit stream ended in the last byte given to it. */
function checkStreamEnd(pos: number, endByte: number, what: string): void {
  if ((pos + 7) >>> 3 !== endByte) {
    throw corrupt(
      pos > endByte * 8
        ? `truncated (${what} runs past its end)`
        : `${what} has ${endByte - ((pos + 7) >>> 3)} byte(s) left over`,
    );
  }
}

/* ------------------------------------------------------------------------------------------ */
/* Value columns.                                                                             */

/** The smallest decimal exponent k such that every value is m / 10^k exactly, or -1. */
function decimalDigits(values: ArrayLike<number>, n: number): number {
  let k = 0;
  for (let i = 0; i < n; i++) {
    const v = values[i] ?? 0;
    if (v === 0) {
      if (1 / v < 0) return -1; // -0: the decimal form would give +0
      continue;
    }
    for (;;) {
      const p = POW10[k] ?? 1;
      const m = Math.round(v * p);
      if (Math.abs(m) > MAX_MANTISSA) return -1;
      if (m / p === v) break;
      if (++k > MAX_DECIMAL_DIGITS) return -1;
    }
  }
  return k;
}

/** Marks a constant stored as a raw float64 (not m / 10^k). */
const RAW_FLOAT = 255;

/** A constant column: the value as m / 10^k when that is exact (2-10 bytes), else its float64. */
function encodeConstant(v: number): Uint8Array {
  const out = new ByteWriter(10);
  out.byte(ENC_CONSTANT);
  const k = decimalDigits([v], 1);
  if (k >= 0) {
    out.byte(k);
    out.zigzag(Math.round(v * (POW10[k] ?? 1)) + 0);
  } else {
    out.byte(RAW_FLOAT);
    out.float(v);
  }
  return out.result();
}

/** The decimal column, or undefined when some value does not round trip through m / 10^k. */
function encodeDecimal(values: ArrayLike<number>, n: number): Uint8Array | undefined {
  const k = decimalDigits(values, n);
  if (k < 0) return undefined;
  const p = POW10[k] ?? 1;
  const ms = new Float64Array(n);
  const hist = new WidthHistogram();
  let prev = 0;
  for (let i = 0; i < n; i++) {
    const v = values[i] ?? 0;
    const m = Math.round(v * p) + 0; // + 0 turns -0 into +0
    if (Math.abs(m) > MAX_MANTISSA || m / p !== v) return undefined;
    ms[i] = m;
    if (i > 0) hist.add(m - prev);
    prev = m;
  }
  const { widths } = hist.choose();
  const bits = new BitWriter(n);
  for (let i = 1; i < n; i++) writeBucket(bits, (ms[i] ?? 0) - (ms[i - 1] ?? 0), widths);
  const stream = bits.finish();
  const out = new ByteWriter(stream.length + 16);
  out.byte(ENC_DECIMAL);
  out.byte(k);
  out.byte(widths.a);
  out.byte(widths.b);
  out.byte(widths.c);
  out.zigzag(ms[0] ?? 0);
  out.bytes(stream);
  return out.result();
}

/** Gorilla XOR (Pelkonen et al., VLDB 2015), as Prometheus's chunkenc writes it. */
function encodeXor(values: ArrayLike<number>, n: number): Uint8Array {
  const bits = new BitWriter(n * 2 + 16);
  bits.write(ENC_XOR, 8);
  let ph = hiBits(values[0] ?? 0);
  let pl = loBitsOfLast();
  bits.write(ph, 32);
  bits.write(pl, 32);
  let leading = -1;
  let trailing = 0;
  for (let i = 1; i < n; i++) {
    const h = hiBits(values[i] ?? 0);
    const l = loBitsOfLast();
    const xh = h ^ ph;
    const xl = l ^ pl;
    ph = h;
    pl = l;
    if (xh === 0 && xl === 0) {
      bits.write(0, 1);
      continue;
    }
    let lz = xh !== 0 ? Math.clz32(xh) : 32 + Math.clz32(xl);
    if (lz > 31) lz = 31;
    const tz = xl !== 0 ? 31 - Math.clz32(xl & -xl) : 63 - Math.clz32(xh & -xh);
    if (leading >= 0 && lz >= leading && tz >= trailing) {
      bits.write(2, 2);
    } else {
      leading = lz;
      trailing = tz;
      bits.write(3, 2);
      bits.write(lz, 5);
      bits.write((64 - lz - tz) & 63, 6);
    }
    writeShifted(bits, xh, xl, trailing, 64 - leading - trailing);
  }
  return bits.finish();
}

/** Writes bits [t, t + sig) of the 64-bit (h, l), most significant first. */
function writeShifted(bits: BitWriter, h: number, l: number, t: number, sig: number): void {
  let sh: number;
  let sl: number;
  if (t === 0) {
    sh = h;
    sl = l;
  } else if (t < 32) {
    sl = (l >>> t) | (h << (32 - t));
    sh = h >>> t;
  } else {
    sl = h >>> (t - 32);
    sh = 0;
  }
  if (sig > 32) {
    bits.write(sh, sig - 32);
    bits.write(sl, 32);
  } else {
    bits.write(sl, sig);
  }
}

/** Whether every value is the same float64 (bit for bit: 0 and -0 differ). */
function isConstant(values: ArrayLike<number>, n: number): boolean {
  const v0 = values[0] ?? 0;
  for (let i = 1; i < n; i++) if (!Object.is(values[i], v0)) return false;
  return true;
}

/** A value column (n >= 1): its first byte says which encoding was kept. */
function encodeValues(
  values: ArrayLike<number>,
  n: number,
  mode: NonNullable<EncodeOptions['values']>,
): Uint8Array {
  if ((mode === 'auto' || mode === 'smallest') && isConstant(values, n)) {
    return encodeConstant(values[0] ?? 0);
  }
  if (mode === 'xor') return encodeXor(values, n);
  const dec = encodeDecimal(values, n);
  if (dec !== undefined && (mode === 'decimal' || (mode === 'auto' && dec.length <= n * 3 + 8))) {
    return dec;
  }
  const xor = encodeXor(values, n);
  return dec !== undefined && dec.length <= xor.length ? dec : xor;
}

/**
 * Decodes the value column in bytes [start, end) of the chunk into out[off..off + n).
 * `words` are the chunk's words (loadWords).
 */
function decodeValues(
  data: Uint8Array,
  words: Int32Array,
  start: number,
  end: number,
  n: number,
  out: Float64Array,
  off: number,
): void {
  const r = new ByteReader(data, start, end);
  const enc = r.byte('value encoding');
  switch (enc) {
    case ENC_CONSTANT: {
      const k = r.byte('constant exponent');
      let v: number;
      if (k === RAW_FLOAT) {
        v = r.float('constant value');
      } else {
        if (k > MAX_DECIMAL_DIGITS) throw corrupt(`decimal exponent ${k} is out of range`);
        const m = r.zigzag('constant mantissa');
        if (Math.abs(m) > MAX_MANTISSA) throw corrupt('constant mantissa is out of range');
        v = m / (POW10[k] ?? 1);
      }
      if (!Number.isFinite(v)) throw corrupt('constant value is not finite');
      if (r.pos !== end) throw corrupt(`${end - r.pos} byte(s) left over after a constant value`);
      out.fill(v, off, off + n);
      return;
    }
    case ENC_XOR:
      decodeXor(words, r.pos * 8, end, n, out, off);
      return;
    case ENC_DECIMAL: {
      const k = r.byte('decimal exponent');
      if (k > MAX_DECIMAL_DIGITS) throw corrupt(`decimal exponent ${k} is out of range`);
      const widths = readWidths(r, 'decimal deltas');
      const m0 = r.zigzag('first mantissa');
      if (Math.abs(m0) > MAX_MANTISSA) throw corrupt('first mantissa is out of range');
      const endPos = readInts(words, r.pos * 8, n - 1, widths, out, off + 1);
      checkStreamEnd(endPos, end, 'the decimal value stream');
      const p = POW10[k] ?? 1;
      let m = m0;
      out[off] = m / p;
      if (k === 0) {
        for (let i = off + 1; i < off + n; i++) {
          m += out[i] ?? 0;
          out[i] = m;
        }
      } else {
        for (let i = off + 1; i < off + n; i++) {
          m += out[i] ?? 0;
          out[i] = m / p;
        }
      }
      if (!(Math.abs(m) <= MAX_MANTISSA)) throw corrupt('a mantissa is out of range');
      return;
    }
    default:
      throw corrupt(`unknown value encoding ${enc}`);
  }
}

function decodeXor(
  words: Int32Array,
  pos: number,
  end: number,
  n: number,
  out: Float64Array,
  off: number,
): void {
  // Raw access to the halves of the output floats.
  const halves = new Int32Array(out.buffer, out.byteOffset, out.length * 2);
  let p = pos;
  let h = peek(words, p);
  let l = peek(words, p + 32);
  p += 64;
  let j = off * 2;
  halves[j + HI] = h;
  halves[j + LO] = l;
  let lead = 0;
  let sig = 0;
  let trail = 0;
  for (let i = 1; i < n; i++) {
    j += 2;
    const x = peek(words, p);
    if (x >= 0) {
      p += 1;
    } else {
      if (x << 1 >= 0) {
        if (sig === 0) throw corrupt('XOR stream reuses a window before setting one');
        p += 2;
      } else {
        lead = (x << 2) >>> 27;
        sig = (x << 7) >>> 26 || 64;
        trail = 64 - lead - sig;
        if (trail < 0) throw corrupt(`XOR window of ${lead} + ${sig} bits is out of range`);
        p += 13;
      }
      let vh: number;
      let vl: number;
      if (sig > 32) {
        vh = peek(words, p) >>> (64 - sig);
        vl = peek(words, p + sig - 32);
      } else {
        vh = 0;
        vl = peek(words, p) >>> (32 - sig);
      }
      p += sig;
      if (trail === 0) {
        h ^= vh;
        l ^= vl;
      } else if (trail < 32) {
        h ^= (vh << trail) | (vl >>> (32 - trail));
        l ^= vl << trail;
      } else {
        h ^= vl << (trail - 32);
      }
    }
    halves[j + HI] = h;
    halves[j + LO] = l;
  }
  checkStreamEnd(p, end, 'the XOR value stream');
  for (let i = off; i < off + n; i++) {
    const v = out[i] ?? 0;
    if (v - v !== 0) throw corrupt('XOR stream decodes to a non-finite value');
  }
}

/* ------------------------------------------------------------------------------------------ */
/* Chunks of raw readings.                                                                    */

function rejectInput(what: string): NexusError {
  return new NexusError('STORE_REJECTED', `cannot encode chunk: ${what}`);
}

/**
 * Encodes n readings: times strictly ascending epoch-ms integers (may be negative, |t| < 2^53),
 * finite values (any float64, -0 kept as -0).
 */
export function encodeChunk(
  times: ArrayLike<number>,
  values: ArrayLike<number>,
  options: EncodeOptions = {},
): Uint8Array {
  const n = times.length;
  if (values.length !== n) {
    throw rejectInput(`${n} timestamps but ${values.length} values`);
  }
  if (n > MAX_CHUNK_READINGS) {
    throw rejectInput(`${n} readings, at most ${MAX_CHUNK_READINGS} in one chunk`);
  }
  const out = new ByteWriter(n * 2 + 32);
  out.byte(CHUNK_TAG_V1);
  out.uvarint(n);
  if (n > 0) {
    const t0 = times[0] ?? 0;
    checkTime(t0, 0);
    for (let i = 0; i < n; i++) {
      const v = values[i] ?? 0;
      if (!Number.isFinite(v)) throw rejectInput(`value ${v} at index ${i} is not finite`);
    }
    out.zigzag(t0);
    if (n > 1) {
      const { mode, step, widths, stream } = encodeTimes(times, n);
      out.byte(mode);
      out.byte(widths.a);
      out.byte(widths.b);
      out.byte(widths.c);
      if (mode === TS_STEP) out.uvarint(step);
      out.uvarint(stream.length);
      out.bytes(stream);
    }
    out.bytes(encodeValues(values, n, options.values ?? 'auto'));
  }
  return seal(out);
}

function checkTime(t: number, i: number): void {
  if (!Number.isSafeInteger(t)) {
    throw rejectInput(`timestamp ${t} at index ${i} is not an integer of at most 53 bits`);
  }
}

/** Timestamp coding: each delta minus the chunk's usual step (regular scrapes with jitter). */
const TS_STEP = 1;
/** Timestamp coding: delta of delta, as Gorilla and Prometheus (irregular gaps, drifting steps). */
const TS_DOD = 2;

interface TimeStream {
  readonly mode: number;
  readonly step: number;
  readonly widths: Widths;
  readonly stream: Uint8Array;
}

/** The usual step of a chunk: the median of up to 15 deltas spread over it. */
function usualStep(times: ArrayLike<number>, n: number): number {
  const k = Math.min(15, n - 1);
  const sample: number[] = [];
  for (let j = 0; j < k; j++) {
    const i = 1 + Math.floor((j * (n - 1)) / k);
    sample.push((times[i] ?? 0) - (times[i - 1] ?? 0));
  }
  sample.sort((x, y) => x - y);
  return sample[k >>> 1] ?? 0;
}

/**
 * The timestamp stream of times[1..n), in whichever of the two codings is smaller. The decoder
 * keeps (prev, delta): with TS_DOD it does delta += dod, t = prev + delta; with TS_STEP,
 * t = prev + (step + r); an escape gives t itself (and delta = t - prev). The encoder mirrors that
 * float64 arithmetic and escapes every timestamp it would not reproduce exactly.
 */
function encodeTimes(times: ArrayLike<number>, n: number): TimeStream {
  const step = usualStep(times, n);
  const useStep = Number.isSafeInteger(step) && step > 0;
  const dods = new Float64Array(n);
  const rs = new Float64Array(n);
  const dodHist = new WidthHistogram();
  const stepHist = new WidthHistogram();
  let prev = times[0] ?? 0;
  let delta = 0;
  for (let i = 1; i < n; i++) {
    const t = times[i] ?? 0;
    checkTime(t, i);
    if (!(t > prev)) {
      throw rejectInput(`timestamps are not strictly ascending at index ${i} (${prev}, ${t})`);
    }
    const d = t - prev - delta;
    const next = delta + d;
    if (Number.isSafeInteger(d) && prev + next === t) {
      dods[i] = d;
      dodHist.add(d);
      delta = next;
    } else {
      dods[i] = NaN;
      dodHist.escapes++;
      delta = t - prev;
    }
    if (useStep) {
      const r = t - prev - step;
      if (Number.isSafeInteger(r) && prev + (step + r) === t) {
        rs[i] = r;
        stepHist.add(r);
      } else {
        rs[i] = NaN;
        stepHist.escapes++;
      }
    }
    prev = t;
  }
  const byDod = dodHist.choose();
  const byStep = useStep ? stepHist.choose() : undefined;
  const [mode, ints, widths] =
    byStep !== undefined && byStep.bits < byDod.bits
      ? [TS_STEP, rs, byStep.widths]
      : [TS_DOD, dods, byDod.widths];
  const bits = new BitWriter(n);
  for (let i = 1; i < n; i++) {
    const d = ints[i] ?? 0;
    if (Number.isNaN(d)) {
      bits.write(15, 4);
      bits.writeFloat(times[i] ?? 0);
    } else {
      writeBucket(bits, d, widths);
    }
  }
  return { mode, step: mode === TS_STEP ? step : 0, widths, stream: bits.finish() };
}

/** Appends the checksum of everything written so far. */
function seal(out: ByteWriter): Uint8Array {
  const body = out.result();
  out.u32(loadWords(body, body.length).hash);
  return out.result();
}

/** Checks the tag and the checksum; returns the chunk's words and the header reader after the tag. */
function open(
  data: Uint8Array,
  tag: number,
  kind: string,
): { words: Int32Array; r: ByteReader; end: number } {
  if (data.length < 1 + 1 + CHECKSUM_BYTES) {
    throw corrupt(`${kind} of ${data.length} byte(s) is too short`);
  }
  const first = data[0] ?? 0;
  if (first !== tag) {
    throw corrupt(
      `unknown ${kind} format tag 0x${first.toString(16).padStart(2, '0')} (this version reads 0x${tag.toString(16).padStart(2, '0')})`,
    );
  }
  const end = data.length - CHECKSUM_BYTES;
  const { words, hash } = loadWords(data, end);
  const stored =
    (((data[end] ?? 0) << 24) |
      ((data[end + 1] ?? 0) << 16) |
      ((data[end + 2] ?? 0) << 8) |
      (data[end + 3] ?? 0)) >>>
    0;
  if (stored !== hash) throw corrupt(`${kind} checksum mismatch (damaged or truncated)`);
  return { words, r: new ByteReader(data, 1, end), end };
}

/** The number of readings, from the header, without decoding. */
export function chunkCount(data: Uint8Array): number {
  const first = data[0];
  if (first !== CHUNK_TAG_V1) {
    throw corrupt(
      first === undefined
        ? 'empty chunk'
        : `unknown chunk format tag 0x${first.toString(16).padStart(2, '0')}`,
    );
  }
  return new ByteReader(data, 1, data.length).uvarint('reading count');
}

/** Decodes a chunk; throws STORE_REJECTED naming the problem for a corrupt, truncated or unknown chunk. */
export function decodeChunk(data: Uint8Array): DecodedChunk {
  const n = chunkCount(data);
  // Every reading after the first costs at least one bit: a damaged count cannot allocate much.
  if (n > data.length * 8 + 1) throw corrupt(`reading count ${n} is larger than the chunk allows`);
  const times = new Float64Array(n);
  const values = new Float64Array(n);
  decodeChunkInto(data, times, values, 0);
  return { times, values };
}

/**
 * Decodes into caller-provided arrays at an offset (for reads that union many chunks without
 * copying); returns the count.
 */
export function decodeChunkInto(
  data: Uint8Array,
  times: Float64Array,
  values: Float64Array,
  offset: number,
): number {
  const { words, r, end } = open(data, CHUNK_TAG_V1, 'chunk');
  const n = r.uvarint('reading count');
  if (n === 0) {
    if (r.pos !== end) throw corrupt('bytes left over in an empty chunk');
    return 0;
  }
  if (!(offset >= 0 && offset + n <= times.length && offset + n <= values.length)) {
    throw new NexusError(
      'INTERNAL',
      `decodeChunkInto: ${n} readings do not fit at offset ${offset} of arrays of ${times.length}/${values.length}`,
    );
  }
  const t0 = r.zigzag('first timestamp');
  times[offset] = t0;
  if (n > 1) {
    const mode = r.byte('timestamp coding');
    if (mode !== TS_STEP && mode !== TS_DOD) throw corrupt(`unknown timestamp coding ${mode}`);
    const widths = readWidths(r, 'timestamp');
    const step = mode === TS_STEP ? r.uvarint('timestamp step') : 0;
    const len = r.uvarint('timestamp stream length');
    if (n - 1 > len * 8) throw corrupt(`reading count ${n} is larger than the chunk allows`);
    const start = r.skip(len, 'the timestamp stream');
    const endPos =
      mode === TS_STEP
        ? decodeStepTimes(words, start * 8, n, widths, step, t0, times, offset)
        : decodeTimes(words, start * 8, n, widths, t0, times, offset);
    checkStreamEnd(endPos, start + len, 'the timestamp stream');
  }
  decodeValues(data, words, r.pos, end, n, values, offset);
  return n;
}

function decodeTimes(
  words: Int32Array,
  pos: number,
  n: number,
  w: Widths,
  t0: number,
  out: Float64Array,
  off: number,
): number {
  const { a, b, c } = w;
  const sa = 32 - a;
  const sb = 32 - b;
  let p = pos;
  let prev = t0;
  let delta = 0;
  let ordered = true;
  for (let i = off + 1; i < off + n; i++) {
    const x = peek(words, p);
    let t: number;
    if (x >= 0) {
      p += 1;
      t = prev + delta;
    } else if (x << 1 >= 0) {
      delta += (x << 2) >> sa;
      p += 2 + a;
      t = prev + delta;
    } else if (x << 2 >= 0) {
      delta += (x << 3) >> sb;
      p += 3 + b;
      t = prev + delta;
    } else if (x << 3 >= 0) {
      delta += readSigned(words, p + 4, c);
      p += 4 + c;
      t = prev + delta;
    } else {
      t = fromBits(peek(words, p + 4), peek(words, p + 36));
      p += 68;
      delta = t - prev;
    }
    if (!(t > prev)) ordered = false;
    out[i] = t;
    prev = t;
  }
  if (!ordered || !Number.isSafeInteger(prev)) {
    throw corrupt('timestamps do not decode to ascending integers');
  }
  return p;
}

function decodeStepTimes(
  words: Int32Array,
  pos: number,
  n: number,
  w: Widths,
  step: number,
  t0: number,
  out: Float64Array,
  off: number,
): number {
  const { a, b, c } = w;
  const sa = 32 - a;
  const sb = 32 - b;
  let p = pos;
  let prev = t0;
  let ordered = true;
  for (let i = off + 1; i < off + n; i++) {
    const x = peek(words, p);
    let t: number;
    if (x >= 0) {
      p += 1;
      t = prev + step;
    } else if (x << 1 >= 0) {
      t = prev + (step + ((x << 2) >> sa));
      p += 2 + a;
    } else if (x << 2 >= 0) {
      t = prev + (step + ((x << 3) >> sb));
      p += 3 + b;
    } else if (x << 3 >= 0) {
      t = prev + (step + readSigned(words, p + 4, c));
      p += 4 + c;
    } else {
      t = fromBits(peek(words, p + 4), peek(words, p + 36));
      p += 68;
    }
    if (!(t > prev)) ordered = false;
    out[i] = t;
    prev = t;
  }
  if (!ordered || !Number.isSafeInteger(prev)) {
    throw corrupt('timestamps do not decode to ascending integers');
  }
  return p;
}

/** What a chunk is made of (for measurements and diagnostics). */
export interface ChunkInfo {
  readonly count: number;
  /** The value column's encoding (undefined for an empty chunk). */
  readonly encoding: ValueEncoding | undefined;
  /** Bytes of the timestamp bit stream. */
  readonly timestampBytes: number;
  /** Bytes of the value column, its encoding byte included. */
  readonly valueBytes: number;
}

/** Reads a chunk's header: what it holds and how, without decoding the readings. */
export function chunkInfo(data: Uint8Array): ChunkInfo {
  const { r, end } = open(data, CHUNK_TAG_V1, 'chunk');
  const count = r.uvarint('reading count');
  if (count === 0) return { count, encoding: undefined, timestampBytes: 0, valueBytes: 0 };
  r.zigzag('first timestamp');
  let timestampBytes = 0;
  if (count > 1) {
    const mode = r.byte('timestamp coding');
    readWidths(r, 'timestamp');
    if (mode === TS_STEP) r.uvarint('timestamp step');
    timestampBytes = r.uvarint('timestamp stream length');
    r.skip(timestampBytes, 'the timestamp stream');
  }
  const valueBytes = end - r.pos;
  const encoding = ENCODINGS[r.byte('value encoding')];
  if (encoding === undefined) throw corrupt('unknown value encoding');
  return { count, encoding, timestampBytes, valueBytes };
}

/* ------------------------------------------------------------------------------------------ */
/* 1-minute rollups.                                                                          */

/**
 * Per minute bucket (ascending epoch ms, multiples of 60,000): the count of readings (>= 1), their
 * min, max and sum, and the time (within the minute) and value of the last one.
 */
export interface MinuteRollup {
  buckets: Float64Array;
  counts: Float64Array;
  min: Float64Array;
  max: Float64Array;
  sum: Float64Array;
  lastTimes: Float64Array;
  lastValues: Float64Array;
}

/** Exact 1-minute aggregates of decoded raw readings (sum in reading order, as SQL would sum them). */
export function rollupOf(
  times: ArrayLike<number>,
  values: ArrayLike<number>,
  n: number = times.length,
): MinuteRollup {
  let m = 0;
  let bucket = NaN;
  for (let i = 0; i < n; i++) {
    const b = Math.floor((times[i] ?? 0) / MINUTE_MS) * MINUTE_MS;
    if (b !== bucket) {
      m++;
      bucket = b;
    }
  }
  const r = emptyRollup(m);
  let k = -1;
  bucket = NaN;
  for (let i = 0; i < n; i++) {
    const t = times[i] ?? 0;
    const v = values[i] ?? 0;
    const b = Math.floor(t / MINUTE_MS) * MINUTE_MS;
    if (b !== bucket) {
      k++;
      bucket = b;
      r.buckets[k] = b;
      r.counts[k] = 1;
      r.min[k] = v;
      r.max[k] = v;
      r.sum[k] = v;
    } else {
      r.counts[k] = (r.counts[k] ?? 0) + 1;
      // As PostgreSQL's min/max of float8: a tie (0 and -0) takes the later reading.
      const lo = r.min[k] ?? 0;
      const hi = r.max[k] ?? 0;
      r.min[k] = lo < v ? lo : v;
      r.max[k] = hi > v ? hi : v;
      r.sum[k] = (r.sum[k] ?? 0) + v;
    }
    r.lastTimes[k] = t;
    r.lastValues[k] = v;
  }
  return r;
}

function emptyRollup(m: number): MinuteRollup {
  return {
    buckets: new Float64Array(m),
    counts: new Float64Array(m),
    min: new Float64Array(m),
    max: new Float64Array(m),
    sum: new Float64Array(m),
    lastTimes: new Float64Array(m),
    lastValues: new Float64Array(m),
  };
}

function rejectRollup(what: string): NexusError {
  return new NexusError('STORE_REJECTED', `cannot encode rollup: ${what}`);
}

/** An integer column of a rollup: first value (zigzag), widths, stream length, deltas. */
function writeIntColumn(out: ByteWriter, ints: Float64Array): void {
  const n = ints.length;
  out.zigzag(ints[0] ?? 0);
  if (n < 2) return;
  const hist = new WidthHistogram();
  for (let i = 1; i < n; i++) hist.add((ints[i] ?? 0) - (ints[i - 1] ?? 0));
  const { widths } = hist.choose();
  const bits = new BitWriter(n);
  for (let i = 1; i < n; i++) writeBucket(bits, (ints[i] ?? 0) - (ints[i - 1] ?? 0), widths);
  const stream = bits.finish();
  out.byte(widths.a);
  out.byte(widths.b);
  out.byte(widths.c);
  out.uvarint(stream.length);
  out.bytes(stream);
}

function readIntColumn(r: ByteReader, words: Int32Array, n: number, what: string): Float64Array {
  const out = new Float64Array(n);
  let v = r.zigzag(what);
  out[0] = v;
  if (n < 2) return out;
  const widths = readWidths(r, what);
  const len = r.uvarint(`${what} stream length`);
  if (n - 1 > len * 8) throw corrupt(`${what}: count ${n} is larger than the rollup allows`);
  const start = r.skip(len, what);
  checkStreamEnd(readInts(words, start * 8, n - 1, widths, out, 1), start + len, what);
  for (let i = 1; i < n; i++) {
    v += out[i] ?? 0;
    if (!Number.isSafeInteger(v)) throw corrupt(`${what} is out of range`);
    out[i] = v;
  }
  return out;
}

export function encodeRollup(r: MinuteRollup): Uint8Array {
  const n = r.buckets.length;
  if (n > MAX_CHUNK_READINGS) {
    throw rejectRollup(`${n} buckets, at most ${MAX_CHUNK_READINGS} in one rollup`);
  }
  const columns = [r.counts, r.min, r.max, r.sum, r.lastTimes, r.lastValues];
  if (columns.some((c) => c.length !== n)) {
    throw rejectRollup(`columns of different lengths (${n} buckets)`);
  }
  const index = new Float64Array(n);
  const offsets = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const b = r.buckets[i] ?? 0;
    const count = r.counts[i] ?? 0;
    const last = r.lastTimes[i] ?? 0;
    if (!Number.isSafeInteger(b) || b % MINUTE_MS !== 0) {
      throw rejectRollup(`bucket ${b} at index ${i} is not a whole minute`);
    }
    if (i > 0 && !(b > (r.buckets[i - 1] ?? 0))) {
      throw rejectRollup(`buckets are not strictly ascending at index ${i}`);
    }
    if (!Number.isSafeInteger(count) || count < 1) {
      throw rejectRollup(`count ${count} at index ${i} is not an integer >= 1`);
    }
    if (!Number.isSafeInteger(last) || last < b || last >= b + MINUTE_MS) {
      throw rejectRollup(`last time ${last} at index ${i} is not within its minute ${b}`);
    }
    for (const c of [r.min, r.max, r.sum, r.lastValues]) {
      const v = c[i] ?? 0;
      if (!Number.isFinite(v)) throw rejectRollup(`value ${v} at index ${i} is not finite`);
    }
    index[i] = b / MINUTE_MS + 0;
    offsets[i] = last - b;
  }
  const out = new ByteWriter(n * 8 + 32);
  out.byte(ROLLUP_TAG_V1);
  out.uvarint(n);
  if (n > 0) {
    writeIntColumn(out, index);
    writeIntColumn(out, r.counts);
    writeIntColumn(out, offsets);
    for (const c of [r.min, r.max, r.sum, r.lastValues]) {
      const col = encodeValues(c, n, 'auto');
      out.uvarint(col.length);
      out.bytes(col);
    }
  }
  return seal(out);
}

export function decodeRollup(data: Uint8Array): MinuteRollup {
  const { words, r, end } = open(data, ROLLUP_TAG_V1, 'rollup');
  const n = r.uvarint('bucket count');
  if (n > data.length * 8 + 1) throw corrupt(`bucket count ${n} is larger than the rollup allows`);
  const out = emptyRollup(n);
  if (n === 0) {
    if (r.pos !== end) throw corrupt('bytes left over in an empty rollup');
    return out;
  }
  const index = readIntColumn(r, words, n, 'bucket');
  const counts = readIntColumn(r, words, n, 'count');
  const offsets = readIntColumn(r, words, n, 'last time');
  for (let i = 0; i < n; i++) {
    const b = (index[i] ?? 0) * MINUTE_MS;
    const o = offsets[i] ?? 0;
    const count = counts[i] ?? 0;
    if (i > 0 && !(b > (out.buckets[i - 1] ?? 0))) throw corrupt('buckets are not ascending');
    if (!(count >= 1) || !(o >= 0 && o < MINUTE_MS)) {
      throw corrupt(`bucket ${i} has count ${count} and last-time offset ${o}`);
    }
    out.buckets[i] = b;
    out.counts[i] = count;
    out.lastTimes[i] = b + o;
  }
  for (const [name, col] of [
    ['min', out.min],
    ['max', out.max],
    ['sum', out.sum],
    ['last value', out.lastValues],
  ] as const) {
    const len = r.uvarint(`${name} column length`);
    const start = r.skip(len, `the ${name} column`);
    decodeValues(data, words, start, start + len, n, col, 0);
  }
  if (r.pos !== end) throw corrupt(`${end - r.pos} byte(s) left over after the rollup`);
  return out;
}
