/**
 * Items per page of a list (clusters, hosts, GPUs) unless `limit` says, and at most (docs/api.md,
 * "Paging"). Apart from params.ts so that the schemas (which the dashboard compiles) take them
 * without Node's types.
 */
export const DEFAULT_PAGE = 100;
export const MAX_PAGE = 1000;
