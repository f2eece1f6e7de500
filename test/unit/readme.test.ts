import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { SETTINGS } from '../../src/core/config.js';

const readme = readFileSync(join(import.meta.dirname, '..', '..', 'README.md'), 'utf8');

describe('README.md', () => {
  it('documents every setting with its variable, flag and default', () => {
    for (const s of Object.values(SETTINGS)) {
      const row = readme.split('\n').find((l) => l.startsWith(`| \`${s.env}\``));
      assert.ok(row, `${s.env} is missing from README.md (run: npx tsx scripts/readme-config.ts)`);
      assert.ok(row.includes(`\`--${s.flag}\``), `${s.env}: flag --${s.flag} missing`);
      if (s.default !== '')
        assert.ok(row.includes(`\`${s.default}\``), `${s.env}: default ${s.default} missing`);
    }
  });

  it('gives the two commands of the quick start', () => {
    assert.match(readme, /make run/);
    assert.match(readme, /make test/);
  });
});
