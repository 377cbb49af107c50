package engine

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/embedd/embedd/internal/accel"
	"github.com/embedd/embedd/internal/manifest"
)

// Tracing (Options.Tracer), inside a trace only (traced). An Embed call is
// a span in its caller's trace, "engine.Embed", which lasts while its
// texts wait for their batches; the batch spans (internal/batch) are roots
// of their own traces linked to it, and each model run inside a batch is
// "engine.Encode", a child of the batch span (an out-of-memory split makes
// one per half).

// Span names and attribute keys of the engine's spans.
const (
	SpanEmbed  = "engine.Embed"
	SpanEncode = "engine.Encode"

	AttrModel        = attribute.Key("embedd.model")
	AttrModelVersion = attribute.Key("embedd.model.version")
	AttrBackend      = attribute.Key("embedd.backend") // "onnxruntime/cpu", "native/cuda:0"
	AttrTexts        = attribute.Key("embedd.texts")
	AttrPriority     = attribute.Key("embedd.priority")
	AttrSeqLen       = attribute.Key("embedd.encode.seq_len") // the padded sequence length
	AttrRows         = attribute.Key("embedd.encode.rows")    // the texts run
)

// traced reports whether a call under ctx records spans: with a Tracer,
// and inside a trace. Calls outside any trace (a re-embedding job's, whose
// batches record nothing either, see internal/batch) record nothing, or a
// background job would fill the backend with one-span traces.
func (m *Model) traced(ctx context.Context) bool {
	return m.opts.Tracer != nil && trace.SpanContextFromContext(ctx).IsValid()
}

// modelAttributes are the attributes of a model's batch spans.
func modelAttributes(man *manifest.Model, backend string) attribute.Set {
	return attribute.NewSet(AttrModel.String(man.Name), AttrModelVersion.String(man.Version), AttrBackend.String(backend))
}

func (m *Model) startEmbedSpan(ctx context.Context, texts int, o EmbedOptions) (context.Context, trace.Span) {
	return m.opts.Tracer.Start(ctx, SpanEmbed, trace.WithAttributes(
		AttrModel.String(m.man.Name), AttrModelVersion.String(m.man.Version),
		AttrTexts.Int(texts), AttrPriority.String(o.Priority.String())))
}

func (m *Model) startEncodeSpan(ctx context.Context, enc accel.Encoder, rows, seq int) (context.Context, trace.Span) {
	return m.opts.Tracer.Start(ctx, SpanEncode, trace.WithAttributes(
		AttrBackend.String(enc.Device().Backend()), AttrRows.Int(rows), AttrSeqLen.Int(seq)))
}

// endSpan records err on span and ends it.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
