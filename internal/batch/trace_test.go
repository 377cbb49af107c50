package batch

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestBatchSpan runs one batch that carries the items of two traced
// requests and checks its span: a root linked to both requests' spans,
// with the batch's attributes, the parent of RunFunc's own span, and the
// per-item failure counted.
func TestBatchSpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	tracer := tp.Tracer("test")

	gate, started := make(chan struct{}), make(chan struct{})
	run := func(ctx context.Context, batch []int) ([]int, []error, error) {
		if batch[0] == gateID {
			close(started)
			<-gate
			return []int{0}, nil, nil
		}
		_, span := tracer.Start(ctx, "run")
		span.End()
		errs := make([]error, len(batch))
		for i, x := range batch {
			if x == 3 {
				errs[i] = errors.New("three fails")
			}
		}
		return batch, errs, nil
	}
	o := Options{MaxBatchSize: 8, Workers: 1, Tracer: tracer, SpanAttributes: attribute.NewSet(attribute.String("model", "m1"))}
	b, err := New(run, o)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(context.Background())

	var wg sync.WaitGroup
	wg.Go(func() { b.Submit(context.Background(), gateID, gateTokens, Online) })
	<-started // the gate's batch holds the only worker
	ctxA, spanA := tracer.Start(context.Background(), "request A")
	ctxB, spanB := tracer.Start(context.Background(), "request B")
	wg.Go(func() {
		if _, err := b.SubmitAll(ctxA, []int{1, 2}, []int{4, 6}, Online); err != nil {
			t.Errorf("request A: %v", err)
		}
	})
	wg.Go(func() {
		if _, err := b.Submit(ctxB, 3, 5, Online); err == nil {
			t.Error("request B: got nil; want its item's error")
		}
	})
	waitQueued(b, 3)
	close(gate)
	wg.Wait()
	spanA.End()
	spanB.End()

	var batchSpan, runSpan sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		switch {
		case s.Name() == SpanName && len(s.Links()) > 0:
			batchSpan = s
		case s.Name() == "run":
			runSpan = s
		}
	}
	if batchSpan == nil || runSpan == nil {
		t.Fatalf("got spans %v; want a linked %s and a run", names(rec.Ended()), SpanName)
	}
	if batchSpan.Parent().IsValid() {
		t.Errorf("batch span parent %v; want a root", batchSpan.Parent())
	}
	want := map[trace.SpanID]bool{spanA.SpanContext().SpanID(): true, spanB.SpanContext().SpanID(): true}
	if got := batchSpan.Links(); len(got) != 2 || !want[got[0].SpanContext.SpanID()] || !want[got[1].SpanContext.SpanID()] {
		t.Errorf("links %v; want one to each request span %v", got, want)
	}
	attrs := map[attribute.Key]attribute.Value{}
	for _, kv := range batchSpan.Attributes() {
		attrs[kv.Key] = kv.Value
	}
	for k, v := range map[attribute.Key]attribute.Value{
		"model": attribute.StringValue("m1"), AttrSize: attribute.IntValue(3), AttrTokens: attribute.IntValue(15),
		AttrPaddedTokens: attribute.IntValue(18), AttrPriority: attribute.StringValue("online"),
		AttrRequests: attribute.IntValue(2), AttrFailed: attribute.IntValue(1),
	} {
		if attrs[k] != v {
			t.Errorf("attribute %s = %v; want %v", k, attrs[k].Emit(), v.Emit())
		}
	}
	if w, ok := attrs[AttrQueueWait]; !ok || w.AsFloat64() <= 0 {
		t.Errorf("attribute %s = %v; want > 0 (the items waited for the gate)", AttrQueueWait, w.Emit())
	}
	if runSpan.Parent().SpanID() != batchSpan.SpanContext().SpanID() {
		t.Errorf("RunFunc span parent %v; want the batch span %v", runSpan.Parent().SpanID(), batchSpan.SpanContext().SpanID())
	}
	if batchSpan.Status().Code != codes.Unset {
		t.Errorf("batch status %v; want unset (only one item failed)", batchSpan.Status())
	}
}

// TestBatchSpanError checks that a RunFunc error is the batch span's
// status, and that a batch of untraced items records no span.
func TestBatchSpanError(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	tracer := tp.Tracer("test")
	boom := errors.New("boom")
	b, err := New(func(context.Context, []int) ([]int, []error, error) { return nil, nil, boom }, Options{Tracer: tracer})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Submit(context.Background(), 1, 1, Bulk); !errors.Is(err, boom) {
		t.Fatalf("untraced: got %v; want %v", err, boom)
	}
	if spans := rec.Ended(); len(spans) != 0 {
		t.Fatalf("a batch of untraced items recorded %v; want nothing", names(spans))
	}
	ctx, req := tracer.Start(context.Background(), "request")
	if _, err := b.Submit(ctx, 1, 1, Bulk); !errors.Is(err, boom) {
		t.Fatalf("traced: got %v; want %v", err, boom)
	}
	req.End()
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := rec.Ended()
	if len(spans) != 2 || spans[0].Name() != SpanName || spans[0].Status().Code != codes.Error || spans[0].Status().Description != "boom" {
		t.Fatalf("got %v; want a %s span with status error boom, then the request", names(spans), SpanName)
	}
	if ev := spans[0].Events(); len(ev) != 1 || ev[0].Name != "exception" {
		t.Errorf("events %v; want the error recorded", ev)
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name()+" "+s.Status().Code.String())
	}
	return out
}

// waitQueued waits until n Online items are queued.
func waitQueued(b *Batcher[int, int], n int) {
	for {
		if on, _ := b.Len(); on == n {
			return
		}
		time.Sleep(time.Millisecond)
	}
}
