// Package remote is the remote reembed.Embedder: it embeds a job's texts
// through a running embedd server's EmbeddingService.EmbedStream, which the
// server runs at bulk priority (its batcher serves online Embed calls
// first), while the job writes the stores itself.
//
// Invariants:
//   - One model, one version. New asks the server for Options.Model
//     (GetModel) and keeps its version; every reply must name that model
//     and version, with one vector of its dims per text, or Embed fails with
//     ErrModelChanged (a server restarted with other weights never mixes
//     two model versions into one job). The job binds its target version to
//     that model version, and the index refuses a version bound to another
//     (index.ErrModelMismatch), so a collection version is written by one
//     model version whether the job runs in process or here.
//   - Retries honour the server. A request the server refuses for now
//     (RESOURCE_EXHAUSTED: its queue is full or the key is over its limits;
//     UNAVAILABLE: it is shutting down or unreachable), in the stream's
//     reply or as the stream's own status, is sent again after at least the
//     server's google.rpc.RetryInfo delay (doubled per attempt), or, with
//     no hint, after the Backoff schedule; at most MaxRetries times, then
//     Embed fails naming the server, the code and the attempts. A broken
//     stream is reopened; the requests pending on it are sent again.
//   - Per-text errors stay per text. A request refused with
//     INVALID_ARGUMENT (a text too long with truncation off) is split into
//     one request per text, and Embed returns an *engine.InputError naming
//     the bad texts' indexes, as the engine does in process.
//
// Concurrency: a *Remote is safe for concurrent use. Its calls share one
// stream: each Embed splits its texts into requests of at most
// Options.Chunk texts, sent at once and answered in any order (matched by
// request_id). The stream is owned by the Remote and ended by Close.
package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/embedd/embedd/internal/engine"
	"github.com/embedd/embedd/internal/manifest"
	"github.com/embedd/embedd/internal/reembed"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// Errors.
var (
	// ErrModelChanged reports a reply of another model or model version
	// than the one New found, or of the wrong shape.
	ErrModelChanged = errors.New("remote: the server's model changed")
	// ErrUnknownModel reports a model the server does not serve, or an
	// Embed or Manifest of a model other than Options.Model.
	ErrUnknownModel = errors.New("remote: unknown model")
	// ErrRetriesExhausted reports a request the server kept refusing for
	// now (RESOURCE_EXHAUSTED, UNAVAILABLE) MaxRetries times.
	ErrRetriesExhausted = errors.New("remote: retries exhausted")
)

// Options configures a Remote. Zero fields take DefaultOptions' values
// unless marked required.
type Options struct {
	// Model is the model to embed with (the job's --model). Required.
	Model string
	// Server names the server in errors and logs (its address). Default
	// "the server".
	Server string
	// Chunk is the most texts of one stream request (the server's
	// max_client_batch is 256 by default, and its queue must hold a whole
	// request). Default 64.
	Chunk int
	// MaxRetries bounds the retries of one request refused for now. Default 8.
	MaxRetries int
	// Backoff is the wait before the first retry when the server gives no
	// hint; it doubles per attempt up to MaxBackoff, from half to the whole
	// of it. Defaults 200ms and 30s. A server's hint is waited at least
	// (from the whole to 1.5 times of it), doubled per attempt of the same
	// request up to MaxBackoff or the hint, whichever is larger.
	Backoff, MaxBackoff time.Duration
	// MaxRate paces the texts sent per second, request by request (bursts
	// of at most Chunk texts), so a job's --max-rate reaches the server as
	// a steady trickle of small bulk batches rather than as a whole upsert
	// batch at once, which online requests would queue behind. Default 0:
	// no pacing.
	MaxRate float64
	// Logger receives a line per retry. Default slog.Default().
	Logger *slog.Logger
}

// DefaultOptions returns the defaults (Model excepted).
func DefaultOptions() Options {
	return Options{Server: "the server", Chunk: 64, MaxRetries: 8, Backoff: 200 * time.Millisecond, MaxBackoff: 30 * time.Second, Logger: slog.Default()}
}

func (o Options) withDefaults() (Options, error) {
	d := DefaultOptions()
	if o.Model == "" {
		return o, fmt.Errorf("%w: no model given", ErrUnknownModel)
	}
	if o.Chunk < 0 || o.MaxRetries < 0 || o.Backoff < 0 || o.MaxBackoff < 0 || o.MaxRate < 0 {
		return o, fmt.Errorf("remote: chunk, retries, backoffs and max rate must not be negative")
	}
	if o.Server == "" {
		o.Server = d.Server
	}
	if o.Chunk == 0 {
		o.Chunk = d.Chunk
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = d.MaxRetries
	}
	if o.Backoff == 0 {
		o.Backoff = d.Backoff
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = d.MaxBackoff
	}
	if o.Logger == nil {
		o.Logger = d.Logger
	}
	return o, nil
}

// Stats counts what a Remote did, for summaries and tests.
type Stats struct {
	// Requests is the stream requests answered with vectors.
	Requests int64
	// Retries is the requests sent again after a refusal (RESOURCE_EXHAUSTED
	// or UNAVAILABLE); Hinted of them waited a server's RetryInfo delay.
	Retries, Hinted int64
	// Waited is the time spent waiting before retries, summed over requests.
	Waited time.Duration
	// MinHint and MaxHint are the smallest and largest RetryInfo delays the
	// server sent (0: none).
	MinHint, MaxHint time.Duration
}

// Remote embeds through a server's EmbedStream; see the package doc.
type Remote struct {
	client embeddv1.EmbeddingServiceClient
	o      Options
	info   *manifest.Model
	nextID atomic.Uint64
	pace   *rate.Limiter // nil: no MaxRate

	// mu guards cur and closed.
	mu     sync.Mutex
	cur    *stream
	closed bool

	requests, retries, hinted, waited atomic.Int64
	minHint, maxHint                  atomic.Int64
}

var _ reembed.Embedder = (*Remote)(nil)

// New asks the server behind conn for o.Model (retrying a refusal for now
// as Embed does) and returns a Remote that embeds with it. The caller keeps
// conn and closes it after Close.
func New(ctx context.Context, conn grpc.ClientConnInterface, o Options) (*Remote, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &Remote{client: embeddv1.NewEmbeddingServiceClient(conn), o: o}
	if o.MaxRate > 0 {
		r.pace = rate.NewLimiter(rate.Limit(o.MaxRate), o.Chunk)
	}
	var mi *embeddv1.ModelInfo
	err = r.retry(ctx, "the model's description", func() (err error) {
		mi, err = r.client.GetModel(ctx, &embeddv1.GetModelRequest{Name: o.Model})
		return err
	})
	if status.Code(errors.Unwrap(err)) == codes.NotFound {
		return nil, fmt.Errorf("%w: %s does not serve model %q: %s", ErrUnknownModel, o.Server, o.Model, status.Convert(errors.Unwrap(err)).Message())
	}
	if err != nil {
		return nil, fmt.Errorf("model %q: %w", o.Model, err)
	}
	if mi.GetName() != o.Model || mi.GetVersion() == "" || mi.GetDims() == 0 {
		return nil, fmt.Errorf("%w: %s describes model %q as %q version %q with %d dims", ErrModelChanged, o.Server, o.Model, mi.GetName(), mi.GetVersion(), mi.GetDims())
	}
	r.info = &manifest.Model{
		Name: mi.GetName(), Version: mi.GetVersion(), Description: mi.GetDescription(), Dims: int(mi.GetDims()),
		Pooling: manifest.Pooling(mi.GetPooling()), Normalize: mi.GetNormalize(), MaxSeqLen: int(mi.GetMaxTokens()),
	}
	for _, d := range mi.GetMatryoshkaDims() {
		r.info.MatryoshkaDims = append(r.info.MatryoshkaDims, int(d))
	}
	return r, nil
}

// Manifest describes the server's model (name, version, dims, pooling,
// normalization, max tokens; no files). Any other name is ErrUnknownModel.
func (r *Remote) Manifest(name string) (*manifest.Model, error) {
	if name != r.o.Model {
		return nil, fmt.Errorf("%w: %q: this job embeds through %s with model %q only", ErrUnknownModel, name, r.o.Server, r.o.Model)
	}
	m := *r.info
	return &m, nil
}

// Stats returns the counts so far.
func (r *Remote) Stats() Stats {
	return Stats{
		Requests: r.requests.Load(), Retries: r.retries.Load(), Hinted: r.hinted.Load(),
		Waited: time.Duration(r.waited.Load()), MinHint: time.Duration(r.minHint.Load()), MaxHint: time.Duration(r.maxHint.Load()),
	}
}

// Embed embeds texts with the server's model. o.Truncate is sent; the
// priority is the stream's (bulk). Dimensions and Normalize other than
// the model's are refused: a job stores the model's own vectors.
func (r *Remote) Embed(ctx context.Context, model string, texts []string, o engine.EmbedOptions) (*engine.Result, error) {
	if model != r.o.Model {
		return nil, fmt.Errorf("%w: %q: this job embeds through %s with model %q only", ErrUnknownModel, model, r.o.Server, r.o.Model)
	}
	if o.Dimensions != 0 || o.Normalize != nil {
		return nil, fmt.Errorf("remote: dimensions and normalize overrides are not supported by a job")
	}
	res := &engine.Result{Model: r.info.Name, Version: r.info.Version, Vectors: make([][]float32, len(texts)), Tokens: make([]int, len(texts))}
	var (
		wg   sync.WaitGroup
		emu  sync.Mutex // guards bad and ferr
		bad  []*engine.ItemError
		ferr error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for start := 0; start < len(texts); start += r.o.Chunk {
		end := min(start+r.o.Chunk, len(texts))
		wg.Go(func() {
			items, err := r.chunk(ctx, texts[start:end], o.Truncate, res, start)
			emu.Lock()
			defer emu.Unlock()
			bad = append(bad, items...)
			if err != nil && ferr == nil {
				ferr = err
				cancel()
			}
		})
	}
	wg.Wait()
	if ferr != nil {
		return nil, ferr
	}
	if len(bad) > 0 {
		slices.SortFunc(bad, func(x, y *engine.ItemError) int { return x.Index - y.Index })
		return nil, &engine.InputError{Items: bad}
	}
	return res, nil
}

// chunk embeds texts (res's from off on) in one request; on
// INVALID_ARGUMENT it sends each text alone and returns the bad ones.
func (r *Remote) chunk(ctx context.Context, texts []string, truncate bool, res *engine.Result, off int) ([]*engine.ItemError, error) {
	if r.pace != nil {
		if err := r.pace.WaitN(ctx, len(texts)); err != nil {
			return nil, err
		}
	}
	resp, err := r.call(ctx, texts, truncate)
	if status.Code(err) == codes.InvalidArgument {
		if len(texts) == 1 {
			return []*engine.ItemError{{Index: off, Err: fmt.Errorf("%w: %s", engine.ErrInvalidInput, status.Convert(err).Message())}}, nil
		}
		var bad []*engine.ItemError
		for i := range texts {
			items, err := r.chunk(ctx, texts[i:i+1], truncate, res, off+i)
			if err != nil {
				return nil, err
			}
			bad = append(bad, items...)
		}
		if len(bad) == 0 {
			return nil, fmt.Errorf("%s refused %d texts together (%w) but none alone", r.o.Server, len(texts), err)
		}
		return bad, nil
	}
	if err != nil {
		return nil, err
	}
	if err := r.check(resp, len(texts)); err != nil {
		return nil, err
	}
	for i, e := range resp.GetEmbeddings() {
		res.Vectors[off+i] = e.GetFloat32()
		res.Tokens[off+i] = int(e.GetTokens())
	}
	return nil, nil
}

// check verifies a reply: the model and version New found, one float
// vector of its dims per text.
func (r *Remote) check(resp *embeddv1.EmbedResponse, n int) error {
	if resp.GetModel() != r.info.Name || resp.GetModelVersion() != r.info.Version {
		return fmt.Errorf("%w: %s answered with model %q version %q; this job embeds with %q version %q (the collection version is bound to it): run the job against a server of that version, or again from the start with --reset",
			ErrModelChanged, r.o.Server, resp.GetModel(), resp.GetModelVersion(), r.info.Name, r.info.Version)
	}
	if len(resp.GetEmbeddings()) != n {
		return fmt.Errorf("%w: %s answered %d embeddings for %d texts", ErrModelChanged, r.o.Server, len(resp.GetEmbeddings()), n)
	}
	for i, e := range resp.GetEmbeddings() {
		if len(e.GetFloat32()) != r.info.Dims {
			return fmt.Errorf("%w: %s answered %d values for text %d; model %q has %d dims", ErrModelChanged, r.o.Server, len(e.GetFloat32()), i, r.info.Name, r.info.Dims)
		}
	}
	return nil
}

// call sends one request until it is answered, retrying refusals for now.
func (r *Remote) call(ctx context.Context, texts []string, truncate bool) (*embeddv1.EmbedResponse, error) {
	req := &embeddv1.EmbedRequest{Model: r.o.Model, Texts: texts, Truncate: truncate, OutputType: embeddv1.OutputType_OUTPUT_TYPE_FLOAT32}
	var resp *embeddv1.EmbedResponse
	err := r.retry(ctx, fmt.Sprintf("a request of %d texts", len(texts)), func() (err error) {
		req.RequestId = strconv.FormatUint(r.nextID.Add(1), 36)
		resp, err = r.send(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	r.requests.Add(1)
	return resp, nil
}

// retry runs fn until it succeeds, fails otherwise than for now
// (RESOURCE_EXHAUSTED, UNAVAILABLE) or was refused MaxRetries+1 times,
// waiting before each retry (wait). A failure wraps fn's error with the
// server's name; what names the work in messages.
func (r *Remote) retry(ctx context.Context, what string, fn func() error) error {
	for attempt := 0; ; attempt++ {
		err := fn()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		st := status.Convert(err)
		if st.Code() != codes.ResourceExhausted && st.Code() != codes.Unavailable {
			return fmt.Errorf("%s: %w", r.o.Server, err)
		}
		if attempt >= r.o.MaxRetries {
			return fmt.Errorf("%w: %s refused %s %d times (last: %s: %s); lower --max-rate or raise --max-retries",
				ErrRetriesExhausted, r.o.Server, what, attempt+1, st.Code(), st.Message())
		}
		hint := retryDelay(st)
		wait := r.wait(attempt, hint)
		r.retries.Add(1)
		r.waited.Add(int64(wait))
		if hint > 0 {
			r.hinted.Add(1)
			for old := r.minHint.Load(); (old == 0 || int64(hint) < old) && !r.minHint.CompareAndSwap(old, int64(hint)); old = r.minHint.Load() {
			}
			for old := r.maxHint.Load(); int64(hint) > old && !r.maxHint.CompareAndSwap(old, int64(hint)); old = r.maxHint.Load() {
			}
		}
		r.o.Logger.Debug("reembed: server refused for now; retrying", "server", r.o.Server, "what", what, "code", st.Code(), "hint", hint, "wait", wait, "attempt", attempt+1)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// wait is the delay before retry attempt+1: at least the hint, doubled
// per attempt (up to MaxBackoff or the hint), plus up to half of it; or
// without a hint the Backoff schedule, from half to the whole of it.
func (r *Remote) wait(attempt int, hint time.Duration) time.Duration {
	if hint > 0 {
		d := hint << min(attempt, 20)
		if limit := max(r.o.MaxBackoff, hint); d <= 0 || d > limit {
			d = limit
		}
		return d + rand.N(d/2+1)
	}
	d := r.o.Backoff << min(attempt, 20)
	if d <= 0 || d > r.o.MaxBackoff {
		d = r.o.MaxBackoff
	}
	return d/2 + rand.N(d/2+1)
}

// retryDelay is st's RetryInfo delay, 0 without one.
func retryDelay(st *status.Status) time.Duration {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			return max(ri.GetRetryDelay().AsDuration(), 0)
		}
	}
	return 0
}

// send sends req on the current stream (opened if there is none) and
// waits for its reply. A refusal in the reply is returned as its status;
// so is the status of a stream that ends before the reply.
func (r *Remote) send(ctx context.Context, req *embeddv1.EmbedRequest) (*embeddv1.EmbedResponse, error) {
	s, err := r.stream()
	if err != nil {
		return nil, err
	}
	reply := make(chan result, 1)
	if err := s.add(req.RequestId, reply); err != nil {
		return nil, err
	}
	if err := s.send(req); err != nil {
		if !errors.Is(err, io.EOF) {
			s.remove(req.RequestId)
			s.abort()
			return nil, err
		}
		// io.EOF: the stream ended; its status comes from the receiver.
	}
	select {
	case res := <-reply:
		return res.resp, res.err
	case <-ctx.Done():
		s.remove(req.RequestId)
		return nil, ctx.Err()
	}
}

// stream returns the open stream, opening one if there is none or the
// last one ended.
func (r *Remote) stream() (*stream, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, status.Error(codes.Canceled, "remote: closed")
	}
	if r.cur != nil && !r.cur.ended() {
		return r.cur, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	es, err := r.client.EmbedStream(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	s := &stream{es: es, cancel: cancel, pending: map[string]chan<- result{}}
	go s.receive()
	r.cur = s
	return s, nil
}

// Close ends the stream. Calls in flight fail.
func (r *Remote) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.cur != nil {
		r.cur.sendMu.Lock()
		err := r.cur.es.CloseSend()
		r.cur.sendMu.Unlock()
		r.cur.abort()
		return err
	}
	return nil
}

type result struct {
	resp *embeddv1.EmbedResponse
	err  error
}

// stream is one EmbedStream and the requests waiting on it.
type stream struct {
	es     grpc.BidiStreamingClient[embeddv1.EmbedRequest, embeddv1.EmbedResponse]
	cancel context.CancelFunc
	sendMu sync.Mutex // serializes Send

	// mu guards pending and err.
	mu      sync.Mutex
	pending map[string]chan<- result
	err     error // set when the stream ended
}

func (s *stream) ended() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err != nil
}

func (s *stream) add(id string, reply chan<- result) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.pending[id] = reply
	return nil
}

func (s *stream) remove(id string) {
	s.mu.Lock()
	delete(s.pending, id)
	s.mu.Unlock()
}

func (s *stream) send(req *embeddv1.EmbedRequest) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.es.Send(req)
}

func (s *stream) abort() { s.cancel() }

// receive hands each reply to its request; when the stream ends it fails
// every pending request with the stream's status.
func (s *stream) receive() {
	for {
		resp, err := s.es.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = status.Error(codes.Unavailable, "the server ended the stream")
			}
			s.mu.Lock()
			s.err = err
			pending := s.pending
			s.pending = nil
			s.mu.Unlock()
			for _, reply := range pending {
				reply <- result{err: err}
			}
			s.cancel()
			return
		}
		s.mu.Lock()
		reply, ok := s.pending[resp.GetRequestId()]
		delete(s.pending, resp.GetRequestId())
		s.mu.Unlock()
		if !ok {
			continue // its caller gave up
		}
		if e := resp.GetError(); e != nil {
			reply <- result{err: status.FromProto(&spb.Status{Code: e.GetCode(), Message: e.GetMessage(), Details: e.GetDetails()}).Err()}
			continue
		}
		reply <- result{resp: resp}
	}
}
