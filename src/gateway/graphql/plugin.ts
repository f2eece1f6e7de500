import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { WebSocket } from 'ws';
import { Kind, parse } from 'graphql';
import { SpanStatusCode, type Span } from '@opentelemetry/api';
import { NexusError } from '../../core/errors.js';
import type { NexusMetrics } from '../../core/metrics.js';
import { context, trace, tracer } from '../../core/tracing.js';
import { requestSpan } from '../instrumentation.js';
import mercurius from 'mercurius';
import type { TelemetryReader } from '../../store/reader.js';
import type { LiveHub } from '../live/hub.js';
import { formatErrors } from './errors.js';
import { graphiqlAssets, graphiqlPage } from './graphiql.js';
import { Budget, attachBudget, withBudget } from './budget.js';
import {
  checkGraphqlText,
  checkLength,
  checkSubscription,
  httpRules,
  type Refused,
} from './limits.js';
import { UnitBook, closeWhenSlow, type ConnectionSlots } from './live.js';
import { checkGraphqlRequest } from './request.js';
import { createResolvers } from './resolvers.js';
import type { EventPoller } from '../live/event-poller.js';
import { buildGraphqlSchema } from './schema.js';
import { DEFAULT_FLEET_SETTINGS, type FleetSettings } from '../usage.js';

export interface GraphqlDeps {
  readonly reader: TelemetryReader;
  /** The live feed's hub; without it, subscribing is an error. */
  readonly hub: LiveHub | undefined;
  readonly version: string;
  /** Largest number of points a series may return (default 100,000). */
  readonly maxPoints?: number;
  /** IDLE_UTIL, IDLE_FOR and prices for idleGpus and usage (defaults without). */
  readonly fleet?: FleetSettings;
  readonly metrics?: NexusMetrics;
  readonly limits: GraphqlLimits;
  /** GPU events as recorded (Subscription.events). */
  readonly events?: EventPoller;
  /**
   * Decides on a subscription connection at connection_init (src/gateway/auth/plugin.ts): false
   * refuses it (the check closes the socket itself, saying why). Absent: every connection is
   * accepted (AUTH_MODE=none).
   */
  readonly subscriptionConnect?: (
    request: FastifyRequest,
    socket: WebSocket,
    payload: unknown,
  ) => Promise<boolean>;
}

export interface GraphqlLimits {
  /** GRAPHQL_MAX_COST: the estimate before execution, and the budget counted during it. */
  readonly maxCost: number;
  /** GRAPHQL_TIMEOUT. */
  readonly timeoutMs: number;
  /** GRAPHQL_MAX_ANSWER: bytes of one answer. */
  readonly maxAnswerBytes: number;
  /** Subscriptions per WebSocket connection. */
  readonly maxSubscriptions: number;
  /** Unsent bytes per subscriber connection before its events wait (and the oldest drop). */
  readonly maxBufferedBytes: number;
  /** A subscriber connection that stays that far behind this long is closed with 4008. */
  readonly slowClientMs: number;
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
/** What each subscription's context holds besides mercurius's own. */
interface SubscriptionContext {
  readonly nexusLive: ConnectionSlots;
  readonly nexusSocket: WebSocket;
  /** Set once the subscription's query text has passed the checks. */
  nexusChecked?: boolean;
}

/** graphql-transport-ws's close code for a message that breaks the protocol. */
const CLOSE_BAD_REQUEST = 4400;
const NOT_A_STRING = 'subscribe: payload.query must be a string';

export async function registerGraphql(app: FastifyInstance, deps: GraphqlDeps): Promise<void> {
  const schema = buildGraphqlSchema();
  const live = deps.hub !== undefined;
  const { limits } = deps;
  const refused: Refused = (limit) => deps.metrics?.graphqlRefused.inc({ limit });
  await app.register(mercurius, {
    schema,
    resolvers: withBudget(
      schema,
      createResolvers({
        reader: deps.reader,
        hub: deps.hub,
        maxPoints: deps.maxPoints ?? DEFAULT_MAX_POINTS,
        units: new UnitBook(deps.reader),
        log: app.log,
        live: limits,
        ...(deps.events === undefined ? {} : { events: deps.events }),
        fleet: deps.fleet ?? DEFAULT_FLEET_SETTINGS,
      }),
    ),
    path: '/graphql',
    graphiql: false,
    // The cost rule reads the variables (a `limit` may be one) and the operation rule the
    // operationName, which needs the rules per request.
    cache: false,
    validationRules: ({ variables, operationName }) =>
      httpRules(live, variables ?? {}, limits.maxCost, refused, operationName),
    errorFormatter: formatErrors,
    context: () => {
      const ctx = {};
      attachBudget(
        ctx,
        new Budget(limits.maxCost, Date.now() + limits.timeoutMs, limits.timeoutMs, refused),
      );
      return ctx;
    },
    subscription: {
      context: (socket: WebSocket): SubscriptionContext => {
        closeWhenSlow(socket, limits);
        return { nexusLive: { active: 0 }, nexusSocket: socket };
      },
      keepAlive: 30_000,
      ...(deps.subscriptionConnect === undefined
        ? {}
        : { onConnect: connectionCheck(deps.subscriptionConnect) }),
    },
    additionalRouteOptions: {
      preValidation: checkGraphqlRequest,
      preHandler: graphiqlPage,
      onSend: boundedAnswer(limits.maxAnswerBytes, refused),
    },
  });
  app.graphql.addHook('preParsing', (_schema, source) => {
    checkLength(source);
    checkGraphqlText(source);
  });
  app.graphql.addHook('preSubscriptionParsing', (s, source, ctx) => {
    checkLength(source);
    checkSubscription(s, parse(source), limits.maxCost, refused);
    (ctx as unknown as SubscriptionContext).nexusChecked = true;
  });
  // mercurius also takes a subscription's query as a document already parsed (a JSON tree), and
  // runs it without the hook above: no validation, depth or cost. The protocol's query is a
  // string, so anything else closes the connection as a bad request.
  app.graphql.addHook('preSubscriptionExecution', (_s, _document, ctx) => {
    const c = ctx as unknown as SubscriptionContext;
    if (c.nexusChecked === true) return;
    c.nexusSocket.close(CLOSE_BAD_REQUEST, NOT_A_STRING);
    throw new NexusError('BAD_REQUEST', NOT_A_STRING);
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

/**
 * An onSend hook for /graphql: an answer over `max` bytes (the budget makes that rare: JSON
 * values and long strings weigh more than their cost) is replaced by a 400 that says so.
 */
function boundedAnswer(max: number, refused: Refused) {
  return async (_req: FastifyRequest, reply: FastifyReply, payload: unknown): Promise<unknown> => {
    const size =
      typeof payload === 'string'
        ? Buffer.byteLength(payload)
        : Buffer.isBuffer(payload)
          ? payload.length
          : 0;
    if (size <= max) return payload;
    refused('answer');
    reply.status(400);
    return JSON.stringify({
      data: null,
      errors: [
        {
          message: `the answer would be ${size} bytes; the limit is ${max} (GRAPHQL_MAX_ANSWER): lower limit, select fewer fields or narrow the query`,
          extensions: { code: 'LIMIT_EXCEEDED' },
        },
      ],
    });
  };
}

/**
 * mercurius's onConnect for `check`. mercurius calls it as a method of the connection, which
 * holds the socket and the upgrade request (its argument has only the connection_init message);
 * without them (another mercurius) every connection is refused rather than let through.
 */
function connectionCheck(check: NonNullable<GraphqlDeps['subscriptionConnect']>) {
  return async function (this: unknown, data: { payload?: unknown }): Promise<boolean> {
    const self = this as { socket?: WebSocket; context?: { request?: FastifyRequest } } | undefined;
    const socket = self?.socket;
    const request = self?.context?.request;
    if (socket === undefined || request === undefined) return false;
    return check(request, socket, data.payload);
  };
}
