/** When a cached value is answered as it is, and what a forced read (a name not found) does. */
export interface SwrPolicy {
  /** A value this young (ms) is answered as it is; an older one too, while one load refreshes it. */
  readonly maxAgeMs: number;
  /** A forced read still takes a value this young (ms); 0: never. */
  readonly forcedMaxAgeMs: number;
  /**
   * A forced read waits for a load already under way (true), or starts its own (false: what it
   * looks for may have been written after that load read).
   */
  readonly forcedJoins: boolean;
}

/** What a load read, and whether it may go into the cache (false: it belongs to no current state). */
export interface Loaded<T> {
  readonly value: T;
  readonly keep: boolean;
}

/**
 * A value kept in memory, stale-while-revalidate: a young value is answered as it is; an expired
 * one is still answered while one load refreshes it (nobody waits for it); with nothing cached, or
 * when forced, the read waits for a load. A load started earlier never replaces the value of one
 * started later.
 */
export class SwrCache<T> {
  private entry: { readonly value: T; readonly at: number; readonly started: number } | undefined;
  private loading: Promise<T> | undefined;

  constructor(
    private readonly load: () => Promise<Loaded<T>>,
    private readonly policy: SwrPolicy,
  ) {}

  /** The value cached now, whatever its age; undefined until a load kept one, or after clear(). */
  peek(): T | undefined {
    return this.entry?.value;
  }

  /** Forgets the value (a load under way may still keep what it reads). */
  clear(): void {
    this.entry = undefined;
  }

  get(force = false): Promise<T> {
    const entry = this.entry;
    // A forced read asks whether the value shows the database as it is now: its age then counts
    // from when its load began (a slow load's value is older than its arrival).
    const age =
      entry === undefined
        ? Number.POSITIVE_INFINITY
        : Date.now() - (force ? entry.started : entry.at);
    if (entry !== undefined && age < (force ? this.policy.forcedMaxAgeMs : this.policy.maxAgeMs))
      return Promise.resolve(entry.value);
    const loading =
      force && !this.policy.forcedJoins ? this.refresh() : (this.loading ?? this.refresh());
    // Expired: answered from the cache while the load refreshes it.
    if (!force && entry !== undefined) {
      loading.catch(() => undefined);
      return Promise.resolve(entry.value);
    }
    return loading;
  }

  /** A load started now, whatever is cached or under way (what it looks for was just written). */
  reload(): Promise<T> {
    return this.refresh();
  }

  private refresh(): Promise<T> {
    const started = Date.now();
    const loading = this.load()
      .then(({ value, keep }) => {
        if (keep && (this.entry === undefined || this.entry.started <= started))
          this.entry = { value, at: Date.now(), started };
        return value;
      })
      .finally(() => {
        if (this.loading === loading) this.loading = undefined;
      });
    this.loading = loading;
    return loading;
  }
}
