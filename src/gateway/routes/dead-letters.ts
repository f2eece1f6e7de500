import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { Queue } from '../../queue/types.js';
import { iso } from '../params.js';
import { ErrorRef } from '../schemas/common.js';

/** What the dead-letter routes need of the queue (the same calls as `nexus dlq`). */
export type DeadLetterQueue = Pick<Queue, 'listDeadLetters' | 'replayDeadLetters'>;

const DeadLetterItem = Type.Object({
  id: Type.String(),
  reason: Type.String({ description: 'Why it was dead-lettered' }),
  attempts: Type.Integer(),
  dead_at: Type.String({ format: 'date-time' }),
  records: Type.Integer(),
});

const DeadLetterPage = Type.Object({
  items: Type.Array(DeadLetterItem),
  next: Type.Union([Type.String(), Type.Null()], {
    description: 'Pass as `after` for the next page; null on the last',
  }),
});

const ListQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
    after: Type.Optional(Type.String({ minLength: 1, maxLength: 300 })),
  },
  { additionalProperties: false },
);

const ReplayIds = Type.Object(
  {
    ids: Type.Array(Type.String({ minLength: 1, maxLength: 300 }), {
      minItems: 1,
      maxItems: 1000,
    }),
  },
  { additionalProperties: false },
);
const ReplayAll = Type.Object({ all: Type.Literal(true) }, { additionalProperties: false });
const ReplayBody = Type.Union([ReplayIds, ReplayAll]);

const errors = { 400: ErrorRef, 401: ErrorRef, 403: ErrorRef, 503: ErrorRef };

const replayChecks = { ids: TypeCompiler.Compile(ReplayIds), all: TypeCompiler.Compile(ReplayAll) };

/**
 * The replay body checked as sent: the gateway's schema validation coerces types (right for a
 * query string), which made `{"ids": "x"}` a list and `{"ids": [1]}` strings.
 */
function replayValidator(): (body: unknown) => { value: unknown } | { error: Error } {
  return (body) => {
    const keys = typeof body === 'object' && body !== null ? Object.keys(body) : [];
    const form = keys.includes('all') ? 'all' : 'ids';
    const check = replayChecks[form];
    if (check.Check(body)) return { value: body };
    const first = check.Errors(body).First();
    const why =
      keys.includes('all') && keys.length > 1
        ? 'give either {"ids": [...]} or {"all": true}, nothing else'
        : form === 'all'
          ? '"all" must be true'
          : `${first?.path || 'body'}: ${first?.message ?? 'invalid'}`;
    return {
      error: new Error(
        `body must be {"ids": ["<id>", ...]} (1 to 1000 dead letter ids) or {"all": true}: ${why}`,
      ),
    };
  };
}

/**
 * Dead letters through the API, what `nexus dlq list` and `nexus dlq replay` do: admin scope
 * (replaying changes the queue). Served where the gateway shares the pipeline's queue (`nexus
 * up`); a `nexus gateway` has no queue rights of its own (least privilege: use `nexus dlq` with
 * the admin's credentials).
 */
export const deadLetterRoutes: FastifyPluginAsyncTypebox<{ queue: DeadLetterQueue }> = async (
  app,
  { queue },
) => {
  app.get(
    '/api/v1/admin/dead-letters',
    {
      config: { access: 'admin' },
      schema: {
        tags: ['admin'],
        summary: 'List dead-lettered queue messages with their reasons (admin scope)',
        querystring: ListQuery,
        response: { 200: DeadLetterPage, ...errors },
      },
    },
    async (req) => {
      const page = await queue.listDeadLetters({
        limit: req.query.limit ?? 100,
        ...(req.query.after === undefined ? {} : { after: req.query.after }),
      });
      return {
        items: page.items.map((d) => ({
          id: d.id,
          reason: d.reason,
          attempts: d.attempts,
          dead_at: iso(d.deadAt) ?? '',
          records: d.records,
        })),
        next: page.next ?? null,
      };
    },
  );

  app.post(
    '/api/v1/admin/dead-letters/replay',
    {
      config: { access: 'admin' },
      validatorCompiler: replayValidator,
      schema: {
        tags: ['admin'],
        summary: 'Put dead letters back into the queue, attempts reset (admin scope)',
        body: ReplayBody,
        response: { 200: Type.Object({ replayed: Type.Integer() }), ...errors },
      },
    },
    async (req) => {
      const body = req.body;
      const replayed = await queue.replayDeadLetters('all' in body ? 'all' : body.ids);
      return { replayed };
    },
  );
};
