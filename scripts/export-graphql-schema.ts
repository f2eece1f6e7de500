/**
 * Writes the gateway's GraphQL schema (printSchema of the schema the gateway serves, formatted by
 * Prettier like the rest of the repository) to docs/schema.graphql. A unit test
 * (test/unit/gateway/graphql-schema.test.ts) fails when the file and the SDL differ.
 *
 *   npx tsx scripts/export-graphql-schema.ts
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { printSchema } from 'graphql';
import { format, resolveConfig } from 'prettier';
import { buildGraphqlSchema } from '../src/gateway/graphql/schema.js';

export const SCHEMA_FILE = join(import.meta.dirname, '..', 'docs', 'schema.graphql');

/** The text docs/schema.graphql must hold for the current SDL. */
export async function schemaDocument(): Promise<string> {
  const options = (await resolveConfig(SCHEMA_FILE)) ?? {};
  return format(printSchema(buildGraphqlSchema()), { ...options, filepath: SCHEMA_FILE });
}

if (process.argv[1] !== undefined && import.meta.filename === process.argv[1]) {
  writeFileSync(SCHEMA_FILE, await schemaDocument());
  process.stdout.write(`wrote ${SCHEMA_FILE}\n`);
}
