import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { probeWithTimeout } from '../../core/probe.js';
import { Health, Liveness, Readiness } from '../schemas/health.js';

export interface HealthCheck {
  readonly name: string;
  check(): Promise<void>;
}

export interface HealthOptions {
  readonly checks: readonly HealthCheck[];
  readonly version: string;
  /** True while shutting down: /readyz turns false before connections close. */
  readonly draining: () => boolean;
  readonly checkTimeoutMs: number;
}

async function run(
  checks: readonly HealthCheck[],
  timeoutMs: number,
): Promise<Record<string, { ok: boolean; detail?: string }>> {
  const out: Record<string, { ok: boolean; detail?: string }> = {};
  await Promise.all(
    checks.map(async (c) => {
      try {
        await probeWithTimeout(() => c.check(), timeoutMs);
        out[c.name] = { ok: true };
      } catch (err) {
        out[c.name] = { ok: false, detail: err instanceof Error ? err.message : String(err) };
      }
    }),
  );
  return out;
}

/** Ready when not draining and every check passes; otherwise why not. */
export async function readinessOf(
  o: Pick<HealthOptions, 'checks' | 'draining' | 'checkTimeoutMs'>,
): Promise<{ ready: boolean; reasons: string[] }> {
  const reasons: string[] = [];
  if (o.draining()) reasons.push('shutting down');
  const checks = await run(o.checks, o.checkTimeoutMs);
  for (const [name, c] of Object.entries(checks))
    if (!c.ok) reasons.push(`${name}: ${c.detail ?? 'failed'}`);
  return { ready: reasons.length === 0, reasons };
}

/** /health (details), /healthz (alive), /readyz (ready to serve). */
export const healthRoutes: FastifyPluginAsyncTypebox<HealthOptions> = async (app, o) => {
  const started = Date.now();
  app.get(
    '/health',
    {
      schema: {
        tags: ['health'],
        // Open: no token (docs/api.md, Authentication).
        security: [],
        summary: 'Health: dependencies checked, with details',
        response: { 200: Health, 503: Health },
      },
    },
    async (_req, reply) => {
      const checks = await run(o.checks, o.checkTimeoutMs);
      const ready = !o.draining() && Object.values(checks).every((c) => c.ok);
      return reply.status(ready ? 200 : 503).send({
        status: ready ? 'ok' : 'degraded',
        ready,
        checks,
        version: o.version,
        uptime_s: Math.round((Date.now() - started) / 1000),
      });
    },
  );
  app.get(
    '/healthz',
    {
      schema: {
        tags: ['health'],
        // Open: no token (docs/api.md, Authentication).
        security: [],
        summary: 'Liveness: the process answers',
        response: { 200: Liveness },
      },
    },
    async () => ({ status: 'ok' as const }),
  );
  app.get(
    '/readyz',
    {
      schema: {
        tags: ['health'],
        // Open: no token (docs/api.md, Authentication).
        security: [],
        summary: 'Readiness: dependencies reachable and not draining',
        response: {
          200: Readiness,
          503: Readiness,
        },
      },
    },
    async (_req, reply) => {
      const r = await readinessOf(o);
      return reply.status(r.ready ? 200 : 503).send(r);
    },
  );
};
