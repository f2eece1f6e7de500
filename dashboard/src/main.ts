/**
 * The Nexus dashboard: a page per route (fleet overview, host, GPU), one live WebSocket shared by
 * them, keyboard shortcuts, light and dark themes. Plain TypeScript, DOM and canvas.
 */
import 'uplot/dist/uPlot.min.css';
import '../styles.css';
import { api, type Overview } from './api.js';
import { onTokenChange, socketProtocols } from './auth.js';
import { isTyping, notice, h } from './dom.js';
import { EventsView } from './events-view.js';
import { GpuView } from './gpu-view.js';
import { IdleView } from './idle-view.js';
import { HostView } from './host-view.js';
import { LiveClient, liveUrl } from './live.js';
import { OverviewView } from './overview-view.js';
import { parentOf, type Route } from './route.js';
import { Router } from './router.js';
import { SearchBox } from './search-box.js';
import { Shell } from './shell.js';
import { UsageView } from './usage-view.js';
import { initTheme, toggleTheme } from './theme.js';
import type { Context, View } from './view.js';

/** How often the shell asks the overview whether the fleet is simulated. */
const SIMULATED_EVERY_MS = 60_000;

function notFound(route: Extract<Route, { view: 'notfound' }>): View {
  return {
    el: h(
      'div',
      { class: 'page' },
      notice('error', `There is no page "${route.path}".`),
      h('p', {}, h('a', { href: '#/', text: 'Go to the fleet overview' })),
    ),
    crumbs: [{ label: 'Not found' }],
    update: () => false,
    key: () => false,
    destroy: () => undefined,
  };
}

function makeView(route: Route, ctx: Context): View {
  switch (route.view) {
    case 'overview':
      return new OverviewView(route, ctx);
    case 'host':
      return new HostView(route, ctx);
    case 'gpu':
      return new GpuView(route, ctx);
    case 'idle':
      return new IdleView(route, ctx);
    case 'events':
      return new EventsView(route, ctx);
    case 'usage':
      return new UsageView(route, ctx);
    case 'notfound':
      return notFound(route);
  }
}

function start(): void {
  initTheme();
  const root = document.getElementById('app') ?? document.body;
  const router = new Router();
  // Live push when the gateway offers it (its overview says), polling otherwise.
  const overview = api.overview();
  const live = new LiveClient(
    liveUrl(),
    overview.then((o) => o.features.websocket),
    {
      protocols: socketProtocols,
      // A REST call meets the same 401, which asks for a token (api.ts); a new one reconnects.
      refused: () => api.overview().catch(() => undefined),
    },
  );
  // A new token: the live socket reconnects with it.
  onTokenChange((token) => {
    if (token !== undefined) live.restart();
  });
  const shell = new Shell(root, live);
  const search = new SearchBox(router);
  shell.setSearch(search.el);
  // "Simulated" while `nexus up` streams the built-in simulated fleet (the overview says).
  const showSimulated = (o: Overview): void => {
    // A gateway older than the field does not say: not simulated.
    const on = (o as Partial<Overview>).simulated ?? false;
    shell.setSimulated(on, on ? o.simulation?.description : undefined);
  };
  overview.then(showSimulated, () => undefined);
  window.setInterval(() => {
    if (!document.hidden) api.overview().then(showSimulated, () => undefined);
  }, SIMULATED_EVERY_MS);
  let view: View | undefined;
  const ctx: Context = {
    live,
    router,
    crumbsChanged: () => {
      if (view !== undefined) shell.setCrumbs(view.crumbs);
    },
  };

  window.addEventListener('error', (e) => {
    shell.showError(`Something went wrong on this page: ${e.message}`);
  });
  window.addEventListener('unhandledrejection', (e) => {
    const reason: unknown = e.reason;
    shell.showError(
      `Something went wrong on this page: ${reason instanceof Error ? reason.message : String(reason)}`,
    );
  });

  router.listen((route) => {
    if (view?.update(route) === true) {
      shell.setCrumbs(view.crumbs);
      return;
    }
    view?.destroy();
    try {
      view = makeView(route, ctx);
    } catch (err) {
      view = notFound({ view: 'notfound', path: route.view });
      shell.showError(
        `This page could not be built: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
    shell.mount(view, route.view);
    window.scrollTo(0, 0);
  });

  document.addEventListener('keydown', (e) => {
    if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey || isTyping(e)) return;
    if (e.key === '?') {
      shell.toggleHelp();
      e.preventDefault();
      return;
    }
    if (shell.helpOpen) return;
    if (e.key === '/') {
      search.focus();
      e.preventDefault();
      return;
    }
    if (e.key === 't') {
      toggleTheme();
      e.preventDefault();
      return;
    }
    if (e.key === 'Escape' || e.key === 'Backspace') {
      const up = parentOf(router.route);
      if (up !== undefined) {
        router.go(up);
        e.preventDefault();
      }
      return;
    }
    if (view?.key(e) === true) e.preventDefault();
  });

  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) live.retryNow();
  });
}

start();
