/**
 * The search box in the header (`/` focuses it): hosts, GPUs (by uuid too), namespaces and pods
 * whose name, or a part of it after `-`, `.`, `_` or `/`, starts with what is typed, from
 * GET /api/v1/search (docs/api.md). Asked at each key, at most once every SEARCH_INTERVAL_MS (a key
 * sooner than that is searched for when the interval ends, with what the box holds then); results
 * grouped by kind;
 * arrow keys move, Enter (or a click) opens: a host its page, a GPU its page, a pod its GPU's page,
 * a namespace the usage page by namespace.
 */
import { api, isAbort, message, serves, type SearchHit, type SearchKind } from './api.js';
import { h } from './dom.js';
import { DEFAULT_RANGE, DEFAULT_USAGE_RANGE, formatRoute, type Route } from './route.js';
import { DEFAULT_HEAT_METRIC } from './metrics.js';
import type { Router } from './router.js';

/**
 * Fewest milliseconds between two searches while typing. A key is searched for at once (an answer
 * costs the gateway well under a millisecond from its in-memory indexes, and a request in flight
 * is aborted by the next), so hits follow each key of someone typing by the time of one request,
 * not of a wait for typing to pause; keys faster than this (a paste, a fast burst) are searched
 * for together when the interval ends. Keys faster than that still send up to 20 searches a
 * second, each aborting the last: the gateway's default rate limit (1,200 requests a minute for a
 * token, the dashboard's other requests included) is that rate, so a burst of a few keys costs a
 * few of them, and a minute of keys without a pause would meet it (429, shown in the box).
 */
export const SEARCH_INTERVAL_MS = 50;
/** Most hits asked for. */
const LIMIT = 20;
const MAX_Q = 128;

const KINDS: readonly (readonly [SearchKind, string])[] = [
  ['host', 'Hosts'],
  ['gpu', 'GPUs'],
  ['namespace', 'Namespaces'],
  ['pod', 'Pods'],
];

/** Where a hit leads. */
export function routeOfHit(hit: SearchHit): Route {
  const c = hit.cluster_id;
  switch (hit.kind) {
    case 'host':
      return {
        view: 'host',
        cluster: c,
        host: hit.host_id ?? hit.label,
        metric: DEFAULT_HEAT_METRIC,
      };
    case 'gpu':
    case 'pod':
      if (hit.host_id !== undefined && hit.gpu_id !== undefined)
        return {
          view: 'gpu',
          cluster: c,
          host: hit.host_id,
          gpu: hit.gpu_id,
          range: DEFAULT_RANGE,
        };
      return { view: 'usage', cluster: c, groupBy: 'pod', range: DEFAULT_USAGE_RANGE };
    case 'namespace':
      return { view: 'usage', cluster: c, groupBy: 'namespace', range: DEFAULT_USAGE_RANGE };
  }
}

export class SearchBox {
  readonly el: HTMLElement;
  readonly input: HTMLInputElement;
  private readonly panel: HTMLElement;
  /** The search due when SEARCH_INTERVAL_MS has passed since the last one. */
  private timer: number | undefined;
  /** When the last search was sent (performance.now()). */
  private lastSent = Number.NEGATIVE_INFINITY;
  private ctl: AbortController | undefined;
  /** The last search sent, until it has shown its answer (or given way to the next). */
  private inFlight: Promise<void> | undefined;
  /** What the last search sent asked for (cleared when it failed, so asking again retries it). */
  private sentQ: string | undefined;
  /** Enter was pressed before the hits of what was typed were shown: they open once they are. */
  private opening = false;
  private links: HTMLAnchorElement[] = [];
  private routes: Route[] = [];
  private active = -1;
  /** Searches sent (tests read it). */
  private sent = 0;

  constructor(private readonly router: Router) {
    this.input = h('input', {
      type: 'search',
      class: 'search-input',
      placeholder: 'Search hosts, GPUs, pods  /',
      'aria-label': 'Search hosts, GPUs, pods and namespaces',
      autocomplete: 'off',
      spellcheck: 'false',
      maxlength: MAX_Q,
      'data-testid': 'search',
    });
    this.input.setAttribute('role', 'combobox');
    this.input.setAttribute('aria-expanded', 'false');
    this.input.setAttribute('aria-controls', 'search-results');
    this.panel = h('div', {
      id: 'search-results',
      class: 'search-results',
      role: 'listbox',
      'data-testid': 'search-results',
    });
    this.panel.hidden = true;
    this.el = h('div', { class: 'search' }, this.input, this.panel);
    this.input.addEventListener('input', () => {
      this.schedule();
    });
    this.input.addEventListener('keydown', (e) => {
      if (this.keydown(e)) {
        e.preventDefault();
        e.stopPropagation();
      }
    });
    this.input.addEventListener('focus', () => {
      if (this.links.length > 0 || this.panel.childElementCount > 0) this.open(true);
    });
    this.el.addEventListener('focusout', (e) => {
      if (!(e.relatedTarget instanceof Node && this.el.contains(e.relatedTarget))) this.open(false);
    });
    this.panel.addEventListener('click', (e) => {
      const a = e.target instanceof Element ? e.target.closest('a') : null;
      if (a !== null) {
        e.preventDefault();
        this.go(this.links.indexOf(a));
      }
    });
  }

  focus(): void {
    this.input.focus();
    this.input.select();
  }

  private open(on: boolean): void {
    this.panel.hidden = !on;
    this.input.setAttribute('aria-expanded', String(on));
  }

  /** A key was typed: search now, or when the interval since the last search ends. */
  private schedule(): void {
    if (this.timer !== undefined) return; // due soon: it reads the box as it is then
    const wait = this.lastSent + SEARCH_INTERVAL_MS - performance.now();
    if (wait <= 0) {
      void this.searchNow();
      return;
    }
    this.timer = window.setTimeout(() => {
      this.timer = undefined;
      void this.searchNow();
    }, wait);
  }

  /** Sends the search for what the box holds; resolves once it is shown (or superseded). */
  private searchNow(): Promise<void> {
    // Nothing to ask when the box holds what the last search asked (a key and a Backspace).
    if (this.query() === this.sentQ) return this.inFlight ?? Promise.resolve();
    this.lastSent = performance.now();
    const done = this.search().finally(() => {
      if (this.inFlight === done) this.inFlight = undefined;
    });
    this.inFlight = done;
    return done;
  }

  private query(): string {
    return this.input.value.trim().slice(0, MAX_Q);
  }

  /**
   * Resolves once no search is due or in flight: the hits shown are those of what the box holds
   * (a search aborted by a newer one resolves its promise too, so this waits for the newest).
   */
  private async settled(): Promise<void> {
    for (;;) {
      if (this.timer !== undefined) {
        clearTimeout(this.timer);
        this.timer = undefined;
        await this.searchNow();
        continue;
      }
      const pending = this.inFlight;
      if (pending === undefined) return;
      await pending;
    }
  }

  private async search(): Promise<void> {
    const q = this.query();
    this.sentQ = q;
    this.ctl?.abort();
    if (q === '') {
      this.show(q, []);
      this.open(false);
      return;
    }
    const ctl = new AbortController();
    this.ctl = ctl;
    this.sent++;
    this.el.dataset.sent = String(this.sent);
    try {
      if (!(await serves('/api/v1/search'))) {
        if (!ctl.signal.aborted)
          this.showMessage(q, 'This gateway cannot search (it is older than search).');
        return;
      }
      const res = await api.search({ q, limit: LIMIT }, ctl.signal);
      if (ctl.signal.aborted) return;
      this.show(q, res.hits, res.truncated);
    } catch (err) {
      if (isAbort(err, ctl.signal)) return;
      if (this.sentQ === q) this.sentQ = undefined;
      this.showMessage(q, `Cannot search: ${message(err)}`);
    }
  }

  private showMessage(q: string, text: string): void {
    this.links = [];
    this.routes = [];
    this.active = -1;
    this.panel.replaceChildren(h('div', { class: 'search-empty', text }));
    this.el.dataset.q = q;
    performance.clearMarks('nexus:search-shown');
    performance.mark('nexus:search-shown');
    this.open(document.activeElement === this.input);
  }

  private show(q: string, hits: readonly SearchHit[], truncated = false): void {
    this.links = [];
    this.routes = [];
    this.active = -1;
    const groups: HTMLElement[] = [];
    for (const [kind, title] of KINDS) {
      const mine = hits.filter((x) => x.kind === kind);
      if (mine.length === 0) continue;
      const items = mine.map((hit) => {
        const a = h(
          'a',
          {
            class: 'search-hit',
            href: formatRoute(routeOfHit(hit)),
            role: 'option',
            tabindex: -1,
            'data-kind': hit.kind,
            'data-testid': 'search-hit',
          },
          h('span', { class: 'search-label', text: hit.label }),
          h('span', { class: 'search-meta', text: meta(hit) }),
        );
        this.links.push(a);
        this.routes.push(routeOfHit(hit));
        return a;
      });
      groups.push(
        h(
          'div',
          { class: 'search-group', 'data-kind': kind },
          h('div', { class: 'search-kind', text: title }),
          ...items,
        ),
      );
    }
    if (q !== '' && hits.length === 0)
      groups.push(h('div', { class: 'search-empty', text: `Nothing matches "${q}".` }));
    if (truncated) groups.push(h('div', { class: 'search-empty', text: 'More match: type more.' }));
    this.panel.replaceChildren(...groups);
    this.el.dataset.q = q;
    this.el.dataset.hits = String(hits.length);
    performance.clearMarks('nexus:search-shown');
    performance.mark('nexus:search-shown');
    if (q !== '') this.open(document.activeElement === this.input);
    if (this.links.length > 0) this.setActive(0);
  }

  private setActive(i: number): void {
    this.links[this.active]?.classList.remove('active');
    this.links[this.active]?.setAttribute('aria-selected', 'false');
    this.active = i;
    const a = this.links[i];
    if (a === undefined) return;
    a.classList.add('active');
    a.setAttribute('aria-selected', 'true');
    a.scrollIntoView({ block: 'nearest' });
  }

  private go(i: number): void {
    const r = this.routes[i];
    if (r === undefined) return;
    this.open(false);
    this.input.blur();
    this.router.go(r);
  }

  private keydown(e: KeyboardEvent): boolean {
    switch (e.key) {
      case 'ArrowDown':
        if (this.links.length > 0) this.setActive((this.active + 1) % this.links.length);
        return true;
      case 'ArrowUp':
        if (this.links.length > 0)
          this.setActive((this.active - 1 + this.links.length) % this.links.length);
        return true;
      case 'Enter':
        if (this.timer !== undefined || this.inFlight !== undefined) {
          // The hits shown are not yet those of what was typed (its search is due or in flight,
          // and keys typed after Enter may come first): open the first hit once they are, once.
          if (!this.opening) {
            this.opening = true;
            void this.settled().then(() => {
              this.opening = false;
              this.go(0);
            });
          }
          return true;
        }
        this.go(this.active < 0 ? 0 : this.active);
        return true;
      case 'Escape':
        this.open(false);
        this.input.blur();
        return true;
      default:
        return false;
    }
  }
}

function meta(hit: SearchHit): string {
  switch (hit.kind) {
    case 'host':
      return `${hit.cluster_id}${hit.gpus === undefined ? '' : ` · ${hit.gpus} GPUs`}`;
    case 'gpu':
      return `${hit.host_id ?? ''} · GPU ${hit.gpu_id ?? ''}`;
    case 'namespace':
      return `${hit.cluster_id}${hit.gpus === undefined ? '' : ` · ${hit.gpus} GPUs`}`;
    case 'pod':
      return `${hit.host_id ?? ''}${hit.gpu_id === undefined ? '' : ` · GPU ${hit.gpu_id}`}`;
  }
}
