/**
 * The embedded queue, where the CLI and the tests have always imported it from. It lives in three
 * files: queue.ts (messages, retries, dead letters), consumer.ts (claims and sessions) and
 * stream.ts (fenced stream checkpoints).
 */
export { MemoryQueue } from './queue.js';
export { MemoryConsumer } from './consumer.js';
