/** A few DOM helpers, so views read as the markup they build. */

type AttrValue = string | number | boolean | undefined;
export type Attrs = Readonly<Record<string, AttrValue>>;
export type Child = Node | string | number | null | undefined | false;

/**
 * Creates an element: `h('a', { href: '#/', class: 'x' }, 'text', child)`. `class` and `text` are
 * set as properties; `true` makes an empty attribute; `false` and undefined leave it out.
 */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (k === 'class') el.className = String(v);
    else if (k === 'text') el.textContent = String(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, ...children);
  return el;
}

export function append(el: Element, ...children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === 'number' ? String(c) : c);
  }
}

/** Sets an element's text only when it changed (no layout work for the same text). */
export function setText(el: Element, text: string): void {
  if (el.textContent !== text) el.textContent = text;
}

/** A message where content would be: waiting for data, an error, nothing found. */
export function notice(
  kind: 'empty' | 'error' | 'loading',
  text: string,
  action?: { label: string; run: () => void },
): HTMLElement {
  const el = h(
    'div',
    {
      class: `notice notice-${kind}`,
      role: kind === 'error' ? 'alert' : 'status',
      'data-testid': `notice-${kind}`,
    },
    h('span', { text }),
  );
  if (action !== undefined) {
    const b = h('button', { type: 'button', class: 'btn', text: action.label });
    b.addEventListener('click', action.run);
    el.append(b);
  }
  return el;
}

/** Calls `draw` once in the next animation frame, however often it is scheduled before then. */
export function frameScheduler(draw: () => void): { schedule: () => void; cancel: () => void } {
  let id: number | undefined;
  return {
    schedule: () => {
      id ??= requestAnimationFrame(() => {
        id = undefined;
        draw();
      });
    },
    cancel: () => {
      if (id !== undefined) cancelAnimationFrame(id);
      id = undefined;
    },
  };
}

/** True when a key event belongs to a text field or a select, not to the page's shortcuts. */
export function isTyping(e: KeyboardEvent): boolean {
  const t = e.target;
  if (!(t instanceof HTMLElement)) return false;
  return t.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(t.tagName);
}
