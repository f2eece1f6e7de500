import {
  GraphQLError,
  Kind,
  isScalarType,
  valueFromASTUntyped,
  type GraphQLSchema,
  type ValueNode,
} from 'graphql';

/** RFC 3339 date-time with a zone (Z or an offset), seconds optional fraction. */
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$/;

const shown = (v: unknown): string => (typeof v === 'string' ? JSON.stringify(v) : String(v));

function isoFromText(text: string): string | undefined {
  if (!RFC3339.test(text)) return undefined;
  const t = Date.parse(text);
  return Number.isNaN(t) ? undefined : new Date(t).toISOString();
}

/** Output: epoch milliseconds, a Date or an RFC 3339 string, always sent as UTC RFC 3339. */
function serializeDateTime(value: unknown): string {
  if (typeof value === 'number' && Number.isFinite(value)) return new Date(value).toISOString();
  if (value instanceof Date && !Number.isNaN(value.getTime())) return value.toISOString();
  if (typeof value === 'string') {
    const out = isoFromText(value);
    if (out !== undefined) return out;
  }
  throw new GraphQLError(`DateTime cannot represent ${shown(value)}`);
}

/** Input: an RFC 3339 string; the resolvers receive it as UTC RFC 3339 with milliseconds. */
function parseDateTime(value: unknown): string {
  const out = typeof value === 'string' ? isoFromText(value) : undefined;
  if (out === undefined) {
    throw new GraphQLError(
      `DateTime: ${shown(value)} is not an RFC 3339 date-time (like 2025-07-18T20:42:34Z)`,
    );
  }
  return out;
}

/**
 * Gives the DateTime and JSON scalars of a schema built from the SDL their behaviour (buildSchema
 * leaves custom scalars as pass-through).
 */
export function attachScalars(schema: GraphQLSchema): void {
  const dateTime = schema.getType('DateTime');
  const json = schema.getType('JSON');
  if (!isScalarType(dateTime) || !isScalarType(json)) {
    throw new Error('the GraphQL schema lacks the DateTime or JSON scalar');
  }
  dateTime.serialize = serializeDateTime;
  dateTime.parseValue = parseDateTime;
  dateTime.parseLiteral = (ast: ValueNode) => {
    if (ast.kind !== Kind.STRING) {
      throw new GraphQLError('DateTime: expected an RFC 3339 string', { nodes: ast });
    }
    return parseDateTime(ast.value);
  };
  json.serialize = (value: unknown) => value;
  json.parseValue = (value: unknown) => value;
  json.parseLiteral = (ast: ValueNode, variables?: Readonly<Record<string, unknown>> | null) =>
    valueFromASTUntyped(ast, variables);
}
