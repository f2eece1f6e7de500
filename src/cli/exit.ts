import { concernOf } from '../core/errors.js';

/**
 * The exit status of a command that failed (README, "Exit status"): 2 for a setting or an input
 * file it cannot use (the error concerns the configuration or the file: src/core/errors.ts), 1 for
 * anything else.
 */
export function exitStatusOf(err: unknown): 1 | 2 {
  const concern = concernOf(err);
  return concern === 'config' || concern === 'file' ? 2 : 1;
}
