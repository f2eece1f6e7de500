/** Follows and changes the URL's hash (the route); see route.ts for what a route is. */
import { formatRoute, parseHash, type Route } from './route.js';

export class Router {
  private listener: ((r: Route) => void) | undefined;
  private current: Route = parseHash(location.hash);

  constructor() {
    window.addEventListener('hashchange', () => {
      this.current = parseHash(location.hash);
      this.listener?.(this.current);
    });
  }

  get route(): Route {
    return this.current;
  }

  /** Calls `fn` now and on every change of the route. */
  listen(fn: (r: Route) => void): void {
    this.listener = fn;
    fn(this.current);
  }

  /** Goes to a route: a new history entry, or (replace) the current one changed in place. */
  go(r: Route, opts: { replace?: boolean } = {}): void {
    const hash = formatRoute(r);
    if (hash === location.hash || (hash === '#/' && location.hash === '')) {
      return;
    }
    if (opts.replace === true) {
      history.replaceState(history.state, '', hash);
      this.current = parseHash(hash);
      this.listener?.(this.current);
    } else {
      location.hash = hash;
    }
  }

  /** The href of a route, for links. */
  static href(r: Route): string {
    return formatRoute(r);
  }
}
