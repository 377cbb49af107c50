package tracing_test

import (
	"context"
	"errors"
	"testing"

	goredis "github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/embedd/embedd/internal/features/service"
	"github.com/embedd/embedd/internal/features/window"
	"github.com/embedd/embedd/internal/store"
	"github.com/embedd/embedd/internal/store/embedded"
	"github.com/embedd/embedd/internal/tracing"
)

// TestStoreSpans checks the decorators on real stores (embedded, feature
// state in memory): a failed call's span carries its error, a per-item
// call counts its failures, and a call outside any trace records nothing.
func TestStoreSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	tr := tracing.New(tp)
	st, err := embedded.Open(embedded.DefaultOptions(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	vs := tr.Vectors(st, "embedded")
	states := tr.States(service.NewMemory(window.DefaultConfig(), 10))
	if states.Name() != "memory" {
		t.Errorf("Name() = %q; want the wrapped store's, memory", states.Name())
	}

	// Outside a trace: nothing.
	if err := vs.EnsureCollection(context.Background(), "docs", 4); err != nil {
		t.Fatal(err)
	}
	if got := rec.Ended(); len(got) != 0 {
		t.Fatalf("a call outside any trace recorded %s; want nothing", dump(got))
	}

	ctx, parent := tp.Tracer("test").Start(context.Background(), "request")
	err = vs.Upsert(ctx, "nope", []store.Record{{ID: "a", Vector: []float32{1, 0, 0, 0}}})
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("upsert to a missing collection: got %v; want ErrNotFound", err)
	}
	bad := errors.New("bad entity")
	errs := states.UpdateBatch(ctx, []string{"u1", "u2", "u3"}, func(k int, _ *service.State) error {
		if k == 1 {
			return bad
		}
		return nil
	})
	if errs[1] != bad || errs[0] != nil || errs[2] != nil {
		t.Fatalf("UpdateBatch errors %v; want only [1]", errs)
	}
	parent.End()

	spans := rec.Ended()
	up := child(t, spans, find(spans, "request", trace.SpanKindInternal), "vectors.Upsert")
	if up.Status().Code != codes.Error || len(up.Events()) != 1 || up.Events()[0].Name != "exception" {
		t.Errorf("vectors.Upsert status %v, events %v; want the error recorded", up.Status(), up.Events())
	}
	checkAttrs(t, up, map[attribute.Key]attribute.Value{
		tracing.AttrDBCollection: attribute.StringValue("nope"), tracing.AttrItems: attribute.IntValue(1),
	})
	ub := child(t, spans, find(spans, "request", trace.SpanKindInternal), "state.UpdateBatch")
	checkAttrs(t, ub, map[attribute.Key]attribute.Value{
		tracing.AttrDBSystem: attribute.StringValue("memory"), tracing.AttrItems: attribute.IntValue(3), tracing.AttrFailed: attribute.IntValue(1),
	})
	if ub.Status().Code != codes.Error || ub.Status().Description != "bad entity" {
		t.Errorf("state.UpdateBatch status %v; want the first item error", ub.Status())
	}
}

// TestStatesKeepRevisioner checks that wrapping a state store keeps the
// optional interface the feature service looks for, and adds it to none.
func TestStatesKeepRevisioner(t *testing.T) {
	tr := tracing.New(sdktrace.NewTracerProvider())
	rc := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1"}) // never dialled: nothing is called
	defer rc.Close()
	if _, ok := tr.States(service.NewRedis(rc, window.DefaultConfig(), "p:", 0)).(service.Revisioner); !ok {
		t.Error("wrapped Redis state store: not a Revisioner; want it kept")
	}
	if _, ok := tr.States(service.NewMemory(window.DefaultConfig(), 1)).(service.Revisioner); ok {
		t.Error("wrapped Memory state store: a Revisioner; want none (Memory has no Revisions)")
	}
}
