/**
 * Many series on one time axis (uPlot), as operators know from Grafana: one line per GPU (or the
 * min, average and max across GPUs), a legend naming each line, and on hover every line's value at
 * that time. Lines are aligned on the union of their timestamps (the server's steps); a line
 * without a point at a time has a gap there.
 */
import uPlot from 'uplot';
import { frameScheduler, h, setText } from './dom.js';
import { formatCompact, formatDateTime, formatTick, formatValue } from './format.js';
import { niceCeil } from './metrics.js';
import { gapMs } from './series.js';
import { themeColors } from './theme.js';

export interface Line {
  /** As the legend shows it: `GPU 3`, `max`. */
  readonly label: string;
  readonly points: readonly { readonly t: number; readonly v: number }[];
  /** Drawn wider (the average between min and max). */
  readonly strong?: boolean;
}

const HEIGHT = 180;

/** Distinct colours for lines, then hues around the wheel. */
const PALETTE = [
  '#3b82f6',
  '#f59e0b',
  '#10b981',
  '#ef4444',
  '#8b5cf6',
  '#06b6d4',
  '#ec4899',
  '#84cc16',
  '#f97316',
  '#6366f1',
  '#14b8a6',
  '#eab308',
];

export function lineColor(i: number): string {
  return PALETTE[i] ?? `hsl(${Math.round((i * 137.508) % 360)} 65% 50%)`;
}

/** The x values (seconds) of every line, and each line's y at those x (null: no point). */
export function align(
  lines: readonly Line[],
  stepMs: number,
): { xs: number[]; ys: (number | null)[][] } {
  const times = new Set<number>();
  for (const l of lines) for (const p of l.points) times.add(p.t);
  const sorted = [...times].sort((a, b) => a - b);
  // A gap wider than gapMs gets an x of its own with no value, so lines break there.
  const xsMs: number[] = [];
  let prev = Number.NaN;
  for (const t of sorted) {
    if (t - prev > gapMs(stepMs)) xsMs.push(prev + stepMs);
    xsMs.push(t);
    prev = t;
  }
  const index = new Map(xsMs.map((t, i) => [t, i]));
  const ys = lines.map((l) => {
    const y: (number | null)[] = new Array<number | null>(xsMs.length).fill(null);
    for (const p of l.points) {
      const i = index.get(p.t);
      if (i !== undefined) y[i] = p.v;
    }
    return y;
  });
  return { xs: xsMs.map((t) => t / 1000), ys };
}

export class MultiChart {
  readonly el: HTMLElement;
  private readonly body: HTMLElement;
  private readonly noteEl: HTMLElement;
  private readonly empty: HTMLElement;
  private plot: uPlot | undefined;
  private lines: readonly Line[] = [];
  private data: uPlot.AlignedData = [[]];
  private window: { min: number; max: number } | undefined;
  private width = 0;
  private readonly frame = frameScheduler(() => {
    this.render();
  });

  constructor(
    readonly key: string,
    title: string,
    private unit: string,
    /** Fixed y range (percentages); otherwise from 0 (or the lowest value) to a round top. */
    private readonly fixed?: readonly [number, number],
  ) {
    this.noteEl = h('span', { class: 'hint', 'data-testid': 'multi-note' });
    this.empty = h('div', { class: 'chart-empty', text: 'waiting for data' });
    this.body = h('div', { class: 'chart-body' }, this.empty);
    this.el = h(
      'figure',
      {
        class: 'chart multi-chart',
        'data-testid': 'multi-chart',
        'data-key': key,
        'data-series': 0,
      },
      h(
        'figcaption',
        { class: 'chart-head' },
        h('span', { class: 'chart-title', text: title }),
        this.noteEl,
      ),
      this.body,
    );
  }

  /** Replaces the lines; the window is the range shown (epoch ms). */
  set(lines: readonly Line[], stepMs: number, fromMs: number, toMs: number, note = ''): void {
    const sameShape =
      lines.length === this.lines.length && lines.every((l, i) => l.label === this.lines[i]?.label);
    this.lines = lines;
    const { xs, ys } = align(lines, stepMs);
    this.data = [xs, ...ys];
    this.window = { min: fromMs / 1000, max: toMs / 1000 };
    setText(this.noteEl, note);
    this.el.dataset.series = String(lines.length);
    this.el.dataset.labels = lines.map((l) => l.label).join(',');
    if (!sameShape) {
      this.plot?.destroy();
      this.plot = undefined;
    }
    this.frame.schedule();
  }

  setUnit(unit: string): void {
    if (unit === this.unit) return;
    this.unit = unit;
    this.retheme();
  }

  resize(width: number): void {
    const w = Math.floor(width);
    if (w <= 0 || w === this.width) return;
    this.width = w;
    this.plot?.setSize({ width: w, height: HEIGHT });
    this.frame.schedule();
  }

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

  private render(): void {
    const n = this.data[0].length;
    this.el.dataset.points = String(n);
    this.empty.hidden = n > 0;
    if (n === 0) {
      this.plot?.destroy();
      this.plot = undefined;
      return;
    }
    if (this.width === 0) this.width = Math.floor(this.body.clientWidth);
    if (this.width === 0) return;
    if (this.plot === undefined) this.plot = this.make();
    else this.plot.setData(this.data, false);
    if (this.window !== undefined) this.plot.setScale('x', this.window);
  }

  private make(): uPlot {
    const c = themeColors();
    const font = '11px system-ui, -apple-system, "Segoe UI", sans-serif';
    const axis = {
      stroke: c.muted,
      font,
      grid: { stroke: c.grid, width: 1 },
      ticks: { stroke: c.grid, width: 1, size: 4 },
    };
    const unit = this.unit;
    const fixed = this.fixed;
    const opts: uPlot.Options = {
      width: this.width,
      height: HEIGHT,
      legend: { show: true, live: true },
      padding: [8, 28, 0, 0],
      cursor: {
        drag: { x: false, y: false },
        points: { size: 6 },
        sync: { key: 'nexus-multi' },
      },
      scales: {
        x: { time: true },
        y: {
          range: (_u, min, max): uPlot.Range.MinMax => {
            if (fixed !== undefined) return [fixed[0], Math.max(fixed[1], niceCeil(max))];
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
          size: 52,
          space: 30,
          values: (_u, splits) => splits.map((v) => formatCompact(v)),
        },
      ],
      series: [
        // uPlot passes null where the cursor is on no point (its types say number).
        {
          label: 'Time',
          value: (_u, v: number | null) => (v === null ? '–' : formatDateTime(v * 1000)),
        },
        ...this.lines.map((l, i): uPlot.Series => ({
          label: l.label,
          stroke: lineColor(i),
          width: l.strong === true ? 2 : 1.25,
          spanGaps: false,
          points: { show: false },
          value: (_u, v: number | null) => (v === null ? '–' : formatValue(v, unit)),
        })),
      ],
    };
    return new uPlot(opts, this.data, this.body);
  }
}
