import { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Config } from '../../core/config.js';
import { NexusError, describeError } from '../../core/errors.js';
import type { NexusMetrics } from '../../core/metrics.js';
import { RecordPublisher } from '../../queue/record-publisher.js';
import type { Queue } from '../../queue/types.js';
import { KubernetesTargets, parseServiceRef } from '../../scraper/kubernetes.js';
import { Scraper } from '../../scraper/scraper.js';
import { FileTargets, staticTargets, type ScrapeTarget } from '../../scraper/targets.js';
import { buildQueue, configuredBackends, type Root } from '../backends.js';
import { closeOnSignal, openRoot, processMetrics, startOps, startTracing } from '../compose.js';
import { queueWatch } from '../etcd-alarms.js';
import { exitStatusOf } from '../exit.js';
import { readiness } from '../observability.js';
import { resolveInput } from '../paths.js';
import { addSettings, configFrom } from '../settings.js';

/** Whether any target source is configured (SCRAPE_TARGETS, _FILE, KUBERNETES_SERVICE). */
export function scrapeConfigured(config: Config): boolean {
  return (
    config.scrapeTargets.length > 0 ||
    config.scrapeTargetsFile !== '' ||
    config.scrapeKubernetesService !== ''
  );
}

/**
 * The scraper on `queue`, its target sources started (a bad list, an unreadable file or an
 * unreachable Kubernetes API is an error here, before anything is scraped) and its stop pushed
 * on the stack: sources first, then the scrapes in flight finish and publish.
 */
export async function buildScraper(
  root: Root,
  queue: Queue,
  metrics: NexusMetrics | undefined,
  options: { readonly maxQueueDepth: number; readonly batchSize: number },
): Promise<Scraper> {
  const { config, logger, stack } = root;
  if (!scrapeConfigured(config)) {
    throw new NexusError(
      'CONFIG_INVALID',
      'nothing to scrape: set SCRAPE_TARGETS, SCRAPE_TARGETS_FILE or SCRAPE_KUBERNETES_SERVICE',
    );
  }
  if (config.scrapeInterval < 100) {
    throw new NexusError('CONFIG_INVALID', 'SCRAPE_INTERVAL: at least 100ms');
  }
  if (config.scrapeTimeout > config.scrapeInterval) {
    throw new NexusError('CONFIG_INVALID', 'SCRAPE_TIMEOUT: longer than SCRAPE_INTERVAL');
  }
  if ((config.scrapeUsername === '') !== (config.scrapePassword === '')) {
    throw new NexusError('CONFIG_INVALID', 'SCRAPE_USERNAME and SCRAPE_PASSWORD: set both or none');
  }
  let ca: string | undefined;
  if (config.scrapeCaFile !== '') {
    try {
      ca = readFileSync(resolveInput(config.scrapeCaFile), 'utf8');
    } catch (err) {
      throw new NexusError('CONFIG_INVALID', `SCRAPE_CA_FILE: ${describeError(err)}`);
    }
  }
  const publisher = new RecordPublisher({
    queue,
    producer: `scrape-${hostname()}-${process.pid}`,
    batchSize: options.batchSize,
    maxDepth: options.maxQueueDepth,
  });
  const scraper = new Scraper({
    publisher,
    logger,
    metrics,
    intervalMs: config.scrapeInterval,
    timeoutMs: config.scrapeTimeout,
    http: {
      maxBytes: config.scrapeMaxBytes,
      ...(ca === undefined ? {} : { ca }),
      insecureSkipVerify: config.scrapeInsecureSkipVerify,
      ...(config.scrapeUsername === ''
        ? {}
        : { basicAuth: { username: config.scrapeUsername, password: config.scrapePassword } }),
    },
  });
  if (config.scrapeInsecureSkipVerify) {
    logger.warn(
      'SCRAPE_INSECURE_SKIP_VERIFY: https targets are scraped without checking who answers',
    );
  }
  const sink = (source: string, targets: readonly ScrapeTarget[]): void => {
    scraper.setTargets(source, targets);
  };
  stack.push('finishing the scrapes in flight and publishing their readings', () => scraper.stop());
  if (config.scrapeTargets.length > 0) sink('static', staticTargets(config.scrapeTargets));
  if (config.scrapeTargetsFile !== '') {
    const file = new FileTargets({
      path: resolveInput(config.scrapeTargetsFile),
      sink,
      logger,
      onError: () => metrics?.scrapeDiscoveryErrors.inc({ source: 'file' }),
    });
    await file.start();
    stack.push('stopping the targets file watch', () => file.stop());
  }
  if (config.scrapeKubernetesService !== '') {
    const ref = parseServiceRef(config.scrapeKubernetesService);
    const k8s = new KubernetesTargets({
      ref,
      sink,
      logger,
      kubeConfig: (KubeConfig) => {
        const kc = new KubeConfig();
        kc.loadFromDefault();
        return kc;
      },
      onError: () => metrics?.scrapeDiscoveryErrors.inc({ source: 'kubernetes' }),
    });
    await k8s.start();
    stack.push('stopping the Kubernetes endpoints watch', () => k8s.stop());
  }
  logger.info(
    {
      targets: scraper.targetUrls,
      interval_ms: config.scrapeInterval,
      timeout_ms: scraper.timeoutMs,
    },
    `scraping ${scraper.targetUrls.length} targets every ${config.scrapeInterval} ms`,
  );
  return scraper;
}

export function scrapeCommand(): Command {
  const cmd = new Command('scrape')
    .description('Scrape dcgm-exporter endpoints and publish their readings to the queue')
    .option('--batch-size <value>', 'Records per queue message. env BATCH_SIZE (default: 100)')
    .option(
      '--max-queue-depth <value>',
      'Scrapes are skipped (and counted) while the queue holds this many messages or more. env MAX_QUEUE_DEPTH (default: 10000)',
    )
    .addHelpText(
      'after',
      '\nExit status: 0 stopped by a signal; 1 failed while running; 2 bad configuration (no\n' +
        'target source, a bad target, an unreadable targets file, an unreachable Kubernetes API).',
    );
  addSettings(cmd, ['common', 'queue', 'scraper']);
  cmd.action(async () => {
    const root = openRoot(configFrom(cmd));
    const { config, logger, stack } = root;
    try {
      const queue = buildQueue(root, configuredBackends(root));
      const metrics = processMetrics(root, 'scraper');
      startTracing(root, 'scraper');
      const { probes } = queueWatch(root, queue, metrics);
      const scraper = await buildScraper(root, queue, metrics, {
        maxQueueDepth: config.maxQueueDepth,
        batchSize: config.batchSize,
      });
      await startOps(root, {
        health: readiness(probes, () => scraper.health, metrics, 'scraper'),
        metrics: () => metrics.exposition(),
      });
      closeOnSignal(root);
      scraper.start();
    } catch (err) {
      const code = exitStatusOf(err);
      logger.error({ err: describeError(err) }, `scrape failed to start: ${describeError(err)}`);
      process.stderr.write(`nexus scrape: ${describeError(err)}\n`);
      process.exitCode = code;
      await stack.close();
    }
  });
  return cmd;
}
