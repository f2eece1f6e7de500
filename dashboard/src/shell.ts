/**
 * The frame around every page: the header with breadcrumbs, the live feed's state, the theme
 * toggle and the help; the page itself; a banner for errors nothing else caught.
 */
import { currentToken, onTokenChange, signOut } from './auth.js';
import { h, setText } from './dom.js';
import type { LiveClient, LiveState } from './live.js';
import { currentTheme, toggleTheme, onThemeChange } from './theme.js';
import type { Crumb, View } from './view.js';

/** Keys (shown as keys; `or` as a word) and what they do. */
const SHORTCUTS: readonly (readonly [readonly string[], string])[] = [
  [['←', '↑', '→', '↓'], 'Move the cursor on the heatmap, or between GPU panels'],
  [['Enter'], 'Open the GPU under the cursor (Shift+Enter: its host)'],
  [['Esc', 'or', 'Backspace'], 'Go up: GPU → host → fleet (and up the heatmap’s drill-down)'],
  [['1', '2', '3', '4'], 'Heatmap metric: utilisation, temperature, power, memory used'],
  [['[', ']'], 'Shorter or longer time range (GPU page)'],
  [['/'], 'Search hosts, GPUs (uuid), pods and namespaces'],
  [['t'], 'Light or dark theme'],
  [['?'], 'This help'],
];

/** The pages in the navigation: view, label, link. */
const NAV: readonly (readonly [string, string, string])[] = [
  ['overview', 'Fleet', '#/'],
  ['idle', 'Idle GPUs', '#/idle'],
  ['events', 'Events', '#/events'],
  ['usage', 'Usage', '#/usage'],
];

export class Shell {
  readonly main: HTMLElement;
  private readonly crumbs: HTMLElement;
  private readonly status: HTMLButtonElement;
  private readonly themeButton: HTMLButtonElement;
  private readonly help: HTMLDialogElement;
  private readonly banner: HTMLElement;
  private readonly simulated: HTMLElement;
  private readonly nav: HTMLElement;
  private readonly searchSlot: HTMLElement;
  private statusTimer: number | undefined;

  constructor(
    root: HTMLElement,
    private readonly live: LiveClient,
  ) {
    this.crumbs = h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumbs' });
    this.status = h('button', {
      type: 'button',
      class: 'live-status',
      'data-testid': 'live-status',
    });
    this.status.addEventListener('click', () => {
      this.live.retryNow();
    });
    this.themeButton = h('button', {
      type: 'button',
      class: 'icon-btn',
      'data-testid': 'theme-toggle',
    });
    this.themeButton.addEventListener('click', () => {
      toggleTheme();
    });
    const helpButton = h('button', {
      type: 'button',
      class: 'icon-btn',
      title: 'Keyboard shortcuts (?)',
      'aria-label': 'Keyboard shortcuts',
      text: '?',
    });
    helpButton.addEventListener('click', () => {
      this.toggleHelp();
    });
    // Shown while this tab has an API token (auth.ts): forgets it and reloads.
    const signOutButton = h('button', {
      type: 'button',
      class: 'btn sign-out',
      title: 'Forget the API token of this tab',
      text: 'Sign out',
      'data-testid': 'sign-out',
    });
    signOutButton.addEventListener('click', () => {
      signOut();
    });
    const showSignOut = (): void => {
      signOutButton.hidden = currentToken() === undefined;
    };
    showSignOut();
    onTokenChange(showSignOut);
    this.help = this.makeHelp();
    this.banner = h('div', { class: 'banner', role: 'alert' });
    this.banner.hidden = true;
    this.simulated = h(
      'div',
      { class: 'banner banner-sim', role: 'status', 'data-testid': 'simulated-banner' },
      h('strong', { text: 'Simulated fleet' }),
      ' · this gateway streams the built-in simulated GPU fleet (nexus up), not real telemetry. Run nexus up --csv FILE for real data.',
    );
    this.simulated.hidden = true;
    this.nav = h(
      'nav',
      { class: 'nav', 'aria-label': 'Pages' },
      ...NAV.map(([view, label, href]) =>
        h('a', {
          class: 'nav-link',
          href,
          'data-view': view,
          'data-testid': `nav-${view}`,
          text: label,
        }),
      ),
    );
    this.searchSlot = h('div', { class: 'search-slot' });
    this.main = h('main', { id: 'main', class: 'main', tabindex: -1 });
    root.replaceChildren(
      h(
        'header',
        { class: 'topbar' },
        h(
          'a',
          { class: 'brand', href: '#/', 'aria-label': 'Nexus fleet overview' },
          h('span', { class: 'brand-mark', 'aria-hidden': 'true' }),
          'Nexus',
        ),
        this.nav,
        this.crumbs,
        this.searchSlot,
        h(
          'div',
          { class: 'topbar-right' },
          this.status,
          this.themeButton,
          helpButton,
          signOutButton,
        ),
      ),
      this.simulated,
      this.banner,
      this.main,
      this.help,
    );
    onThemeChange(() => {
      this.showTheme();
    });
    this.showTheme();
    live.onState((s) => {
      this.showStatus(s);
    });
  }

  mount(view: View, page?: string): void {
    this.main.replaceChildren(view.el);
    this.setCrumbs(view.crumbs);
    for (const a of this.nav.querySelectorAll<HTMLElement>('.nav-link')) {
      const here =
        a.dataset.view === page ||
        (a.dataset.view === 'overview' && page !== undefined && ['host', 'gpu'].includes(page));
      a.classList.toggle('active', here);
      if (here) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
  }

  /** The search box, in the header. */
  setSearch(el: HTMLElement): void {
    this.searchSlot.replaceChildren(el);
  }

  /** Shows or hides the "simulated fleet" banner (its title: what the simulation is). */
  setSimulated(on: boolean, description?: string): void {
    this.simulated.hidden = !on;
    this.simulated.title = description ?? '';
    document.documentElement.dataset.simulated = String(on);
  }

  setCrumbs(crumbs: readonly Crumb[]): void {
    const items: Node[] = [];
    crumbs.forEach((c, i) => {
      if (i > 0) items.push(h('span', { class: 'crumb-sep', 'aria-hidden': 'true', text: '/' }));
      items.push(
        c.href === undefined || i === crumbs.length - 1
          ? h('span', { class: 'crumb crumb-current', 'aria-current': 'page', text: c.label })
          : h('a', { class: 'crumb', href: c.href, text: c.label }),
      );
    });
    this.crumbs.replaceChildren(...items);
    document.title = `${crumbs[crumbs.length - 1]?.label ?? 'Fleet'} · Nexus`;
  }

  get helpOpen(): boolean {
    return this.help.open;
  }

  toggleHelp(): void {
    if (this.help.open) this.help.close();
    else this.help.showModal();
  }

  /** An error no page handled: say so, keep the page. */
  showError(text: string): void {
    setText(this.banner, text);
    this.banner.hidden = false;
  }

  private makeHelp(): HTMLDialogElement {
    const close = h('button', { type: 'button', class: 'btn', text: 'Close' });
    const d = h(
      'dialog',
      { class: 'help', 'aria-labelledby': 'help-title', 'data-testid': 'help' },
      h('h2', { id: 'help-title', text: 'Keyboard shortcuts' }),
      h(
        'dl',
        { class: 'keys' },
        ...SHORTCUTS.flatMap(([keys, what]) => [
          h('dt', {}, ...keys.map((k) => (k === 'or' ? ' or ' : h('kbd', { text: k })))),
          h('dd', { text: what }),
        ]),
      ),
      h('div', { class: 'help-foot' }, close),
    );
    close.addEventListener('click', () => {
      d.close();
    });
    d.addEventListener('click', (e) => {
      if (e.target === d) d.close();
    });
    return d;
  }

  private showTheme(): void {
    const dark = currentTheme() === 'dark';
    setText(this.themeButton, dark ? '☀' : '☾');
    this.themeButton.title = `${dark ? 'Light' : 'Dark'} theme (t)`;
    this.themeButton.setAttribute('aria-label', this.themeButton.title);
  }

  private showStatus(s: LiveState): void {
    if (this.statusTimer !== undefined) clearInterval(this.statusTimer);
    this.statusTimer = undefined;
    this.status.dataset.state = s.kind;
    switch (s.kind) {
      case 'live':
        this.status.replaceChildren(h('span', { class: 'dot' }), 'Live');
        this.status.title = 'Receiving live telemetry over the WebSocket';
        return;
      case 'polling':
        this.status.replaceChildren(h('span', { class: 'dot' }), 'Polling');
        this.status.title = `This gateway does not push live readings (ENABLE_WEBSOCKET): the page reloads its data every ${Math.round(s.everyMs / 1000)} s. Click to reload now.`;
        return;
      case 'connecting':
        this.status.replaceChildren(h('span', { class: 'dot' }), 'Connecting…');
        this.status.title = 'Connecting to the live feed';
        return;
      case 'error':
        this.status.replaceChildren(h('span', { class: 'dot' }), 'Live feed error');
        this.status.title = s.reason;
        return;
      case 'waiting': {
        const tick = (): void => {
          const secs = Math.max(0, Math.ceil((s.retryAt - Date.now()) / 1000));
          this.status.replaceChildren(h('span', { class: 'dot' }), `Offline · retry in ${secs} s`);
        };
        tick();
        this.status.title = `${s.reason}. Click to retry now.`;
        this.statusTimer = window.setInterval(tick, 1000);
        return;
      }
    }
  }
}
