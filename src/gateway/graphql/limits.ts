import {
  GraphQLError,
  Kind,
  OperationTypeNode,
  getNamedType,
  getNullableType,
  isInterfaceType,
  isListType,
  isObjectType,
  specifiedRules,
  validate,
  type ASTVisitor,
  type DocumentNode,
  type FragmentDefinitionNode,
  type GraphQLNamedType,
  type GraphQLSchema,
  type SelectionSetNode,
  type ValidationContext,
  type ValidationRule,
  type ValueNode,
} from 'graphql';
import { NexusError } from '../../core/errors.js';

/** Longest query text accepted (characters). */
export const MAX_QUERY_LENGTH = 20_000;
/** Deepest field nesting accepted (`{ a { b } }` is 2), introspection aside. */
export const MAX_DEPTH = 8;
/** Largest estimated cost accepted. */
export const MAX_COST = 50_000;
/** How many items a list field without a `limit` is assumed to hold. */
export const DEFAULT_FAN_OUT = 100;
/**
 * Better estimates for some lists: a few clusters, up to 8 GPUs on a host (DGX/HGX), about 20
 * metrics per GPU. A page's readings are counted by the page's `limit`.
 */
export const FAN_OUT: Readonly<Record<string, number>> = {
  'Query.clusters': 10,
  'Host.gpus': 8,
  'Gpu.latest': 20,
  'Gpu.workloads': 10,
  'ClusterStats.samples_per_metric': 20,
  'TelemetryPage.readings': 1,
};

export function checkLength(source: string): void {
  if (source.length > MAX_QUERY_LENGTH) {
    throw new NexusError(
      'BAD_REQUEST',
      `query is ${source.length} characters long; the limit is ${MAX_QUERY_LENGTH}`,
    );
  }
}

const isIntrospection = (name: string): boolean => name === '__schema' || name === '__type';

type Fragments = ReadonlyMap<string, FragmentDefinitionNode>;

function fragmentsOf(doc: DocumentNode): Fragments {
  const out = new Map<string, FragmentDefinitionNode>();
  for (const d of doc.definitions)
    if (d.kind === Kind.FRAGMENT_DEFINITION) out.set(d.name.value, d);
  return out;
}

/** Deepest field level under a selection set (fragments add no level; introspection not counted). */
function depthOf(
  set: SelectionSetNode,
  level: number,
  fragments: Fragments,
  visiting: Set<string>,
): number {
  let deepest = level;
  for (const s of set.selections) {
    if (s.kind === Kind.FIELD) {
      if (isIntrospection(s.name.value)) continue;
      const d =
        s.selectionSet === undefined
          ? level + 1
          : depthOf(s.selectionSet, level + 1, fragments, visiting);
      deepest = Math.max(deepest, d);
    } else if (s.kind === Kind.INLINE_FRAGMENT) {
      deepest = Math.max(deepest, depthOf(s.selectionSet, level, fragments, visiting));
    } else {
      const f = fragments.get(s.name.value);
      if (f === undefined || visiting.has(f.name.value)) continue; // reported by the spec rules
      visiting.add(f.name.value);
      deepest = Math.max(deepest, depthOf(f.selectionSet, level, fragments, visiting));
      visiting.delete(f.name.value);
    }
  }
  return deepest;
}

/** Rejects operations nested deeper than `max` fields. */
export function depthRule(max = MAX_DEPTH): ValidationRule {
  return (context: ValidationContext): ASTVisitor => ({
    OperationDefinition(op) {
      const depth = depthOf(op.selectionSet, 0, fragmentsOf(context.getDocument()), new Set());
      if (depth > max) {
        context.reportError(
          new GraphQLError(`query depth ${depth} exceeds the limit of ${max}; nest fewer fields`, {
            nodes: op,
          }),
        );
      }
    },
  });
}

interface CostInput {
  readonly schema: GraphQLSchema;
  readonly fragments: Fragments;
  readonly variables: Readonly<Record<string, unknown>>;
}

/** The `limit` a field asks for: a literal, a variable's value, or the argument's default. */
function limitArg(
  node: {
    readonly arguments?: readonly {
      readonly name: { readonly value: string };
      readonly value: ValueNode;
    }[];
  },
  fallback: unknown,
  c: CostInput,
): number {
  const arg = node.arguments?.find((a) => a.name.value === 'limit');
  let v: unknown = fallback;
  if (arg !== undefined) {
    if (arg.value.kind === Kind.INT) v = Number(arg.value.value);
    else if (arg.value.kind === Kind.VARIABLE) v = c.variables[arg.value.name.value] ?? fallback;
    else if (arg.value.kind === Kind.NULL) v = fallback;
    else v = null;
  }
  if (typeof v === 'number' && Number.isInteger(v) && v >= 1) return v;
  // Absent without a default: an estimate. Invalid: the resolver or the coercion refuses it, saying why.
  return v === undefined ? DEFAULT_FAN_OUT : 1;
}

function costOf(
  set: SelectionSetNode,
  parent: GraphQLNamedType,
  c: CostInput,
  visiting: Set<string>,
): number {
  let total = 0;
  for (const s of set.selections) {
    if (s.kind === Kind.FIELD) {
      const name = s.name.value;
      total += 1;
      if (isIntrospection(name) || name === '__typename') continue;
      if (!isObjectType(parent) && !isInterfaceType(parent)) continue;
      const def = parent.getFields()[name];
      if (def === undefined) continue; // reported by the spec rules
      if (s.selectionSet === undefined) continue;
      const children = costOf(s.selectionSet, getNamedType(def.type), c, visiting);
      const limit = def.args.find((a) => a.name === 'limit');
      const times =
        limit !== undefined
          ? limitArg(s, limit.defaultValue, c)
          : isListType(getNullableType(def.type))
            ? (FAN_OUT[`${parent.name}.${name}`] ?? DEFAULT_FAN_OUT)
            : 1;
      total += times * children;
    } else if (s.kind === Kind.INLINE_FRAGMENT) {
      const t =
        s.typeCondition === undefined ? parent : c.schema.getType(s.typeCondition.name.value);
      if (t !== undefined) total += costOf(s.selectionSet, t, c, visiting);
    } else {
      const f = c.fragments.get(s.name.value);
      if (f === undefined || visiting.has(f.name.value)) continue;
      const t = c.schema.getType(f.typeCondition.name.value);
      if (t === undefined) continue;
      visiting.add(f.name.value);
      total += costOf(f.selectionSet, t, c, visiting);
      visiting.delete(f.name.value);
    }
  }
  return total;
}

/** The estimated cost of each operation of a document. */
export function queryCosts(
  schema: GraphQLSchema,
  doc: DocumentNode,
  variables: Readonly<Record<string, unknown>> = {},
): { name: string; cost: number }[] {
  const c: CostInput = { schema, fragments: fragmentsOf(doc), variables };
  const out: { name: string; cost: number }[] = [];
  for (const d of doc.definitions) {
    if (d.kind !== Kind.OPERATION_DEFINITION) continue;
    const root = schema.getRootType(d.operation);
    if (root === undefined || root === null) continue;
    out.push({
      name: d.name?.value ?? 'anonymous',
      cost: costOf(d.selectionSet, root, c, new Set()),
    });
  }
  return out;
}

/**
 * Rejects operations whose estimated cost is above `max`. Each field costs 1; the fields under a
 * list are multiplied by its `limit` argument (variables included) or by its estimated size
 * (FAN_OUT, else DEFAULT_FAN_OUT).
 */
export function costRule(
  variables: Readonly<Record<string, unknown>> = {},
  max = MAX_COST,
): ValidationRule {
  return (context: ValidationContext): ASTVisitor => ({
    Document: {
      leave(doc) {
        for (const { name, cost } of queryCosts(context.getSchema(), doc, variables)) {
          if (cost > max) {
            context.reportError(
              new GraphQLError(
                `query cost ${cost} exceeds the maximum of ${max} (operation ${name}): each field costs 1 and the fields under a list count once per item (its limit, or an estimate of ${DEFAULT_FAN_OUT} for unbounded lists); lower limit, select fewer fields or narrow the query (e.g. one cluster)`,
              ),
            );
          }
        }
      },
    },
  });
}

/** Over HTTP there is no stream to send events on: subscriptions are refused with a pointer. */
export function httpSubscriptionRule(live: boolean): ValidationRule {
  return (context: ValidationContext): ASTVisitor => ({
    OperationDefinition(op) {
      if (op.operation !== OperationTypeNode.SUBSCRIPTION) return;
      context.reportError(
        new GraphQLError(
          live
            ? 'subscriptions run over WebSocket: connect to /graphql with the graphql-ws protocol (graphql-transport-ws)'
            : 'subscriptions are not available: this gateway has no live feed',
          { nodes: op },
        ),
      );
    },
  });
}

/** The rules every query over HTTP passes, beyond the specification's. */
export function httpRules(
  live: boolean,
  variables: Readonly<Record<string, unknown>>,
): ValidationRule[] {
  return [depthRule(), costRule(variables), httpSubscriptionRule(live)];
}

/**
 * A subscription's document checked as a query would be (mercurius does not validate what comes
 * over the WebSocket): the specification's rules, depth and cost. Throws the first problem.
 */
export function checkSubscription(schema: GraphQLSchema, doc: DocumentNode): void {
  const errors = validate(schema, doc, [...specifiedRules, depthRule(), costRule()]);
  const first = errors[0];
  if (first !== undefined) throw first;
}
