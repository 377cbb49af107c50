// Package tracing is embedd's OpenTelemetry tracing: the setup from the
// standard OTEL_* environment variables (FromEnv), the gRPC server
// instrumentation (ServerOptions: one server span per RPC, named
// "embedd.v1.VectorService/Upsert" and so on, continuing a caller's W3C
// traceparent), and decorators that wrap the stores so that every store call
// is a child span of the request that made it (Vectors, Online, States).
// The batch span (one per model run, linked to the requests it served) and
// the engine's spans are recorded by internal/batch and internal/engine
// with the Tracer this package hands out.
//
// One request's trace:
//
//	embedd.v1.VectorService/Upsert              server span (otelgrpc)
//	├── engine.Embed                             the texts' wait for their vectors
//	├── vectors.UpsertVersion                    vector store call
//	└── online.SetEntities                       online store call
//	batch.Run  (own trace, linked to engine.Embed of every request it served)
//	└── engine.Encode                            the model run
//
// Invariants:
//   - Off by default: tracing is on only when OTEL_TRACES_EXPORTER is
//     "otlp" or an OTLP endpoint variable is set, and OTEL_SDK_DISABLED is
//     not "true". Off, every method returns what it was given or nothing:
//     no stats handler, no decorator, a nil Tracer (which internal/batch
//     and internal/engine take as "record nothing"), so tracing off costs
//     nothing on the request path.
//   - The exporter (OTLP over gRPC or HTTP, OTEL_EXPORTER_OTLP_PROTOCOL),
//     its endpoint, headers, TLS and timeouts, the sampler
//     (OTEL_TRACES_SAMPLER) and the batch span processor (OTEL_BSP_*) are
//     configured by the OpenTelemetry SDK's own handling of the standard
//     variables, which reads the process environment: FromEnv's getenv
//     decides only whether tracing is on and which protocol, and
//     cmd/embedd passes os.Getenv, so both see the same environment.
//   - The resource's service.name is "embedd" unless OTEL_SERVICE_NAME or
//     OTEL_RESOURCE_ATTRIBUTES say otherwise.
//   - Spans are recorded only inside a trace (a request's): store calls
//     with no span in their ctx (startup, WAL replay, the feature
//     materializer, the stream consumer), and engine calls and batches
//     that serve no traced request (re-embedding jobs), record nothing, or
//     background work would fill the backend with one-span traces.
//   - A decorator records the call's error on its span and returns it
//     unchanged; it adds no behaviour and keeps the optional interfaces of
//     what it wraps that callers look for (store.Versioned,
//     store.VersionReader, service.Revisioner).
//
// Concurrency: a *Tracing and everything it returns are safe for
// concurrent use. A nil *Tracing is tracing off.
package tracing

import (
	"context"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
)

// ScopeName is the instrumentation scope of embedd's own spans.
const ScopeName = "github.com/embedd/embedd"

// Tracing is the tracing of one process: a tracer provider, or nothing
// (off). Create it with FromEnv, or New with a provider of your own (tests
// use one that records to memory).
type Tracing struct {
	tp       trace.TracerProvider
	tracer   trace.Tracer
	shutdown func(context.Context) error
}

// New returns tracing on with tp, which the caller owns: Shutdown does not
// shut it down. A nil tp is tracing off.
func New(tp trace.TracerProvider) *Tracing {
	if tp == nil {
		return nil
	}
	return &Tracing{tp: tp, tracer: tp.Tracer(ScopeName)}
}

// Enabled reports whether spans are recorded.
func (t *Tracing) Enabled() bool { return t != nil }

// Tracer returns the tracer of embedd's spans, or nil when tracing is off
// (internal/batch and internal/engine record nothing with a nil Tracer).
func (t *Tracing) Tracer() trace.Tracer {
	if t == nil {
		return nil
	}
	return t.tracer
}

// ServerOptions returns the gRPC server options that record a server span
// per RPC (health checks excepted), continuing the caller's trace from its
// W3C traceparent and baggage headers; none when tracing is off.
func (t *Tracing) ServerOptions() []grpc.ServerOption {
	if t == nil {
		return nil
	}
	h := otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(t.tp),
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()), // metrics are Prometheus's (internal/metrics)
		otelgrpc.WithPropagators(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})),
		otelgrpc.WithFilter(filters.Not(filters.HealthCheck())),
	)
	return []grpc.ServerOption{grpc.StatsHandler(h)}
}

// Shutdown flushes the spans not yet exported and stops the exporter of a
// Tracing made by FromEnv; it does nothing otherwise. Call it once, after
// the server stopped.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.shutdown == nil {
		return nil
	}
	return t.shutdown(ctx)
}
