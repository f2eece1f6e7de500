/**
 * Multi-GPU time-series panels for the host page and the fleet overview: utilisation, temperature
 * and power of every GPU on one axis each (one line per GPU), the total power (the sum of the GPUs'
 * power per step) and the energy over the range. One request per metric for all the GPUs
 * (GET /api/v1/telemetry with step), reloaded every RELOAD_MS.
 *
 * The energy is the usage endpoint's (GET /api/v1/clusters/{c}/usage?group_by=host: allocated plus
 * unallocated kWh, from the energy counter where GPUs report it, docs/fleet.md); on a gateway
 * without that endpoint, the total power integrated over the steps, and the panel says which.
 *
 * Beyond MAX_LINES GPUs a line per GPU is unreadable: the panels then draw the minimum, average and
 * maximum across the GPUs at each step, and say so.
 */
import { api, isAbort, message, serves, type SeriesResult, type UsageResult } from './api.js';
import { h, notice, setText } from './dom.js';
import { formatNumber, formatValue, parseTime, plural } from './format.js';
import { MultiChart, type Line } from './multi-chart.js';
import { poll, type Poller } from './poll.js';
import { RANGES, type RangeKey } from './route.js';
import { RANGE_MS, stepFor } from './series.js';
import { onThemeChange } from './theme.js';

/** More GPUs than this: min/avg/max bands instead of a line per GPU. */
export const MAX_LINES = 64;
const RELOAD_MS = 30_000;
const UTIL = 'DCGM_FI_DEV_GPU_UTIL';
const TEMP = 'DCGM_FI_DEV_GPU_TEMP';
const POWER = 'DCGM_FI_DEV_POWER_USAGE';
const USAGE_PATH = '/api/v1/clusters/{cluster_id}/usage';

export interface Scope {
  readonly cluster: string;
  /** One host's GPUs; undefined: every GPU of the cluster. */
  readonly host?: string;
  /** How many GPUs the scope has (for the points each series may have). */
  readonly gpus: number;
}

interface GpuPoints {
  readonly host: string;
  readonly gpu: number;
  readonly points: readonly { t: number; v: number }[];
}

function gpuPoints(res: SeriesResult): GpuPoints[] {
  return res.series
    .filter((s) => s.gpu_instance_id === undefined) // whole GPUs only, not MIG instances
    .map((s) => ({
      host: s.host_id,
      gpu: s.gpu_id,
      points: s.points.map((p) => ({ t: parseTime(p.timestamp), v: p.value })),
    }))
    .sort((a, b) => (a.host === b.host ? a.gpu - b.gpu : a.host < b.host ? -1 : 1));
}

/** Per time: the values of every GPU that has a point then. */
function byTime(series: readonly GpuPoints[]): Map<number, number[]> {
  const m = new Map<number, number[]>();
  for (const s of series)
    for (const p of s.points) {
      const at = m.get(p.t);
      if (at === undefined) m.set(p.t, [p.v]);
      else at.push(p.v);
    }
  return m;
}

/** The min, average and max across GPUs at each time. */
export function bands(series: readonly GpuPoints[]): Line[] {
  const min: { t: number; v: number }[] = [];
  const avg: { t: number; v: number }[] = [];
  const max: { t: number; v: number }[] = [];
  for (const [t, vs] of [...byTime(series)].sort((a, b) => a[0] - b[0])) {
    min.push({ t, v: Math.min(...vs) });
    max.push({ t, v: Math.max(...vs) });
    avg.push({ t, v: vs.reduce((a, b) => a + b, 0) / vs.length });
  }
  return [
    { label: 'max', points: max },
    { label: 'avg', points: avg, strong: true },
    { label: 'min', points: min },
  ];
}

/** The sum across GPUs at each time (total power). */
export function total(series: readonly GpuPoints[]): { t: number; v: number }[] {
  return [...byTime(series)]
    .sort((a, b) => a[0] - b[0])
    .map(([t, vs]) => ({ t, v: vs.reduce((a, b) => a + b, 0) }));
}

/** kWh of a power series in W whose points each stand for a step of stepMs. */
export function energyKwh(points: readonly { v: number }[], stepMs: number): number {
  let wh = 0;
  for (const p of points) wh += (p.v * stepMs) / 3_600_000;
  return wh / 1000;
}

export class MultiGpuPanels {
  readonly el: HTMLElement;
  private readonly charts: Record<'util' | 'temp' | 'power' | 'total', MultiChart>;
  private readonly state: HTMLElement;
  private readonly rangeButtons = new Map<RangeKey, HTMLButtonElement>();
  private readonly powerNow: HTMLElement;
  private readonly energy: HTMLElement;
  private readonly energySub: HTMLElement;
  private readonly mode: HTMLElement;
  private readonly resize: ResizeObserver;
  private readonly stopTheme: () => void;
  private poller: Poller | undefined;
  private scope: Scope | undefined;
  private range: RangeKey;

  constructor(
    range: RangeKey,
    private readonly onRange: (r: RangeKey) => void,
  ) {
    this.range = range;
    this.charts = {
      util: new MultiChart('util', 'GPU utilisation', '%', [0, 100]),
      temp: new MultiChart('temp', 'GPU temperature', 'C'),
      power: new MultiChart('power', 'Power draw', 'W'),
      total: new MultiChart('total', 'Total power (sum of the GPUs)', 'W'),
    };
    const ranges = h('div', { class: 'segmented', role: 'radiogroup', 'aria-label': 'Time range' });
    for (const r of RANGES) {
      const b = h('button', { type: 'button', role: 'radio', 'data-range': r, text: r });
      b.addEventListener('click', () => {
        this.onRange(r);
      });
      this.rangeButtons.set(r, b);
      ranges.append(b);
    }
    this.powerNow = h('div', { class: 'stat-value', 'data-testid': 'stat-power', text: '–' });
    this.energy = h('div', { class: 'stat-value', 'data-testid': 'stat-energy', text: '–' });
    this.energySub = h('div', { class: 'stat-sub', text: '\u00a0' });
    this.mode = h('span', { class: 'hint', 'data-testid': 'multi-mode' });
    this.state = h('div', {});
    this.el = h(
      'section',
      { class: 'panel multi-gpu', 'data-testid': 'multi-gpu' },
      h(
        'div',
        { class: 'panel-head' },
        h('h2', { text: 'GPUs over time' }),
        this.mode,
        h('div', { class: 'toolbar' }, ranges),
      ),
      h(
        'div',
        { class: 'stats' },
        h(
          'div',
          { class: 'stat' },
          h('div', { class: 'stat-label', text: 'Total power' }),
          this.powerNow,
          h('div', { class: 'stat-sub', text: 'sum of the GPUs, latest step' }),
        ),
        h(
          'div',
          { class: 'stat' },
          h('div', { class: 'stat-label', text: 'Energy' }),
          this.energy,
          this.energySub,
        ),
      ),
      this.state,
      h('div', { class: 'charts multi-charts' }, ...Object.values(this.charts).map((c) => c.el)),
    );
    this.resize = new ResizeObserver((entries) => {
      for (const e of entries) {
        const key = (e.target as HTMLElement).dataset.key;
        for (const c of Object.values(this.charts))
          if (c.key === key) c.resize(e.contentRect.width);
      }
    });
    for (const c of Object.values(this.charts)) this.resize.observe(c.el);
    this.stopTheme = onThemeChange(() => {
      for (const c of Object.values(this.charts)) c.retheme();
    });
    this.markRange();
  }

  /** Shows these GPUs over this range (again, when either changed). */
  show(scope: Scope, range: RangeKey): void {
    const same =
      this.scope !== undefined &&
      this.scope.cluster === scope.cluster &&
      this.scope.host === scope.host &&
      this.scope.gpus === scope.gpus &&
      this.range === range;
    if (same) return;
    this.scope = scope;
    this.range = range;
    this.markRange();
    this.poller?.stop();
    this.poller = poll((signal) => this.load(signal), RELOAD_MS);
  }

  destroy(): void {
    this.poller?.stop();
    this.resize.disconnect();
    this.stopTheme();
    for (const c of Object.values(this.charts)) c.destroy();
  }

  private markRange(): void {
    for (const [r, b] of this.rangeButtons) {
      b.setAttribute('aria-checked', String(r === this.range));
      b.classList.toggle('active', r === this.range);
    }
  }

  private async load(signal: AbortSignal): Promise<boolean> {
    const scope = this.scope;
    if (scope === undefined) return true;
    const rangeMs = RANGE_MS[this.range];
    const banded = scope.gpus > MAX_LINES;
    // Each request returns a series per GPU: keep the points of all of them modest.
    const step = stepFor(rangeMs, banded ? 150 : scope.gpus > 16 ? 200 : 300);
    const ask = (metric: string): Promise<SeriesResult> =>
      api.series(
        {
          cluster_id: scope.cluster,
          ...(scope.host === undefined ? {} : { host_id: scope.host }),
          metric,
          from: `-${this.range}`,
          step: step.text,
          agg: 'avg',
        },
        signal,
      );
    let util: SeriesResult;
    let temp: SeriesResult;
    let power: SeriesResult;
    try {
      [util, temp, power] = await Promise.all([ask(UTIL), ask(TEMP), ask(POWER)]);
    } catch (err) {
      if (isAbort(err, signal)) return true;
      this.state.replaceChildren(notice('error', `Cannot load the GPU charts: ${message(err)}`));
      return false;
    }
    this.state.replaceChildren();
    const to = parseTime(power.to);
    const from = to - rangeMs;
    const lines = (res: SeriesResult): Line[] => {
      const gpus = gpuPoints(res);
      if (banded) return bands(gpus);
      return gpus.map((g) => ({
        label: scope.host === undefined ? `${g.host}/${g.gpu}` : `GPU ${g.gpu}`,
        points: g.points,
      }));
    };
    const count = new Set(
      [util, temp, power].flatMap((r) => r.series.map((s) => `${s.host_id}/${s.gpu_id}`)),
    ).size;
    const note = banded
      ? `${plural(count, 'GPU')}: min, avg and max across GPUs per ${step.text}`
      : `${plural(count, 'GPU')}, avg per ${step.text}`;
    setText(this.mode, note);
    this.el.dataset.mode = banded ? 'bands' : 'lines';
    this.el.dataset.gpus = String(count);
    this.el.dataset.step = step.text;
    const unitOf = (r: SeriesResult): string | undefined => r.series[0]?.unit;
    const tempUnit = unitOf(temp);
    if (tempUnit !== undefined) this.charts.temp.setUnit(tempUnit);
    this.charts.util.set(lines(util), step.ms, from, to);
    this.charts.temp.set(lines(temp), step.ms, from, to);
    this.charts.power.set(lines(power), step.ms, from, to);
    const sum = total(gpuPoints(power));
    this.charts.total.set([{ label: 'total', points: sum, strong: true }], step.ms, from, to);
    const latest = sum[sum.length - 1];
    setText(this.powerNow, latest === undefined ? '–' : formatValue(latest.v, 'W'));
    const fromUsage = await this.usageEnergy(scope, from, to, signal);
    if (signal.aborted) return true;
    const kwh = fromUsage ?? energyKwh(sum, step.ms);
    setText(
      this.energy,
      fromUsage === undefined && sum.length === 0 ? '–' : `${formatNumber(kwh)} kWh`,
    );
    this.energy.dataset.kwh = String(kwh);
    this.energy.dataset.source = fromUsage === undefined ? 'power' : 'usage';
    setText(
      this.energySub,
      fromUsage === undefined
        ? `last ${this.range}, power integrated per ${step.text}`
        : `last ${this.range}, allocated and unallocated (usage)`,
    );
    return true;
  }

  /**
   * The kWh of the scope's GPUs from the usage endpoint over whole minutes of the range;
   * undefined when the gateway has no such endpoint (or cannot answer now).
   */
  private async usageEnergy(
    scope: Scope,
    fromMs: number,
    toMs: number,
    signal: AbortSignal,
  ): Promise<number | undefined> {
    if (!(await serves(USAGE_PATH))) return undefined;
    const minute = 60_000;
    let res: UsageResult;
    try {
      res = await api.usage(
        scope.cluster,
        {
          group_by: 'host',
          from: new Date(Math.floor(fromMs / minute) * minute).toISOString(),
          to: new Date(Math.floor(toMs / minute) * minute).toISOString(),
        },
        signal,
      );
    } catch {
      return undefined;
    }
    let kwh = 0;
    for (const g of res.groups)
      if (scope.host === undefined || g.host_id === scope.host)
        kwh += g.energy_kwh + (g.unallocated_energy_kwh ?? 0);
    return kwh;
  }
}
