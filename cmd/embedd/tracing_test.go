package main

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/embedd/embedd/internal/testassets"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// TestServeExportsTraces runs `embedd serve` with tracing turned on by
// the standard variables, pointed at an OTLP/HTTP collector in this
// process, makes one Upsert carrying a W3C traceparent, stops the server
// and checks what reached the collector: the server span in the caller's
// trace, the engine, store and batch spans, and service.name.
func TestServeExportsTraces(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, "all-minilm-l6-v2-int8")
	col := &otlpCollector{}
	srv := httptest.NewServer(col)
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_TRACES_SAMPLER", "parentbased_always_on")
	c := testServeConfig(t, "--collections", "docs", "--http-addr", "127.0.0.1:0")
	httpAddr := make(chan string, 1)
	c.http.listening = func(a string) { httpAddr <- a }
	conn, stop := runServe(t, c)
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	rctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	if _, err := embeddv1.NewVectorServiceClient(conn).Upsert(rctx, &embeddv1.UpsertRequest{Collection: "docs", Items: []*embeddv1.Item{
		{Id: "a", Text: "the cat sat on the mat"}, {Id: "b", Text: "stock markets fell sharply"},
	}}); err != nil {
		t.Fatal(err)
	}
	// The HTTP API continues a caller's trace too.
	const httpTraceID = "0af7651916cd43dd8448eb211c80319c"
	hreq, _ := http.NewRequest(http.MethodPost, "http://"+<-httpAddr+"/v1/embeddings", strings.NewReader(`{"input":"hello"}`))
	hreq.Header.Set("Traceparent", "00-"+httpTraceID+"-b7ad6b7169203331-01")
	hres, err := http.DefaultClient.Do(hreq)
	if err != nil || hres.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/embeddings: %v %v", hres, err)
	}
	hres.Body.Close()
	stop() // serve returns, flushing its spans
	// serve flushed its spans on the way out.
	spans, service := col.spans()
	if service != "embedd" {
		t.Errorf("service.name %q; want embedd", service)
	}
	byName := map[string]*tracepb.Span{}
	for _, s := range spans {
		if s.GetName() == "embedd.v1.EmbeddingService/Embed" {
			if got := hex.EncodeToString(s.GetTraceId()); got != httpTraceID {
				t.Errorf("HTTP Embed span trace %s; want the HTTP caller's %s", got, httpTraceID)
			}
			byName[s.GetName()] = s
		}
		if hex.EncodeToString(s.GetTraceId()) == httpTraceID {
			continue // the HTTP call's spans; the tree below is the Upsert's
		}
		if l := s.GetLinks(); s.GetName() == "batch.Run" && (len(l) == 0 || hex.EncodeToString(l[0].GetTraceId()) != traceID) {
			continue // the HTTP call's model run
		}
		byName[s.GetName()] = s
	}
	if byName["embedd.v1.EmbeddingService/Embed"] == nil {
		t.Errorf("no server span for the HTTP call; got %v", spanNames(spans))
	}
	server := byName["embedd.v1.VectorService/Upsert"]
	if server == nil {
		t.Fatalf("no server span; got %d spans: %v", len(spans), spanNames(spans))
	}
	if got := hex.EncodeToString(server.GetTraceId()); got != traceID {
		t.Errorf("server span trace %s; want the caller's %s", got, traceID)
	}
	for _, name := range []string{"engine.Embed", "vectors.UpsertVersion", "online.SetEntities"} {
		s := byName[name]
		if s == nil || string(s.GetParentSpanId()) != string(server.GetSpanId()) {
			t.Errorf("%s: got %v; want a child of the server span", name, s)
		}
	}
	embed, run := byName["engine.Embed"], byName["batch.Run"]
	var encode *tracepb.Span
	for _, s := range spans {
		if s.GetName() == "engine.Encode" && run != nil && string(s.GetParentSpanId()) == string(run.GetSpanId()) {
			encode = s
		}
	}
	if run == nil || encode == nil || embed == nil {
		t.Fatalf("got spans %v; want batch.Run, engine.Encode and engine.Embed", spanNames(spans))
	}
	if len(run.GetLinks()) != 1 || string(run.GetLinks()[0].GetSpanId()) != string(embed.GetSpanId()) {
		t.Errorf("batch.Run links %v; want engine.Embed's span", run.GetLinks())
	}
	if string(encode.GetParentSpanId()) != string(run.GetSpanId()) {
		t.Error("engine.Encode is not a child of batch.Run")
	}
}

func spanNames(spans []*tracepb.Span) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.GetName())
	}
	return out
}

// otlpCollector stands in for an OpenTelemetry collector's OTLP/HTTP
// receiver: it keeps every span exported to it.
type otlpCollector struct {
	mu   sync.Mutex
	reqs []*coltracepb.ExportTraceServiceRequest
}

func (c *otlpCollector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	req := &coltracepb.ExportTraceServiceRequest{}
	if err == nil {
		err = proto.Unmarshal(body, req)
	}
	if r.URL.Path != "/v1/traces" || err != nil {
		http.Error(w, "want a protobuf ExportTraceServiceRequest on /v1/traces", http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	c.reqs = append(c.reqs, req)
	c.mu.Unlock()
	resp, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(resp)
}

// spans returns every span received and the service.name of their
// resource.
func (c *otlpCollector) spans() (spans []*tracepb.Span, service string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, req := range c.reqs {
		for _, rs := range req.GetResourceSpans() {
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.GetKey() == "service.name" {
					service = kv.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				spans = append(spans, ss.GetSpans()...)
			}
		}
	}
	return spans, service
}
