/**
 * Parsed label sets by their `labels_raw` text. An export repeats each series' labels on every row,
 * so the rows of a series share one frozen object: no parse, no garbage, and the envelope encoder
 * writes its JSON once.
 *
 * Bounded in entries and in characters. A fleet with more series than the bound (100,000 GPUs x 3
 * fields is 300,000 label sets) reads them in a cycle, once per instant: a cache cleared whenever
 * full would then never hit, and its filling and clearing made the streamer slower than no cache
 * at all (40 against 29 µs a record at 80,000 GPUs). So when full it keeps what it holds (those
 * series keep hitting) and lets newcomers through unparsed-and-uncached; only when its hits fall
 * below a quarter of its lookups over a whole round (as many lookups as it holds entries, four
 * times over) does it start again empty, for a fleet whose series have changed.
 */
export class LabelCache<V> {
  private readonly map = new Map<string, V>();
  private chars = 0;
  /** Lookups and hits since the cache was last full (counted only while full). */
  private lookups = 0;
  private hits = 0;

  constructor(
    private readonly maxEntries: number,
    private readonly maxChars: number,
    /** A text longer than this is never kept. */
    private readonly maxText: number,
  ) {}

  get size(): number {
    return this.map.size;
  }

  get(text: string): V | undefined {
    const v = this.map.get(text);
    if (this.full()) {
      this.lookups++;
      if (v !== undefined) this.hits++;
      if (this.lookups >= 4 * this.maxEntries) {
        if (this.hits * 4 < this.lookups) this.clear();
        this.lookups = 0;
        this.hits = 0;
      }
    }
    return v;
  }

  /** Keeps `value` for `text`, unless the text is too long or the cache is full. */
  set(text: string, value: V): void {
    if (text.length > this.maxText || this.full(text.length)) return;
    this.map.set(text, value);
    this.chars += text.length;
  }

  clear(): void {
    this.map.clear();
    this.chars = 0;
  }

  private full(extra = 0): boolean {
    return this.map.size >= this.maxEntries || this.chars + extra > this.maxChars;
  }
}
