#!/usr/bin/env node
// The `nexus` command: runs the compiled CLI (make build-nexus), or the TypeScript sources through
// tsx in a development checkout that has not been built.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const built = join(root, 'dist', 'cli', 'main.js');
if (existsSync(built)) {
  await import(pathToFileURL(built).href);
} else {
  try {
    const { register } = await import('tsx/esm/api');
    register();
  } catch {
    process.stderr.write(
      'nexus: not built yet; run `make build-nexus` (or `npm ci` for a development checkout)\n',
    );
    process.exit(1);
  }
  await import(pathToFileURL(join(root, 'src', 'cli', 'main.ts')).href);
}
