/**
 * `nexus scrape`: scrapes dcgm-exporter endpoints every SCRAPE_INTERVAL and publishes their
 * readings into the queue through RecordPublisher (the streamer's envelope, no checkpoints).
 *
 * - Each target is scraped at a fixed offset within the interval, derived from its URL (stable
 *   across restarts and processes), so a fleet's exporters are not all hit at once.
 * - A scrape's samples are turned into records by recordFromSeries, with the scrape's start time
 *   as the timestamp unless a sample carries its own; what is not a reading is counted by reason.
 * - Backpressure: while the queue holds MAX_QUEUE_DEPTH messages or more, a due scrape is skipped
 *   and counted (nexus_scrape_skipped_total{reason="backpressure"}), not delayed. An exporter
 *   serves only its current values: a scrape held back would publish stale readings late and
 *   pile up behind the next; the skipped instants are simply not sampled (counters such as energy
 *   lose nothing, their next reading carries the total).
 * - stop(): no new scrape starts; the scrapes in flight finish, their publishes included.
 */
import { createHash } from 'node:crypto';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { recordFromSeries } from '../core/dcgm-series.js';
import { describeError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { NexusMetrics } from '../core/metrics.js';
import type { TelemetryRecord } from '../core/record.js';
import { traceContextOf, tracer, type Span } from '../core/tracing.js';
import type { RecordPublisher } from '../queue/record-publisher.js';
import { parseExposition } from './exposition.js';
import { fetchMetrics, ScrapeError, type FetchOptions } from './http.js';
import type { ScrapeTarget } from './targets.js';

export interface ScraperOptions {
  readonly publisher: RecordPublisher;
  readonly logger: Logger;
  readonly metrics?: NexusMetrics | undefined;
  readonly intervalMs: number;
  /** Deadline of one request (0: 80 % of the interval). */
  readonly timeoutMs: number;
  readonly http: Omit<FetchOptions, 'timeoutMs'>;
}

/** What one scrape did. */
export interface ScrapeOutcome {
  readonly target: string;
  /** The target answered 200 with a body within bounds. */
  readonly up: boolean;
  /** Why it did not, or why the scrape was skipped. */
  readonly error?: string;
  readonly skipped?: 'backpressure';
  readonly scraped: number;
  readonly published: number;
  readonly rejected: Readonly<Record<string, number>>;
  readonly ignored: Readonly<Record<string, number>>;
}

interface TargetState {
  target: ScrapeTarget;
  readonly offsetMs: number;
  timer?: NodeJS.Timeout | undefined;
  up?: boolean;
  dropped: boolean;
  /** Reasons already logged for this target (one warning per target per reason). */
  readonly warned: Set<string>;
  /** Label values used in this target's series, to remove them when it goes. */
  readonly rejectedReasons: Set<string>;
  readonly ignoredReasons: Set<string>;
}

/** A short, fixed reason for a recordFromSeries rejection (the full text goes to the log). */
export function rejectKind(reason: string): string {
  if (/is not a reading/.test(reason)) return 'not-a-number';
  if (/timestamp/.test(reason)) return 'timestamp';
  if (/no gpu label|bad gpu label/.test(reason)) return 'gpu-label';
  if (/no Hostname label/.test(reason)) return 'hostname-label';
  if (/label/.test(reason)) return 'labels';
  return 'identity';
}

/** The target's offset within the interval: a hash of its URL, the same in every process. */
export function offsetOf(url: string, intervalMs: number): number {
  const h = createHash('sha256').update(url).digest().readUInt32BE(0);
  return h % Math.max(1, intervalMs);
}

export class Scraper {
  private readonly sources = new Map<string, readonly ScrapeTarget[]>();
  private readonly targets = new Map<string, TargetState>();
  private readonly inflight = new Set<Promise<unknown>>();
  private started = false;
  private stopping = false;
  private backpressured = false;

  constructor(private readonly o: ScraperOptions) {}

  get timeoutMs(): number {
    return this.o.timeoutMs > 0 ? this.o.timeoutMs : Math.floor(this.o.intervalMs * 0.8);
  }

  /** The URLs scraped now. */
  get targetUrls(): string[] {
    return [...this.targets.keys()];
  }

  /** Ready while running with at least one target (probes of the queue are the caller's). */
  get health(): { ready: boolean; reasons: string[] } {
    const reasons: string[] = [];
    if (this.stopping) reasons.push('shutting down');
    if (this.targets.size === 0) reasons.push('no scrape targets');
    return { ready: reasons.length === 0, reasons };
  }

  /** Replaces one source's targets; the scraper scrapes the union of all sources. */
  setTargets(source: string, targets: readonly ScrapeTarget[]): void {
    this.sources.set(source, targets);
    this.o.metrics?.scrapeTargets.set({ source }, targets.length);
    const wanted = new Map<string, ScrapeTarget>();
    for (const list of this.sources.values()) {
      for (const t of list) if (!wanted.has(t.url)) wanted.set(t.url, t);
    }
    for (const [url, state] of this.targets) {
      if (wanted.has(url)) continue;
      this.drop(state);
      this.targets.delete(url);
      this.o.logger.info({ target: url }, `scrape target ${url} dropped: no longer listed`);
    }
    for (const [url, target] of wanted) {
      const state = this.targets.get(url);
      if (state !== undefined) {
        state.target = target;
        continue;
      }
      const fresh: TargetState = {
        target,
        offsetMs: offsetOf(url, this.o.intervalMs),
        dropped: false,
        warned: new Set(),
        rejectedReasons: new Set(),
        ignoredReasons: new Set(),
      };
      this.targets.set(url, fresh);
      if (this.started && !this.stopping) this.schedule(fresh);
    }
  }

  start(): void {
    this.started = true;
    for (const state of this.targets.values()) this.schedule(state);
  }

  /** No new scrape starts; resolves once the scrapes in flight (and their publishes) are done. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const state of this.targets.values()) clearTimeout(state.timer);
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
  }

  private schedule(state: TargetState): void {
    if (this.stopping || state.dropped) return;
    const now = Date.now();
    const { intervalMs } = this.o;
    const slot = Math.floor((now - state.offsetMs) / intervalMs) * intervalMs + state.offsetMs;
    const next = slot + intervalMs;
    state.timer = setTimeout(() => {
      state.timer = undefined;
      if (this.stopping || state.dropped) return;
      const run = this.scrapeOnce(state.target.url)
        .catch((err: unknown) => {
          this.o.logger.error({ target: state.target.url, err }, 'scrape failed unexpectedly');
        })
        .finally(() => {
          this.inflight.delete(run);
          this.schedule(state);
        });
      this.inflight.add(run);
    }, next - now);
  }

  private drop(state: TargetState): void {
    state.dropped = true;
    clearTimeout(state.timer);
    this.removeSeries(state);
  }

  private removeSeries(state: TargetState): void {
    const m = this.o.metrics;
    if (m === undefined) return;
    const target = state.target.url;
    m.scrapeUp.remove({ target });
    m.scrapeDuration.remove({ target });
    m.scrapeSamplesScraped.remove({ target });
    m.scrapeSamplesPublished.remove({ target });
    for (const reason of state.rejectedReasons) m.scrapeSamplesRejected.remove({ target, reason });
    for (const reason of state.ignoredReasons) m.scrapeSamplesIgnored.remove({ target, reason });
  }

  /** Scrapes one listed target now and publishes its readings. */
  async scrapeOnce(url: string): Promise<ScrapeOutcome> {
    const state = this.targets.get(url);
    if (state === undefined) throw new Error(`${url} is not a scrape target`);
    const { publisher, logger, metrics: m } = this.o;
    const empty = { scraped: 0, published: 0, rejected: {}, ignored: {} };
    if (!(await publisher.room())) {
      m?.scrapesSkipped.inc({ reason: 'backpressure' });
      if (!this.backpressured) {
        this.backpressured = true;
        logger.warn(
          { target: url },
          'the queue is at MAX_QUEUE_DEPTH: scrapes are skipped until the collectors catch up',
        );
      }
      return { target: url, up: state.up ?? false, skipped: 'backpressure', ...empty };
    }
    if (this.backpressured) {
      this.backpressured = false;
      logger.info('the queue is below MAX_QUEUE_DEPTH again: scraping resumes');
    }
    return tracer().startActiveSpan(
      'nexus.scrape',
      { kind: SpanKind.PRODUCER, attributes: { 'nexus.scrape.target': url } },
      async (span: Span) => {
        const t0 = performance.now();
        const start = Date.now();
        try {
          return await this.scrapeAndPublish(state, start, span);
        } catch (err) {
          span.setStatus({ code: SpanStatusCode.ERROR, message: describeError(err) });
          throw err;
        } finally {
          span.end();
          if (!state.dropped)
            m?.scrapeDuration.set({ target: url }, (performance.now() - t0) / 1000);
        }
      },
    );
  }

  private async scrapeAndPublish(
    state: TargetState,
    start: number,
    span: Span,
  ): Promise<ScrapeOutcome> {
    const url = state.target.url;
    const { publisher, logger, metrics: m } = this.o;
    let body: string;
    try {
      body = await fetchMetrics(url, { ...this.o.http, timeoutMs: this.timeoutMs });
    } catch (err) {
      const why = err instanceof ScrapeError ? err.message : describeError(err);
      if (!state.dropped) m?.scrapeUp.set({ target: url }, 0);
      if (state.up !== false) {
        logger.warn({ target: url, reason: why }, `scrape target ${url} is down: ${why}`);
      }
      state.up = false;
      span.setStatus({ code: SpanStatusCode.ERROR, message: why });
      return {
        target: url,
        up: false,
        error: why,
        scraped: 0,
        published: 0,
        rejected: {},
        ignored: {},
      };
    }
    if (state.up !== true) logger.info({ target: url }, `scrape target ${url} is up`);
    state.up = true;
    const parsed = parseExposition(body);
    const rejected: Record<string, number> = {};
    const ignored: Record<string, number> = {};
    const reject = (kind: string, detail: string): void => {
      rejected[kind] = (rejected[kind] ?? 0) + 1;
      if (!state.warned.has(kind)) {
        state.warned.add(kind);
        logger.warn(
          { target: url, reason: kind, detail },
          `scrape target ${url}: samples rejected (${kind}): ${detail}; counted in nexus_scrape_samples_rejected_total, logged once`,
        );
      }
    };
    for (const [reason, n] of Object.entries(parsed.malformed)) {
      const example = parsed.examples.find((e) => e.reason === reason);
      for (let i = 0; i < n; i++) {
        reject(`malformed:${reason}`, `line ${example?.line ?? '?'}: ${example?.detail ?? reason}`);
      }
    }
    if (parsed.truncated) reject('too-many-lines', 'the body has more lines than the parser reads');
    const now = Date.now();
    const records: TelemetryRecord[] = [];
    for (const s of parsed.samples) {
      let labels = s.labels;
      const extra = state.target.labels;
      for (const k in extra) {
        if (labels[k] === undefined) labels = { ...labels, [k]: extra[k] as string };
      }
      const r = recordFromSeries(
        { name: s.name, labels, value: s.value, timestamp: s.timestamp ?? start },
        { now },
      );
      if (r.kind === 'record') records.push(r.record);
      else if (r.kind === 'reject') reject(rejectKind(r.reason), r.reason);
      else ignored[r.kind] = (ignored[r.kind] ?? 0) + 1;
    }
    span.setAttribute('nexus.scrape.samples', parsed.samples.length);
    span.setAttribute('nexus.batch.records', records.length);
    if (records.length > 0) {
      const lines = {
        file: url,
        firstLine: parsed.samples[0]?.line ?? 1,
        lastLine: parsed.samples.at(-1)?.line ?? 1,
      };
      try {
        await publisher.publish(records, lines, traceContextOf(span));
      } catch (err) {
        // RecordPublisher already retried each message; this scrape's readings are not sampled.
        const why = `publish failed: ${describeError(err)}`;
        m?.scrapesSkipped.inc({ reason: 'publish-failed' });
        logger.error({ target: url, err: describeError(err) }, `scrape of ${url}: ${why}`);
        span.setStatus({ code: SpanStatusCode.ERROR, message: why });
        return {
          target: url,
          up: true,
          error: why,
          scraped: parsed.samples.length,
          published: 0,
          rejected,
          ignored,
        };
      }
    }
    if (!state.dropped && m !== undefined) {
      m.scrapeUp.set({ target: url }, 1);
      m.scrapeSamplesScraped.inc({ target: url }, parsed.samples.length + parsed.malformedCount);
      m.scrapeSamplesPublished.inc({ target: url }, records.length);
      for (const [reason, n] of Object.entries(rejected)) {
        state.rejectedReasons.add(reason);
        m.scrapeSamplesRejected.inc({ target: url, reason }, n);
      }
      for (const [reason, n] of Object.entries(ignored)) {
        state.ignoredReasons.add(reason);
        m.scrapeSamplesIgnored.inc({ target: url, reason }, n);
      }
    }
    return {
      target: url,
      up: true,
      scraped: parsed.samples.length + parsed.malformedCount,
      published: records.length,
      rejected,
      ignored,
    };
  }
}
