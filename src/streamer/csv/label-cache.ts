/**
 * Parsed label sets by their `labels_raw` text. An export repeats each series' labels on every row,
 * so the rows of a series share one frozen object: no parse, no garbage, and the envelope encoder
 * writes its JSON once.
 *
 * Bounded in entries and in characters, and only worth having while the series it holds come
 * back. A fleet with more series than the bound (100,000 GPUs x 3 fields is 300,000 label sets)
 * reads them in a cycle, once per instant, and there a cache costs more than it saves, measured:
 * the objects it holds outlive the young generation, and every full collection walks them (100,000
 * entries: 17-24 against 8 µs a record at 100,000 GPUs), and one cleared whenever full never hits
 * while its filling and clearing churn the old generation. So when full it keeps what it holds
 * (those series keep hitting) and lets newcomers through uncached; when its hits fall below a
 * quarter of its lookups over a round (two lookups per entry it can hold: a fleet of up to twice
 * as many series as it holds hits at least half the time and keeps it; four made it decide later
 * on the 100,000-GPU file, 18.1 against 16.9 µs a record to read, parse and encode, measured
 * alternately 4 times), it empties and rests:
 * no entry is added for the next REST_ROUNDS rounds, then it starts again (for a fleet whose
 * series have changed, or a file that moves on to a smaller one).
 */
export class LabelCache<V> {
  private readonly map = new Map<string, V>();
  private chars = 0;
  /** Lookups and hits since the cache was last full, or since it rested (counted then only). */
  private lookups = 0;
  private hits = 0;
  /** Lookups left before it caches again, after a round with too few hits. */
  private resting = 0;

  constructor(
    private readonly maxEntries: number,
    private readonly maxChars: number,
    /** A text longer than this is never kept. */
    private readonly maxText: number,
  ) {}

  /** Called each time an entry kept fills the cache. */
  onFull: (() => void) | undefined;
  /** Called each time a full cache with too few hits empties to rest. */
  onEmptied: (() => void) | undefined;

  get size(): number {
    return this.map.size;
  }

  /** Whether it has stopped caching for a while (too few hits when full). */
  get isResting(): boolean {
    return this.resting > 0;
  }

  get(text: string): V | undefined {
    if (this.resting > 0) {
      this.resting--;
      return undefined;
    }
    const v = this.map.get(text);
    if (this.full()) {
      this.lookups++;
      if (v !== undefined) this.hits++;
      if (this.lookups >= ROUND * this.maxEntries) {
        if (this.hits * 4 < this.lookups) {
          this.clear();
          this.resting = REST_ROUNDS * ROUND * this.maxEntries;
          this.onEmptied?.();
        }
        this.lookups = 0;
        this.hits = 0;
      }
    }
    return v;
  }

  /** Whether `value` would be kept for `text`: not resting, the text not too long, not full. */
  keeps(text: string): boolean {
    return this.resting === 0 && text.length <= this.maxText && !this.full(text.length);
  }

  /** Keeps `value` for `text`, unless it would not (`keeps`). */
  set(text: string, value: V): void {
    if (!this.keeps(text)) return;
    this.map.set(text, value);
    this.chars += text.length;
    // `keeps` said it was not full before this entry.
    if (this.full()) this.onFull?.();
  }

  clear(): void {
    this.map.clear();
    this.chars = 0;
  }

  private full(extra = 0): boolean {
    return this.map.size >= this.maxEntries || this.chars + extra > this.maxChars;
  }
}

/** Lookups per entry the cache can hold in a round, over which its hits are counted. */
const ROUND = 2;
/** Rounds a cache with too few hits rests before it caches again. */
const REST_ROUNDS = 16;
