import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { buildSchema, parse, printSchema, validateSchema } from 'graphql';
import { SCHEMA_FILE, schemaDocument } from '../../../scripts/export-graphql-schema.js';
import { SDL, buildGraphqlSchema } from '../../../src/gateway/graphql/schema.js';

describe('GraphQL schema', () => {
  it('the SDL parses and builds a valid schema with the seed queries fields', () => {
    assert.doesNotThrow(() => parse(SDL));
    const schema = buildGraphqlSchema();
    assert.deepEqual(validateSchema(schema), []);
    const query = schema.getQueryType()?.getFields();
    assert.ok(query?.clusters && query.telemetry);
    assert.ok(schema.getSubscriptionType()?.getFields().telemetryBatch);
  });

  it('docs/schema.graphql is the current SDL', async () => {
    const file = readFileSync(SCHEMA_FILE, 'utf8');
    assert.equal(
      file,
      await schemaDocument(),
      'docs/schema.graphql is out of date: run npx tsx scripts/export-graphql-schema.ts',
    );
    // and it describes the same schema (not only the same text)
    assert.equal(printSchema(buildSchema(file)), printSchema(buildGraphqlSchema()));
  });
});
