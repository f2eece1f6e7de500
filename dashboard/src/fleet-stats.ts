/**
 * The fleet at a glance, from GET /api/v1/overview: counts, ingest rate, queue depth, collectors
 * alive and alerts, as cards, plus the alert and collector lists.
 */
import type { Alert, Overview } from './api.js';
import { h, notice, setText } from './dom.js';
import { formatAgo, formatNumber, parseTime, plural } from './format.js';
import { metricLabel } from './metrics.js';
import { DEFAULT_RANGE } from './route.js';
import { Router } from './router.js';

interface Card {
  readonly el: HTMLElement;
  readonly value: HTMLElement;
  readonly sub: HTMLElement;
}

function card(key: string, label: string): Card {
  const value = h('div', { class: 'stat-value', 'data-testid': `stat-${key}`, text: '–' });
  const sub = h('div', { class: 'stat-sub', text: '\u00a0' });
  const el = h(
    'div',
    { class: 'stat', 'data-stat': key },
    h('div', { class: 'stat-label', text: label }),
    value,
    sub,
  );
  return { el, value, sub };
}

const MAX_ALERTS = 12;

export class FleetStats {
  readonly cards: HTMLElement;
  readonly alerts: HTMLElement;
  readonly collectors: HTMLElement;
  private readonly problem: HTMLElement;
  private readonly c: Readonly<
    Record<'clusters' | 'hosts' | 'gpus' | 'ingest' | 'queue' | 'collectors' | 'alerts', Card>
  >;
  private last: Overview | undefined;

  constructor() {
    this.c = {
      clusters: card('clusters', 'Clusters'),
      hosts: card('hosts', 'Hosts'),
      gpus: card('gpus', 'GPUs'),
      ingest: card('ingest', 'Ingest rate'),
      queue: card('queue', 'Queue depth'),
      collectors: card('collectors', 'Collectors alive'),
      alerts: card('alerts', 'Alerts'),
    };
    this.problem = h('div', { class: 'stats-problem', role: 'status' });
    this.problem.hidden = true;
    this.cards = h(
      'section',
      { class: 'stats', 'aria-label': 'Fleet overview' },
      ...Object.values(this.c).map((x) => x.el),
      this.problem,
    );
    this.alerts = h(
      'div',
      { class: 'list', 'data-testid': 'alerts' },
      notice('loading', 'Loading alerts…'),
    );
    this.collectors = h(
      'div',
      { class: 'list', 'data-testid': 'collectors' },
      notice('loading', 'Loading…'),
    );
  }

  /** Shows why the overview could not be refreshed; the last values stay, marked stale. */
  failed(message: string): void {
    setText(this.problem, `Overview not refreshed: ${message}. Retrying…`);
    this.problem.hidden = false;
    this.cards.classList.add('stale');
    if (this.last === undefined) {
      this.alerts.replaceChildren(notice('error', `Alerts unavailable: ${message}`));
      this.collectors.replaceChildren(notice('error', `Collectors unavailable: ${message}`));
    }
  }

  show(o: Overview): void {
    this.last = o;
    this.problem.hidden = true;
    this.cards.classList.remove('stale');
    const c = this.c;
    setText(c.clusters.value, formatNumber(o.clusters));
    setText(c.hosts.value, formatNumber(o.hosts));
    setText(c.gpus.value, formatNumber(o.gpus));
    if (o.ingest === null) {
      setText(c.ingest.value, '–');
      setText(c.ingest.sub, 'no live feed');
    } else {
      setText(c.ingest.value, `${formatNumber(o.ingest.records_per_s)}/s`);
      setText(c.ingest.sub, `readings, last ${o.ingest.window_s} s`);
    }
    if (o.queue === null) {
      setText(c.queue.value, '–');
      setText(c.queue.sub, 'queue not reachable');
    } else {
      const q = o.queue;
      setText(c.queue.value, formatNumber(q.ready + q.in_flight + q.delayed));
      const parts = [`${formatNumber(q.in_flight)} in flight`];
      if (q.delayed > 0) parts.push(`${formatNumber(q.delayed)} delayed`);
      parts.push(`${formatNumber(q.dead)} dead`);
      setText(c.queue.sub, parts.join(' · '));
      c.queue.el.classList.toggle('warn', q.dead > 0);
    }
    setText(c.collectors.value, formatNumber(o.collectors.length));
    setText(
      c.collectors.sub,
      o.collectors.length === 0
        ? 'none registered'
        : [...new Set(o.collectors.map((x) => x.hostname))].join(', '),
    );
    c.collectors.el.classList.toggle('bad', o.collectors.length === 0);
    const critical = o.alerts.filter((a) => a.severity === 'critical').length;
    setText(c.alerts.value, formatNumber(o.alerts.length));
    setText(
      c.alerts.sub,
      o.alerts.length === 0
        ? 'all clear'
        : `${critical} critical · ${o.alerts.length - critical} warning`,
    );
    c.alerts.el.classList.toggle('warn', o.alerts.length > 0 && critical === 0);
    c.alerts.el.classList.toggle('bad', critical > 0);
    this.showAlerts(o.alerts);
    this.showCollectors(o);
  }

  private showAlerts(alerts: readonly Alert[]): void {
    if (alerts.length === 0) {
      this.alerts.replaceChildren(notice('empty', 'No alerts: no GPU is hot or out of memory.'));
      return;
    }
    const items = alerts.slice(0, MAX_ALERTS).map((a) => {
      const href = Router.href({
        view: 'gpu',
        cluster: a.cluster_id,
        host: a.host_id,
        gpu: a.gpu_id,
        range: DEFAULT_RANGE,
      });
      return h(
        'li',
        { class: `alert alert-${a.severity}` },
        h('span', { class: `badge badge-${a.severity}`, text: a.severity }),
        h('a', { href, class: 'alert-gpu' }, `${a.host_id} · GPU ${a.gpu_id}`),
        h('span', { class: 'alert-msg', title: metricLabel(a.metric), text: a.message }),
        h('span', { class: 'alert-time', text: formatAgo(parseTime(a.since)) }),
      );
    });
    const more = alerts.length - MAX_ALERTS;
    this.alerts.replaceChildren(h('ul', { class: 'alert-list' }, ...items));
    if (more > 0)
      this.alerts.append(h('div', { class: 'more', text: `and ${plural(more, 'more alert')}` }));
  }

  private showCollectors(o: Overview): void {
    if (o.collectors.length === 0) {
      this.collectors.replaceChildren(
        notice('empty', 'No collector is registered: nothing is being stored.'),
      );
      return;
    }
    this.collectors.replaceChildren(
      h(
        'table',
        { class: 'table' },
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            h('th', { text: 'Collector' }),
            h('th', { text: 'Host' }),
            h('th', { text: 'PID' }),
            h('th', { text: 'Up since' }),
            h('th', { text: 'Version' }),
          ),
        ),
        h(
          'tbody',
          {},
          ...o.collectors.map((c) =>
            h(
              'tr',
              {},
              h('td', { class: 'mono', text: c.id }),
              h('td', { text: c.hostname }),
              h('td', { class: 'num', text: c.pid }),
              h('td', { text: formatAgo(parseTime(c.started_at)).replace(' ago', '') }),
              h('td', { text: c.version }),
            ),
          ),
        ),
      ),
    );
  }
}
