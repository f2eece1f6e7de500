import { Type } from '@sinclair/typebox';
import { StringEnum } from './common.js';

/** GET /health (details), /healthz (liveness) and /readyz (readiness). */
export const Health = Type.Object({
  status: StringEnum(['ok', 'degraded']),
  ready: Type.Boolean(),
  checks: Type.Record(
    Type.String(),
    Type.Object({ ok: Type.Boolean(), detail: Type.Optional(Type.String()) }),
  ),
  version: Type.String(),
  uptime_s: Type.Number(),
});

export const Readiness = Type.Object({ ready: Type.Boolean(), reasons: Type.Array(Type.String()) });

export const Liveness = Type.Object({ status: Type.Literal('ok') });
