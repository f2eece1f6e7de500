import {
  GraphQLError,
  Kind,
  OperationTypeNode,
  SchemaMetaFieldDef,
  TypeMetaFieldDef,
  getNamedType,
  getNullableType,
  getVariableValues,
  isInterfaceType,
  isListType,
  isObjectType,
  specifiedRules,
  validate,
  type ASTVisitor,
  type DocumentNode,
  type FragmentDefinitionNode,
  type GraphQLField,
  type GraphQLNamedType,
  type GraphQLSchema,
  type OperationDefinitionNode,
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
/** Largest cost accepted (GRAPHQL_MAX_COST's default), estimated before and counted during execution. */
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

/**
 * What a field costs beyond 1, once per time it runs: a query of the store (a page, a series, the
 * statistics) outweighs a field read from an object already loaded; a JSON field holds several
 * values. Counted in the estimate and charged again when the field runs (budget.ts).
 */
export const FIELD_WEIGHT: Readonly<Record<string, number>> = {
  'Query.telemetry': 100,
  'Query.telemetryPage': 100,
  'Query.series': 100,
  'Query.clusterStats': 100,
  'Query.latest': 20,
  'Query.hosts': 10,
  'Query.gpus': 10,
  'Query.gpu': 10,
  'Query.host': 10,
  'Query.cluster': 10,
  'Cluster.stats': 100,
  'Gpu.series': 100,
  'Gpu.labels': 10,
  'Telemetry.data': 8,
};

export function checkLength(source: string): void {
  if (source.length > MAX_QUERY_LENGTH) {
    throw new NexusError(
      'BAD_REQUEST',
      `query is ${source.length} characters long; the limit is ${MAX_QUERY_LENGTH}`,
    );
  }
}

/** Told which limit refused an operation (for the metrics). */
export type Refused = (limit: 'cost' | 'depth' | 'answer' | 'time') => void;

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
export function depthRule(max = MAX_DEPTH, onRefused?: Refused): ValidationRule {
  return (context: ValidationContext): ASTVisitor => ({
    OperationDefinition(op) {
      const depth = depthOf(op.selectionSet, 0, fragmentsOf(context.getDocument()), new Set());
      if (depth > max) {
        onRefused?.('depth');
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
  /** The operation's variables as execution will see them: coerced, defaults applied. */
  readonly variables: Readonly<Record<string, unknown>>;
  readonly introspection: Readonly<Record<string, number>>;
}

/**
 * How many items each introspection list holds in this schema, on average over the types or
 * fields that hold it: introspection is costed on the schema's real sizes, so GraphiQL's standard
 * introspection passes, while nesting `fields { type { fields ... } }` multiplies like any list
 * and is refused like any other too-costly query.
 */
function introspectionSizes(schema: GraphQLSchema): Record<string, number> {
  const types = Object.values(schema.getTypeMap());
  const directives = schema.getDirectives();
  let withFields = 0;
  let fields = 0;
  let args = 0;
  let enums = 0;
  let enumValues = 0;
  let interfaces = 0;
  for (const t of types) {
    if (isObjectType(t) || isInterfaceType(t)) {
      const fs = Object.values(t.getFields());
      withFields++;
      fields += fs.length;
      for (const f of fs) args += f.args.length;
      interfaces += t.getInterfaces().length;
    } else if ('getValues' in t) {
      enums++;
      enumValues += t.getValues().length;
    } else if ('getFields' in t) {
      withFields++;
      fields += Object.keys(t.getFields()).length;
    }
  }
  const directiveArgs = directives.reduce((n, d) => n + d.args.length, 0);
  const avg = (n: number, of: number): number => Math.max(1, Math.ceil(n / Math.max(1, of)));
  return {
    '__Schema.types': types.length,
    '__Schema.directives': directives.length,
    '__Type.fields': avg(fields, withFields),
    '__Type.inputFields': avg(fields, withFields),
    '__Type.args': avg(args, fields),
    '__Field.args': avg(args, fields),
    '__Directive.args': avg(directiveArgs, directives.length),
    '__Type.enumValues': avg(enumValues, enums),
    '__Type.interfaces': avg(interfaces, withFields),
    '__Type.possibleTypes': 1,
  };
}

/** The `limit` a field will run with: a literal or a variable's coerced value; else its default. */
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
    else if (arg.value.kind === Kind.VARIABLE)
      v = arg.value.name.value in c.variables ? c.variables[arg.value.name.value] : fallback;
    else if (arg.value.kind === Kind.NULL) v = fallback;
    else v = null;
  }
  if (v === null || v === undefined) v = fallback;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 1) return v;
  // Absent without a default: an estimate. Invalid: the resolver or the coercion refuses it, saying why.
  return v === undefined ? DEFAULT_FAN_OUT : 1;
}

/** The field definition of a selection, meta-fields (__schema, __type) included. */
function fieldDef(
  schema: GraphQLSchema,
  parent: GraphQLNamedType,
  name: string,
): GraphQLField<unknown, unknown> | undefined {
  if (parent === schema.getQueryType()) {
    if (name === '__schema') return SchemaMetaFieldDef;
    if (name === '__type') return TypeMetaFieldDef;
  }
  if (!isObjectType(parent) && !isInterfaceType(parent)) return undefined;
  return parent.getFields()[name];
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
      const key = `${parent.name}.${name}`;
      total += 1 + (FIELD_WEIGHT[key] ?? 0);
      if (name === '__typename') continue;
      const def = fieldDef(c.schema, parent, name);
      if (def === undefined) continue; // reported by the spec rules
      if (s.selectionSet === undefined) continue;
      const children = costOf(s.selectionSet, getNamedType(def.type), c, visiting);
      const limit = def.args.find((a) => a.name === 'limit');
      const times =
        limit !== undefined
          ? limitArg(s, limit.defaultValue, c)
          : isListType(getNullableType(def.type))
            ? (c.introspection[key] ?? FAN_OUT[key] ?? DEFAULT_FAN_OUT)
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

const sizesBySchema = new WeakMap<GraphQLSchema, Record<string, number>>();

/** The variables an operation will run with: coerced and with their defaults (as execution does). */
function operationVariables(
  schema: GraphQLSchema,
  op: OperationDefinitionNode,
  inputs: Readonly<Record<string, unknown>>,
): Readonly<Record<string, unknown>> {
  const values = getVariableValues(schema, op.variableDefinitions ?? [], inputs, {
    maxErrors: 1,
  });
  // Variables that do not coerce fail the execution with their own message; cost the literal ones.
  return values.coerced ?? inputs;
}

/** The estimated cost of each operation of a document, on the variables it will run with. */
export function queryCosts(
  schema: GraphQLSchema,
  doc: DocumentNode,
  variables: Readonly<Record<string, unknown>> = {},
): { name: string; cost: number }[] {
  let introspection = sizesBySchema.get(schema);
  if (introspection === undefined) {
    introspection = introspectionSizes(schema);
    sizesBySchema.set(schema, introspection);
  }
  const fragments = fragmentsOf(doc);
  const out: { name: string; cost: number }[] = [];
  for (const d of doc.definitions) {
    if (d.kind !== Kind.OPERATION_DEFINITION) continue;
    const root = schema.getRootType(d.operation);
    if (root === undefined || root === null) continue;
    const c: CostInput = {
      schema,
      fragments,
      variables: operationVariables(schema, d, variables),
      introspection,
    };
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
  onRefused?: Refused,
): ValidationRule {
  return (context: ValidationContext): ASTVisitor => ({
    Document: {
      leave(doc) {
        for (const { name, cost } of queryCosts(context.getSchema(), doc, variables)) {
          if (cost > max) {
            onRefused?.('cost');
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
  maxCost = MAX_COST,
  onRefused?: Refused,
): ValidationRule[] {
  return [
    depthRule(MAX_DEPTH, onRefused),
    costRule(variables, maxCost, onRefused),
    httpSubscriptionRule(live),
  ];
}

/**
 * A subscription's document checked as a query would be (mercurius does not validate what comes
 * over the WebSocket): the specification's rules, depth and cost. Throws the first problem.
 */
export function checkSubscription(
  schema: GraphQLSchema,
  doc: DocumentNode,
  maxCost = MAX_COST,
  onRefused?: Refused,
): void {
  const errors = validate(schema, doc, [
    ...specifiedRules,
    depthRule(MAX_DEPTH, onRefused),
    costRule({}, maxCost, onRefused),
  ]);
  const first = errors[0];
  if (first !== undefined) throw first;
}
