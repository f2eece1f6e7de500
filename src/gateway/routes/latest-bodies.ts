import type { LatestValue } from '../../store/reader.js';
import { COMPRESSION, encodeBody, type Encoding } from '../compression.js';
import { readingOut } from '../presenters.js';

/**
 * Each latest value's JSON, encoded once: the reader's in-memory latest values are shared objects,
 * equal until the reading changes, so a value is encoded once however often it is served.
 */
const encoded = new WeakMap<LatestValue, string>();

/**
 * The /latest answer as JSON, exactly as the response schema would encode it, from the encoded
 * values; undefined if a value is not a finite number (the schema's serializer decides then).
 */
export function latestJson(values: readonly LatestValue[]): string | undefined {
  const parts = new Array<string>(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as LatestValue;
    let json = encoded.get(v);
    if (json === undefined) {
      if (!Number.isFinite(v.value)) return undefined;
      json = JSON.stringify(readingOut(v));
      encoded.set(v, json);
    }
    parts[i] = json;
  }
  return `{"readings":[${parts.join(',')}],"count":${values.length}}`;
}

/** Bounds of the cache (docs/api.md, "Compression"). */
export interface LatestBodiesLimits {
  /** Selections kept. */
  readonly maxEntries: number;
  /** Bytes kept, every encoding of every selection counted; an answer over a quarter is not kept. */
  readonly maxBytes: number;
}

export const LATEST_BODIES: LatestBodiesLimits = { maxEntries: 32, maxBytes: 32 * 1024 * 1024 };

/** Whether an answer came out of the cache ('hit') or was built for it ('miss'). */
export type CacheResult = 'hit' | 'miss';

/** An answer as sent: its bytes and their Content-Encoding. */
export interface LatestBody {
  readonly body: Buffer | string;
  readonly encoding: Encoding;
}

interface Entry {
  /** The values the answer was built from (the memory's version of them). */
  readonly values: readonly LatestValue[];
  readonly identity: Buffer;
  /** Compressions of `identity`, made on the first request that accepts each. */
  readonly encoded: Map<Exclude<Encoding, 'identity'>, Promise<Buffer>>;
  bytes: number;
  kept: boolean;
}

/**
 * The latest answers of the last few selections, as JSON and compressed: while the memory's values
 * stay the same objects (latest-memory.ts makes a new object only when a reading changes, so the
 * same objects in the same order are the same answer), the same selection is served from here
 * without serialising or compressing anything. A least-recently-used map by selection, bounded in
 * entries and bytes. Answers under the compression threshold are not kept (the per-value JSON
 * above makes them cheap, and they are sent as they are); neither are answers over a quarter of
 * the bytes (the compression plugin compresses those per request).
 */
export class LatestBodies {
  private readonly entries = new Map<string, Entry>();
  private bytes = 0;

  constructor(
    private readonly limits: LatestBodiesLimits = LATEST_BODIES,
    private readonly count?: (result: CacheResult, encoding: Encoding) => void,
  ) {}

  /** Bytes held now (every encoding of every selection). */
  get size(): number {
    return this.bytes;
  }

  /**
   * The answer for `key` (the selection) holding `values`, in `encoding` when it is kept (else as
   * JSON for the plugin to compress or not); undefined if the values cannot be encoded here.
   */
  async body(
    key: string,
    values: readonly LatestValue[],
    encoding: Encoding,
  ): Promise<LatestBody | undefined> {
    let entry = this.entries.get(key);
    let result: CacheResult = 'hit';
    if (entry !== undefined && sameValues(entry.values, values)) {
      // Most recently used last.
      this.entries.delete(key);
      this.entries.set(key, entry);
    } else {
      if (entry !== undefined) this.drop(key, entry);
      const json = latestJson(values);
      if (json === undefined) return undefined;
      if (Buffer.byteLength(json) < COMPRESSION.threshold)
        return { body: json, encoding: 'identity' };
      const identity = Buffer.from(json);
      if (identity.length > this.limits.maxBytes / 4) {
        this.count?.('miss', encoding);
        return { body: identity, encoding: 'identity' };
      }
      entry = { values, identity, encoded: new Map(), bytes: identity.length, kept: true };
      this.entries.set(key, entry);
      this.bytes += identity.length;
      this.evict(entry);
      result = 'miss';
    }
    if (encoding === 'identity') {
      this.count?.(result, encoding);
      return { body: entry.identity, encoding };
    }
    let compressed = entry.encoded.get(encoding);
    if (compressed === undefined) {
      result = 'miss';
      compressed = this.compress(entry, encoding);
    }
    this.count?.(result, encoding);
    return { body: await compressed, encoding };
  }

  private compress(entry: Entry, encoding: Exclude<Encoding, 'identity'>): Promise<Buffer> {
    const compressed = encodeBody(entry.identity, encoding).then(
      (buf) => {
        if (entry.kept) {
          entry.bytes += buf.length;
          this.bytes += buf.length;
          this.evict(entry);
        }
        return buf;
      },
      (err: unknown) => {
        entry.encoded.delete(encoding);
        throw err;
      },
    );
    entry.encoded.set(encoding, compressed);
    return compressed;
  }

  /** Drops the least recently used entries (never `keep`) until within the bounds. */
  private evict(keep: Entry): void {
    for (const [key, e] of this.entries) {
      if (this.entries.size <= this.limits.maxEntries && this.bytes <= this.limits.maxBytes) return;
      if (e !== keep) this.drop(key, e);
    }
  }

  private drop(key: string, e: Entry): void {
    this.entries.delete(key);
    this.bytes -= e.bytes;
    e.kept = false;
  }
}

function sameValues(a: readonly LatestValue[], b: readonly LatestValue[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
