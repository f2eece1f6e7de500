/**
 * Kept so that existing imports still resolve: `sleep` lives in ./backoff.ts, with the delays it
 * waits. (The `Lifecycle` interface and `once()` that were here are gone: a command's resource
 * stack, src/cli/stack.ts, stops what it opened in reverse order exactly once.)
 */
export { sleep } from './backoff.js';
