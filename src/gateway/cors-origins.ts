import { NexusError } from '../core/errors.js';

/** scheme://host[:port], as a browser sends it in Origin: no path, no trailing slash. */
const ORIGIN = /^https?:\/\/(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/**
 * The origins CORS answers, checked: each an exact origin as browsers send it (compared as
 * written, case apart), or `*` for any. A path or trailing slash would never match: refused.
 */
export function corsOrigins(origins: readonly string[]): readonly string[] | '*' {
  if (origins.includes('*')) {
    if (origins.length > 1) {
      throw new NexusError(
        'CONFIG_INVALID',
        `CORS_ORIGINS: "*" allows every origin and cannot be listed with others (${origins.join(',')})`,
      );
    }
    return '*';
  }
  const bad = origins.filter((x) => !ORIGIN.test(x));
  if (bad.length > 0) {
    throw new NexusError(
      'CONFIG_INVALID',
      `CORS_ORIGINS: ${bad.map((x) => `"${x}"`).join(', ')} ${bad.length === 1 ? 'is not an origin' : 'are not origins'}: write each as scheme://host[:port] (like https://grafana.example.com), without a path or a trailing slash, or * for any`,
    );
  }
  return origins.map((x) => x.toLowerCase());
}
