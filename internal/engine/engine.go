// Package engine turns texts into embeddings: it loads the models a catalog
// describes, tokenizes in the caller's goroutine, hands the tokenized texts to
// the model's dynamic batcher (internal/batch), which groups texts of many
// callers by length into padded batches that a worker runs through the
// encoder (internal/accel); each text is pooled (mean over the attention
// mask, or CLS) in the batch, then truncated to fewer dimensions
// (Matryoshka) and L2-normalized for its own caller.
//
// Invariants:
//   - Every text of a call is validated and tokenized before any model work;
//     a call with a bad text fails as a whole with an *InputError that names
//     every bad index, and nothing is computed. A bad text never reaches a
//     batch, so it cannot fail another caller's texts.
//   - Vectors come back in the order of the texts, whatever batches they ran in.
//   - A padded batch never exceeds Options.Batch.MaxBatchSize rows nor
//     MaxBatchTokens padded tokens (a single text longer than the token
//     budget runs alone).
//   - Buffers are pooled per model; steady-state embedding does not grow the
//     heap (see BenchmarkEmbedMemory).
//   - Shutdown drains: texts accepted before it are computed. A forced
//     Shutdown (its ctx ends first) stops the runs in flight and fails the
//     texts not computed yet; a run also stops at Options.RunTimeout.
//   - A batch the device has no memory for is split in halves and retried;
//     a single text that still does not fit runs on the CPU. Only an error
//     that is not a lack of memory fails the batch's texts.
//   - With Options.CacheBytes > 0, a text embedded again with the same model
//     version and options is served from a byte-bounded cache, bit for bit
//     the vector computed for it, and concurrent calls for one text share
//     one computation (cache.go).
//
// Concurrency: Engine and Model are safe for concurrent use. Load is
// idempotent: the first call loads, later calls return the same *Model.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/embedd/embedd/internal/accel"
	"github.com/embedd/embedd/internal/batch"
	"github.com/embedd/embedd/internal/embedcache"
	"github.com/embedd/embedd/internal/errlist"
	"github.com/embedd/embedd/internal/manifest"
	"github.com/embedd/embedd/internal/tokenize"
)

// Errors of the engine. Callers map them to transport codes with errors.Is.
var (
	// ErrInvalidInput reports a bad request argument (texts, dimensions).
	ErrInvalidInput = errors.New("engine: invalid input")
	// ErrUnknownModel reports a model name the catalog does not have.
	ErrUnknownModel = manifest.ErrUnknownModel
	// ErrClosed reports use of a closed Engine.
	ErrClosed = errors.New("engine: closed")
)

// Options configures an Engine. Zero fields take the DefaultOptions values.
type Options struct {
	// CacheDir holds models/<name>/ as laid out by internal/pull. Required.
	CacheDir string
	// Accel chooses the execution provider and thread counts.
	Accel accel.Options
	// Batch configures each model's dynamic batcher (size, token budget,
	// queue delay, queue size, workers). Its Observer and RunTimeout fields
	// are ignored; use Observer and RunTimeout.
	Batch batch.Options
	// RunTimeout is the longest one model run (a batch, with its
	// out-of-memory splits and CPU retries) may take: then the run is
	// stopped (ONNX Runtime between kernels, the native encoder between
	// layers) and its texts fail with batch.ErrRunTimeout, which matches
	// context.DeadlineExceeded. Default 2m; negative means no limit. The
	// default is 15 to 20 times the longest run the built-in models make on
	// a 2-core CPU (a full CPU batch, 32 texts of 256 tokens, on the fp32
	// model: 6-8s measured on a shared, loaded machine; TestRunsStop logs
	// it), so it stops a run that is stuck, not one that is slow, and frees
	// its worker long after any interactive caller has given up.
	RunTimeout time.Duration
	// Observer, if set, returns the batch observer (metrics) of a model on a
	// backend, e.g. (*metrics.Metrics).ForModel. If the observer also
	// implements DeviceObserver it is told of out-of-memory splits and CPU
	// retries.
	Observer func(model, backend string) batch.Observer
	// OnLoad, if set, is called once for each model when it has loaded.
	OnLoad func(*Model)
	// NewEncoder creates a model's encoder. Default accel.NewEncoder.
	NewEncoder func(accel.ModelSpec, accel.Options) (accel.Encoder, error)
	// MaxTexts is the most texts one Embed call accepts. Default 1024.
	MaxTexts int
	// MaxTextBytes is the longest text, in bytes, accepted. Default 65536.
	MaxTextBytes int
	// SkipVerify skips the sha256 check of model files at load. Default false.
	SkipVerify bool
	// CacheBytes bounds, in bytes, the embedding cache that the engine's
	// models share (see cache.go and internal/embedcache); 0 or negative
	// means no cache. Default 0: a cache pays off in a long-running server
	// (`embedd serve` sets DefaultCacheBytes), not in a one-shot embed, and
	// a benchmark of the model must not measure it.
	CacheBytes int64
	// Logger receives load events. Default slog.Default().
	Logger *slog.Logger
}

// DefaultOptions returns the defaults documented on Options. Batching uses
// batch.DefaultOptions except:
//   - MaxQueueDelay is 0: an idle worker runs whatever is queued at once,
//     and under load the texts that arrive during a run form the next batch
//     (continuous batching, as TEI and Triton's default do). Measured on a
//     2-core CPU, a 2ms delay only added latency at low load and did not
//     raise throughput at high load.
//   - MaxBatchSize, MaxBatchTokens and Workers are 0: each model takes the
//     defaults of the device it runs on (accel.DefaultBatch), known only
//     once its encoder is created (CUDA may fall back to the CPU).
func DefaultOptions() Options {
	b := batch.DefaultOptions()
	b.MaxQueueDelay = 0
	b.MaxBatchSize, b.MaxBatchTokens, b.Workers, b.GroupWindow = 0, 0, 0, 0
	return Options{
		Accel:        accel.DefaultOptions(),
		Batch:        b,
		RunTimeout:   2 * time.Minute,
		MaxTexts:     1024,
		MaxTextBytes: 64 << 10,
	}
}

func (o *Options) fill() {
	d := DefaultOptions()
	if o.MaxTexts <= 0 {
		o.MaxTexts = d.MaxTexts
	}
	if o.MaxTextBytes <= 0 {
		o.MaxTextBytes = d.MaxTextBytes
	}
	if o.RunTimeout == 0 {
		o.RunTimeout = d.RunTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.NewEncoder == nil {
		o.NewEncoder = accel.NewEncoder
	}
}

// Engine holds loaded models.
type Engine struct {
	catalog *manifest.Catalog
	opts    Options
	cache   *embedcache.Cache // nil when Options.CacheBytes <= 0

	mu     sync.Mutex // guards models and closed
	models map[string]*loading
	closed bool
}

// loading lets concurrent Load calls of one model wait for a single load.
type loading struct {
	done  chan struct{}
	model *Model
	err   error
}

// New returns an Engine that loads models from catalog on demand.
func New(catalog *manifest.Catalog, opts Options) *Engine {
	opts.fill()
	return &Engine{catalog: catalog, opts: opts, cache: newCache(opts.CacheBytes), models: make(map[string]*loading)}
}

// Load returns the model called name, loading it on first use.
func (e *Engine) Load(ctx context.Context, name string) (*Model, error) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, ErrClosed
	}
	l, ok := e.models[name]
	if !ok {
		l = &loading{done: make(chan struct{})}
		e.models[name] = l
		e.mu.Unlock()
		l.model, l.err = e.load(name)
		if l.err != nil {
			e.mu.Lock()
			delete(e.models, name) // let a later call retry
			e.mu.Unlock()
		}
		close(l.done)
	} else {
		e.mu.Unlock()
	}
	select {
	case <-l.done:
		return l.model, l.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (e *Engine) load(name string) (*Model, error) {
	man, err := e.catalog.Get(name)
	if err != nil {
		return nil, err
	}
	if !e.opts.SkipVerify {
		if err := manifest.Verify(e.opts.CacheDir, man); err != nil {
			return nil, err
		}
	}
	dir := manifest.Dir(e.opts.CacheDir, man)
	tok, err := tokenize.Load(dir + "/" + man.Tokenizer)
	if err != nil {
		return nil, fmt.Errorf("engine: model %s: %w", name, err)
	}
	spec := accel.ModelSpec{
		Path:          dir + "/" + man.ONNX,
		InputIDs:      man.Inputs.InputIDs,
		AttentionMask: man.Inputs.AttentionMask,
		TokenTypeIDs:  man.Inputs.TokenTypeIDs,
		Output:        man.Output,
		Pooled:        man.Pooled,
		NormOutput:    man.NormOutput,
		Pooling:       accel.Pooling(man.Pooling),
		Hidden:        man.Dims,
	}
	if config, weights, precision, ok := man.Safetensors(); ok {
		spec.ConfigPath, spec.WeightsPath, spec.Precision = dir+"/"+config, dir+"/"+weights, precision
	}
	enc, err := e.opts.NewEncoder(spec, e.opts.Accel)
	if err != nil {
		return nil, fmt.Errorf("engine: model %s: %w", name, err)
	}
	m := &Model{man: man, tok: tok, enc: enc, spec: spec, opts: &e.opts}
	m.cache, m.cacheVersion = e.cache, cacheVersion(man, m.Backend())
	bopts := deviceBatch(e.opts.Batch, enc.Device())
	bopts.Observer, bopts.RunTimeout = nil, max(e.opts.RunTimeout, 0)
	if e.opts.Observer != nil {
		bopts.Observer = e.opts.Observer(name, m.Backend())
		m.devObs, _ = bopts.Observer.(DeviceObserver)
	}
	if m.batcher, err = batch.New(m.runBatch, bopts); err != nil {
		return nil, errors.Join(fmt.Errorf("engine: model %s: %w", name, err), enc.Close())
	}
	m.batchOpts = bopts
	if e.opts.OnLoad != nil {
		e.opts.OnLoad(m)
	}
	e.opts.Logger.Info("model loaded", "model", name, "version", man.Version, "backend", m.Backend(),
		"requested", enc.Device().Requested, "fallback", enc.Device().Fallback,
		"max_batch_size", bopts.MaxBatchSize, "max_batch_tokens", bopts.MaxBatchTokens, "workers", bopts.Workers)
	return m, nil
}

// deviceBatch fills the batching limits left at zero with the defaults of
// the device the model runs on.
func deviceBatch(o batch.Options, d accel.Device) batch.Options {
	def := accel.DefaultBatch(d)
	if o.MaxBatchSize == 0 {
		o.MaxBatchSize = def.MaxBatchSize
	}
	if o.MaxBatchTokens == 0 {
		o.MaxBatchTokens = def.MaxBatchTokens
	}
	if o.Workers == 0 {
		o.Workers = def.Workers
	}
	return o
}

// Loaded returns the model called name if it is loaded, without loading it.
func (e *Engine) Loaded(name string) (*Model, bool) {
	e.mu.Lock()
	l, ok := e.models[name]
	e.mu.Unlock()
	if !ok {
		return nil, false
	}
	select {
	case <-l.done:
		return l.model, l.model != nil
	default:
		return nil, false
	}
}

// Models lists the names in the catalog.
func (e *Engine) Models() []string { return e.catalog.Names() }

// Manifest returns the manifest of name without loading it.
func (e *Engine) Manifest(name string) (*manifest.Model, error) { return e.catalog.Get(name) }

// Embed loads model if needed and embeds texts with it.
func (e *Engine) Embed(ctx context.Context, model string, texts []string, o EmbedOptions) (*Result, error) {
	m, err := e.Load(ctx, model)
	if err != nil {
		return nil, err
	}
	return m.Embed(ctx, texts, o)
}

// Shutdown stops accepting texts, computes every text already accepted, and
// releases the models. If ctx ends first, the shutdown is forced: the runs
// in flight are stopped (as at RunTimeout) and their texts, and every text
// still queued, fail with batch.ErrAborted (which matches batch.ErrClosed);
// Shutdown then returns ctx's error once the runs have returned and the
// models are released. A run that has not returned abortGrace after it was
// stopped keeps its model's encoder, which is then not released: freeing it
// under a run would crash the process.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	e.closed = true
	models := e.models
	e.models = map[string]*loading{}
	e.mu.Unlock()
	var errs []error
	for _, l := range models {
		<-l.done
		if l.model == nil {
			continue
		}
		errs = append(errs, l.model.shutdown(ctx))
	}
	return errors.Join(errs...)
}

// abortGrace is how long a forced Shutdown waits for a stopped run to
// return. ONNX Runtime checks its terminate flag between kernels and the
// native encoder checks ctx between layers, each milliseconds apart.
const abortGrace = 10 * time.Second

// shutdown drains the model's batcher, or aborts it when ctx ends first,
// then releases the encoders once no run uses them.
func (m *Model) shutdown(ctx context.Context) error {
	err := m.batcher.Shutdown(ctx)
	if err != nil {
		m.batcher.Abort()
		gctx, cancel := context.WithTimeout(context.Background(), abortGrace)
		defer cancel()
		if m.batcher.Shutdown(gctx) != nil {
			return fmt.Errorf("engine: model %s: %w; a run did not stop within %v, so its encoder is not released", m.man.Name, err, abortGrace)
		}
	}
	return errors.Join(err, m.close())
}

// Close is Shutdown without a deadline.
func (e *Engine) Close() error { return e.Shutdown(context.Background()) }

// DeviceObserver is implemented by batch observers that also count what
// the engine does when a device runs out of memory.
type DeviceObserver interface {
	// OOMSplit is called when a batch is split in two after the device ran
	// out of memory.
	OOMSplit()
	// CPURetry is called when a single text that did not fit on the device
	// is run on the CPU instead.
	CPURetry()
}

// Model is one loaded model.
type Model struct {
	man       *manifest.Model
	tok       *tokenize.Tokenizer
	enc       accel.Encoder
	spec      accel.ModelSpec
	opts      *Options
	batcher   *batch.Batcher[Tokenized, pooled]
	batchOpts batch.Options
	devObs    DeviceObserver // nil if the observer does not count device events
	bufs      sync.Pool      // *buffers
	// cache, when not nil, serves repeated texts (see cache.go); its keys
	// carry cacheVersion.
	cache        *embedcache.Cache
	cacheVersion string

	cpuOnce sync.Once
	cpu     accel.Encoder // CPU encoder for texts that do not fit on the GPU
	cpuErr  error
}

// pooled is one text's sentence vector as the encoder returns it: unit
// length, with the norm of the raw pooled vector.
type pooled struct {
	vec  []float32
	norm float32
}

// BatchOptions reports the batching limits in use (device defaults filled).
func (m *Model) BatchOptions() batch.Options { return m.batchOpts }

func (m *Model) close() error {
	err := m.enc.Close()
	if m.cpu != nil {
		err = errors.Join(err, m.cpu.Close())
	}
	return err
}

// Manifest describes the model.
func (m *Model) Manifest() *manifest.Model { return m.man }

// Device reports where the model runs.
func (m *Model) Device() accel.Device { return m.enc.Device() }

// Backend is a label for the runtime and device, e.g. "onnxruntime/cpu",
// "onnxruntime/cuda:0" or "native/cuda:0" (see accel.Device.Backend).
func (m *Model) Backend() string { return m.enc.Device().Backend() }

// QueueLen reports the texts waiting for a batch, by priority.
func (m *Model) QueueLen() (online, bulk int) { return m.batcher.Len() }

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
func (m *Model) Embed(ctx context.Context, texts []string, o EmbedOptions) (*Result, error) {
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
