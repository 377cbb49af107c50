package batch

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
)

// RunFunc computes one batch. It returns one output per input, in order;
// errs may be nil (all ok) or have one entry per input (per-item failures).
// A returned error fails every item. The ctx belongs to the Batcher, not to
// any caller: it ends at Options.RunTimeout or at Abort, and a RunFunc that
// can stop early should then return its ctx.Err(). RunFunc must not keep
// batch after it returns: the Batcher reuses the slice.
type RunFunc[In, Out any] func(ctx context.Context, batch []In) (outs []Out, errs []error, err error)

// Batcher groups items submitted concurrently into batches and computes each
// batch with one RunFunc call. See the package documentation for its
// policies and guarantees. Create it with New and stop it with Shutdown.
type Batcher[In, Out any] struct {
	run  RunFunc[In, Out]
	opts Options // validated, defaults filled
	obs  Observer

	// closeMu guards closed and the sends on intake: Submit holds it for
	// reading while it checks closed and sends, Shutdown for writing while it
	// sets closed and closes intake. So no send hits a closed channel and
	// every admitted item reaches the dispatcher.
	closeMu sync.RWMutex
	closed  bool
	// intake carries admitted items (a SubmitAll as one chain) to the
	// dispatcher. Its capacity is QueueSize and depth reserves a slot for
	// every item before it is sent, so a send never blocks.
	intake chan *item[In, Out]

	// depth counts admitted items not yet handed to a worker or dropped:
	// Online in the low 32 bits, Bulk in the high 32 bits, so admission can
	// check and reserve both with one compare-and-swap.
	depth atomic.Uint64

	wake chan struct{}        // capacity 1; a caller whose ctx ended asks the dispatcher to purge
	work chan *batch[In, Out] // dispatcher to workers; capacity Workers
	free chan *batch[In, Out] // workers to dispatcher: idle workers' batch buffers; capacity Workers

	items sync.Pool // *item[In, Out] with their reply channels

	runCtx     context.Context // parent of every RunFunc ctx; outlives every caller; Abort cancels it
	stopRun    context.CancelCauseFunc
	timeoutErr error // ErrRunTimeout naming Options.RunTimeout
	workers    sync.WaitGroup
	done       chan struct{} // closed when the queue is drained and every goroutine has exited

	spanAttrs []attribute.KeyValue // Options.SpanAttributes, for each batch span
}

// item is one admitted input and its reply slot. Items are pooled: a caller
// returns an item to the pool only after receiving its reply, and sending
// the reply is the last thing the dispatcher or a worker does with an item.
type item[In, Out any] struct {
	ctx    context.Context
	in     In
	tokens int
	prio   Priority
	enq    time.Time        // admission time
	next   *item[In, Out]   // chains the items of one SubmitAll on intake
	reply  chan result[Out] // capacity 1; receives exactly one result per admission
}

type result[Out any] struct {
	out Out
	err error
}

// batch is a worker's unit of work. There are exactly Workers of them,
// circulating between the dispatcher and the workers, so that their slices
// are reused.
type batch[In, Out any] struct {
	items []*item[In, Out]
	ins   []In
}

// New returns a Batcher that computes batches with run, and starts its
// dispatcher and worker goroutines; Shutdown stops them. It returns
// ErrInvalidOptions for negative or out-of-range options.
func New[In, Out any](run RunFunc[In, Out], opts Options) (*Batcher[In, Out], error) {
	if run == nil {
		return nil, fmt.Errorf("%w: nil RunFunc", ErrInvalidOptions)
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	b := &Batcher[In, Out]{
		run:    run,
		opts:   opts,
		obs:    opts.Observer,
		intake: make(chan *item[In, Out], opts.QueueSize),
		wake:   make(chan struct{}, 1),
		work:   make(chan *batch[In, Out], opts.Workers),
		free:   make(chan *batch[In, Out], opts.Workers),
		done:   make(chan struct{}),
	}
	if opts.Tracer != nil {
		b.spanAttrs = opts.SpanAttributes.ToSlice()
	}
	b.items.New = func() any { return &item[In, Out]{reply: make(chan result[Out], 1)} }
	b.runCtx, b.stopRun = context.WithCancelCause(context.Background())
	b.timeoutErr = fmt.Errorf("%w (RunTimeout %v)", ErrRunTimeout, opts.RunTimeout)
	for range opts.Workers {
		b.free <- &batch[In, Out]{
			items: make([]*item[In, Out], 0, opts.MaxBatchSize),
			ins:   make([]In, 0, opts.MaxBatchSize),
		}
	}
	b.workers.Add(opts.Workers)
	for range opts.Workers {
		go b.worker()
	}
	go newDispatcher(b).loop()
	return b, nil
}

// Submit enqueues one item of the given token count and waits for its
// result. It returns ErrQueueFull at once when the queue is full, ErrClosed
// after Shutdown began, and ctx.Err() when ctx ends first (the item is then
// never computed unless its batch had already started). A per-item error from
// RunFunc, a RunFunc error or a *PanicError is returned as is.
func (b *Batcher[In, Out]) Submit(ctx context.Context, in In, tokens int, p Priority) (Out, error) {
	var zero Out
	if err := checkItem(tokens, p); err != nil {
		return zero, err
	}
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	it := b.newItem(ctx, in, tokens, p)
	if err := b.admit(it, 1, p); err != nil {
		b.putItem(it)
		return zero, err
	}
	select {
	case r := <-it.reply:
		b.putItem(it)
		return r.out, r.err
	case <-ctx.Done():
		select {
		case r := <-it.reply: // it finished at the same moment; use it
			b.putItem(it)
			return r.out, r.err
		default:
		}
		// The item stays queued until the dispatcher purges it; ask for that
		// now so that it stops holding a queue slot. It is not returned to the
		// pool: a worker may still send its reply.
		b.poke()
		return zero, ctx.Err()
	}
}

// SubmitAll enqueues many items as one request and returns their outputs in
// input order. Items may be spread over several batches (a request larger
// than MaxBatchSize always is) and are grouped with other requests' items.
//
// Admission is all or nothing: if the queue cannot take every item, none is
// enqueued and it returns ErrQueueFull. It waits for the items in index
// order and stops at the first one that failed: it then returns a slice of
// len(ins) holding the outputs before that index and a *ItemError naming it,
// and abandons the remaining items (those not yet started are dropped and
// reported to the Observer as context.Canceled). If ctx ends first it
// returns the outputs it has and ctx.Err().
func (b *Batcher[In, Out]) SubmitAll(ctx context.Context, ins []In, tokens []int, p Priority) ([]Out, error) {
	if len(tokens) != len(ins) {
		return nil, fmt.Errorf("%w: %d inputs but %d token counts", ErrInvalidInput, len(ins), len(tokens))
	}
	for i, t := range tokens {
		if err := checkItem(t, p); err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
	}
	if len(ins) == 0 {
		return []Out{}, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(ins) > b.opts.QueueSize {
		return nil, fmt.Errorf("%w: request of %d items exceeds QueueSize %d", ErrQueueFull, len(ins), b.opts.QueueSize)
	}
	// The items share a ctx that SubmitAll cancels when it stops waiting, so
	// that the rest of a failed request is dropped instead of computed for
	// nobody.
	ictx, cancel := context.WithCancel(ctx)
	defer cancel()
	items := make([]*item[In, Out], len(ins))
	for i := range ins {
		items[i] = b.newItem(ictx, ins[i], tokens[i], p)
		if i > 0 {
			items[i-1].next = items[i]
		}
	}
	if err := b.admit(items[0], len(items), p); err != nil {
		for _, it := range items {
			b.putItem(it)
		}
		return nil, err
	}
	outs := make([]Out, len(ins))
	for i, it := range items {
		var r result[Out]
		select {
		case r = <-it.reply:
		case <-ctx.Done():
			cancel()
			b.poke()
			return outs, ctx.Err()
		}
		b.putItem(it)
		if r.err != nil {
			cancel()
			b.poke()
			if err := ctx.Err(); err != nil {
				return outs, err // dropped because the caller's ctx ended
			}
			return outs, &ItemError{Index: i, Err: r.err}
		}
		outs[i] = r.out
	}
	return outs, nil
}

// Shutdown stops intake (later Submits get ErrClosed), runs every queued
// item to completion without waiting for MaxQueueDelay, waits for in-flight
// batches and stops the Batcher's goroutines. It returns nil when all that is
// done, or ctx.Err() if ctx ends first; the drain then goes on in the
// background and a later Shutdown waits for it again (Abort cuts it short).
// It is safe to call more than once and concurrently.
func (b *Batcher[In, Out]) Shutdown(ctx context.Context) error {
	b.close()
	select {
	case <-b.done:
		return nil
	default:
	}
	select {
	case <-b.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Abort is a forced shutdown: it stops intake as Shutdown does, cancels the
// ctx of every RunFunc call in flight, and fails every item not yet handed
// to RunFunc with ErrAborted, without computing it. An item of a batch in
// flight gets ErrAborted if its RunFunc returns the cancelled ctx's error,
// and its result if RunFunc completes anyway. Abort does not wait; Shutdown
// waits for the in-flight calls to return. It is safe to call more than
// once and concurrently with Shutdown.
func (b *Batcher[In, Out]) Abort() {
	b.close()
	b.stopRun(ErrAborted)
}

// close stops intake; later admissions get ErrClosed.
func (b *Batcher[In, Out]) close() {
	b.closeMu.Lock()
	if !b.closed {
		b.closed = true
		close(b.intake)
	}
	b.closeMu.Unlock()
}

// Len returns the number of admitted items of each priority not yet handed
// to a worker, including cancelled ones not yet purged.
func (b *Batcher[In, Out]) Len() (online, bulk int) {
	return unpackDepth(b.depth.Load())
}

func checkItem(tokens int, p Priority) error {
	if tokens < 0 {
		return fmt.Errorf("%w: %d tokens; want >= 0", ErrInvalidInput, tokens)
	}
	if p != Online && p != Bulk {
		return fmt.Errorf("%w: unknown priority %d", ErrInvalidInput, int(p))
	}
	return nil
}

func (b *Batcher[In, Out]) newItem(ctx context.Context, in In, tokens int, p Priority) *item[In, Out] {
	it := b.items.Get().(*item[In, Out])
	it.ctx, it.in, it.tokens, it.prio = ctx, in, tokens, p
	return it
}

// putItem returns an item to the pool; its reply channel must be empty and
// nobody else may hold it.
func (b *Batcher[In, Out]) putItem(it *item[In, Out]) {
	var zero In
	it.ctx, it.in, it.next = nil, zero, nil
	b.items.Put(it)
}

// admit reserves n queue slots of priority p and sends the chain starting
// at head to the dispatcher, or returns ErrClosed or ErrQueueFull.
func (b *Batcher[In, Out]) admit(head *item[In, Out], n int, p Priority) error {
	b.closeMu.RLock()
	defer b.closeMu.RUnlock()
	if b.closed {
		return ErrClosed
	}
	for {
		d := b.depth.Load()
		online, bulk := unpackDepth(d)
		if online+bulk+n > b.opts.QueueSize {
			return fmt.Errorf("%w: %d queued (online %d, bulk %d) + %d new > QueueSize %d",
				ErrQueueFull, online+bulk, online, bulk, n, b.opts.QueueSize)
		}
		if b.depth.CompareAndSwap(d, d+depthDelta(n, p)) {
			break
		}
	}
	now := time.Now()
	for it := head; it != nil; it = it.next {
		it.enq = now
	}
	b.intake <- head // never blocks: see intake
	return nil
}

// release gives back n queue slots of priority p.
func (b *Batcher[In, Out]) release(n int, p Priority) {
	if n > 0 {
		b.depth.Add(-depthDelta(n, p))
	}
}

func depthDelta(n int, p Priority) uint64 { return uint64(n) << (32 * uint(p)) }

func unpackDepth(d uint64) (online, bulk int) { return int(uint32(d)), int(d >> 32) }

// poke asks the dispatcher to purge items whose ctx ended; it never blocks.
func (b *Batcher[In, Out]) poke() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}
