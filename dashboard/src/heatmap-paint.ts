/**
 * Paints the heatmap on its canvas: everything at once (new shape, size, scale or theme), or single
 * cells and host labels (live readings, cursor and hover moves).
 */
import { colorOf } from './colors.js';
import type { HeatmapModel } from './heatmap-model.js';
import { cellRect, computeLayout, labelRect, type Layout, type Pos } from './heatmap-layout.js';
import { themeColors } from './theme.js';

/** What the paint depends on besides the data. */
export interface PaintState {
  readonly model: HeatmapModel;
  readonly table: readonly string[];
  readonly min: number;
  readonly max: number;
  readonly cursor: Pos | undefined;
  readonly hover: Pos | undefined;
  readonly hoverLabel: number | undefined;
}

const FONT = 'ui-monospace, SFMono-Regular, Menlo, Consolas, monospace';

export class HeatmapPainter {
  private readonly ctx: CanvasRenderingContext2D;
  layout: Layout | undefined;

  constructor(private readonly canvas: HTMLCanvasElement) {
    const ctx = canvas.getContext('2d', { alpha: false });
    if (ctx === null) throw new Error('this browser cannot draw on a canvas');
    this.ctx = ctx;
  }

  /** Lays the grid out for this width, sizes the canvas and paints everything. */
  all(s: PaintState, availW: number): Layout {
    const m = s.model;
    const l = computeLayout(availW, m.hosts.length, m.cols, this.labelWidth(m.hosts));
    this.layout = l;
    const dpr = window.devicePixelRatio || 1;
    const cw = Math.max(1, l.width);
    const ch = m.hosts.length === 0 ? 1 : l.height;
    if (this.canvas.width !== Math.round(cw * dpr) || this.canvas.height !== Math.round(ch * dpr)) {
      this.canvas.width = Math.round(cw * dpr);
      this.canvas.height = Math.round(ch * dpr);
      this.canvas.style.width = `${cw}px`;
      this.canvas.style.height = `${ch}px`;
    }
    const ctx = this.ctx;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const colors = themeColors();
    ctx.fillStyle = colors.panel;
    ctx.fillRect(0, 0, cw, ch);
    // GPU indexes over each group of columns.
    ctx.font = `10px ${FONT}`;
    ctx.fillStyle = colors.muted;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    const every = l.cellW < 14 ? 2 : 1;
    for (let g = 0; g < l.groups && g * l.rowsPerGroup < l.rows; g++) {
      for (let c = 0; c < l.cols; c += every) {
        const r = cellRect(l, g * l.rowsPerGroup, c);
        ctx.fillText(String(c), r.x + r.w / 2, l.headerH / 2);
      }
    }
    for (let row = 0; row < m.hosts.length; row++) {
      this.label(s, row);
      for (let c = 0; c < m.cols; c++) this.cell(s, row, c);
    }
    return l;
  }

  /** A host's label, bold when the pointer or the cursor is on its row, underlined on hover. */
  label(s: PaintState, row: number): void {
    const l = this.layout;
    const host = s.model.hosts[row];
    if (l === undefined || host === undefined) return;
    const ctx = this.ctx;
    const colors = themeColors();
    const r = labelRect(l, row);
    ctx.fillStyle = colors.panel;
    ctx.fillRect(r.x, r.y, r.w, r.h);
    if (l.cellH < 8) return;
    const strong = s.hoverLabel === row || s.cursor?.row === row || s.hover?.row === row;
    ctx.font = `${strong ? '600 ' : ''}${l.fontPx}px ${FONT}`;
    ctx.fillStyle = strong ? colors.text : colors.muted;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    let text = host;
    const room = r.w - 4;
    if (ctx.measureText(text).width > room) {
      // Hostnames differ at their end: keep that.
      while (text.length > 1 && ctx.measureText(`…${text}`).width > room) text = text.slice(1);
      text = `…${text}`;
    }
    ctx.fillText(text, r.x + r.w, r.y + r.h / 2 + 0.5);
    if (s.hoverLabel === row) {
      const w = ctx.measureText(text).width;
      ctx.fillRect(r.x + r.w - w, r.y + r.h - 2, w, 1);
    }
  }

  /** A cell: its colour (or "no data"), outlined for the cursor or the pointer. */
  cell(s: PaintState, row: number, col: number): void {
    const l = this.layout;
    if (l === undefined) return;
    const m = s.model;
    const i = row * m.cols + col;
    const ctx = this.ctx;
    const colors = themeColors();
    const r = cellRect(l, row, col);
    ctx.fillStyle = colors.panel;
    ctx.fillRect(r.x, r.y, r.w, r.h);
    if (m.present[i] !== 1) return;
    const v = m.values[i] ?? Number.NaN;
    ctx.fillStyle = Number.isNaN(v) ? colors.empty : colorOf(s.table, v, s.min, s.max);
    const radius = Math.min(3, r.h / 4);
    ctx.beginPath();
    ctx.roundRect(r.x, r.y, r.w, r.h, radius);
    ctx.fill();
    const isCursor = s.cursor?.row === row && s.cursor.col === col;
    const isHover = s.hover?.row === row && s.hover.col === col;
    if (isCursor || isHover) {
      ctx.lineWidth = 2;
      ctx.strokeStyle = isCursor ? colors.focus : colors.hover;
      ctx.beginPath();
      ctx.roundRect(r.x + 1, r.y + 1, r.w - 2, r.h - 2, radius);
      ctx.stroke();
    }
  }

  private labelWidth(hosts: readonly string[]): number {
    this.ctx.font = `12px ${FONT}`;
    let w = 0;
    for (const host of hosts) w = Math.max(w, this.ctx.measureText(host).width);
    return Math.round(Math.min(190, Math.max(56, w + 14)));
  }
}
