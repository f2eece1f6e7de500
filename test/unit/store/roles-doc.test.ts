/**
 * docs/operations.md's table of the PostgreSQL roles names every table and view each role is
 * granted (TABLE_GRANTS, src/store/postgres/roles.ts): it had fallen behind by ten tables.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { TABLE_GRANTS } from '../../../src/store/postgres/roles.js';

const doc = readFileSync(
  join(import.meta.dirname, '..', '..', '..', 'docs', 'operations.md'),
  'utf8',
);

describe('docs/operations.md: PostgreSQL roles', () => {
  for (const role of ['collector', 'gateway'] as const) {
    it(`the ${role} row names every relation the ${role} is granted`, () => {
      const row = doc.split('\n').find((l) => l.startsWith(`| \`<prefix>_${role}\``));
      assert.ok(row, `no row for <prefix>_${role}`);
      const granted = TABLE_GRANTS.filter((g) => g[role] !== undefined).map((g) => g.table);
      const missing = granted.filter((t) => !row.includes(`\`${t}\``));
      assert.deepEqual(missing, []);
      const named = [...row.matchAll(/`([a-z_0-9]+)`/g)].map((m) => m[1]);
      const unknown = named.filter(
        (t) => t !== undefined && /_/.test(t) && !granted.includes(t) && t !== 'last_used_at',
      );
      assert.deepEqual(unknown, [], 'relations the row names that the role is not granted');
    });
  }
});
