/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', from: {}, to: { circular: true } },
    {
      name: 'core-is-innermost',
      comment: 'core imports nothing else from src/',
      severity: 'error',
      from: { path: '^src/core/' },
      to: { path: '^src/(?!core/)' },
    },
    {
      name: 'etcd-adapter-depends-on-core-only',
      severity: 'error',
      from: { path: '^src/etcd/' },
      to: { path: '^src/(?!core/|etcd/)' },
    },
    {
      name: 'queue-depends-on-core-only',
      comment: 'its etcd backend also uses the shared etcd adapter',
      severity: 'error',
      from: { path: '^src/queue/' },
      to: { path: '^src/(?!core/|queue/|etcd/)' },
    },
    {
      name: 'registry-depends-on-core-only',
      severity: 'error',
      from: { path: '^src/registry/' },
      to: { path: '^src/(?!core/|registry/|etcd/)' },
    },
    {
      name: 'store-depends-on-core-only',
      severity: 'error',
      from: { path: '^src/store/' },
      to: { path: '^src/(?!core/|store/)' },
    },
    {
      name: 'streamer-layer',
      severity: 'error',
      from: { path: '^src/streamer/' },
      to: { path: '^src/(?!core/|queue/|streamer/)' },
    },
    {
      name: 'collector-layer',
      severity: 'error',
      from: { path: '^src/collector/' },
      to: { path: '^src/(?!core/|queue/|store/|registry/|collector/)' },
    },
    {
      name: 'gateway-layer',
      severity: 'error',
      from: { path: '^src/gateway/' },
      to: { path: '^src/(?!core/|queue/|store/|registry/|gateway/)' },
    },
    {
      name: 'scraper-layer',
      severity: 'error',
      from: { path: '^src/scraper/' },
      to: { path: '^src/(?!core/|queue/|scraper/)' },
    },
    {
      name: 'services-use-interfaces-not-backends',
      comment: 'services see the Queue and TelemetryStore interfaces; only cli/ picks a backend',
      severity: 'error',
      from: { path: '^src/(streamer|collector|gateway|scraper)/' },
      to: { path: '^src/((queue|store|registry)/(etcd|memory|postgres|pglite)/|etcd/)' },
    },
    {
      name: 'etcd3-only-in-etcd-adapter',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/(etcd|queue/etcd|registry/etcd)/' },
      to: { path: 'node_modules/etcd3/' },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
    {
      name: 'no-dev-deps-in-src',
      severity: 'error',
      from: { path: '^src/' },
      to: { dependencyTypes: ['npm-dev'] },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default'],
    },
  },
};
