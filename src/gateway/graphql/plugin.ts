import type { FastifyInstance } from 'fastify';
import { Kind, parse } from 'graphql';
import { SpanStatusCode, type Span } from '@opentelemetry/api';
import type { NexusMetrics } from '../../core/metrics.js';
import { context, trace, tracer } from '../../core/tracing.js';
import { requestSpan } from '../instrumentation.js';
import mercurius from 'mercurius';
import type { TelemetryReader } from '../../store/reader.js';
import type { LiveHub } from '../live/hub.js';
import { formatErrors } from './errors.js';
import { graphiqlAssets, graphiqlPage } from './graphiql.js';
import { checkLength, checkSubscription, httpRules } from './limits.js';
import { UnitBook, type ConnectionSlots } from './live.js';
import { createResolvers } from './resolvers.js';
import { buildGraphqlSchema } from './schema.js';

export interface GraphqlDeps {
  readonly reader: TelemetryReader;
  /** The live feed's hub; without it, subscribing is an error. */
  readonly hub: LiveHub | undefined;
  readonly version: string;
  /** Largest number of points a series may return (default 100,000). */
  readonly maxPoints?: number;
  readonly metrics?: NexusMetrics;
}

interface Timed {
  nexusStart?: number;
  nexusSpan?: Span;
  nexusOperation?: string;
}

const DEFAULT_MAX_POINTS = 100_000;

/**
 * GraphQL at /graphql (POST and GET; subscriptions over WebSocket on the same path with the
 * graphql-ws protocol; GraphiQL for a browser's GET). Limits: query length, depth and estimated
 * cost, checked for queries and subscriptions alike. Errors carry the HTTP status of what went
 * wrong (errors.ts).
 */
export async function registerGraphql(app: FastifyInstance, deps: GraphqlDeps): Promise<void> {
  const schema = buildGraphqlSchema();
  const live = deps.hub !== undefined;
  await app.register(mercurius, {
    schema,
    resolvers: createResolvers({
      reader: deps.reader,
      hub: deps.hub,
      maxPoints: deps.maxPoints ?? DEFAULT_MAX_POINTS,
      units: new UnitBook(deps.reader),
      log: app.log,
    }),
    path: '/graphql',
    graphiql: false,
    // The cost rule reads the variables (a `limit` may be one), which needs the rules per request.
    cache: false,
    validationRules: ({ variables }) => httpRules(live, variables ?? {}),
    errorFormatter: formatErrors,
    subscription: {
      context: (): { nexusLive: ConnectionSlots } => ({ nexusLive: { active: 0 } }),
      keepAlive: 30_000,
    },
    additionalRouteOptions: { preHandler: graphiqlPage },
  });
  app.graphql.addHook('preParsing', (_schema, source) => {
    checkLength(source);
  });
  app.graphql.addHook('preSubscriptionParsing', (s, source) => {
    checkLength(source);
    checkSubscription(s, parse(source));
  });
  // Duration by operation type, and a span per operation (child of the HTTP request's span).
  app.graphql.addHook('preExecution', (_schema, document, ctx) => {
    const op = document.definitions.find((d) => d.kind === Kind.OPERATION_DEFINITION);
    const type = op?.kind === Kind.OPERATION_DEFINITION ? op.operation : 'query';
    const name = op?.kind === Kind.OPERATION_DEFINITION ? (op.name?.value ?? '') : '';
    const t = ctx as unknown as Timed;
    t.nexusStart = performance.now();
    t.nexusOperation = type;
    const parentSpan = requestSpan(ctx.reply.request);
    t.nexusSpan = tracer().startSpan(
      `graphql.${type}${name === '' ? '' : ` ${name}`}`,
      { attributes: { 'graphql.operation.type': type, 'graphql.operation.name': name } },
      parentSpan === undefined ? undefined : trace.setSpan(context.active(), parentSpan),
    );
  });
  app.graphql.addHook('onResolution', (execution, ctx) => {
    const t = ctx as unknown as Timed;
    if (t.nexusStart !== undefined) {
      deps.metrics?.graphqlDuration.observe(
        { operation: t.nexusOperation ?? 'query' },
        (performance.now() - t.nexusStart) / 1000,
      );
    }
    if (t.nexusSpan !== undefined) {
      if ((execution.errors?.length ?? 0) > 0)
        t.nexusSpan.setStatus({ code: SpanStatusCode.ERROR });
      t.nexusSpan.end();
    }
  });
  graphiqlAssets(app);
  app.log.debug({ version: deps.version, live }, 'GraphQL at /graphql');
}
