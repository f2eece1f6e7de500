/**
 * Where the scraper's targets come from: a list (SCRAPE_TARGETS), a Prometheus `file_sd` file
 * (SCRAPE_TARGETS_FILE, re-read when it changes) and a Kubernetes Service's endpoints
 * (src/scraper/kubernetes.ts). Each source hands the scraper its whole current list; the scraper
 * takes the union.
 */
import { readFile, stat } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { NexusError, describeError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';

export interface ScrapeTarget {
  /** The URL scraped, also the target's name in metrics and logs. */
  readonly url: string;
  /** Labels the target adds to each of its samples where the sample has none of that name. */
  readonly labels: Readonly<Record<string, string>>;
}

/** A source's current targets; `source` names it (static, file, kubernetes). */
export type TargetSink = (source: string, targets: readonly ScrapeTarget[]) => void;

/** At most this many targets from one source (a file or a Service larger than a fleet is a mistake). */
export const MAX_TARGETS = 10_000;

/**
 * A target as written: `host:port` (http and /metrics, as dcgm-exporter serves), or a URL (its
 * path, /metrics if none). `scheme` and `path` are file_sd's `__scheme__` and `__metrics_path__`.
 */
export function targetUrl(text: string, scheme = 'http', path = '/metrics'): string {
  const t = text.trim();
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(t) ? t : `${scheme}://${t}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new NexusError('CONFIG_INVALID', `scrape target "${t}" is not host:port or a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new NexusError('CONFIG_INVALID', `scrape target "${t}": only http and https are scraped`);
  }
  if (url.hostname === '' || (withScheme === `${scheme}://${t}` && url.port === '')) {
    throw new NexusError('CONFIG_INVALID', `scrape target "${t}" has no port (host:port)`);
  }
  if (url.pathname === '/' && !/^[a-z][a-z0-9+.-]*:\/\/[^/]+\//i.test(withScheme)) {
    url.pathname = path;
  }
  return url.toString();
}

/** SCRAPE_TARGETS: each entry a target, no labels. */
export function staticTargets(list: readonly string[]): ScrapeTarget[] {
  if (list.length > MAX_TARGETS) {
    throw new NexusError('CONFIG_INVALID', `SCRAPE_TARGETS: more than ${MAX_TARGETS} targets`);
  }
  return list.map((t) => ({ url: targetUrl(t), labels: {} }));
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * A file_sd file's targets: JSON or YAML, `[{targets: ["host:port", ...], labels: {...}}]`.
 * Throws a NexusError saying what is wrong (the caller keeps its last good list).
 */
export function parseFileSd(text: string, name: string): ScrapeTarget[] {
  let doc: unknown;
  try {
    // YAML is a superset of JSON: one parser reads both.
    doc = parseYaml(text, { maxAliasCount: 100 });
  } catch (err) {
    throw new NexusError('CONFIG_INVALID', `${name}: not JSON or YAML (${describeError(err)})`);
  }
  if (doc === null || doc === undefined) return [];
  if (!Array.isArray(doc)) {
    throw new NexusError('CONFIG_INVALID', `${name}: expected a list of {targets, labels} groups`);
  }
  const out: ScrapeTarget[] = [];
  const seen = new Set<string>();
  doc.forEach((group: unknown, i) => {
    if (!isRecord(group) || !Array.isArray(group.targets)) {
      throw new NexusError('CONFIG_INVALID', `${name}: group ${i + 1} has no targets list`);
    }
    const labels: Record<string, string> = {};
    if (group.labels !== undefined) {
      if (!isRecord(group.labels)) {
        throw new NexusError('CONFIG_INVALID', `${name}: group ${i + 1}: labels is not a map`);
      }
      for (const [k, v] of Object.entries(group.labels)) {
        if (typeof v !== 'string') {
          throw new NexusError('CONFIG_INVALID', `${name}: group ${i + 1}: label ${k} is not text`);
        }
        labels[k] = v;
      }
    }
    const scheme = labels.__scheme__ ?? 'http';
    const path = labels.__metrics_path__ ?? '/metrics';
    const own = Object.fromEntries(Object.entries(labels).filter(([k]) => !k.startsWith('__')));
    for (const t of group.targets as unknown[]) {
      if (typeof t !== 'string') {
        throw new NexusError('CONFIG_INVALID', `${name}: group ${i + 1}: a target is not text`);
      }
      let url: string;
      try {
        url = targetUrl(t, scheme, path);
      } catch (err) {
        throw new NexusError('CONFIG_INVALID', `${name}: group ${i + 1}: ${describeError(err)}`);
      }
      if (seen.has(url)) continue;
      seen.add(url);
      out.push({ url, labels: own });
      if (out.length > MAX_TARGETS) {
        throw new NexusError('CONFIG_INVALID', `${name}: more than ${MAX_TARGETS} targets`);
      }
    }
  });
  return out;
}

export interface FileTargetsOptions {
  readonly path: string;
  readonly sink: TargetSink;
  readonly logger: Logger;
  /** How often the file's size and mtime are checked (default 2 s). */
  readonly pollMs?: number;
  /** Called with the reason each time a read fails (a metric). */
  readonly onError?: (reason: string) => void;
}

/**
 * Watches a file_sd file: reads it now and again whenever its modification time, size or inode
 * changes (polling: a ConfigMap's symlink swap and an editor's rename are both seen). A file that
 * cannot be read or parsed keeps the last good targets, with one error line saying why.
 */
export class FileTargets {
  private timer: NodeJS.Timeout | undefined;
  private lastStamp = '';
  private reading: Promise<void> | undefined;
  /** The last problem reported (so one bad version gives one error line). */
  problem: string | undefined;

  constructor(private readonly o: FileTargetsOptions) {}

  /** Reads the file once (it must be readable and valid: a bad file at start is an error). */
  async start(): Promise<void> {
    await this.check(true);
    this.timer = setInterval(() => {
      this.reading ??= this.check(false).finally(() => {
        this.reading = undefined;
      });
    }, this.o.pollMs ?? 2000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.reading;
  }

  /** Re-reads the file if it changed (all of it at start). */
  async check(first = false): Promise<void> {
    const { path } = this.o;
    let stamp: string;
    let text: string;
    try {
      const s = await stat(path);
      stamp = `${s.mtimeMs}:${s.size}:${s.ino}`;
      if (!first && stamp === this.lastStamp) return;
      if (s.size > 16 * 1024 * 1024) {
        throw new NexusError('CONFIG_INVALID', `${path}: larger than 16 MiB`);
      }
      text = await readFile(path, 'utf8');
    } catch (err) {
      this.fail(`cannot read ${path}: ${describeError(err)}`, first);
      return;
    }
    let targets: ScrapeTarget[];
    try {
      targets = parseFileSd(text, path);
    } catch (err) {
      this.lastStamp = stamp;
      this.fail(describeError(err), first);
      return;
    }
    this.lastStamp = stamp;
    if (this.problem !== undefined) {
      this.o.logger.info({ file: path }, `scrape targets file ${path} is readable again`);
    }
    this.problem = undefined;
    this.o.logger.info(
      { file: path, targets: targets.length },
      `scrape targets from ${path}: ${targets.length}`,
    );
    this.o.sink('file', targets);
  }

  private fail(reason: string, first: boolean): void {
    if (first) throw new NexusError('CONFIG_INVALID', `SCRAPE_TARGETS_FILE: ${reason}`);
    this.o.onError?.(reason);
    if (reason === this.problem) return;
    this.problem = reason;
    this.o.logger.error(
      { file: this.o.path, reason },
      `scrape targets file: ${reason}; the last good targets are kept`,
    );
  }
}
