/** A small line chart on a canvas, for the host page's GPU panels (uPlot would be too much here). */
import { frameScheduler } from './dom.js';
import { themeColors } from './theme.js';

export class Sparkline {
  readonly canvas: HTMLCanvasElement;
  private ts: number[] = [];
  private vs: number[] = [];
  private min = 0;
  private max = 1;
  private windowMs = 1_800_000;
  private readonly frame = frameScheduler(() => {
    this.draw();
  });
  private readonly resize = new ResizeObserver(() => {
    this.frame.schedule();
  });

  constructor(label: string) {
    this.canvas = document.createElement('canvas');
    this.canvas.className = 'sparkline';
    this.canvas.setAttribute('role', 'img');
    this.canvas.setAttribute('aria-label', label);
    this.resize.observe(this.canvas);
  }

  /** The data and the fixed low and high ends of the scale (it grows if values go beyond). */
  set(
    points: readonly { t: number; v: number }[],
    min: number,
    max: number,
    windowMs: number,
  ): void {
    this.ts = points.map((p) => p.t);
    this.vs = points.map((p) => p.v);
    this.min = min;
    this.max = max;
    this.windowMs = windowMs;
    this.frame.schedule();
  }

  append(t: number, v: number, bucketMs: number): void {
    const last = this.ts[this.ts.length - 1];
    const bucket = Math.floor(t / bucketMs) * bucketMs;
    if (last !== undefined && bucket <= last) {
      if (bucket === last) this.vs[this.vs.length - 1] = v;
    } else {
      this.ts.push(bucket);
      this.vs.push(v);
    }
    const from = t - this.windowMs;
    while (this.ts.length > 0 && (this.ts[0] ?? 0) < from) {
      this.ts.shift();
      this.vs.shift();
    }
    this.frame.schedule();
  }

  get points(): number {
    return this.ts.length;
  }

  redraw(): void {
    this.frame.schedule();
  }

  destroy(): void {
    this.frame.cancel();
    this.resize.disconnect();
  }

  private draw(): void {
    const c = this.canvas;
    const w = c.clientWidth;
    const hgt = c.clientHeight;
    if (w === 0 || hgt === 0) return;
    const dpr = window.devicePixelRatio || 1;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(hgt * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(hgt * dpr);
    }
    const ctx = c.getContext('2d');
    if (ctx === null) return;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, hgt);
    const colors = themeColors();
    c.dataset.points = String(this.ts.length);
    if (this.ts.length === 0) return;
    // The window, or less while the history is shorter, so that a young series is not a dot.
    const t1 = Math.max(this.ts[this.ts.length - 1] ?? 0, Date.now());
    const t0 = Math.min(t1 - 60_000, Math.max(t1 - this.windowMs, this.ts[0] ?? t1));
    let hi = this.max;
    for (const v of this.vs) if (v > hi) hi = v;
    const lo = this.min;
    const pad = 3;
    const x = (t: number): number => ((t - t0) / (t1 - t0)) * w;
    const y = (v: number): number => hgt - pad - ((v - lo) / (hi - lo || 1)) * (hgt - 2 * pad);
    ctx.fillStyle = colors.grid;
    ctx.fillRect(0, hgt - 1, w, 1);
    ctx.beginPath();
    this.ts.forEach((t, i) => {
      const px = x(t);
      const py = y(this.vs[i] ?? 0);
      if (i === 0) ctx.moveTo(px, py);
      else ctx.lineTo(px, py);
    });
    ctx.strokeStyle = colors.accent;
    ctx.lineWidth = 1.5;
    ctx.lineJoin = 'round';
    ctx.stroke();
    const lastT = this.ts[this.ts.length - 1] ?? 0;
    ctx.lineTo(x(lastT), hgt);
    ctx.lineTo(x(this.ts[0] ?? 0), hgt);
    ctx.closePath();
    ctx.fillStyle = colors.accentFill;
    ctx.fill();
    ctx.beginPath();
    ctx.arc(x(lastT), y(this.vs[this.vs.length - 1] ?? 0), 2.5, 0, Math.PI * 2);
    ctx.fillStyle = colors.accent;
    ctx.fill();
  }
}
