/**
 * Bit and byte primitives of the chunk codec (docs/storage.md ("The chunk format, byte by byte")): an MSB-first bit writer, a
 * word loader that turns chunk bytes into big-endian 32-bit words (and checksums them), varints and
 * the float64 bit view. 32-bit operations and float64 arithmetic only (no BigInt): every integer the
 * codec handles is a safe integer (|x| < 2^53).
 */
import { NexusError } from '../../core/errors.js';

/** The error every malformed chunk or rollup gets: STORE_REJECTED, naming the problem. */
export function corrupt(what: string): NexusError {
  return new NexusError('STORE_REJECTED', `corrupt chunk: ${what}`);
}

const TWO32 = 4294967296;

/** The bits of a float64, through one shared buffer (platform byte order). */
const f64 = new Float64Array(1);
const u32 = new Uint32Array(f64.buffer);
/** Index of the high 32-bit half of a float64 in a Uint32Array/Int32Array view of it. */
export const HI = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0;
/** Index of the low 32-bit half. */
export const LO = 1 - HI;

/** The high 32 bits of a float64 (sign, exponent, top of the mantissa), as an int32. */
export function hiBits(v: number): number {
  f64[0] = v;
  return (u32[HI] ?? 0) | 0;
}
/** The low 32 bits of the float64 last passed to hiBits (call hiBits first), as an int32. */
export function loBitsOfLast(): number {
  return (u32[LO] ?? 0) | 0;
}
/** The float64 with these high and low 32 bits. */
export function fromBits(hi: number, lo: number): number {
  u32[HI] = hi >>> 0;
  u32[LO] = lo >>> 0;
  return f64[0] ?? 0;
}

/** Two's complement bits a signed safe integer needs (1 for 0 and -1, 54 at most). */
export function widthOf(d: number): number {
  if (d >= -2147483648 && d <= 2147483647) return 33 - Math.clz32(d >= 0 ? d : ~d);
  const hi = Math.floor(d / TWO32);
  return 65 - Math.clz32(hi >= 0 ? hi : ~hi);
}

/** Growable MSB-first bit writer; whole 32-bit words are written big-endian. */
export class BitWriter {
  private buf: Uint8Array;
  private len = 0;
  /** Pending bits, right-aligned. */
  private cur = 0;
  /** Number of pending bits (0..31). */
  private n = 0;

  constructor(capacity = 64) {
    this.buf = new Uint8Array(Math.max(8, capacity));
  }

  /** Writes the low k bits of v (1 <= k <= 32). */
  write(v: number, k: number): void {
    const bits = k === 32 ? v | 0 : v & ((1 << k) - 1);
    const free = 32 - this.n;
    if (k < free) {
      this.cur = (this.cur << k) | bits;
      this.n += k;
      return;
    }
    const rest = k - free;
    this.word(free === 32 ? bits : (this.cur << free) | (bits >>> rest));
    this.cur = rest === 0 ? 0 : bits & ((1 << rest) - 1);
    this.n = rest;
  }

  /** Writes a signed safe integer in w two's complement bits (1 <= w <= 54; it must fit). */
  writeSigned(v: number, w: number): void {
    if (w <= 32) {
      this.write(v | 0, w);
      return;
    }
    const hi = Math.floor(v / TWO32);
    this.write(hi | 0, w - 32);
    this.write((v - hi * TWO32) | 0, 32);
  }

  /** Writes the 64 bits of a float64. */
  writeFloat(v: number): void {
    const hi = hiBits(v);
    const lo = loBitsOfLast();
    this.write(hi, 32);
    this.write(lo, 32);
  }

  private word(w: number): void {
    this.reserve(4);
    const b = this.buf;
    const i = this.len;
    b[i] = w >>> 24;
    b[i + 1] = (w >>> 16) & 255;
    b[i + 2] = (w >>> 8) & 255;
    b[i + 3] = w & 255;
    this.len = i + 4;
  }

  private reserve(k: number): void {
    if (this.len + k <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.len + k));
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  /** The bytes written, the last one padded with zero bits. The writer is spent. */
  finish(): Uint8Array {
    if (this.n > 0) {
      const w = this.cur << (32 - this.n);
      const k = (this.n + 7) >>> 3;
      this.reserve(k);
      for (let j = 0; j < k; j++) this.buf[this.len + j] = (w >>> (24 - 8 * j)) & 255;
      this.len += k;
      this.n = 0;
    }
    return this.buf.subarray(0, this.len);
  }
}

/** Growable byte writer for headers: bytes, varints, and the bit streams. */
export class ByteWriter {
  private buf: Uint8Array;
  len = 0;

  constructor(capacity = 64) {
    this.buf = new Uint8Array(Math.max(16, capacity));
  }

  private reserve(k: number): void {
    if (this.len + k <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.len + k));
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  byte(b: number): void {
    this.reserve(1);
    this.buf[this.len++] = b & 255;
  }

  bytes(b: Uint8Array): void {
    this.reserve(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }

  /** Unsigned LEB128 of a safe integer >= 0. */
  uvarint(v: number): void {
    let x = v;
    while (x >= 128) {
      this.byte((x % 128) | 128);
      x = Math.floor(x / 128);
    }
    this.byte(x);
  }

  /**
   * Zigzag LEB128 (protobuf sint64) of a safe integer, computed digit by digit so that it is exact
   * for every |v| < 2^53 (2v + 1 is not always a float64).
   */
  zigzag(v: number): void {
    const neg = v < 0;
    const b = neg ? -v - 1 : v;
    const low = ((b % 64) << 1) | (neg ? 1 : 0);
    const rest = Math.floor(b / 64);
    if (rest === 0) {
      this.byte(low);
      return;
    }
    this.byte(low | 128);
    this.uvarint(rest);
  }

  /** The 8 bytes of a float64, little-endian. */
  float(v: number): void {
    const hi = hiBits(v);
    const lo = loBitsOfLast();
    for (let j = 0; j < 4; j++) this.byte(lo >>> (8 * j));
    for (let j = 0; j < 4; j++) this.byte(hi >>> (8 * j));
  }

  /** A 32-bit unsigned integer, big-endian. */
  u32(v: number): void {
    for (let j = 3; j >= 0; j--) this.byte(v >>> (8 * j));
  }

  result(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

/** Sequential reader of a chunk's header bytes; every read checks the bounds. */
export class ByteReader {
  pos: number;

  constructor(
    readonly data: Uint8Array,
    start: number,
    /** Bytes past this are not the header's (the checksum). */
    readonly end: number,
  ) {
    this.pos = start;
  }

  byte(what: string): number {
    if (this.pos >= this.end) throw corrupt(`truncated (${what} missing)`);
    return this.data[this.pos++] ?? 0;
  }

  uvarint(what: string): number {
    let v = 0;
    let mul = 1;
    for (let i = 0; ; i++) {
      const b = this.byte(what);
      v += (b & 127) * mul;
      if (b < 128) break;
      mul *= 128;
      if (i >= 7) throw corrupt(`${what} is not a valid varint`);
    }
    if (v > Number.MAX_SAFE_INTEGER) throw corrupt(`${what} is out of range`);
    return v;
  }

  zigzag(what: string): number {
    const first = this.byte(what);
    const neg = (first & 1) === 1;
    let b = (first >>> 1) & 63;
    if (first >= 128) {
      const rest = this.uvarint(what);
      if (rest > Math.floor(Number.MAX_SAFE_INTEGER / 64)) throw corrupt(`${what} is out of range`);
      b += rest * 64;
    }
    return neg ? -b - 1 : b;
  }

  float(what: string): number {
    if (this.pos + 8 > this.end) throw corrupt(`truncated (${what} missing)`);
    const d = this.data;
    const p = this.pos;
    const lo =
      (d[p] ?? 0) | ((d[p + 1] ?? 0) << 8) | ((d[p + 2] ?? 0) << 16) | ((d[p + 3] ?? 0) << 24);
    const hi =
      (d[p + 4] ?? 0) | ((d[p + 5] ?? 0) << 8) | ((d[p + 6] ?? 0) << 16) | ((d[p + 7] ?? 0) << 24);
    this.pos = p + 8;
    return fromBits(hi, lo);
  }

  /** Skips k bytes (a bit stream), checking they are there; returns where they start. */
  skip(k: number, what: string): number {
    if (k > this.end - this.pos) throw corrupt(`truncated (${what} is cut short)`);
    const at = this.pos;
    this.pos += k;
    return at;
  }
}

let scratch = new Int32Array(256);

/**
 * The first `end` bytes of `data` as big-endian 32-bit words (the last one zero-padded, followed
 * by two zero words so a reader may look 64 bits past any position inside), in a buffer shared by
 * every call (valid until the next call), and their checksum: the MurmurHash3 x86_32 body and
 * finaliser (seed 0) run over these big-endian words, finished with the byte length.
 */
export function loadWords(data: Uint8Array, end: number): { words: Int32Array; hash: number } {
  const nw = (end + 3) >>> 2;
  if (scratch.length < nw + 2) scratch = new Int32Array(Math.max(nw + 2, scratch.length * 2));
  const words = scratch;
  let h = 0;
  const full = end >>> 2;
  let p = 0;
  for (let i = 0; i < full; i++, p += 4) {
    const w =
      ((data[p] ?? 0) << 24) |
      ((data[p + 1] ?? 0) << 16) |
      ((data[p + 2] ?? 0) << 8) |
      (data[p + 3] ?? 0);
    words[i] = w;
    h = mix(h, w);
  }
  if (full < nw) {
    let w = 0;
    for (let j = 0; j < 4; j++) w = (w << 8) | (p + j < end ? (data[p + j] ?? 0) : 0);
    words[full] = w;
    h = mix(h, w);
  }
  words[nw] = 0;
  words[nw + 1] = 0;
  h ^= end;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return { words, hash: h >>> 0 };
}

function mix(h: number, w: number): number {
  let k = Math.imul(w, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  let x = h ^ k;
  x = (x << 13) | (x >>> 19);
  return (Math.imul(x, 5) + 0xe6546b64) | 0;
}

/** The 32 bits of `words` starting at bit `pos` (MSB first), as an int32. */
export function peek(words: Int32Array, pos: number): number {
  const w = pos >>> 5;
  const o = pos & 31;
  return ((words[w] ?? 0) << o) | (((words[w + 1] ?? 0) >>> 1) >>> (31 - o));
}
