import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { createReadStream } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { isUpgrade } from '../upgrade.js';

/**
 * GraphiQL in the browser at GET /graphql (Accept: text/html, no `query`), every file served by
 * the gateway itself from node_modules: React, ReactDOM and GraphiQL's UMD bundles (GraphiQL's
 * bundle includes graphql-ws for the subscriptions), its CSS, and a small start script.
 */

export const ASSET_PREFIX = '/graphiql/assets/';

const JS = 'application/javascript; charset=utf-8';
const CSS = 'text/css; charset=utf-8';

const START = `(function () {
  var here = window.location;
  var ws = (here.protocol === 'https:' ? 'wss:' : 'ws:') + '//' + here.host + '/graphql';
  // The token the dashboard keeps for this browser tab (AUTH_MODE=token or oidc), if any: on
  // every query, and in connection_init for subscriptions.
  var token = null;
  try { token = window.sessionStorage.getItem('nexus.token'); } catch (e) { token = null; }
  var fetcher = GraphiQL.createFetcher(token
    ? {
        url: '/graphql',
        subscriptionUrl: ws,
        headers: { Authorization: 'Bearer ' + token },
        wsConnectionParams: { authorization: 'Bearer ' + token },
      }
    : { url: '/graphql', subscriptionUrl: ws });
  var query = '# Nexus GPU telemetry. Subscriptions: subscription { telemetry(metric: ["GPU_TEMP"]) { host_id gpu_id value } }\\n' +
    '{\\n  clusters {\\n    cluster_id\\n    cluster_name\\n    status\\n  }\\n  telemetry(limit: 5) {\\n    cluster_id\\n    timestamp\\n    data\\n  }\\n}\\n';
  ReactDOM.createRoot(document.getElementById('graphiql')).render(
    React.createElement(GraphiQL, { fetcher: fetcher, defaultQuery: query }),
  );
})();
`;

interface Asset {
  readonly type: string;
  readonly file?: string;
  readonly text?: string;
}

/** Paths of the bundles, resolved like an import (react's package exports only its entry points). */
function assets(): Record<string, Asset> {
  const require = createRequire(import.meta.url);
  const dir = (pkg: string): string => dirname(require.resolve(`${pkg}/package.json`));
  return {
    'react.production.min.js': {
      type: JS,
      file: join(dir('react'), 'umd', 'react.production.min.js'),
    },
    'react-dom.production.min.js': {
      type: JS,
      file: join(dir('react-dom'), 'umd', 'react-dom.production.min.js'),
    },
    'graphiql.min.js': { type: JS, file: require.resolve('graphiql/graphiql.min.js') },
    'graphiql.min.css': { type: CSS, file: require.resolve('graphiql/graphiql.min.css') },
    // Named by the bundle's sourceMappingURL (asked for by browser developer tools).
    'graphiql.min.js.map': {
      type: 'application/json; charset=utf-8',
      file: require.resolve('graphiql/graphiql.min.js.map'),
    },
    'start.js': { type: JS, text: START },
    // A file, not a <style> in the page: the Content-Security-Policy allows no inline style.
    'start.css': {
      type: CSS,
      text: 'body { margin: 0; height: 100vh; }\n#graphiql { height: 100vh; }\n',
    },
  };
}

export const GRAPHIQL_HTML = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>Nexus GraphQL</title>
    <link rel="stylesheet" href="${ASSET_PREFIX}graphiql.min.css" />
    <link rel="stylesheet" href="${ASSET_PREFIX}start.css" />
  </head>
  <body>
    <div id="graphiql">Loading GraphiQL…</div>
    <script src="${ASSET_PREFIX}react.production.min.js"></script>
    <script src="${ASSET_PREFIX}react-dom.production.min.js"></script>
    <script src="${ASSET_PREFIX}graphiql.min.js"></script>
    <script src="${ASSET_PREFIX}start.js"></script>
  </body>
</html>
`;

/** Serves the asset files (registered on the gateway). */
export function graphiqlAssets(app: FastifyInstance): void {
  const files = assets();
  app.get<{ Params: { name: string } }>(
    `${ASSET_PREFIX}:name`,
    { schema: { hide: true } },
    async (req, reply) => {
      const a = files[req.params.name];
      if (a === undefined) {
        return reply.status(404).send({
          error: `no GraphiQL asset "${req.params.name}"`,
          code: 'NOT_FOUND',
          statusCode: 404,
        });
      }
      reply.type(a.type).header('cache-control', 'public, max-age=3600');
      return reply.send(a.file === undefined ? a.text : createReadStream(a.file));
    },
  );
}

/** Whether a GET /graphql is a browser asking for the page rather than a query. */
export function wantsGraphiql(req: FastifyRequest): boolean {
  if (req.method !== 'GET' || isUpgrade(req)) return false;
  const q: unknown = req.query;
  if (typeof q === 'object' && q !== null && 'query' in q) return false;
  const accept = req.headers.accept ?? '';
  return accept.includes('text/html');
}

/** A preHandler for mercurius's GET route: the page instead of a GraphQL answer. */
export async function graphiqlPage(
  req: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply | undefined> {
  if (!wantsGraphiql(req)) return undefined;
  return reply.type('text/html; charset=utf-8').send(GRAPHIQL_HTML);
}
