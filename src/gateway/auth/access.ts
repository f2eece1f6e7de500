/**
 * Who may use each route of the gateway. Every route needs the read scope unless it is named
 * here as open, or declares `config: { access: 'admin' }` (anything that changes state) or
 * `config: { access: 'write' }` (ingest: Prometheus remote_write). A new
 * route is therefore protected without anyone thinking of it; opening one takes an entry below.
 */

export type Access = 'open' | 'read' | 'write' | 'admin';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Who may use this route (src/gateway/auth/access.ts); default: the read scope. */
    access?: Access;
  }
}

/** Health: load balancers and orchestrators ask without credentials. */
const HEALTH = new Set(['/healthz', '/readyz', '/health']);

/**
 * Pages and their static files, which hold no data: the page must load to ask for a token, and
 * the API calls it then makes need one. The dashboard's files are served by @fastify/static, one
 * route per file (recognised by the route's `config.file`); `/` is also the page saying how to
 * build the dashboard when it is not built. GraphiQL's page (GET /graphql asking for HTML) is
 * open too: see `graphiqlPage` in plugin.ts.
 */
const PAGES = new Set([
  '/',
  '/swagger',
  '/swagger/static/*',
  '/swagger/index.html',
  '/swagger/nexus-swagger.js',
  '/swagger/static/index.html',
  '/swagger/static/swagger-initializer.js',
  '/graphiql/assets/:name',
]);

export interface RouteShape {
  readonly method: string | readonly string[];
  readonly url: string;
  readonly config?: unknown;
}

/** The access a route needs (METRICS_AUTH decides for /metrics). */
export function accessOf(route: RouteShape, metricsAuth: boolean): Access {
  const config = (route.config ?? {}) as { access?: unknown; file?: unknown; rootPath?: unknown };
  if (
    config.access === 'open' ||
    config.access === 'read' ||
    config.access === 'write' ||
    config.access === 'admin'
  )
    return config.access;
  const methods = typeof route.method === 'string' ? [route.method] : route.method;
  // CORS preflights carry no credentials, by the Fetch standard.
  if (methods.every((m) => m === 'OPTIONS')) return 'open';
  if (HEALTH.has(route.url)) return 'open';
  if (route.url === '/metrics') return metricsAuth ? 'read' : 'open';
  if (PAGES.has(route.url)) return 'open';
  if (typeof config.file === 'string' && config.rootPath !== undefined) return 'open';
  return 'read';
}
