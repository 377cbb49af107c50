package tracing_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/embedd/embedd/internal/tracing"
)

func TestParseEnv(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want tracing.Config
		err  bool
	}{
		{name: "nothing set: off", env: nil},
		{name: "exporter otlp", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, want: tracing.Config{Enabled: true, Protocol: tracing.ProtocolHTTP}},
		{name: "endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, want: tracing.Config{Enabled: true, Protocol: tracing.ProtocolHTTP}},
		{name: "traces endpoint, grpc", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, want: tracing.Config{Enabled: true, Protocol: tracing.ProtocolGRPC}},
		{name: "traces protocol wins", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, want: tracing.Config{Enabled: true, Protocol: tracing.ProtocolHTTP}},
		{name: "sdk disabled", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "TRUE"}},
		{name: "sdk disabled false", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "false"}, want: tracing.Config{Enabled: true, Protocol: tracing.ProtocolHTTP}},
		{name: "exporter none beats endpoint", env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}},
		{name: "other exporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, err: true},
		{name: "json protocol", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, err: true},
		{name: "bad protocol while off is ignored", env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tracing.ParseEnv(func(k string) string { return tc.env[k] })
			if tc.err {
				if !errors.Is(err, tracing.ErrConfig) {
					t.Fatalf("got %+v, %v; want ErrConfig", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// TestFromEnvExports sets tracing up from the environment for each OTLP
// protocol, pointed at a collector stand-in in this process (the OTLP
// HTTP path, or the gRPC TraceService), and checks that a span reaches it
// at Shutdown with the resource's service.name.
func TestFromEnvExports(t *testing.T) {
	for _, proto := range []string{tracing.ProtocolHTTP, tracing.ProtocolGRPC} {
		t.Run(proto, func(t *testing.T) {
			col := &collector{}
			var endpoint string
			if proto == tracing.ProtocolHTTP {
				srv := httptest.NewServer(col)
				defer srv.Close()
				endpoint = srv.URL
			} else {
				lis, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				gs := grpc.NewServer()
				coltracepb.RegisterTraceServiceServer(gs, col)
				go gs.Serve(lis)
				defer gs.Stop()
				endpoint = "http://" + lis.Addr().String()
				t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
			}
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", proto)
			t.Setenv("OTEL_SERVICE_NAME", "")
			t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test")
			tr, err := tracing.FromEnv(context.Background(), getenv, "v9")
			if err != nil || !tr.Enabled() {
				t.Fatalf("FromEnv: got %v, enabled %v; want tracing on", err, tr.Enabled())
			}
			_, span := tr.Tracer().Start(context.Background(), "probe")
			span.End()
			if err := tr.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			req := col.got()
			if req == nil {
				t.Fatal("the collector received nothing")
			}
			rs := req.GetResourceSpans()
			if len(rs) != 1 || len(rs[0].GetScopeSpans()) != 1 || len(rs[0].GetScopeSpans()[0].GetSpans()) != 1 {
				t.Fatalf("got %v; want one span", req)
			}
			if name := rs[0].GetScopeSpans()[0].GetSpans()[0].GetName(); name != "probe" {
				t.Errorf("span %q; want probe", name)
			}
			attrs := map[string]string{}
			for _, kv := range rs[0].GetResource().GetAttributes() {
				attrs[kv.GetKey()] = kv.GetValue().GetStringValue()
			}
			for k, v := range map[string]string{"service.name": "embedd", "service.version": "v9", "deployment.environment.name": "test"} {
				if attrs[k] != v {
					t.Errorf("resource %s = %q; want %q", k, attrs[k], v)
				}
			}
		})
	}
}

// TestServiceNameFromEnv checks that OTEL_SERVICE_NAME overrides the
// default service.name.
func TestServiceNameFromEnv(t *testing.T) {
	col := &collector{}
	srv := httptest.NewServer(col)
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", srv.URL+"/v1/traces")
	t.Setenv("OTEL_SERVICE_NAME", "embedd-eu")
	tr, err := tracing.FromEnv(context.Background(), getenv, "")
	if err != nil || tr == nil {
		t.Fatalf("FromEnv: %v, %v", tr, err)
	}
	_, span := tr.Tracer().Start(context.Background(), "probe")
	span.End()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	req := col.got()
	if req == nil {
		t.Fatal("the collector received nothing")
	}
	for _, kv := range req.GetResourceSpans()[0].GetResource().GetAttributes() {
		if kv.GetKey() == "service.name" && kv.GetValue().GetStringValue() != "embedd-eu" {
			t.Errorf("service.name %q; want embedd-eu", kv.GetValue().GetStringValue())
		}
	}
}

// TestFromEnvOff checks that nothing set means no tracing at all.
func TestFromEnvOff(t *testing.T) {
	tr, err := tracing.FromEnv(context.Background(), func(string) string { return "" }, "")
	if err != nil || tr != nil {
		t.Fatalf("got %v, %v; want nil, nil", tr, err)
	}
}

// getenv reads the test's environment (t.Setenv), as cmd/embedd passes
// os.Getenv: the SDK's exporter reads the same variables.
var getenv = os.Getenv

// collector stands in for an OpenTelemetry collector: it keeps the last
// export request received over OTLP/HTTP (protobuf) or OTLP/gRPC.
type collector struct {
	coltracepb.UnimplementedTraceServiceServer
	mu  sync.Mutex
	req *coltracepb.ExportTraceServiceRequest
}

func (c *collector) got() *coltracepb.ExportTraceServiceRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.req
}

func (c *collector) keep(req *coltracepb.ExportTraceServiceRequest) {
	c.mu.Lock()
	c.req = req
	c.mu.Unlock()
}

func (c *collector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c.keep(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "want POST /v1/traces of application/x-protobuf", http.StatusBadRequest)
		return
	}
	body, err := io.ReadAll(r.Body)
	req := &coltracepb.ExportTraceServiceRequest{}
	if err == nil {
		err = proto.Unmarshal(body, req)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.keep(req)
	w.Header().Set("Content-Type", "application/x-protobuf")
	resp, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Write(resp)
}
