package tracing_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/embedd/embedd/internal/batch"
	"github.com/embedd/embedd/internal/engine"
	"github.com/embedd/embedd/internal/index"
	"github.com/embedd/embedd/internal/server"
	"github.com/embedd/embedd/internal/store/embedded"
	"github.com/embedd/embedd/internal/testassets"
	"github.com/embedd/embedd/internal/tracing"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

const model = "all-minilm-l6-v2-int8"

// TestUpsertSpanTree serves the VectorService in process over a real
// engine (the model from the asset cache) and the embedded store, with
// spans recorded in memory, makes one traced Upsert of two texts and
// checks the span tree:
//
//	client embedd.v1.VectorService/Upsert
//	└── server embedd.v1.VectorService/Upsert
//	    ├── engine.Embed
//	    ├── vectors.UpsertVersion   (embedded, docs, 2 items)
//	    └── online.SetEntities      (embedded, 2 items)
//	batch.Run  (root, linked to engine.Embed; size 2, the model)
//	└── engine.Encode
//
// and that the same calls outside any trace record nothing.
func TestUpsertSpanTree(t *testing.T) {
	testassets.Runtime(t)
	testassets.Model(t, model)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	tr := tracing.New(tp)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()

	eopts := engine.DefaultOptions()
	eopts.CacheDir, eopts.Logger, eopts.Tracer = testassets.CacheDir(), quiet, tr.Tracer()
	eopts.Accel.IntraOpThreads = 2
	eng := engine.New(testassets.Catalog(t), eopts)
	t.Cleanup(func() { eng.Close() })
	st, err := embedded.Open(embedded.DefaultOptions(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	idx, err := index.New(ctx, eng, index.Options{
		Collections: []index.CollectionConfig{{Name: "docs", Model: model}},
		Vectors:     tr.Vectors(st, "embedded"), VectorsName: "embedded",
		Online: tr.Online(st, "embedded"), OnlineName: "embedded",
		Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(append(server.ServerOptions(0), tr.ServerOptions()...)...)
	svc := server.New(eng, server.Options{DefaultModel: model, Logger: quiet})
	embeddv1.RegisterVectorServiceServer(gs, server.NewVectors(idx, svc))
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	// The client traces too, so the server span must continue its trace
	// from the traceparent header.
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(propagation.TraceContext{}))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })

	before := len(rec.Ended()) // index.New's store calls
	_, err = embeddv1.NewVectorServiceClient(conn).Upsert(ctx, &embeddv1.UpsertRequest{Collection: "docs", Items: []*embeddv1.Item{
		{Id: "a", Text: "the cat sat on the mat", Metadata: `{"k":1}`},
		{Id: "b", Text: "stock markets fell sharply"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	// The server span ends in the stats handler after the response is
	// sent, so it may end a moment after the client has the response.
	const rpc = "embedd.v1.VectorService/Upsert"
	var spans []sdktrace.ReadOnlySpan
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		spans = rec.Ended()[before:]
		if find(spans, rpc, trace.SpanKindServer) != nil && find(spans, rpc, trace.SpanKindClient) != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no client and server span %s after 10s; got %s", rpc, dump(spans))
		}
	}
	t.Logf("spans:\n%s", dump(spans))

	client := find(spans, rpc, trace.SpanKindClient)
	srv := find(spans, rpc, trace.SpanKindServer)
	if srv.Parent().SpanID() != client.SpanContext().SpanID() || srv.SpanContext().TraceID() != client.SpanContext().TraceID() {
		t.Errorf("server span parent %v; want the client span %v (traceparent propagated)", srv.Parent(), client.SpanContext())
	}
	embed := child(t, spans, srv, engine.SpanEmbed)
	checkAttrs(t, embed, map[attribute.Key]attribute.Value{
		engine.AttrModel: attribute.StringValue(model), engine.AttrTexts: attribute.IntValue(2), engine.AttrPriority: attribute.StringValue("online"),
	})
	for _, name := range []string{"vectors.UpsertVersion", "online.SetEntities"} {
		s := child(t, spans, srv, name)
		want := map[attribute.Key]attribute.Value{
			tracing.AttrDBSystem: attribute.StringValue("embedded"), tracing.AttrItems: attribute.IntValue(2),
			tracing.AttrDBOperation: attribute.StringValue(strings.TrimPrefix(strings.TrimPrefix(name, "vectors."), "online.")),
		}
		if strings.HasPrefix(name, "vectors.") {
			want[tracing.AttrDBCollection] = attribute.StringValue("docs")
		}
		checkAttrs(t, s, want)
		if s.SpanKind() != trace.SpanKindInternal {
			t.Errorf("%s kind %v; want internal (the embedded store is in process)", name, s.SpanKind())
		}
	}

	// The batch that computed the two texts: a root of its own, linked to
	// the request's engine.Embed span, parent of the model run.
	var run sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == batch.SpanName && slices.ContainsFunc(s.Links(), func(l sdktrace.Link) bool {
			return l.SpanContext.SpanID() == embed.SpanContext().SpanID() && l.SpanContext.TraceID() == embed.SpanContext().TraceID()
		}) {
			run = s
		}
	}
	if run == nil {
		t.Fatalf("no %s span linked to %s; got %s", batch.SpanName, engine.SpanEmbed, dump(spans))
	}
	if run.Parent().IsValid() {
		t.Errorf("%s parent %v; want a root", batch.SpanName, run.Parent())
	}
	checkAttrs(t, run, map[attribute.Key]attribute.Value{
		batch.AttrSize: attribute.IntValue(2), batch.AttrRequests: attribute.IntValue(1), batch.AttrPriority: attribute.StringValue("online"),
		engine.AttrModel: attribute.StringValue(model), engine.AttrBackend: attribute.StringValue("onnxruntime/cpu"),
	})
	checkAttrs(t, child(t, spans, run, engine.SpanEncode), map[attribute.Key]attribute.Value{engine.AttrRows: attribute.IntValue(2)})

	// Every span of the request's trace hangs from the client span, and
	// none failed.
	ids := map[trace.SpanID]bool{}
	for _, s := range spans {
		ids[s.SpanContext().SpanID()] = true
	}
	for _, s := range spans {
		if s.Status().Code == codes.Error {
			t.Errorf("span %s failed: %s", s.Name(), s.Status().Description)
		}
		if s.SpanContext().TraceID() == srv.SpanContext().TraceID() && s != client && !ids[s.Parent().SpanID()] {
			t.Errorf("span %s of the request's trace has parent %v, not a recorded span", s.Name(), s.Parent().SpanID())
		}
	}

	// Work outside any trace (a re-embedding job, a background loop)
	// records nothing: no engine, batch or store span.
	before = len(rec.Ended())
	if _, err := eng.Embed(ctx, model, []string{"no trace here"}, engine.EmbedOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := idx.Get(ctx, "docs", []string{"a"}, false); err != nil {
		t.Fatal(err)
	}
	if got := rec.Ended()[before:]; len(got) != 0 {
		t.Errorf("untraced calls recorded %s; want nothing", dump(got))
	}
}

// TestOffIsTransparent checks that tracing off adds nothing: no server
// options, no tracer, and the stores come back unwrapped.
func TestOffIsTransparent(t *testing.T) {
	var off *tracing.Tracing
	st, err := embedded.Open(embedded.DefaultOptions(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if off.Enabled() || off.Tracer() != nil || off.ServerOptions() != nil || off.Shutdown(context.Background()) != nil {
		t.Error("nil Tracing: got tracing; want none")
	}
	if v := off.Vectors(st, "embedded"); v != tracing.VectorStore(st) {
		t.Errorf("Vectors off: got %T; want the store itself", v)
	}
	if o := off.Online(st, "embedded"); o != st {
		t.Errorf("Online off: got %T; want the store itself", o)
	}
	if tracing.New(nil) != nil {
		t.Error("New(nil): got tracing on; want off")
	}
}

func find(spans []sdktrace.ReadOnlySpan, name string, kind trace.SpanKind) sdktrace.ReadOnlySpan {
	for _, s := range spans {
		if s.Name() == name && s.SpanKind() == kind {
			return s
		}
	}
	return nil
}

// child returns the one span named name whose parent is parent.
func child(t *testing.T, spans []sdktrace.ReadOnlySpan, parent sdktrace.ReadOnlySpan, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name && s.Parent().SpanID() == parent.SpanContext().SpanID() && s.SpanContext().TraceID() == parent.SpanContext().TraceID() {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d spans %s under %s; want 1; got %s", len(found), name, parent.Name(), dump(spans))
	}
	return found[0]
}

func checkAttrs(t *testing.T, s sdktrace.ReadOnlySpan, want map[attribute.Key]attribute.Value) {
	t.Helper()
	got := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		got[kv.Key] = kv.Value
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: attribute %s = %q; want %q", s.Name(), k, got[k].Emit(), v.Emit())
		}
	}
}

func dump(spans []sdktrace.ReadOnlySpan) string {
	var b strings.Builder
	for _, s := range spans {
		b.WriteString("  " + s.Name() + " kind=" + s.SpanKind().String() + " span=" + s.SpanContext().SpanID().String() +
			" parent=" + s.Parent().SpanID().String() + " trace=" + s.SpanContext().TraceID().String()[:8])
		for _, l := range s.Links() {
			b.WriteString(" link=" + l.SpanContext.SpanID().String())
		}
		b.WriteString("\n")
	}
	return b.String()
}
