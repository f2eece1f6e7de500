import { join } from 'node:path';
import type { Logger } from '../core/logger.js';
import { dashboardPlugin as plugin } from '../gateway/dashboard/plugin.js';
import { PACKAGE_ROOT } from './paths.js';

/** The dashboard, from the build output of this package. */
export function dashboardPlugin(logger: Logger) {
  return plugin(join(PACKAGE_ROOT, 'dist', 'dashboard'), logger);
}
