/** What every page of the dashboard is to the shell. */
import type { LiveClient } from './live.js';
import type { Route } from './route.js';
import type { Router } from './router.js';

export interface Crumb {
  readonly label: string;
  readonly href?: string;
}

export interface View {
  readonly el: HTMLElement;
  /** Breadcrumbs for the header (the document title follows the last). */
  readonly crumbs: readonly Crumb[];
  /** The route changed but stays on this page (another metric or range): true when handled. */
  update(route: Route): boolean;
  /** A key press not handled by the shell; true when the page used it. */
  key(e: KeyboardEvent): boolean;
  destroy(): void;
}

export interface Context {
  readonly live: LiveClient;
  readonly router: Router;
  /** The view's breadcrumbs changed (e.g. once the GPU's model is known). */
  readonly crumbsChanged: () => void;
}
