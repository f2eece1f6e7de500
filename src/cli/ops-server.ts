import { createServer, type Server } from 'node:http';
import type { Logger } from '../core/logger.js';
import { listenFailure } from './listen.js';

export interface OpsEndpoints {
  /** Readiness and why not. */
  health(): { ready: boolean; reasons: string[] } | Promise<{ ready: boolean; reasons: string[] }>;
  /** Prometheus text exposition, when metrics are on. */
  metrics?(): Promise<{ contentType: string; body: string }>;
}

/**
 * The operations port of the streamer and the collector (METRICS_PORT): /healthz (alive),
 * /readyz (ready to work: dependencies reachable, not draining), /metrics.
 */
export async function startOpsServer(
  port: number,
  endpoints: OpsEndpoints,
  logger: Logger,
  host = '0.0.0.0',
): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const send = (status: number, body: string, type = 'application/json'): void => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    void (async () => {
      try {
        if (path === '/healthz' || path === '/health') {
          send(200, JSON.stringify({ status: 'ok' }));
        } else if (path === '/readyz') {
          const h = await endpoints.health();
          send(
            h.ready ? 200 : 503,
            JSON.stringify({ status: h.ready ? 'ready' : 'not ready', reasons: h.reasons }),
          );
        } else if (path === '/metrics' && endpoints.metrics !== undefined) {
          const m = await endpoints.metrics();
          send(200, m.body, m.contentType);
        } else {
          send(
            404,
            JSON.stringify({ error: 'not found', paths: ['/healthz', '/readyz', '/metrics'] }),
          );
        }
      } catch (err) {
        logger.warn({ err }, 'ops endpoint failed');
        send(503, JSON.stringify({ error: 'unavailable' }));
      }
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => {
      reject(listenFailure(err, port, host, 'METRICS_PORT'));
    });
    server.listen(port, host, () => resolve());
  });
  const addr = server.address();
  logger.info(
    { port: typeof addr === 'object' && addr !== null ? addr.port : port },
    'operations endpoints listening (/healthz, /readyz, /metrics)',
  );
  return server;
}
