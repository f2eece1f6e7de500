import {
  context,
  propagation,
  trace,
  type Context,
  type Span,
  type Tracer,
} from '@opentelemetry/api';

/**
 * Tracing through the OpenTelemetry API only: without an SDK registered (the default, unless the
 * OTEL_* variables ask for one) every span is a no-op and costs next to nothing.
 */
export function tracer(): Tracer {
  return trace.getTracer('nexus');
}

/** The W3C trace context of a span, as it travels in a queue envelope. */
export function traceContextOf(
  span: Span,
): { traceparent: string; tracestate?: string } | undefined {
  const carrier: Record<string, string> = {};
  propagation.inject(trace.setSpan(context.active(), span), carrier);
  const traceparent = carrier.traceparent;
  if (traceparent === undefined) return undefined;
  return carrier.tracestate === undefined
    ? { traceparent }
    : { traceparent, tracestate: carrier.tracestate };
}

/** The context a span continues from, given a traceparent from an envelope. */
export function contextFrom(
  trace: { traceparent: string; tracestate?: string } | undefined,
): Context {
  if (trace === undefined) return context.active();
  return propagation.extract(context.active(), trace);
}

export { context, trace };
export type { Span };
