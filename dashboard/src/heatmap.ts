/**
 * The fleet heatmap: every GPU as a cell on one <canvas>, coloured by a metric. Live readings mark
 * their cells dirty and one animation frame repaints only those, however many readings arrived;
 * the whole grid is repainted only when its shape, scale, size or theme changes. Mouse: a tooltip on
 * hover, click a cell for its GPU page, click a host label for its host page. Keyboard: arrows move
 * a cursor, Enter opens the GPU, Shift+Enter its host.
 */
import { lut } from './colors.js';
import { h, frameScheduler, setText } from './dom.js';
import { HeatmapModel, type CellReading } from './heatmap-model.js';
import { cellRect, hitTest, moveCursor, type Layout, type Pos } from './heatmap-layout.js';
import { HeatmapPainter, type PaintState } from './heatmap-paint.js';
import { describeCell, HeatmapTooltip, type CellInfo } from './heatmap-tooltip.js';
import { HEAT_SCALES, metricLabel, niceCeil, type HeatMetric } from './metrics.js';

export interface HeatmapHandlers {
  readonly openGpu: (host: string, gpu: number) => void;
  readonly openHost: (host: string) => void;
  /** The scale changed (new metric, or readings beyond it): the legend follows. */
  readonly scaleChanged: (min: number, max: number) => void;
}

export class Heatmap {
  readonly el: HTMLElement;
  readonly canvas: HTMLCanvasElement;
  private readonly painter: HeatmapPainter;
  private readonly tooltip = new HeatmapTooltip();
  private readonly announcer: HTMLElement;
  private readonly model = new HeatmapModel();
  private metric: HeatMetric;
  private unit: string;
  private min = 0;
  private max = 1;
  private table: readonly string[];
  private full = true;
  private readonly dirty = new Set<number>();
  private readonly dirtyLabels = new Set<number>();
  private cursor: Pos | undefined;
  private hover: Pos | undefined;
  private hoverLabel: number | undefined;
  private tooltipFor: 'hover' | 'cursor' | undefined;
  private tooltipPos: Pos | undefined;
  private draws = 0;
  private availW = 0;
  private readonly frame = frameScheduler(() => {
    this.draw();
  });
  private readonly resize: ResizeObserver;

  constructor(
    metric: HeatMetric,
    unit: string,
    private readonly handlers: HeatmapHandlers,
  ) {
    this.metric = metric;
    this.unit = unit;
    this.table = lut(HEAT_SCALES[metric].palette);
    this.canvas = h('canvas', {
      class: 'heatmap-canvas',
      tabindex: 0,
      role: 'img',
      'data-testid': 'heatmap',
    });
    this.painter = new HeatmapPainter(this.canvas);
    this.announcer = h('div', { class: 'visually-hidden', 'aria-live': 'polite' });
    this.el = h('div', { class: 'heatmap' }, this.canvas, this.tooltip.el, this.announcer);
    this.canvas.addEventListener('mousemove', (e) => {
      this.pointer(e);
    });
    this.canvas.addEventListener('mouseleave', () => {
      this.setHover(undefined, undefined);
      if (this.tooltipFor === 'hover') this.hideTooltip();
    });
    this.canvas.addEventListener('click', (e) => {
      this.click(e);
    });
    this.canvas.addEventListener('keydown', (e) => {
      if (this.key(e)) e.preventDefault();
    });
    this.canvas.addEventListener('blur', () => {
      if (this.tooltipFor === 'cursor') this.hideTooltip();
    });
    this.resize = new ResizeObserver((entries) => {
      const w = Math.floor(entries[0]?.contentRect.width ?? 0);
      if (w > 0 && w !== this.availW) {
        this.availW = w;
        this.invalidate();
      }
    });
    this.resize.observe(this.el);
  }

  get gpus(): number {
    return this.model.gpus;
  }

  get hosts(): number {
    return this.model.hosts.length;
  }

  /** The newest reading time on the map (epoch ms, NaN if none). */
  newest(): number {
    return this.model.newest();
  }

  setMetric(metric: HeatMetric, unit: string): void {
    this.metric = metric;
    this.unit = unit;
    this.table = lut(HEAT_SCALES[metric].palette);
    this.model.load([]);
    this.cursor = undefined;
    this.hideTooltip();
    this.invalidate();
  }

  setUnit(unit: string): void {
    this.unit = unit;
  }

  /** Replaces the map's readings (a full load from REST). */
  load(readings: readonly CellReading[]): void {
    const cursorAt = this.cursorKey();
    this.model.load(readings);
    if (cursorAt !== undefined) this.setCursorTo(cursorAt.host, cursorAt.gpu, false);
    this.invalidate();
  }

  /** Applies live readings; the changed cells repaint in the next frame. */
  apply(readings: readonly CellReading[]): void {
    let structure = false;
    for (const r of readings) {
      const res = this.model.apply(r);
      if (res.kind === 'structure') structure = true;
      else if (res.index >= 0) this.dirty.add(res.index);
    }
    if (this.rescale()) structure = true;
    if (structure) this.invalidate();
    else if (this.dirty.size > 0) this.frame.schedule();
    if (this.tooltipFor !== undefined) this.refreshTooltip();
  }

  /** Repaints everything (theme change, new shape). */
  invalidate(): void {
    this.full = true;
    this.frame.schedule();
  }

  destroy(): void {
    this.frame.cancel();
    this.resize.disconnect();
  }

  focus(): void {
    this.canvas.focus({ preventScroll: true });
    if (this.cursor === undefined && this.model.hosts.length > 0)
      this.moveCursorTo({ row: 0, col: 0 });
  }

  /** Handles a key meant for the map; true when it did something. */
  key(e: KeyboardEvent): boolean {
    const l = this.layout;
    if (l === undefined || this.model.hosts.length === 0) return false;
    if (e.key === 'Enter') {
      const c = this.cursor;
      const host = c === undefined ? undefined : this.model.hosts[c.row];
      if (c === undefined || host === undefined) return false;
      if (e.shiftKey) this.handlers.openHost(host);
      else if (this.model.present[c.row * this.model.cols + c.col] === 1)
        this.handlers.openGpu(host, c.col);
      return true;
    }
    const next = moveCursor(l, this.cursor, e.key);
    if (next === undefined) return false;
    this.moveCursorTo(next);
    return true;
  }

  private cursorKey(): { host: string; gpu: number } | undefined {
    if (this.cursor === undefined) return undefined;
    const host = this.model.hosts[this.cursor.row];
    return host === undefined ? undefined : { host, gpu: this.cursor.col };
  }

  private setCursorTo(host: string, gpu: number, show: boolean): void {
    const row = this.model.rowOfHost(host);
    if (row === undefined || gpu >= this.model.cols) {
      this.cursor = undefined;
      return;
    }
    if (show) this.moveCursorTo({ row, col: gpu });
    else this.cursor = { row, col: gpu };
  }

  private moveCursorTo(p: Pos): void {
    const old = this.cursor;
    this.cursor = p;
    if (old !== undefined) this.markCell(old);
    this.markCell(p);
    this.frame.schedule();
    this.showTooltipAt(p, 'cursor');
    this.scrollIntoView(p);
    const host = this.model.hosts[p.row] ?? '';
    this.canvas.dataset.cursor = `${host}/${p.col}`;
    setText(this.announcer, this.describe(p));
  }

  private markCell(p: Pos): void {
    this.dirty.add(p.row * this.model.cols + p.col);
    this.dirtyLabels.add(p.row);
  }

  private scrollIntoView(p: Pos): void {
    const l = this.layout;
    if (l === undefined) return;
    const r = cellRect(l, p.row, p.col);
    const box = this.canvas.getBoundingClientRect();
    const top = box.top + r.y;
    const bottom = top + r.h;
    if (top < 60) window.scrollBy({ top: top - 80 });
    else if (bottom > window.innerHeight - 20)
      window.scrollBy({ top: bottom - window.innerHeight + 60 });
  }

  private pointer(e: MouseEvent): void {
    const l = this.layout;
    if (l === undefined) return;
    const hit = hitTest(l, e.offsetX, e.offsetY);
    if (hit?.kind === 'cell' && this.model.present[hit.row * this.model.cols + hit.col] === 1) {
      this.setHover({ row: hit.row, col: hit.col }, undefined);
      this.canvas.style.cursor = 'pointer';
      this.showTooltipAt({ row: hit.row, col: hit.col }, 'hover', e.offsetX, e.offsetY);
    } else if (hit?.kind === 'label') {
      this.setHover(undefined, hit.row);
      this.canvas.style.cursor = 'pointer';
      this.hideTooltip();
    } else {
      this.setHover(undefined, undefined);
      this.canvas.style.cursor = 'default';
      if (this.tooltipFor === 'hover') this.hideTooltip();
    }
  }

  private setHover(p: Pos | undefined, label: number | undefined): void {
    const same =
      p?.row === this.hover?.row && p?.col === this.hover?.col && label === this.hoverLabel;
    if (same) return;
    if (this.hover !== undefined) this.markCell(this.hover);
    if (this.hoverLabel !== undefined) this.dirtyLabels.add(this.hoverLabel);
    this.hover = p;
    this.hoverLabel = label;
    if (p !== undefined) this.markCell(p);
    if (label !== undefined) this.dirtyLabels.add(label);
    this.frame.schedule();
  }

  private click(e: MouseEvent): void {
    const l = this.layout;
    if (l === undefined) return;
    const hit = hitTest(l, e.offsetX, e.offsetY);
    const host = hit === undefined ? undefined : this.model.hosts[hit.row];
    if (hit === undefined || host === undefined) return;
    if (hit.kind === 'label') this.handlers.openHost(host);
    else if (this.model.present[hit.row * this.model.cols + hit.col] === 1)
      this.handlers.openGpu(host, hit.col);
  }

  private info(p: Pos): CellInfo {
    const m = this.model;
    const i = p.row * m.cols + p.col;
    return {
      host: m.hosts[p.row] ?? '',
      gpu: p.col,
      present: m.present[i] === 1,
      metric: this.metric,
      unit: this.unit,
      value: m.values[i] ?? Number.NaN,
      time: m.times[i] ?? Number.NaN,
      uuid: m.uuids[i] ?? null,
    };
  }

  private describe(p: Pos): string {
    return describeCell(this.info(p));
  }

  private showTooltipAt(p: Pos, why: 'hover' | 'cursor', px?: number, py?: number): void {
    const l = this.layout;
    if (l === undefined) return;
    this.tooltipFor = why;
    this.tooltipPos = p;
    const r = cellRect(l, p.row, p.col);
    this.tooltip.show(this.info(p), px ?? r.x + r.w, py ?? r.y + r.h, {
      width: this.el.clientWidth,
      height: this.el.clientHeight,
    });
  }

  private refreshTooltip(): void {
    if (this.tooltipPos !== undefined) this.tooltip.fill(this.info(this.tooltipPos));
  }

  private hideTooltip(): void {
    this.tooltip.hide();
    this.tooltipFor = undefined;
    this.tooltipPos = undefined;
  }

  /** Recomputes the colour scale; true when it changed. */
  private rescale(): boolean {
    const s = HEAT_SCALES[this.metric];
    const max = Math.max(s.max, Number.isFinite(this.model.max) ? niceCeil(this.model.max) : 0);
    if (max === this.max && s.min === this.min) return false;
    this.min = s.min;
    this.max = max;
    this.handlers.scaleChanged(this.min, this.max);
    return true;
  }

  private get layout(): Layout | undefined {
    return this.painter.layout;
  }

  private paintState(): PaintState {
    return {
      model: this.model,
      table: this.table,
      min: this.min,
      max: this.max,
      cursor: this.cursor,
      hover: this.hover,
      hoverLabel: this.hoverLabel,
    };
  }

  private draw(): void {
    if (this.full) this.drawAll();
    else this.drawDirty();
  }

  private drawAll(): void {
    this.full = false;
    this.dirty.clear();
    this.dirtyLabels.clear();
    this.rescale();
    const m = this.model;
    const l = this.painter.all(
      this.paintState(),
      this.availW > 0 ? this.availW : this.el.clientWidth,
    );
    this.draws++;
    // What tests and tools can read: the counts, and the geometry to find a cell.
    const d = this.canvas.dataset;
    d.gpus = String(m.gpus);
    d.hosts = String(m.hosts.length);
    d.metric = this.metric;
    d.draws = String(this.draws);
    d.layout = JSON.stringify({
      labelW: l.labelW,
      headerH: l.headerH,
      cellW: l.cellW,
      cellH: l.cellH,
      gap: l.gap,
      groupGap: l.groupGap,
      groups: l.groups,
      rowsPerGroup: l.rowsPerGroup,
      cols: l.cols,
      rows: l.rows,
    });
    this.canvas.setAttribute(
      'aria-label',
      `Heatmap of ${m.gpus} GPUs on ${m.hosts.length} hosts by ${metricLabel(this.metric)}. Arrow keys move a cursor, Enter opens the GPU.`,
    );
  }

  private drawDirty(): void {
    const cols = this.model.cols;
    if (cols === 0) return;
    const s = this.paintState();
    for (const row of this.dirtyLabels) this.painter.label(s, row);
    for (const i of this.dirty) this.painter.cell(s, Math.floor(i / cols), i % cols);
    this.dirty.clear();
    this.dirtyLabels.clear();
  }
}
