/**
 * One metric of one GPU as a uPlot time series: loaded downsampled from REST, then tailed live
 * (each reading joins its step's bucket, as the server would have averaged it), trimmed to the
 * range. Repaints are coalesced into one per animation frame.
 */
import uPlot from 'uplot';
import { frameScheduler, h, setText } from './dom.js';
import { formatCompact, formatDateTime, formatTick, formatTime, formatValue } from './format.js';
import { metricLabel, niceCeil } from './metrics.js';
import { gapMs } from './series.js';
import { themeColors } from './theme.js';

export interface Point {
  /** Epoch milliseconds (start of the step). */
  readonly t: number;
  readonly v: number;
  /** Readings averaged into the point. */
  readonly count: number;
}

const HEIGHT = 150;

export class MetricChart {
  readonly el: HTMLElement;
  private readonly body: HTMLElement;
  private readonly valueEl: HTMLElement;
  private readonly empty: HTMLElement;
  private plot: uPlot | undefined;
  /** Seconds, as uPlot wants them. */
  private xs: number[] = [];
  private ys: (number | null)[] = [];
  private lastCount = 0;
  private stepMs = 60_000;
  private rangeMs = 3_600_000;
  private width = 0;
  /** The x range shared by all charts of the page (seconds), so that they line up. */
  private window: { min: number; max: number } | undefined;
  private readonly frame = frameScheduler(() => {
    this.render();
  });

  constructor(
    readonly metric: string,
    private unit: string,
  ) {
    this.valueEl = h('span', { class: 'chart-value' });
    this.empty = h('div', { class: 'chart-empty', text: 'waiting for data' });
    this.body = h('div', { class: 'chart-body' }, this.empty);
    this.el = h(
      'figure',
      { class: 'chart', 'data-metric': metric, 'data-testid': 'chart', 'data-points': 0 },
      h(
        'figcaption',
        { class: 'chart-head' },
        h('span', { class: 'chart-title', text: metricLabel(metric) }),
        this.valueEl,
      ),
      this.body,
    );
  }

  /** Replaces the data with a loaded series. */
  setPoints(points: readonly Point[], stepMs: number, rangeMs: number, unit?: string): void {
    if (unit !== undefined) this.unit = unit;
    this.stepMs = stepMs;
    this.rangeMs = rangeMs;
    this.xs = [];
    this.ys = [];
    this.lastCount = 0;
    const gap = gapMs(stepMs);
    let prev = Number.NaN;
    for (const p of points) {
      if (p.t - prev > gap) this.pushGap(prev);
      this.xs.push(p.t / 1000);
      this.ys.push(p.v);
      this.lastCount = p.count;
      prev = p.t;
    }
    this.frame.schedule();
  }

  /** Adds a live reading: into the last step's average, or as a new point. */
  append(t: number, v: number): void {
    const bucket = Math.floor(t / this.stepMs) * this.stepMs;
    const lastX = this.xs[this.xs.length - 1];
    const last = lastX === undefined ? Number.NaN : lastX * 1000;
    const lastY = this.ys[this.ys.length - 1];
    if (bucket === last && lastY !== null && lastY !== undefined) {
      this.ys[this.ys.length - 1] = (lastY * this.lastCount + v) / (this.lastCount + 1);
      this.lastCount++;
    } else if (!(bucket < last)) {
      if (bucket - last > gapMs(this.stepMs)) this.pushGap(last);
      this.xs.push(bucket / 1000);
      this.ys.push(v);
      this.lastCount = 1;
    } else {
      return;
    }
    this.trim(t);
    this.frame.schedule();
  }

  /** The first and last time of the data (epoch ms), NaN without data. */
  get extent(): { first: number; last: number } {
    let first = Number.NaN;
    let last = Number.NaN;
    for (let i = 0; i < this.ys.length; i++) {
      if (this.ys[i] === null) continue;
      const x = (this.xs[i] ?? Number.NaN) * 1000;
      if (Number.isNaN(first)) first = x;
      last = x;
    }
    return { first, last };
  }

  /** Shows this time window (epoch ms), shared with the other charts of the page. */
  setWindow(fromMs: number, toMs: number): void {
    const w = { min: fromMs / 1000, max: toMs / 1000 };
    if (this.window?.min === w.min && this.window.max === w.max) return;
    this.window = w;
    this.frame.schedule();
  }

  /** The chart's width follows its container. */
  resize(width: number): void {
    const w = Math.floor(width);
    if (w <= 0 || w === this.width) return;
    this.width = w;
    this.plot?.setSize({ width: w, height: HEIGHT });
    this.frame.schedule();
  }

  /** Colours come from the theme when the plot is made: remake it. */
  retheme(): void {
    this.plot?.destroy();
    this.plot = undefined;
    this.frame.schedule();
  }

  destroy(): void {
    this.frame.cancel();
    this.plot?.destroy();
    this.plot = undefined;
  }

  get points(): number {
    let n = 0;
    for (const y of this.ys) if (y !== null) n++;
    return n;
  }

  private pushGap(prevMs: number): void {
    if (Number.isNaN(prevMs)) return;
    this.xs.push((prevMs + this.stepMs) / 1000);
    this.ys.push(null);
  }

  private trim(now: number): void {
    const from = (now - this.rangeMs) / 1000;
    let k = 0;
    while (k < this.xs.length && (this.xs[k] ?? 0) < from) k++;
    if (k > 0) {
      this.xs.splice(0, k);
      this.ys.splice(0, k);
    }
    while (this.ys.length > 0 && this.ys[0] === null) {
      this.xs.shift();
      this.ys.shift();
    }
  }

  private render(): void {
    const n = this.points;
    this.el.dataset.points = String(n);
    this.empty.hidden = n > 0;
    this.showLatest();
    if (n === 0) {
      this.plot?.destroy();
      this.plot = undefined;
      return;
    }
    if (this.width === 0) this.width = Math.floor(this.body.clientWidth);
    if (this.width === 0) return;
    const data: uPlot.AlignedData = [this.xs, this.ys];
    if (this.plot === undefined) this.plot = this.make(data);
    else this.plot.setData(data, this.window === undefined);
    if (this.window !== undefined) this.plot.setScale('x', this.window);
  }

  private showLatest(): void {
    for (let i = this.ys.length - 1; i >= 0; i--) {
      const y = this.ys[i];
      if (y !== null && y !== undefined) {
        this.showValue(y, this.xs[i], false);
        return;
      }
    }
    this.showValue(undefined, undefined, false);
  }

  private showValue(v: number | undefined, x: number | undefined, hovered: boolean): void {
    if (v === undefined || x === undefined) {
      setText(this.valueEl, '');
      return;
    }
    setText(this.valueEl, `${formatValue(v, this.unit)} · ${formatTime(x * 1000)}`);
    this.valueEl.title = formatDateTime(x * 1000);
    this.valueEl.classList.toggle('hovered', hovered);
  }

  private make(data: uPlot.AlignedData): uPlot {
    const c = themeColors();
    const font = '11px system-ui, -apple-system, "Segoe UI", sans-serif';
    const percent = this.unit === '%';
    const axis = {
      stroke: c.muted,
      font,
      grid: { stroke: c.grid, width: 1 },
      ticks: { stroke: c.grid, width: 1, size: 4 },
    };
    const opts: uPlot.Options = {
      width: this.width,
      height: HEIGHT,
      legend: { show: false },
      padding: [8, 28, 0, 0],
      cursor: {
        drag: { x: true, y: false },
        points: { size: 7, fill: c.accent },
        sync: { key: 'nexus-gpu' },
      },
      scales: {
        x: { time: true },
        y: {
          range: (_u, min, max): uPlot.Range.MinMax => {
            if (percent) return [0, 100];
            const lo = min >= 0 ? 0 : min;
            return [lo, max <= lo ? lo + 1 : niceCeil(max * 1.05)];
          },
        },
      },
      axes: [
        {
          ...axis,
          space: 55,
          size: 30,
          values: (_u, splits, _i, _space, incr) => splits.map((s) => formatTick(s * 1000, incr)),
        },
        {
          ...axis,
          size: 48,
          space: 30,
          values: (_u, splits) => splits.map((v) => formatCompact(v)),
        },
      ],
      series: [
        {},
        {
          label: metricLabel(this.metric),
          stroke: c.accent,
          fill: c.accentFill,
          width: 1.5,
          spanGaps: false,
          points: { show: (_u, _s, i0, i1) => i1 - i0 < 40, size: 5, fill: c.accent },
        },
      ],
      hooks: {
        setCursor: [
          (u) => {
            const i = u.cursor.idx;
            const x = i === null || i === undefined ? undefined : u.data[0][i];
            const y = i === null || i === undefined ? undefined : u.data[1]?.[i];
            if (x !== undefined && y !== undefined && y !== null) this.showValue(y, x, true);
            else this.showLatest();
          },
        ],
      },
    };
    return new uPlot(opts, data, this.body);
  }
}
