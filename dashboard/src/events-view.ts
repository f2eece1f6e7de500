/**
 * The events page (`#/events?cluster=..&type=xid,health&host=..&range=24h`): a timeline of the
 * cluster's events (XID errors, throttling, health changes, GPUs that stopped reporting or came
 * back), newest first, filtered by type and host, a page of PAGE_SIZE at a time with "older" to
 * page on (GET /api/v1/clusters/{c}/events); events recorded while the page is open appear at the
 * top as the gateway pushes them (a subscription of kind `events` on the live socket, for the
 * page's cluster and host: see follow()), and the counts follow.
 */
import { api, isAbort, message, type EventsResult, type FleetEvent } from './api.js';
import { h, notice, setText } from './dom.js';
import { clusterSelect, pickCluster, problem, segmented } from './fleet-page.js';
import { formatAgo, formatDateTime, formatNumber, parseTime } from './format.js';
import { DEFAULT_RANGE, EVENT_TYPES, USAGE_RANGES, type EventType, type Route } from './route.js';
import { Router } from './router.js';
import type { Context, Crumb, View } from './view.js';

type EventsRoute = Extract<Route, { view: 'events' }>;

const PAGE_SIZE = 100;
/** How long after a pushed event of a type not listed the counts are asked for. */
const RECOUNT_AFTER_MS = 2000;
/** How often the page asks for its first page and counts again, pushed events or not. */
const RECONCILE_MS = 60_000;
/** Most events the page keeps (live ones push the oldest out). */
const MAX_SHOWN = 2000;
const RANGE_MS: Readonly<Record<EventsRoute['range'], number>> = {
  '1h': 3_600_000,
  '6h': 6 * 3_600_000,
  '24h': 86_400_000,
  '7d': 7 * 86_400_000,
  '30d': 30 * 86_400_000,
};
const TYPE_LABEL: Readonly<Record<EventType, string>> = {
  xid: 'XID',
  throttle: 'Throttle',
  health: 'Health',
  stopped: 'Stopped',
  reappeared: 'Reappeared',
};

/** The host list's last option: loads the next page. */
const MORE = '\u0000more';

export class EventsView implements View {
  readonly el: HTMLElement;
  readonly crumbs: readonly Crumb[] = [{ label: 'Fleet', href: '#/' }, { label: 'Events' }];
  private route: EventsRoute;
  private readonly list: HTMLElement;
  private readonly state: HTMLElement;
  private readonly sub: HTMLElement;
  private readonly counts: HTMLElement;
  private readonly more: HTMLButtonElement;
  private readonly select: ReturnType<typeof clusterSelect>;
  private readonly hostSelect: HTMLSelectElement;
  /** The hosts listed so far (pages of the API's, by hostname) and the next page's cursor. */
  private hostNames: string[] = [];
  private hostCursor: string | null = null;
  private readonly range: ReturnType<typeof segmented<EventsRoute['range']>>;
  private readonly typeBoxes = new Map<EventType, HTMLInputElement>();
  private ctl: AbortController | undefined;
  /** The live subscription: its cluster and host, and the function that ends it. */
  private following: { cluster: string; host: string | undefined; stop: () => void } | undefined;
  private recountTimer: number | undefined;
  private reconcileTimer: number | undefined;
  /** The first page of the filters shown is on the page (live events and re-syncs join it). */
  private loaded = false;
  /** Events pushed while the first page loads, added once it is in (at most MAX_SHOWN). */
  private held: { cluster: string; host: string | undefined; e: FleetEvent }[] = [];
  private refreshCtl: AbortController | undefined;
  private cluster: string | undefined;
  private cursor: string | null = null;
  private readonly shown = new Set<string>();
  private countsNow: Record<string, number> = {};

  constructor(
    route: EventsRoute,
    private readonly ctx: Context,
  ) {
    this.route = route;
    this.select = clusterSelect((cluster) => {
      this.go({ cluster, host: undefined });
    });
    this.hostSelect = h('select', {
      class: 'select',
      'aria-label': 'Host',
      'data-testid': 'events-host',
    });
    this.hostSelect.addEventListener('change', () => {
      if (this.hostSelect.value === MORE) {
        this.hostSelect.value = this.route.host ?? '';
        void this.moreHosts();
        return;
      }
      this.go({ host: this.hostSelect.value === '' ? undefined : this.hostSelect.value });
    });
    this.range = segmented(
      'Time range',
      USAGE_RANGES,
      (r) => r,
      (range) => {
        this.go({ range });
      },
    );
    const types = h('fieldset', { class: 'type-filter', 'data-testid': 'events-types' });
    types.append(h('legend', { class: 'visually-hidden', text: 'Event types' }));
    for (const t of EVENT_TYPES) {
      const box = h('input', { type: 'checkbox', value: t, 'data-type': t });
      box.addEventListener('change', () => {
        const picked = EVENT_TYPES.filter((x) => this.typeBoxes.get(x)?.checked === true);
        // None ticked means every type, as the API reads no `type`.
        this.go({ types: picked.length === EVENT_TYPES.length ? [] : picked });
      });
      this.typeBoxes.set(t, box);
      types.append(h('label', { class: `chip type-${t}` }, box, TYPE_LABEL[t]));
    }
    this.more = h('button', {
      type: 'button',
      class: 'btn',
      'data-testid': 'events-more',
      text: 'Older events',
    });
    this.more.addEventListener('click', () => void this.load(true));
    this.more.hidden = true;
    this.sub = h('div', { class: 'page-sub', 'data-testid': 'events-summary' });
    this.counts = h('div', { class: 'chips', 'data-testid': 'events-counts' });
    this.state = h('div', {}, notice('loading', 'Loading the events…'));
    this.list = h('ol', { class: 'timeline', 'data-testid': 'events-list' });
    this.el = h(
      'div',
      { class: 'page page-events', 'data-testid': 'page-events' },
      h(
        'header',
        { class: 'page-head' },
        h('div', {}, h('h1', { text: 'Events' }), this.sub),
        h('div', { class: 'toolbar' }, this.range.el, this.hostSelect, this.select.el),
      ),
      h(
        'section',
        { class: 'panel' },
        h('div', { class: 'panel-head' }, types, this.counts),
        this.state,
        this.list,
        h('div', { class: 'more' }, this.more),
      ),
    );
    this.mark();
    void this.load(false);
  }

  update(route: Route): boolean {
    if (route.view !== 'events') return false;
    this.route = route;
    this.mark();
    void this.load(false);
    return true;
  }

  key(): boolean {
    return false;
  }

  destroy(): void {
    this.ctl?.abort();
    this.refreshCtl?.abort();
    this.following?.stop();
    this.following = undefined;
    if (this.recountTimer !== undefined) clearTimeout(this.recountTimer);
    if (this.reconcileTimer !== undefined) clearInterval(this.reconcileTimer);
  }

  private go(change: Partial<Omit<EventsRoute, 'view'>>): void {
    this.ctx.router.go({ ...this.route, ...change }, { replace: true });
  }

  private mark(): void {
    this.range.mark(this.route.range);
    for (const [t, box] of this.typeBoxes)
      box.checked = this.route.types.length === 0 || this.route.types.includes(t);
  }

  /** The first page (older = false), or the next page of older events. */
  private async load(older: boolean): Promise<void> {
    this.ctl?.abort();
    const ctl = new AbortController();
    this.ctl = ctl;
    const r = this.route;
    let res: EventsResult;
    let query = '';
    if (!older) {
      // What is shown is for other filters until this page is in.
      this.loaded = false;
      this.held = [];
      this.refreshCtl?.abort();
      if (this.recountTimer !== undefined) clearTimeout(this.recountTimer);
      this.recountTimer = undefined;
    }
    try {
      if (!older) {
        const picked = await pickCluster(
          r.cluster,
          ctl.signal,
          '/api/v1/clusters/{cluster_id}/events',
        );
        this.select.set(picked.ids, picked.cluster);
        this.cluster = picked.cluster;
        if (picked.cluster === undefined) {
          if (picked.problem !== undefined) this.state.replaceChildren(problem(picked.problem));
          this.list.replaceChildren();
          return;
        }
        // The first page of hosts; "More hosts…" loads the next (a fleet may have thousands).
        const hosts = await api.hosts(picked.cluster, {}, ctl.signal);
        this.hostCursor = hosts.next_cursor ?? null;
        this.hostNames = hosts.hosts.map((x) => x.host_id);
        this.showHosts();
      }
      const cluster = this.cluster;
      if (cluster === undefined) return;
      const cursor = older ? this.cursor : null;
      const params = {
        ...(r.types.length === 0 ? {} : { type: r.types.join(',') }),
        from: new Date(Date.now() - RANGE_MS[r.range]).toISOString(),
        ...(r.host === undefined ? {} : { host_id: r.host }),
        limit: PAGE_SIZE,
        ...(cursor === null ? {} : { cursor }),
      };
      res = await api.events(cluster, params, ctl.signal);
      query = new URLSearchParams(
        Object.entries(params).map(([k, v]) => [k, String(v)]),
      ).toString();
    } catch (err) {
      if (isAbort(err, ctl.signal)) return;
      this.state.replaceChildren(notice('error', `Cannot load the events: ${message(err)}`));
      return;
    }
    if (!older) {
      this.list.replaceChildren();
      this.shown.clear();
      this.loaded = true;
      this.follow();
    }
    const held = this.held;
    this.held = [];
    this.cursor = res.next_cursor;
    this.more.hidden = res.next_cursor === null;
    this.countsNow = { ...res.counts };
    this.showCounts();
    setText(
      this.sub,
      `${res.cluster_id} · ${formatDateTime(parseTime(res.from))} – now${r.host === undefined ? '' : ` · host ${r.host}`}`,
    );
    for (const e of res.events) this.add(e, false);
    // Pushed while the page loaded (the subscription outlives a change of types or range).
    for (const x of held) this.pushed(x.cluster, x.host, x.e);
    this.showState();
    // What the rows show (tests wait for it).
    this.el.dataset.query = query;
  }

  private showHosts(): void {
    const hosts = this.hostNames;
    const wanted = this.route.host;
    const all = wanted !== undefined && !hosts.includes(wanted) ? [wanted, ...hosts] : hosts;
    this.hostSelect.replaceChildren(
      h('option', { value: '', text: 'All hosts' }),
      ...all.map((x) => h('option', { value: x, text: x })),
      ...(this.hostCursor === null
        ? []
        : [h('option', { value: MORE, text: 'More hosts…', 'data-testid': 'more-hosts' })]),
    );
    this.hostSelect.value = wanted ?? '';
  }

  /** The next page of the host list, appended. */
  private async moreHosts(): Promise<void> {
    const cluster = this.cluster;
    const cursor = this.hostCursor;
    if (cluster === undefined || cursor === null) return;
    try {
      const page = await api.hosts(cluster, { cursor });
      if (cluster !== this.cluster) return;
      this.hostCursor = page.next_cursor ?? null;
      this.hostNames = [...this.hostNames, ...page.hosts.map((x) => x.host_id)];
      this.showHosts();
    } catch (err) {
      this.state.replaceChildren(notice('error', `Cannot list more hosts: ${message(err)}`));
    }
  }

  /**
   * Events recorded since the page loaded join at the top as they are pushed, and the counts
   * follow. The subscription is the cluster's and host's, of every type (the counts are of every
   * type, whichever are listed), and outlives a change of types or range. The live client asks for
   * a re-sync (refresh: the first page again) once the gateway holds the subscription, after the
   * socket was away or dropped events, and every few seconds while it cannot push; and the page
   * reconciles every RECONCILE_MS, as its range moves on and the counts of what it was not sent
   * (an event committed more than the gateway's overlap late) would drift.
   */
  private follow(): void {
    const cluster = this.cluster;
    const host = this.route.host;
    if (cluster === undefined) return;
    const old = this.following;
    if (old === undefined || old.cluster !== cluster || old.host !== host) {
      const stop = this.ctx.live.subscribeEvents(
        { cluster_id: cluster, ...(host === undefined ? {} : { host_id: [host] }) },
        {
          onEvent: (e) => {
            this.pushed(cluster, host, e);
          },
          onResync: () => void this.refresh(),
        },
      );
      // The new one first: nothing recorded in between is missed.
      this.following = { cluster, host, stop };
      old?.stop();
    }
    if (this.reconcileTimer === undefined)
      this.reconcileTimer = window.setInterval(() => {
        if (!document.hidden) void this.refresh();
      }, RECONCILE_MS);
  }

  /** An event pushed to the subscription of `cluster` and `host`. */
  private pushed(cluster: string, host: string | undefined, e: FleetEvent): void {
    const r = this.route;
    // A newer load (other filters) replaced what this subscription was for, or is under way.
    if (!this.loaded) {
      if (this.held.length < MAX_SHOWN) this.held.push({ cluster, host, e });
      return;
    }
    if (cluster !== this.cluster || host !== r.host) return;
    if (parseTime(e.time) < Date.now() - RANGE_MS[r.range]) return;
    if (r.types.length > 0 && !r.types.includes(e.type)) {
      this.recount();
      return;
    }
    if (!this.add(e, true)) return;
    this.countsNow = { ...this.countsNow, [e.type]: (this.countsNow[e.type] ?? 0) + 1 };
    this.showCounts();
    this.showState();
  }

  /**
   * An event of a type not listed was recorded: it is counted, not shown. The API's counts say
   * it, asked RECOUNT_AFTER_MS after the first of a burst of them (the events shown say which
   * they are; these cannot, so counting them here could count one twice).
   */
  private recount(): void {
    if (this.recountTimer !== undefined) return;
    this.recountTimer = window.setTimeout(() => {
      this.recountTimer = undefined;
      void this.refresh();
    }, RECOUNT_AFTER_MS);
  }

  private async refresh(): Promise<void> {
    const cluster = this.cluster;
    if (cluster === undefined || !this.loaded) return;
    this.refreshCtl?.abort();
    const ctl = new AbortController();
    this.refreshCtl = ctl;
    const r = this.route;
    let res: EventsResult;
    try {
      res = await api.events(
        cluster,
        {
          ...(r.types.length === 0 ? {} : { type: r.types.join(',') }),
          from: new Date(Date.now() - RANGE_MS[r.range]).toISOString(),
          ...(r.host === undefined ? {} : { host_id: r.host }),
          limit: PAGE_SIZE,
        },
        ctl.signal,
      );
    } catch {
      return; // The next round tries again; the page keeps what it shows.
    }
    // A newer load (other filters) replaced what this answer was for.
    // (A new load aborts it.)
    if (ctl.signal.aborted || r !== this.route || cluster !== this.cluster) return;
    this.countsNow = { ...res.counts };
    this.showCounts();
    for (const e of [...res.events].reverse()) this.add(e, true);
    this.showState();
  }

  private showCounts(): void {
    this.counts.replaceChildren(
      ...EVENT_TYPES.map((t) =>
        h(
          'span',
          { class: `chip type-${t}`, 'data-type': t, 'data-count': this.countsNow[t] ?? 0 },
          h('span', { class: 'chip-k', text: TYPE_LABEL[t] }),
          h('span', { class: 'chip-v', text: formatNumber(this.countsNow[t] ?? 0) }),
        ),
      ),
    );
  }

  private showState(): void {
    this.el.dataset.events = String(this.shown.size);
    if (this.shown.size === 0)
      this.state.replaceChildren(notice('empty', 'No event in this range matches the filters.'));
    else this.state.replaceChildren();
  }

  /** Shows an event unless it is shown already; says whether it was new. */
  private add(e: FleetEvent, live: boolean): boolean {
    if (this.shown.has(e.id)) return false;
    this.shown.add(e.id);
    const cluster = this.cluster ?? '';
    const t = parseTime(e.time);
    const where = h('a', {
      href: Router.href({
        view: 'gpu',
        cluster,
        host: e.host_id,
        gpu: e.gpu_id,
        range: DEFAULT_RANGE,
      }),
      text: `${e.host_id} · GPU ${e.gpu_id}`,
    });
    const item = h(
      'li',
      {
        class: `event event-${e.severity}${live ? ' event-new' : ''}`,
        'data-testid': 'event',
        'data-id': e.id,
        'data-type': e.type,
        'data-host': e.host_id,
        'data-time': e.time,
      },
      h('span', { class: `badge badge-${e.severity}`, text: e.type }),
      h('span', { class: 'event-time', title: formatDateTime(t), text: formatAgo(t) }),
      where,
      h('span', { class: 'event-msg', text: e.message }),
      e.ended_at === null
        ? undefined
        : h('span', { class: 'hint', text: `until ${formatDateTime(parseTime(e.ended_at))}` }),
    );
    // Newest first (time, then id, as the API lists them): a live event goes above the first
    // event listed after it.
    if (live) {
      const next = [...this.list.children].find((c) => {
        const d = (c as HTMLElement).dataset;
        const ct = parseTime(d.time);
        return ct < t || (ct === t && !idAfter(d.id ?? '', e.id));
      });
      this.list.insertBefore(item, next ?? null);
    } else {
      this.list.append(item);
    }
    while (this.list.children.length > MAX_SHOWN) {
      const last = this.list.lastElementChild as HTMLElement | null;
      if (last === null) break;
      if (last.dataset.id !== undefined) this.shown.delete(last.dataset.id);
      last.remove();
    }
    return true;
  }
}

/** Whether event id `a` comes after `b` (ids are decimal numbers, of any length). */
function idAfter(a: string, b: string): boolean {
  return a.length !== b.length ? a.length > b.length : a > b;
}
