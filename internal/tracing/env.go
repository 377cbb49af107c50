package tracing

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// ErrConfig reports OTEL_* variables that ask for something embedd cannot
// do; the message names the variable and its value.
var ErrConfig = errors.New("tracing: unsupported configuration")

// DefaultServiceName is the resource's service.name unless
// OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES set one.
const DefaultServiceName = "embedd"

// Protocols of the OTLP exporter (OTEL_EXPORTER_OTLP_PROTOCOL).
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf" // the specification's default
)

// Config is what FromEnv decided from the environment.
type Config struct {
	// Enabled: OTEL_TRACES_EXPORTER=otlp, or an OTLP endpoint variable
	// set, and OTEL_SDK_DISABLED is not "true".
	Enabled bool
	// Protocol is ProtocolGRPC or ProtocolHTTP.
	Protocol string
}

// ParseEnv reads the variables that turn tracing on and choose the
// protocol, through getenv:
//
//   - OTEL_SDK_DISABLED=true turns tracing off whatever else is set;
//   - OTEL_TRACES_EXPORTER: "otlp" turns it on, "none" or unset leaves it
//     off unless an endpoint is set; any other exporter is ErrConfig;
//   - OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT
//     set turns it on (unless OTEL_TRACES_EXPORTER=none);
//   - OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL:
//     "grpc" or "http/protobuf" (the default); "http/json" is ErrConfig
//     (the Go SDK has no JSON exporter).
func ParseEnv(getenv func(string) string) (Config, error) {
	var c Config
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return c, nil
	}
	endpoint := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != ""
	switch exp := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); exp {
	case "otlp":
		c.Enabled = true
	case "":
		c.Enabled = endpoint
	case "none":
		return c, nil
	default:
		return c, fmt.Errorf("%w: OTEL_TRACES_EXPORTER=%q; embedd exports traces with otlp (or none)", ErrConfig, exp)
	}
	if !c.Enabled {
		return c, nil
	}
	name, proto := "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
	if proto == "" {
		name, proto = "OTEL_EXPORTER_OTLP_PROTOCOL", strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_PROTOCOL"))
	}
	switch proto {
	case "", ProtocolHTTP:
		c.Protocol = ProtocolHTTP
	case ProtocolGRPC:
		c.Protocol = ProtocolGRPC
	default:
		return c, fmt.Errorf("%w: %s=%q; want %q or %q", ErrConfig, name, proto, ProtocolGRPC, ProtocolHTTP)
	}
	return c, nil
}

// FromEnv sets tracing up as the OTEL_* variables say (ParseEnv); it
// returns nil (off) when they do not turn it on. On, spans go through a
// batch span processor to an OTLP exporter, sampled by the sampler that
// OTEL_TRACES_SAMPLER names (default parentbased_always_on); version is
// the resource's service.version ("" leaves it out). Creating the exporter
// does not connect: an unreachable collector costs dropped spans, logged
// by the SDK, never a failed request.
func FromEnv(ctx context.Context, getenv func(string) string, version string) (*Tracing, error) {
	c, err := ParseEnv(getenv)
	if err != nil || !c.Enabled {
		return nil, err
	}
	var exp *otlptrace.Exporter
	switch c.Protocol {
	case ProtocolGRPC:
		exp, err = otlptracegrpc.New(ctx)
	default:
		exp, err = otlptracehttp.New(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: otlp exporter (%s): %w", c.Protocol, err)
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", DefaultServiceName)}
	if version != "" {
		attrs = append(attrs, attribute.String("service.version", version))
	}
	// Later detectors win: the environment's service.name over the default.
	res, err := resource.New(ctx, resource.WithAttributes(attrs...), resource.WithTelemetrySDK(), resource.WithFromEnv())
	if err != nil {
		return nil, errors.Join(fmt.Errorf("tracing: resource: %w", err), exp.Shutdown(ctx))
	}
	// No WithSampler: the SDK then takes OTEL_TRACES_SAMPLER and
	// OTEL_TRACES_SAMPLER_ARG, as the specification asks.
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	t := New(tp)
	t.shutdown = tp.Shutdown
	return t, nil
}
