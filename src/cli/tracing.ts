import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, TracerProvider, type SpanProcessor } from '@opentelemetry/sdk-trace';
import type { Logger } from '../core/logger.js';
import { VERSION } from './version.js';

/**
 * Installs the OpenTelemetry SDK for this process when the standard variables ask for traces
 * (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT; not OTEL_TRACES_EXPORTER=none,
 * not OTEL_SDK_DISABLED=true): spans go to the OTLP/HTTP collector. Otherwise nothing is installed
 * and every span is a no-op. `processors` replaces the exporter (tests). Returns the shutdown.
 */
export function setupTracing(
  component: string,
  logger: Logger,
  env: NodeJS.ProcessEnv = process.env,
  processors?: SpanProcessor[],
): () => Promise<void> {
  const wanted =
    processors !== undefined ||
    ((env.OTEL_SDK_DISABLED ?? '').toLowerCase() !== 'true' &&
      (env.OTEL_TRACES_EXPORTER ?? 'otlp') !== 'none' &&
      ((env.OTEL_EXPORTER_OTLP_ENDPOINT ?? '') !== '' ||
        (env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? '') !== ''));
  if (!wanted) return () => Promise.resolve();
  const provider = new TracerProvider({
    resource: resourceFromAttributes({
      'service.name': env.OTEL_SERVICE_NAME ?? `nexus-${component}`,
      'service.version': VERSION,
      'service.instance.id': `${component}-${process.pid}`,
    }),
    spanProcessors: processors ?? [new BatchSpanProcessor({ exporter: new OTLPTraceExporter() })],
  });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
  logger.info(
    { service: env.OTEL_SERVICE_NAME ?? `nexus-${component}` },
    'tracing on: spans exported by OTLP',
  );
  return () => provider.shutdown();
}
