package main

import (
	"context"
	"log/slog"
	"net/url"
	"os"
	"runtime/debug"
	"time"

	"github.com/embedd/embedd/internal/tracing"
)

// tracingShutdownTimeout bounds the flush of the spans still buffered when
// serve stops; a collector that does not answer within it loses them.
const tracingShutdownTimeout = 5 * time.Second

// startTracing sets up OpenTelemetry tracing from the standard OTEL_*
// variables (internal/tracing.FromEnv): off, the default, it returns a nil
// *tracing.Tracing, whose ServerOptions, Tracer and store wrappers add
// nothing. stop flushes the buffered spans and stops the exporter; call it
// after the gRPC server has drained.
func startTracing(ctx context.Context, logger *slog.Logger) (tr *tracing.Tracing, stop func(), err error) {
	tr, err = tracing.FromEnv(ctx, os.Getenv, buildVersion())
	if err != nil {
		return nil, nil, err
	}
	if !tr.Enabled() {
		return nil, func() {}, nil
	}
	cfg, _ := tracing.ParseEnv(os.Getenv) // FromEnv succeeded with it
	logger.Info("tracing on", "protocol", cfg.Protocol, "endpoint", otlpEndpoint(), "sampler", os.Getenv("OTEL_TRACES_SAMPLER"))
	return tr, func() {
		sctx, cancel := context.WithTimeout(context.Background(), tracingShutdownTimeout)
		defer cancel()
		if err := tr.Shutdown(sctx); err != nil {
			logger.Warn("tracing: flushing spans at shutdown failed", "err", err)
		}
	}, nil
}

// otlpEndpoint is the endpoint the exporter uses, for the log, with any
// password in it masked ("" is the SDK's default, localhost).
func otlpEndpoint() string {
	e := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	if e == "" {
		e = os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	if u, err := url.Parse(e); err == nil {
		return u.Redacted()
	}
	return "(unparsable)"
}

// buildVersion is the module version embedd was built as ("(devel)" in a
// checkout), the resource's service.version.
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.Main.Version
	}
	return ""
}
