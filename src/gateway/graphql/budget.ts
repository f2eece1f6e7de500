import {
  defaultFieldResolver,
  getNamedType,
  getNullableType,
  isListType,
  isObjectType,
  type FieldNode,
  type GraphQLFieldResolver,
  type GraphQLNamedType,
  type GraphQLResolveInfo,
  type GraphQLSchema,
  type SelectionSetNode,
} from 'graphql';
import type { IResolvers } from 'mercurius';
import { NexusError } from '../../core/errors.js';
import { FIELD_WEIGHT, below, collect, fieldDef, type Fragments, type Refused } from './limits.js';

/**
 * What one GraphQL request may spend, counted as it runs: the estimate made before execution
 * (limits.ts) trusts the `limit` arguments and guesses the size of other lists; the budget counts
 * what the fields really return. Each field a request resolves costs 1 plus its weight
 * (FIELD_WEIGHT: a store query costs 100), and each item of a list costs the fields selected under
 * it. Spent past `maxCost`, or past its deadline, every field still to run fails with a 400 that
 * says which limit, so an answer never grows past what the limits allow.
 */
export class Budget {
  private spent = 0;
  private stopped: NexusError | undefined;

  constructor(
    private readonly maxCost: number,
    private readonly deadline: number,
    private readonly timeoutMs: number,
    private readonly onRefused?: Refused,
  ) {}

  get used(): number {
    return this.spent;
  }

  /** Throws once the request is over a limit. */
  check(now = Date.now()): void {
    if (this.stopped !== undefined) throw this.stopped;
    if (now > this.deadline) {
      this.onRefused?.('time');
      this.stopped = new NexusError(
        'LIMIT_EXCEEDED',
        `query ran past its time limit of ${this.timeoutMs} ms (GRAPHQL_TIMEOUT); narrow it (fewer GPUs, a shorter range, a larger step, a lower limit)`,
      );
      throw this.stopped;
    }
  }

  charge(cost: number, what: string): void {
    this.check();
    this.spent += cost;
    if (this.spent > this.maxCost) {
      this.onRefused?.('cost');
      this.stopped = new NexusError(
        'LIMIT_EXCEEDED',
        `query cost passed the maximum of ${this.maxCost} while running (${what} returned more than estimated); lower limit, select fewer fields or narrow the query`,
      );
      throw this.stopped;
    }
  }

  /** The time left before the deadline, for racing a slow store query. */
  remainingMs(now = Date.now()): number {
    return Math.max(0, this.deadline - now);
  }
}

const budgets = new WeakMap<object, Budget>();

/** Gives a request's GraphQL context its budget (subscriptions have none: each event is small). */
export function attachBudget(context: object, budget: Budget): void {
  budgets.set(context, budget);
}

export function budgetOf(context: unknown): Budget | undefined {
  return typeof context === 'object' && context !== null ? budgets.get(context) : undefined;
}

const fragmentMaps = new WeakMap<GraphQLResolveInfo['fragments'], Fragments>();

function fragmentMap(info: GraphQLResolveInfo): Fragments {
  let m = fragmentMaps.get(info.fragments);
  if (m === undefined) {
    m = new Map(Object.entries(info.fragments));
    fragmentMaps.set(info.fragments, m);
  }
  return m;
}

/**
 * The cost of one item of a list: its selected fields, collected as execution collects them
 * (limits.ts), with their weights, and through fields that are not lists, theirs; lists below
 * charge for themselves when they resolve.
 */
function itemCost(
  schema: GraphQLSchema,
  sets: readonly { set: SelectionSetNode; type: GraphQLNamedType }[],
  fragments: Fragments,
): number {
  let total = 0;
  for (const group of collect(sets, schema, fragments).values()) {
    const first = group[0];
    if (first === undefined) continue;
    total += 1 + (FIELD_WEIGHT[`${first.parent.name}.${first.node.name.value}`] ?? 0);
    const def = fieldDef(schema, first.parent, first.node.name.value);
    if (def === undefined || isListType(getNullableType(def.type))) continue;
    total += itemCost(schema, below(group, schema), fragments);
  }
  return total;
}

const itemCosts = new WeakMap<FieldNode, number>();

function listItemCost(info: GraphQLResolveInfo): number {
  const first = info.fieldNodes[0];
  if (first === undefined) return 1;
  let c = itemCosts.get(first);
  if (c === undefined) {
    const type = getNamedType(info.returnType);
    const sets = info.fieldNodes.flatMap((n) =>
      n.selectionSet === undefined ? [] : [{ set: n.selectionSet, type }],
    );
    c = sets.length === 0 ? 1 : itemCost(info.schema, sets, fragmentMap(info));
    itemCosts.set(first, c);
  }
  return c;
}

type Resolver = GraphQLFieldResolver<unknown, unknown, Record<string, unknown>>;

function isPromise(v: unknown): v is Promise<unknown> {
  return (
    typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function'
  );
}

/** A slow store query loses the race with the request's deadline. */
function beforeDeadline<T>(p: Promise<T>, budget: Budget): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      try {
        budget.check(Number.POSITIVE_INFINITY);
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    }, budget.remainingMs());
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

function metered(type: string, field: string, list: boolean, resolve: Resolver): Resolver {
  const weight = 1 + (FIELD_WEIGHT[`${type}.${field}`] ?? 0);
  const slow = weight >= 10;
  return (source, args, context, info) => {
    const budget = budgetOf(context);
    if (budget === undefined) return resolve(source, args, context, info);
    // A field of a list's item was charged with the list's items; any other pays its way here.
    if (typeof info.path.prev?.key !== 'number') budget.charge(weight, `${type}.${field}`);
    else budget.check();
    const out = resolve(source, args, context, info);
    const count = (v: unknown): unknown => {
      if (Array.isArray(v) && v.length > 0)
        budget.charge(v.length * listItemCost(info), `${type}.${field}`);
      return v;
    };
    if (!isPromise(out)) return list ? count(out) : out;
    const done = slow ? beforeDeadline(out, budget) : out;
    return list ? done.then(count) : done;
  };
}

/**
 * The resolvers with the budget applied: every field of the query types (those without a
 * resolver of their own use GraphQL's default) checks the budget before it runs, and list fields
 * charge for the items they return. Subscription roots are left as they are.
 */
export function withBudget(schema: GraphQLSchema, resolvers: IResolvers): IResolvers {
  const out: Record<string, unknown> = { ...resolvers };
  const subscription = schema.getSubscriptionType()?.name;
  for (const type of Object.values(schema.getTypeMap())) {
    if (!isObjectType(type) || type.name.startsWith('__') || type.name === subscription) continue;
    const own = (resolvers as Record<string, Record<string, unknown> | undefined>)[type.name];
    const fields: Record<string, unknown> = { ...own };
    for (const [name, def] of Object.entries(type.getFields())) {
      const given = own?.[name];
      const resolve = typeof given === 'function' ? (given as Resolver) : defaultFieldResolver;
      fields[name] = metered(type.name, name, isListType(getNullableType(def.type)), resolve);
    }
    out[type.name] = fields;
  }
  return out as IResolvers;
}
