package batch

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Tracing of batch runs (Options.Tracer). A batch serves many requests,
// each with its own trace, so its span cannot be a child of one of them:
// it is the root of a trace of its own and carries a link to each request's
// span, as OpenTelemetry's messaging conventions do for a batch of
// messages. A request's trace shows how long it waited; following its link
// backwards (or the batch's links forwards) shows the run it waited for
// and who shared it.

// SpanName is the name of a batch run's span.
const SpanName = "batch.Run"

// Attribute keys of the batch span.
const (
	AttrSize         = attribute.Key("embedd.batch.size")          // items computed
	AttrTokens       = attribute.Key("embedd.batch.tokens")        // their tokens
	AttrPaddedTokens = attribute.Key("embedd.batch.padded_tokens") // size × the longest
	AttrPriority     = attribute.Key("embedd.batch.priority")      // "online" or "bulk"
	AttrQueueWait    = attribute.Key("embedd.batch.queue_wait_ms") // the oldest item's wait since admission
	AttrRequests     = attribute.Key("embedd.batch.requests")      // distinct request spans linked
	AttrFailed       = attribute.Key("embedd.batch.failed")        // items that got a per-item error
)

// startSpan starts the span of a batch about to run and returns the run
// ctx that carries it. live is the batch's items, all of one priority. A
// batch that serves no traced request (a re-embedding job's, a direct
// engine call's) records nothing and gets (b.runCtx, nil): a background
// job would otherwise fill the backend with one-span traces.
func (b *Batcher[In, Out]) startSpan(live []*item[In, Out], tokens, padded int, wait time.Duration) (context.Context, trace.Span) {
	var links []trace.Link
	for _, it := range live {
		sc := trace.SpanContextFromContext(it.ctx)
		if sc.IsValid() && !linked(links, sc) {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	if len(links) == 0 {
		return b.runCtx, nil
	}
	attrs := make([]attribute.KeyValue, 0, len(b.spanAttrs)+6)
	attrs = append(attrs, b.spanAttrs...)
	attrs = append(attrs,
		AttrSize.Int(len(live)), AttrTokens.Int(tokens), AttrPaddedTokens.Int(padded),
		AttrPriority.String(live[0].prio.String()),
		AttrQueueWait.Float64(float64(wait)/float64(time.Millisecond)),
		AttrRequests.Int(len(links)))
	return b.opts.Tracer.Start(b.runCtx, SpanName, trace.WithNewRoot(), trace.WithLinks(links...),
		trace.WithAttributes(attrs...), trace.WithSpanKind(trace.SpanKindInternal))
}

// linked reports whether links has sc. The items of one request are
// usually adjacent, so the last link is tried first.
func linked(links []trace.Link, sc trace.SpanContext) bool {
	for i := len(links) - 1; i >= 0; i-- {
		if l := links[i].SpanContext; l.SpanID() == sc.SpanID() && l.TraceID() == sc.TraceID() {
			return true
		}
	}
	return false
}

// endSpan records the batch's outcome: err failed every item; errs, the
// per-item errors, are counted.
func endSpan(span trace.Span, err error, errs []error) {
	switch {
	case err != nil:
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	case errs != nil:
		failed := 0
		for _, e := range errs {
			if e != nil {
				failed++
			}
		}
		if failed > 0 {
			span.SetAttributes(AttrFailed.Int(failed))
		}
	}
	span.End()
}
