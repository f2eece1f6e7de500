/**
 * Where the heatmap's cells go. Rows are hosts, columns GPU indexes. A fleet has many more hosts
 * than GPUs per host, so the rows wrap into side-by-side groups (like newspaper columns) to use the
 * page's width; each group has its host labels on the left and GPU indexes on top.
 */

export interface Layout {
  /** CSS pixels. */
  readonly width: number;
  readonly height: number;
  readonly labelW: number;
  readonly headerH: number;
  readonly cellW: number;
  readonly cellH: number;
  readonly gap: number;
  readonly groupGap: number;
  readonly groups: number;
  readonly rowsPerGroup: number;
  readonly cols: number;
  readonly rows: number;
  readonly fontPx: number;
}

export interface Rect {
  readonly x: number;
  readonly y: number;
  readonly w: number;
  readonly h: number;
}

/** A cell: row (host, in display order) and column (GPU index). */
export interface Pos {
  readonly row: number;
  readonly col: number;
}

export type Hit =
  | { readonly kind: 'cell'; readonly row: number; readonly col: number }
  | { readonly kind: 'label'; readonly row: number };

const PREFERRED_CELL_W = 24;
const MIN_CELL_W = 12;
const MAX_CELL_W = 44;

export function computeLayout(availW: number, rows: number, cols: number, labelW: number): Layout {
  const groupGap = 28;
  const c = Math.max(1, cols);
  const fit = Math.floor((availW + groupGap) / (labelW + c * PREFERRED_CELL_W + groupGap));
  const groups = Math.max(1, Math.min(fit, Math.ceil(rows / 4), rows));
  const rowsPerGroup = Math.max(1, Math.ceil(rows / groups));
  const gap = rowsPerGroup > 150 ? 1 : 2;
  const room = (availW - groups * labelW - (groups - 1) * groupGap) / (groups * c);
  const cellW = Math.max(MIN_CELL_W, Math.min(MAX_CELL_W, Math.floor(room))) - gap;
  const cellH = rowsPerGroup <= 24 ? 20 : rowsPerGroup <= 60 ? 16 : rowsPerGroup <= 150 ? 12 : 8;
  const fontPx = cellH >= 16 ? 12 : cellH >= 12 ? 11 : 9;
  const headerH = 20;
  const width = groups * (labelW + c * (cellW + gap)) + (groups - 1) * groupGap;
  const height = headerH + rowsPerGroup * (cellH + gap);
  return {
    width,
    height,
    labelW,
    headerH,
    cellW,
    cellH,
    gap,
    groupGap,
    groups,
    rowsPerGroup,
    cols: c,
    rows,
    fontPx,
  };
}

export function groupX(l: Layout, group: number): number {
  return group * (l.labelW + l.cols * (l.cellW + l.gap) + l.groupGap);
}

/** The rectangle of a cell, in CSS pixels from the canvas' top left. */
export function cellRect(l: Layout, row: number, col: number): Rect {
  const g = Math.floor(row / l.rowsPerGroup);
  const r = row % l.rowsPerGroup;
  return {
    x: groupX(l, g) + l.labelW + col * (l.cellW + l.gap),
    y: l.headerH + r * (l.cellH + l.gap),
    w: l.cellW,
    h: l.cellH,
  };
}

/** The rectangle of a host's label. */
export function labelRect(l: Layout, row: number): Rect {
  const g = Math.floor(row / l.rowsPerGroup);
  const r = row % l.rowsPerGroup;
  return { x: groupX(l, g), y: l.headerH + r * (l.cellH + l.gap), w: l.labelW - 6, h: l.cellH };
}

/** What is under a point, if anything. */
export function hitTest(l: Layout, x: number, y: number): Hit | undefined {
  if (y < l.headerH || x < 0) return undefined;
  const groupW = l.labelW + l.cols * (l.cellW + l.gap) + l.groupGap;
  const g = Math.floor(x / groupW);
  if (g >= l.groups) return undefined;
  const r = Math.floor((y - l.headerH) / (l.cellH + l.gap));
  if (r >= l.rowsPerGroup || (y - l.headerH) % (l.cellH + l.gap) >= l.cellH) return undefined;
  const row = g * l.rowsPerGroup + r;
  if (row >= l.rows) return undefined;
  const gx = x - g * groupW;
  if (gx < l.labelW) return { kind: 'label', row };
  const cx = gx - l.labelW;
  const col = Math.floor(cx / (l.cellW + l.gap));
  if (col >= l.cols || cx % (l.cellW + l.gap) >= l.cellW) return undefined;
  return { kind: 'cell', row, col };
}

/**
 * Where a key moves the keyboard cursor: arrows by one cell (left and right continue into the
 * neighbouring group of rows), Home and End to the first and last cell; the first key press only
 * places the cursor on the first cell. Undefined for other keys.
 */
export function moveCursor(l: Layout, c: Pos | undefined, key: string): Pos | undefined {
  const keys = ['ArrowUp', 'ArrowDown', 'ArrowLeft', 'ArrowRight', 'Home', 'End'];
  if (!keys.includes(key)) return undefined;
  if (c === undefined || key === 'Home') return { row: 0, col: 0 };
  switch (key) {
    case 'ArrowUp':
      return { row: Math.max(0, c.row - 1), col: c.col };
    case 'ArrowDown':
      return { row: Math.min(l.rows - 1, c.row + 1), col: c.col };
    case 'ArrowLeft':
      if (c.col > 0) return { row: c.row, col: c.col - 1 };
      return c.row >= l.rowsPerGroup ? { row: c.row - l.rowsPerGroup, col: l.cols - 1 } : c;
    case 'ArrowRight':
      if (c.col < l.cols - 1) return { row: c.row, col: c.col + 1 };
      return c.row + l.rowsPerGroup < l.rows ? { row: c.row + l.rowsPerGroup, col: 0 } : c;
    default:
      return { row: l.rows - 1, col: l.cols - 1 };
  }
}
