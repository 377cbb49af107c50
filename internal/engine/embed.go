package engine

// Embedding requests: their options and results, validation and
// tokenization, the batcher round trip and the model runs (with the split
// on out-of-memory and the CPU retry) that serve them.

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/embedd/embedd/internal/accel"
	"github.com/embedd/embedd/internal/batch"
	"github.com/embedd/embedd/internal/errlist"
	"go.opentelemetry.io/otel/trace"
)

// EmbedOptions are per-call choices.
type EmbedOptions struct {
	// Truncate cuts texts longer than the model's max_seq_len; when false such
	// a text is an error naming its index and token count.
	Truncate bool
	// Dimensions, if > 0, keeps only the first Dimensions values (Matryoshka)
	// before normalization. It must be allowed by the manifest.
	Dimensions int
	// Normalize overrides the manifest's normalize setting when not nil.
	Normalize *bool
	// Priority is batch.Online (default) for interactive calls or
	// batch.Bulk for streams and re-embedding jobs.
	Priority batch.Priority
}

// Result holds one vector per input text, in input order.
type Result struct {
	Model   string
	Version string
	// Vectors[i] is the embedding of texts[i].
	Vectors [][]float32
	// Tokens[i] is the number of tokens the model saw for texts[i] (special
	// tokens included, after truncation).
	Tokens []int
}

// ItemError is the failure of one text of a call.
type ItemError struct {
	Index int
	Err   error
}

func (e *ItemError) Error() string { return fmt.Sprintf("texts[%d]: %v", e.Index, e.Err) }
func (e *ItemError) Unwrap() error { return e.Err }

// InputError lists every bad text of a call. It matches ErrInvalidInput.
type InputError struct {
	Items []*ItemError
}

func (e *InputError) Error() string { return errlist.Format("text", e.Items) }

func (e *InputError) Is(target error) bool { return target == ErrInvalidInput }

// Unwrap exposes the item errors to errors.Is / errors.As.
func (e *InputError) Unwrap() []error {
	errs := make([]error, len(e.Items))
	for i, it := range e.Items {
		errs[i] = it
	}
	return errs
}

// Tokenized is a validated, tokenized text ready for a batch.
type Tokenized struct {
	IDs     []int32
	TypeIDs []int32
}

// Tokenize validates and tokenizes texts. On any bad text it returns an
// *InputError naming each bad index.
func (m *Model) Tokenize(texts []string, truncate bool) ([]Tokenized, error) {
	if err := m.checkCount(texts); err != nil {
		return nil, err
	}
	out := make([]Tokenized, len(texts))
	var bad []*ItemError
	for i, t := range texts {
		if len(t) > m.opts.MaxTextBytes {
			bad = append(bad, &ItemError{i, fmt.Errorf("text is %d bytes; limit %d", len(t), m.opts.MaxTextBytes)})
			continue
		}
		enc, err := m.tok.Encode(t, m.man.MaxSeqLen, truncate)
		if err != nil {
			bad = append(bad, &ItemError{i, err})
			continue
		}
		out[i] = Tokenized{IDs: enc.IDs, TypeIDs: enc.TypeIDs}
	}
	if len(bad) > 0 {
		return nil, &InputError{Items: bad}
	}
	return out, nil
}

func (m *Model) checkCount(texts []string) error {
	if len(texts) == 0 {
		return fmt.Errorf("%w: no texts", ErrInvalidInput)
	}
	if len(texts) > m.opts.MaxTexts {
		return fmt.Errorf("%w: %d texts; limit %d", ErrInvalidInput, len(texts), m.opts.MaxTexts)
	}
	return nil
}

// Embed embeds texts. Texts are validated and tokenized here, in the
// caller's goroutine; the model runs them in batches shared with other
// callers. With a cache, repeated texts are served from it (embedCached).
func (m *Model) Embed(ctx context.Context, texts []string, o EmbedOptions) (res *Result, err error) {
	if m.traced(ctx) {
		var span trace.Span
		ctx, span = m.startEmbedSpan(ctx, len(texts), o)
		defer func() { endSpan(span, err) }()
	}
	dims, normalize, err := m.outputShape(o)
	if err != nil {
		return nil, err
	}
	if m.cache != nil {
		return m.embedCached(ctx, texts, o, dims, normalize)
	}
	toks, err := m.Tokenize(texts, o.Truncate)
	if err != nil {
		return nil, err
	}
	vecs, counts, err := m.compute(ctx, toks, o.Priority, dims, normalize)
	if err != nil {
		return nil, err
	}
	return &Result{Model: m.man.Name, Version: m.man.Version, Vectors: vecs, Tokens: counts}, nil
}

// compute runs toks through the batcher and returns each text's finished
// vector and token count.
func (m *Model) compute(ctx context.Context, toks []Tokenized, prio batch.Priority, dims int, normalize bool) ([][]float32, []int, error) {
	counts := make([]int, len(toks))
	for i, t := range toks {
		counts[i] = len(t.IDs)
	}
	outs, err := m.batcher.SubmitAll(ctx, toks, counts, prio)
	if err != nil {
		return nil, nil, err
	}
	vecs := make([][]float32, len(toks))
	flat := make([]float32, len(toks)*dims)
	for i, p := range outs {
		v := flat[i*dims : (i+1)*dims : (i+1)*dims]
		finish(v, p, dims, normalize)
		vecs[i] = v
	}
	return vecs, counts, nil
}

func (m *Model) outputShape(o EmbedOptions) (dims int, normalize bool, err error) {
	dims, normalize = m.man.Dims, m.man.Normalize
	if o.Normalize != nil {
		normalize = *o.Normalize
	}
	if o.Dimensions != 0 {
		if !m.man.AllowsDims(o.Dimensions) {
			if o.Dimensions < 0 || o.Dimensions > m.man.Dims {
				return 0, false, fmt.Errorf("%w: dimensions %d out of range [1, %d] for model %s", ErrInvalidInput, o.Dimensions, m.man.Dims, m.man.Name)
			}
			return 0, false, fmt.Errorf("%w: dimensions %d not allowed for model %s (allowed: %v)", ErrInvalidInput, o.Dimensions, m.man.Name, m.man.MatryoshkaDims)
		}
		dims = o.Dimensions
	}
	return dims, normalize, nil
}

// buffers are reused across batches of one model.
type buffers struct {
	ids, mask, types []int64
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// runBatch is the batcher's RunFunc: it runs one batch and returns each
// text's pooled vector.
func (m *Model) runBatch(ctx context.Context, toks []Tokenized) ([]pooled, []error, error) {
	hid := m.enc.Hidden()
	out := make([]pooled, len(toks))
	vecs := make([]float32, len(toks)*hid)
	norms := make([]float32, len(toks))
	if err := m.encode(ctx, m.enc, toks, vecs, norms); err != nil {
		return nil, nil, err
	}
	for i := range out {
		out[i] = pooled{vec: vecs[i*hid : (i+1)*hid : (i+1)*hid], norm: norms[i]}
	}
	return out, nil, nil
}

// encode runs toks on enc. When the device has no memory for the batch, it
// splits the batch in halves (each padded to its own longest text) and
// retries; a single text that does not fit runs on the CPU.
func (m *Model) encode(ctx context.Context, enc accel.Encoder, toks []Tokenized, vecs, norms []float32) error {
	err := m.encodeOnce(ctx, enc, toks, vecs, norms)
	if err == nil || !errors.Is(err, accel.ErrOutOfMemory) {
		return err
	}
	if len(toks) > 1 {
		if m.devObs != nil {
			m.devObs.OOMSplit()
		}
		m.opts.Logger.Debug("out of memory; splitting batch", "model", m.man.Name, "texts", len(toks), "err", err)
		h, hid := len(toks)/2, enc.Hidden()
		if err := m.encode(ctx, enc, toks[:h], vecs[:h*hid], norms[:h]); err != nil {
			return err
		}
		return m.encode(ctx, enc, toks[h:], vecs[h*hid:], norms[h:])
	}
	if !enc.Device().GPU() {
		return err
	}
	cpu, cerr := m.cpuEncoder()
	if cerr != nil {
		return errors.Join(err, cerr)
	}
	if m.devObs != nil {
		m.devObs.CPURetry()
	}
	m.opts.Logger.Warn("text does not fit in device memory; running it on the CPU", "model", m.man.Name, "tokens", len(toks[0].IDs), "err", err)
	return m.encodeOnce(ctx, cpu, toks, vecs, norms)
}

// cpuEncoder creates, once, a CPU encoder of the model.
func (m *Model) cpuEncoder() (accel.Encoder, error) {
	m.cpuOnce.Do(func() {
		o := m.opts.Accel
		o.Provider = accel.ProviderCPU
		m.cpu, m.cpuErr = m.opts.NewEncoder(m.spec, o)
	})
	return m.cpu, m.cpuErr
}

// encodeOnce pads toks into one batch and runs it on enc.
func (m *Model) encodeOnce(ctx context.Context, enc accel.Encoder, toks []Tokenized, vecs, norms []float32) error {
	seq := 0
	for _, t := range toks {
		seq = max(seq, len(t.IDs))
	}
	n := len(toks) * seq
	b, _ := m.bufs.Get().(*buffers)
	if b == nil {
		b = &buffers{}
	}
	defer m.bufs.Put(b)
	b.ids, b.mask, b.types = grow(b.ids, n), grow(b.mask, n), grow(b.types, n)
	clear(b.ids)
	clear(b.mask)
	clear(b.types)
	for i, row := range toks {
		for j, id := range row.IDs {
			b.ids[i*seq+j] = int64(id)
			b.mask[i*seq+j] = 1
		}
		for j, t := range row.TypeIDs {
			b.types[i*seq+j] = int64(t)
		}
	}
	in := accel.Batch{Size: len(toks), SeqLen: seq, IDs: b.ids, Mask: b.mask, TypeIDs: b.types}
	if m.traced(ctx) {
		var span trace.Span
		ctx, span = m.startEncodeSpan(ctx, enc, len(toks), seq)
		err := enc.Encode(ctx, in, vecs, norms)
		endSpan(span, err)
		return err
	}
	return enc.Encode(ctx, in, vecs, norms)
}

// minNorm is the norm below which a pooled vector counts as zero: the
// encoder leaves it unnormalized, and so does finish.
const minNorm = 1e-12

// finish writes the first dims values of the text's vector into dst: the
// encoder's unit vector scaled back to the raw pooled vector, then, if
// asked, L2-normalized over those dims. A zero vector stays zero.
func finish(dst []float32, p pooled, dims int, normalize bool) {
	v := p.vec[:dims]
	switch {
	case normalize && dims == len(p.vec):
		copy(dst, v) // already unit length (or zero)
		return
	case normalize:
		var ss float64
		for _, x := range v {
			ss += float64(x) * float64(x)
		}
		norm := math.Sqrt(ss)
		if norm < minNorm {
			copy(dst, v)
			return
		}
		inv := float32(1 / norm)
		for k, x := range v {
			dst[k] = x * inv
		}
	case p.norm < minNorm:
		copy(dst, v)
	default:
		for k, x := range v {
			dst[k] = x * p.norm
		}
	}
}
