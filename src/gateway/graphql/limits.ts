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
  parse,
  specifiedRules,
  validate,
  type ASTVisitor,
  type DocumentNode,
  type FieldNode,
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
 * metrics per GPU, at most 7 MIG instances per GPU (NVIDIA's limit). The items of a page (a field
 * with a `limit` that returns an object holding the list: hostsPage, telemetryPage, search,
 * Cluster.events) are counted by the page's `limit`, not estimated here.
 */
export const FAN_OUT: Readonly<Record<string, number>> = {
  'Query.clusters': 10,
  'Host.gpus': 8,
  'Gpu.latest': 20,
  'Gpu.workloads': 10,
  'Gpu.migInstances': 7,
  'MigInstance.latest': 20,
  'MigInstance.workloads': 10,
  'ClusterStats.samples_per_metric': 20,
};

/**
 * What a field costs beyond 1, once per time it runs: a query of the store (a page, a series, the
 * statistics) outweighs a field read from an object already loaded, so one request runs at most
 * about a hundred of them; a JSON field holds several values. Counted in the estimate and charged
 * again when the field runs (budget.ts).
 */
export const FIELD_WEIGHT: Readonly<Record<string, number>> = {
  'Query.telemetry': 500,
  'Query.telemetryPage': 500,
  'Query.series': 500,
  'Query.clusterStats': 500,
  'Query.latest': 20,
  'Query.hosts': 10,
  'Query.hostsPage': 10,
  'Query.search': 10,
  'Query.gpus': 10,
  'Query.gpu': 10,
  'Query.host': 10,
  'Query.cluster': 10,
  'Cluster.stats': 500,
  'Cluster.idleGpus': 100,
  'Cluster.usage': 500,
  'Gpu.series': 500,
  'Gpu.labels': 10,
  'Gpu.migInstances': 10,
  'MigInstance.series': 500,
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

/**
 * Query text must be GraphQL. mercurius runs a text that is not GraphQL but is JSON as a
 * document tree, whatever its shape: `{}` (or `1`, `null`, `[]`) reached graphql's validation as a
 * "document" without definitions and failed there, a 500. No JSON text is a GraphQL document, so
 * such a text gets the syntax error GraphQL's parser finds in it (a 400), as any other text that
 * does not parse. GraphQL text fails JSON.parse at its first token or so: it is not parsed twice.
 */
export function checkGraphqlText(source: string): void {
  try {
    JSON.parse(source);
  } catch {
    return; // not JSON: mercurius parses it as GraphQL, and reports its syntax errors itself
  }
  parse(source); // throws the syntax error
  throw new GraphQLError('Syntax Error: the query is JSON, not GraphQL.');
}

/** Told which limit refused an operation (for the metrics). */
export type Refused = (limit: 'cost' | 'depth' | 'answer' | 'time') => void;

const isIntrospection = (name: string): boolean => name === '__schema' || name === '__type';

export type Fragments = ReadonlyMap<string, FragmentDefinitionNode>;

function fragmentsOf(doc: DocumentNode): Fragments {
  const out = new Map<string, FragmentDefinitionNode>();
  for (const d of doc.definitions)
    if (d.kind === Kind.FRAGMENT_DEFINITION) out.set(d.name.value, d);
  return out;
}

/** A field as execution sees it: its node, and the type it is selected on. */
interface Selected {
  readonly node: FieldNode;
  readonly parent: GraphQLNamedType;
}

/**
 * The fields a selection resolves, by response key, as GraphQL's execution collects them: a named
 * fragment spread once per selection however often it is spread, fields with the same key
 * merged into one. So a query costs what it runs: `{ a ...F ...F }` runs F once, and a fragment
 * "bomb" that spreads a fragment twice at each level runs each field once.
 */
export function collect(
  sets: readonly { readonly set: SelectionSetNode; readonly type: GraphQLNamedType }[],
  schema: GraphQLSchema,
  fragments: Fragments,
): Map<string, Selected[]> {
  const out = new Map<string, Selected[]>();
  const spread = new Set<string>();
  const walk = (set: SelectionSetNode, type: GraphQLNamedType): void => {
    for (const s of set.selections) {
      if (s.kind === Kind.FIELD) {
        const k = s.alias?.value ?? s.name.value;
        const list = out.get(k);
        if (list === undefined) out.set(k, [{ node: s, parent: type }]);
        else list.push({ node: s, parent: type });
      } else if (s.kind === Kind.INLINE_FRAGMENT) {
        const t =
          s.typeCondition === undefined
            ? type
            : (schema.getType(s.typeCondition.name.value) ?? type);
        walk(s.selectionSet, t);
      } else {
        if (spread.has(s.name.value)) continue;
        spread.add(s.name.value);
        const f = fragments.get(s.name.value);
        if (f === undefined) continue; // reported by the spec rules
        walk(f.selectionSet, schema.getType(f.typeCondition.name.value) ?? type);
      }
    }
  };
  for (const { set, type } of sets) walk(set, type);
  return out;
}

/** The selections under a group of merged fields, with the type they are selected on. */
export function below(
  group: readonly Selected[],
  schema: GraphQLSchema,
): { set: SelectionSetNode; type: GraphQLNamedType }[] {
  const first = group[0];
  if (first === undefined) return [];
  const def = fieldDef(schema, first.parent, first.node.name.value);
  if (def === undefined) return [];
  const type = getNamedType(def.type);
  return group.flatMap((g) =>
    g.node.selectionSet === undefined ? [] : [{ set: g.node.selectionSet, type }],
  );
}

const nodeIds = new WeakMap<FieldNode, number>();
let nextNodeId = 0;

/** A key naming a group of merged fields (for memoising its cost and depth). */
function groupKey(group: readonly Selected[]): string {
  return group
    .map((g) => {
      let id = nodeIds.get(g.node);
      if (id === undefined) nodeIds.set(g.node, (id = nextNodeId++));
      return `${g.parent.name}.${id}`;
    })
    .join(',');
}

/** Deepest field level under a selection (fragments add no level; introspection not counted). */
function depthOf(
  sets: readonly { set: SelectionSetNode; type: GraphQLNamedType }[],
  schema: GraphQLSchema,
  fragments: Fragments,
  memo: Map<string, number>,
): number {
  let deepest = 0;
  for (const group of collect(sets, schema, fragments).values()) {
    const name = group[0]?.node.name.value ?? '';
    if (isIntrospection(name)) continue;
    const key = groupKey(group);
    let d = memo.get(key);
    if (d === undefined) {
      memo.set(key, 1); // a cycle (refused by the spec rules) ends here
      d = 1 + depthOf(below(group, schema), schema, fragments, memo);
      memo.set(key, d);
    }
    deepest = Math.max(deepest, d);
  }
  return deepest;
}

/** Rejects operations nested deeper than `max` fields. */
export function depthRule(max = MAX_DEPTH, onRefused?: Refused): ValidationRule {
  return (context: ValidationContext): ASTVisitor => ({
    OperationDefinition(op) {
      const schema = context.getSchema();
      const root = schema.getRootType(op.operation);
      if (root === undefined || root === null) return;
      const depth = depthOf(
        [{ set: op.selectionSet, type: root }],
        schema,
        fragmentsOf(context.getDocument()),
        new Map(),
      );
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
export function fieldDef(
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

/**
 * The cost of the fields of some selections. `page`: the selections are a page's (a field with a
 * `limit` returning an object that holds the list, as hostsPage's HostPage), whose lists hold that
 * many items: the page's own fields (total, next_cursor, counts) run once, its items' `page` times.
 */
function costOf(
  sets: readonly { set: SelectionSetNode; type: GraphQLNamedType }[],
  c: CostInput,
  memo: Map<string, number>,
  page?: number,
): number {
  let total = 0;
  for (const group of collect(sets, c.schema, c.fragments).values()) {
    const first = group[0];
    if (first === undefined) continue;
    // A fragment's fields may be selected under pages of different limits: cost each apart.
    const key = page === undefined ? groupKey(group) : `${groupKey(group)}@${page}`;
    const known = memo.get(key);
    if (known !== undefined) {
      total += known;
      continue;
    }
    memo.set(key, 0); // a cycle (refused by the spec rules) ends here
    const name = first.node.name.value;
    const field = `${first.parent.name}.${name}`;
    let cost = 1 + (FIELD_WEIGHT[field] ?? 0);
    const def = name === '__typename' ? undefined : fieldDef(c.schema, first.parent, name);
    const sub = below(group, c.schema);
    if (def !== undefined && sub.length > 0) {
      const list = isListType(getNullableType(def.type));
      const limit = def.args.find((a) => a.name === 'limit');
      // A list field's default page (no limit given) is estimated as the fields without one are
      // (a few clusters, 8 GPUs on a host) where an estimate is known: at most its default.
      const given = first.node.arguments?.some((x) => x.name.value === 'limit') === true;
      const estimate = c.introspection[field] ?? FAN_OUT[field];
      const times =
        limit !== undefined
          ? !given && estimate !== undefined && typeof limit.defaultValue === 'number'
            ? Math.min(estimate, limit.defaultValue)
            : limitArg(first.node, limit.defaultValue, c)
          : list
            ? (page ?? estimate ?? DEFAULT_FAN_OUT)
            : 1;
      // A page (a `limit`, and an object holding the list): its limit counts the list's items, once.
      if (limit !== undefined && !list) cost += costOf(sub, c, memo, times);
      else cost += times * costOf(sub, c, memo);
    }
    memo.set(key, cost);
    total += cost;
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
  // Variables that do not coerce fail the execution, saying which; until then, cost the defaults.
  return values.coerced ?? {};
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
      cost: costOf([{ set: d.selectionSet, type: root }], c, new Map()),
    });
  }
  return out;
}

/**
 * Rejects operations whose estimated cost is above `max`. Each field costs 1; the fields under a
 * list are multiplied by its `limit` argument (variables included), the page's `limit` for the
 * list of a page, or by its estimated size (FAN_OUT, else DEFAULT_FAN_OUT).
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

/**
 * The request must name which operation of the document to run when there is not exactly one (or
 * name one the document holds), with the errors graphql's execution gives. Checked with the
 * document: mercurius looks up the operation of a GET (to refuse a mutation) without checking it
 * was found, a 500 (`reading 'operation'` of null) where a POST gets these 400s.
 */
export function operationNameRule(operationName: string | null | undefined): ValidationRule {
  return (context: ValidationContext): ASTVisitor => ({
    Document: {
      leave(doc) {
        const ops = doc.definitions.filter((d) => d.kind === Kind.OPERATION_DEFINITION);
        let message: string | undefined;
        if (operationName === null || operationName === undefined) {
          if (ops.length > 1)
            message = 'Must provide operation name if query contains multiple operations.';
          else if (ops.length === 0) message = 'Must provide an operation.';
        } else if (!ops.some((op) => op.name?.value === operationName)) {
          message = `Unknown operation named "${operationName}".`;
        }
        if (message !== undefined) context.reportError(new GraphQLError(message));
      },
    },
  });
}

/** The rules every query over HTTP passes, beyond the specification's. */
export function httpRules(
  live: boolean,
  variables: Readonly<Record<string, unknown>>,
  maxCost = MAX_COST,
  onRefused?: Refused,
  operationName?: string | null,
): ValidationRule[] {
  return [
    depthRule(MAX_DEPTH, onRefused),
    costRule(variables, maxCost, onRefused),
    httpSubscriptionRule(live),
    operationNameRule(operationName),
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
