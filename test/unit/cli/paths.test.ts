import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { PACKAGE_ROOT, resolveInput } from '../../../src/cli/paths.js';

/** How `CSV_FILE` and the other input paths are found (src/cli/paths.ts). */
describe('resolveInput', () => {
  const dir = mkdtempSync(join(tmpdir(), 'nexus-paths-'));
  const cwd = process.cwd();
  after(() => {
    process.chdir(cwd);
    rmSync(dir, { recursive: true, force: true });
  });

  it("finds the seed's bare CSV_FILE=dcgm_metrics_20250718_134233.csv among the package's samples, from any directory", () => {
    process.chdir(dir);
    assert.equal(
      resolveInput('dcgm_metrics_20250718_134233.csv'),
      join(PACKAGE_ROOT, 'samples', 'dcgm_metrics_20250718_134233.csv'),
    );
  });

  it('prefers a file of that name in the working directory, then the package root', () => {
    process.chdir(dir);
    writeFileSync(join(dir, 'dcgm_metrics_20250718_134233.csv'), 'x');
    assert.equal(
      resolveInput('dcgm_metrics_20250718_134233.csv'),
      join(dir, 'dcgm_metrics_20250718_134233.csv'),
    );
    assert.equal(resolveInput('package.json'), join(PACKAGE_ROOT, 'package.json'));
  });

  it('a path with a directory is not looked for in the samples; a missing file is named from the working directory', () => {
    process.chdir(dir);
    assert.equal(resolveInput('x/missing.csv'), join(dir, 'x', 'missing.csv'));
    assert.equal(resolveInput('missing.csv'), join(dir, 'missing.csv'));
    assert.equal(resolveInput('/abs/file.csv'), '/abs/file.csv');
  });
});
