import { existsSync } from 'node:fs';
import { join } from 'node:path';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';
import type { Logger } from '../../core/logger.js';

/**
 * Serves the dashboard (built by `npm run build:dashboard` into `dir`) at `/`. Without a build it
 * says how to make one rather than failing.
 */
export function dashboardPlugin(
  dir: string,
  logger: Logger,
): (app: FastifyInstance) => Promise<void> {
  return async (app) => {
    if (!existsSync(join(dir, 'index.html'))) {
      logger.warn({ dir }, 'dashboard not built: run `make build-nexus` (npm run build:dashboard)');
      app.get('/', { schema: { hide: true } }, async (_req, reply) =>
        reply
          .type('text/html; charset=utf-8')
          .send(
            '<!doctype html><title>Nexus</title><p>The dashboard is not built: run <code>make build-nexus</code>. The API is at <a href="/swagger/index.html">/swagger/index.html</a>.</p>',
          ),
      );
      return;
    }
    await app.register(fastifyStatic, {
      root: dir,
      prefix: '/',
      index: ['index.html'],
      wildcard: false,
      maxAge: '1h',
      immutable: false,
      setHeaders: (res, path) => {
        // The HTML names the hashed bundles: never cache it, so a new build shows at once.
        if (path.endsWith('.html')) res.header('cache-control', 'no-cache');
        // The bundles are named by their content hash: a browser may keep them for good.
        else if (/[\\/]assets[\\/]/.test(path))
          res.header('cache-control', 'public, max-age=31536000, immutable');
      },
    });
  };
}
