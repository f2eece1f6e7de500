/** Rewrites the configuration table in README.md from the settings table (src/core/config.ts). */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { configTable } from './config-table.js';

const path = join(import.meta.dirname, '..', 'README.md');
const readme = readFileSync(path, 'utf8');
const next = readme.replace(
  /<!-- config:start -->[\s\S]*<!-- config:end -->/,
  `<!-- config:start -->\n${configTable()}\n<!-- config:end -->`,
);
writeFileSync(path, next);
