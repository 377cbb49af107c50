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
	"sync"
	"time"

	"github.com/embedd/embedd/internal/accel"
	"github.com/embedd/embedd/internal/batch"
	"github.com/embedd/embedd/internal/embedcache"
	"github.com/embedd/embedd/internal/manifest"
	"github.com/embedd/embedd/internal/tokenize"
	"go.opentelemetry.io/otel/trace"
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
	// queue delay, queue size, workers). Its Observer, RunTimeout, Tracer
	// and SpanAttributes fields are ignored; use Observer, RunTimeout and
	// Tracer.
	Batch batch.Options
	// Tracer, if set, records spans (trace.go): "engine.Embed" for each
	// Embed call, a child of the caller's span; each model's batch runs
	// ("batch.Run", see internal/batch), with the model's name, version and
	// backend; and "engine.Encode" for each model run, a child of its
	// batch's span. Calls outside any trace (no span in their ctx) record
	// nothing. Nil (the default) records nothing.
	Tracer trace.Tracer
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
	bopts.Tracer, bopts.SpanAttributes = e.opts.Tracer, modelAttributes(man, m.Backend())
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
