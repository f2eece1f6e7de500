// Copies the non-TypeScript files the build needs (SQL migrations, dashboard assets) into dist/.
import { cpSync, existsSync } from 'node:fs';
for (const [from, to] of [['src/store/sql', 'dist/store/sql']]) {
  if (existsSync(from)) cpSync(from, to, { recursive: true });
}
