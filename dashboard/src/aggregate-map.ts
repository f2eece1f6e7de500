/**
 * The overview heatmap above a few thousand GPUs: one cell per host or per group of hosts, as
 * GET /api/v1/clusters/{c}/heatmap aggregates them (docs/api.md). A cell is a button coloured by
 * the average of its GPUs' latest values, marked when some of its GPUs alert; its tooltip gives
 * min, average, max and how many GPUs report. Click or Enter drills down; arrow keys move between
 * cells. A new answer updates the cells in place (same keys keep their elements and focus).
 */
import type { HeatCell, HeatmapAnswer } from './api.js';
import { colorOf, lut } from './colors.js';
import { h, setText } from './dom.js';
import { formatValue, plural } from './format.js';
import { HEAT_SCALES, metricLabel, niceCeil, type HeatMetric } from './metrics.js';

export interface AggregateHandlers {
  /** A cell chosen (click or Enter): drill into it. */
  readonly open: (cell: HeatCell, level: 'host' | 'group') => void;
  readonly scaleChanged: (min: number, max: number) => void;
}

/** What a cell is called on the map and in the breadcrumbs. */
export function cellName(c: HeatCell): string {
  if (c.host_id !== undefined) return c.host_id;
  const prefix = c.prefix ?? '';
  if (c.from !== undefined && c.to !== undefined && (prefix === '' || c.key !== prefix))
    return c.from === c.to ? c.from : `${c.from} – ${c.to}`;
  return `${prefix}…`;
}

/** The cell in one sentence (tooltip title, screen readers). */
export function describeAggregate(c: HeatCell, metric: string, unit: string): string {
  const gpus = c.gpus ?? 0;
  const what =
    c.hosts === undefined
      ? plural(gpus, 'GPU')
      : `${plural(c.hosts, 'host')}, ${plural(gpus, 'GPU')}`;
  const avg = c.avg ?? null;
  const values =
    avg === null
      ? 'no data'
      : `average ${formatValue(avg, unit)}, min ${formatValue(c.min ?? avg, unit)}, max ${formatValue(c.max ?? avg, unit)}`;
  const alerting = (c.alerting ?? 0) > 0 ? `, ${c.alerting ?? 0} alerting` : '';
  return `${cellName(c)}: ${what}, ${c.reporting ?? 0} reporting; ${metricLabel(metric)} ${values}${alerting}`;
}

export class AggregateMap {
  readonly el: HTMLElement;
  private readonly grid: HTMLElement;
  private readonly tooltip: HTMLElement;
  private readonly cells = new Map<string, HTMLButtonElement>();
  private data: HeatCell[] = [];
  private level: 'host' | 'group' = 'group';
  private metric: HeatMetric;
  private unit: string;
  private min = 0;
  private max = 1;

  constructor(
    metric: HeatMetric,
    unit: string,
    private readonly handlers: AggregateHandlers,
  ) {
    this.metric = metric;
    this.unit = unit;
    this.grid = h('div', { class: 'agg-grid', role: 'grid', 'data-testid': 'agg-map' });
    this.tooltip = h('div', {
      class: 'tooltip agg-tooltip',
      role: 'tooltip',
      'data-testid': 'agg-tooltip',
    });
    this.tooltip.hidden = true;
    this.el = h('div', { class: 'agg-map' }, this.grid, this.tooltip);
    this.grid.addEventListener('click', (e) => {
      const b = this.buttonOf(e.target);
      const c = b === undefined ? undefined : this.cellOf(b);
      if (c !== undefined) this.handlers.open(c, this.level);
    });
    this.grid.addEventListener('mouseover', (e) => {
      const b = this.buttonOf(e.target);
      if (b !== undefined) this.showTooltip(b);
    });
    this.grid.addEventListener('mouseleave', () => {
      this.tooltip.hidden = true;
    });
    this.grid.addEventListener('focusin', (e) => {
      const b = this.buttonOf(e.target);
      if (b !== undefined) this.showTooltip(b);
    });
    this.grid.addEventListener('focusout', () => {
      this.tooltip.hidden = true;
    });
  }

  get count(): number {
    return this.data.length;
  }

  setMetric(metric: HeatMetric, unit: string): void {
    this.metric = metric;
    this.unit = unit;
  }

  /** Draws an answer of level host or group (cells of the same key are updated in place). */
  show(answer: HeatmapAnswer): void {
    this.level = answer.level === 'host' ? 'host' : 'group';
    this.unit = answer.unit === '' ? this.unit : answer.unit;
    this.data = answer.cells;
    const s = HEAT_SCALES[this.metric];
    let top = -Infinity;
    for (const c of answer.cells)
      if (c.max !== undefined && c.max !== null && c.max > top) top = c.max;
    const max = Math.max(s.max, Number.isFinite(top) ? niceCeil(top) : 0);
    if (max !== this.max || s.min !== this.min) {
      this.min = s.min;
      this.max = max;
      this.handlers.scaleChanged(this.min, this.max);
    }
    const table = lut(s.palette);
    const keep = new Set<string>();
    const ordered: HTMLButtonElement[] = [];
    answer.cells.forEach((c, i) => {
      keep.add(c.key);
      let b = this.cells.get(c.key);
      if (b === undefined) {
        b = h('button', {
          type: 'button',
          class: 'agg-cell',
          role: 'gridcell',
          'data-testid': 'agg-cell',
        });
        b.append(h('span', { class: 'agg-name' }), h('span', { class: 'agg-value' }));
        this.cells.set(c.key, b);
      }
      b.dataset.index = String(i);
      b.dataset.key = c.key;
      b.dataset.avg = c.avg === null || c.avg === undefined ? '' : String(c.avg);
      b.dataset.min = c.min === null || c.min === undefined ? '' : String(c.min);
      b.dataset.max = c.max === null || c.max === undefined ? '' : String(c.max);
      b.dataset.gpus = String(c.gpus ?? 0);
      b.dataset.reporting = String(c.reporting ?? 0);
      b.dataset.alerting = String(c.alerting ?? 0);
      const avg = c.avg ?? null;
      b.style.background = avg === null ? '' : colorOf(table, avg, this.min, this.max);
      b.classList.toggle('agg-empty', avg === null);
      b.classList.toggle('agg-alert', (c.alerting ?? 0) > 0);
      b.classList.toggle(
        'agg-dark',
        avg !== null && (avg - this.min) / (this.max - this.min || 1) < 0.55,
      );
      const [name, value] = [b.firstElementChild, b.lastElementChild];
      if (name !== null) setText(name, cellName(c));
      if (value !== null) setText(value, avg === null ? '–' : formatValue(avg, this.unit));
      b.setAttribute('aria-label', describeAggregate(c, this.metric, this.unit));
      ordered.push(b);
    });
    for (const [k, b] of this.cells) {
      if (!keep.has(k)) {
        b.remove();
        this.cells.delete(k);
      }
    }
    // Reorder only when the order changed (keeps focus and costs nothing on a refresh).
    const same =
      this.grid.children.length === ordered.length &&
      ordered.every((b, i) => this.grid.children[i] === b);
    if (!same) this.grid.replaceChildren(...ordered);
    this.grid.dataset.level = this.level;
    this.grid.dataset.cells = String(ordered.length);
    this.grid.dataset.metric = this.metric;
    this.grid.setAttribute(
      'aria-label',
      `${plural(ordered.length, this.level === 'host' ? 'host' : 'group')} by ${metricLabel(this.metric)}. Enter drills down.`,
    );
    if (!this.tooltip.hidden) {
      const focused = document.activeElement;
      if (focused instanceof HTMLButtonElement && this.grid.contains(focused))
        this.showTooltip(focused);
    }
  }

  clear(): void {
    this.data = [];
    this.cells.clear();
    this.grid.replaceChildren();
    this.tooltip.hidden = true;
  }

  /** Focuses the first cell (or keeps the focused one). */
  focus(): void {
    const active = document.activeElement;
    if (active instanceof HTMLElement && this.grid.contains(active)) return;
    (this.grid.firstElementChild as HTMLElement | null)?.focus();
  }

  /** Arrow keys, Home and End between cells; true when handled. */
  key(e: KeyboardEvent): boolean {
    const buttons = [...this.grid.children] as HTMLElement[];
    if (buttons.length === 0) return false;
    const active = document.activeElement;
    const at = active instanceof HTMLElement ? buttons.indexOf(active) : -1;
    if (at < 0) {
      if (!['ArrowUp', 'ArrowDown', 'ArrowLeft', 'ArrowRight', 'Home', 'End'].includes(e.key))
        return false;
      this.focus();
      return true;
    }
    const cols = Math.max(1, getComputedStyle(this.grid).gridTemplateColumns.split(' ').length);
    const next: Record<string, number> = {
      ArrowLeft: at - 1,
      ArrowRight: at + 1,
      ArrowUp: at - cols,
      ArrowDown: at + cols,
      Home: 0,
      End: buttons.length - 1,
    };
    const to = next[e.key];
    if (to === undefined) return false;
    buttons[Math.min(buttons.length - 1, Math.max(0, to))]?.focus();
    return true;
  }

  private buttonOf(t: EventTarget | null): HTMLButtonElement | undefined {
    if (!(t instanceof Element)) return undefined;
    const b = t.closest('.agg-cell');
    return b instanceof HTMLButtonElement ? b : undefined;
  }

  private cellOf(b: HTMLButtonElement): HeatCell | undefined {
    return this.data[Number(b.dataset.index)];
  }

  private showTooltip(b: HTMLButtonElement): void {
    const c = this.cellOf(b);
    if (c === undefined) return;
    const avg = c.avg ?? null;
    const v = (x: number | null | undefined): string =>
      x === null || x === undefined ? '–' : formatValue(x, this.unit);
    this.tooltip.replaceChildren(
      h('div', { class: 'tt-title' }, h('strong', { text: cellName(c) })),
      ...(c.from !== undefined && c.to !== undefined && c.from !== c.to
        ? [h('div', { class: 'tt-time', text: `${c.from} … ${c.to}` })]
        : []),
      h('div', {
        class: 'tt-value',
        text: `${c.hosts === undefined ? '' : `${plural(c.hosts, 'host')} · `}${plural(c.gpus ?? 0, 'GPU')} · ${c.reporting ?? 0} reporting`,
      }),
      h(
        'div',
        { class: 'tt-value' },
        `${metricLabel(this.metric)}: avg `,
        h('strong', { text: v(avg) }),
        ` · min ${v(c.min)} · max ${v(c.max)}`,
      ),
      ...((c.alerting ?? 0) > 0
        ? [
            h('div', {
              class: 'tt-alert',
              text: `${plural(c.alerting ?? 0, 'GPU')} alerting (temperature)`,
            }),
          ]
        : []),
      h('div', {
        class: 'tt-hint',
        text: this.level === 'host' ? 'click or Enter: its GPUs' : 'click or Enter: its hosts',
      }),
    );
    this.tooltip.hidden = false;
    const box = this.el.getBoundingClientRect();
    const r = b.getBoundingClientRect();
    const tw = this.tooltip.offsetWidth;
    let left = r.right - box.left + 6;
    if (left + tw > box.width) left = Math.max(0, r.left - box.left - 6 - tw);
    const top = r.bottom - box.top + 4;
    this.tooltip.style.transform = `translate(${Math.round(left)}px, ${Math.round(top)}px)`;
  }
}
