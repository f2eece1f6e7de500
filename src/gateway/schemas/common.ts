import { Type, type Static, type TSchema } from '@sinclair/typebox';

/**
 * What every schema of the API builds on: nullable values, string enums, $refs to the shared
 * schemas, instants, and the error body every 4xx and 5xx carries. The schemas give request
 * validation, response serialisation, the handlers' TypeScript types and the OpenAPI document;
 * the dashboard derives its types from them too (type-only imports).
 */
/**
 * `type: [T, 'null']` rather than anyOf: the serializer writes it directly (an anyOf costs a
 * validation per value), and @fastify/swagger renders it as OpenAPI's `nullable: true`.
 */
export const Nullable = <T extends TSchema>(t: T) =>
  Type.Unsafe<Static<T> | null>({ ...t, type: [t.type as string, 'null'] });
/** A string enum as `enum` (fast to serialise), typed as the union of its values. */
export const StringEnum = <const V extends readonly string[]>(
  values: V,
  options: Record<string, unknown> = {},
) => Type.Unsafe<V[number]>({ type: 'string', enum: [...values], ...options });
/** A $ref to a shared schema (registered with addSchema), typed as the schema. */
export const ref = <T extends TSchema>(schema: T) =>
  Type.Unsafe<Static<T>>(Type.Ref(schema.$id ?? ''));
export const Time = Type.String({
  format: 'date-time',
  description: 'RFC 3339, UTC, millisecond precision',
});
export const ErrorBody = Type.Object(
  {
    error: Type.String({ description: 'What is wrong, in words' }),
    code: Type.String({ description: 'Stable machine-readable code' }),
    statusCode: Type.Integer(),
  },
  { $id: 'Error' },
);

export const ErrorRef = ref(ErrorBody);
