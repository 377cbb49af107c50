package batch

import (
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Priority is the class of an item. Online items are always served before
// Bulk items, except for the anti-starvation share described in the package
// documentation.
type Priority int

const (
	Online Priority = iota // interactive requests; always served first when both wait
	Bulk                   // streams and re-embedding jobs
)

func (p Priority) String() string {
	switch p {
	case Online:
		return "online"
	case Bulk:
		return "bulk"
	}
	return fmt.Sprintf("Priority(%d)", int(p))
}

// Options configures a Batcher. The zero value is valid: a zero field takes
// its default, except MaxQueueDelay, where zero means no wait. Start from
// DefaultOptions for the recommended delay. Negative values are rejected.
type Options struct {
	// MaxBatchSize is the most items in one batch. Default 32; 1 disables
	// batching.
	MaxBatchSize int
	// MaxBatchTokens is the most padded tokens in one batch, len(batch) times
	// the largest item's token count. Default 8192. An item larger than this
	// runs alone.
	MaxBatchTokens int
	// MaxQueueDelay is the longest an item waits for a batch to fill,
	// counted from the arrival of the oldest item of the forming batch.
	// DefaultOptions sets 2ms; zero flushes whatever is queued as soon as a
	// worker is free.
	MaxQueueDelay time.Duration
	// FixedQueueDelay makes a partial batch always wait for MaxQueueDelay.
	// By default (false) a batch is also due, before the delay, as soon as
	// its priority has as many items waiting as the last batch of that
	// priority took: the load that formed that batch is back, and waiting
	// longer would add latency, not items. So a lone request at low load
	// (the last batch had one item) runs at once, while under load batches
	// still fill. The first batch of each priority waits as with the flag.
	FixedQueueDelay bool
	// QueueSize bounds the items admitted but not yet handed to a worker, all
	// priorities together; past it admission fails with ErrQueueFull.
	// Default 4096; at most 1<<30.
	QueueSize int
	// Workers is the number of RunFunc calls that may run at once. Default 1.
	Workers int
	// BulkEvery is the anti-starvation share: while Bulk items wait, at most
	// BulkEvery Online batches in a row are formed before one Bulk batch.
	// Default 8, so Bulk gets at least one batch in nine under Online load.
	BulkEvery int
	// BulkBatchSizeWhileOnline is the most items in a Bulk batch while
	// Online traffic is recent (an Online item arrived within OnlineRecent).
	// A batch is never preempted, so an Online request that arrives during
	// a Bulk batch waits for it; smaller Bulk batches bound that wait, and
	// a job running alone still gets MaxBatchSize. Default MaxBatchSize/4
	// (at least 1); MaxBatchSize turns the cap off.
	BulkBatchSizeWhileOnline int
	// GroupWindow is how many of the oldest waiting items of a priority
	// length grouping chooses from. Default 4*MaxBatchSize; a smaller value is
	// raised to MaxBatchSize. Larger windows cut more padding but let an item
	// be passed over by more batches (see the package documentation).
	GroupWindow int
	// DisableLengthGrouping makes batches take items strictly in arrival
	// order (FIFO) instead of grouping similar token lengths.
	DisableLengthGrouping bool
	// RunTimeout is the deadline of each RunFunc call: the ctx a batch runs
	// under ends that long after the call starts, and if RunFunc then
	// returns that ctx's error its items fail with ErrRunTimeout. A RunFunc
	// that does not watch its ctx is not stopped by it. Zero (the default)
	// means no deadline: the batcher cannot know how long a batch may
	// legitimately take, so the owner of the RunFunc chooses.
	RunTimeout time.Duration
	// Observer receives metrics events; nil means none.
	Observer Observer
	// Tracer, if set, records a span named "batch.Run" around each RunFunc
	// call (trace.go): a new root, linked to the span of every request
	// whose items the batch carries (the span in the ctx given to Submit or
	// SubmitAll), with the batch's size, tokens, priority and queue wait.
	// RunFunc's ctx carries it, so RunFunc's own spans are its children.
	// A batch none of whose items came with a span records nothing. Nil
	// (the default) records nothing and reads nothing from callers'
	// contexts.
	Tracer trace.Tracer
	// SpanAttributes are added to every batch span (the engine sets the
	// model's name, version and backend); ignored without Tracer. A Set,
	// not a slice, so that Options stays comparable.
	SpanAttributes attribute.Set
}

// DefaultOptions returns the defaults: batches of up to 32 items and 8192
// padded tokens, a 2ms queue delay, a 4096-item queue, one worker, a Bulk
// batch at least every 8 Online batches and length grouping over the oldest
// 128 items.
func DefaultOptions() Options {
	return Options{
		MaxBatchSize:   32,
		MaxBatchTokens: 8192,
		MaxQueueDelay:  2 * time.Millisecond,
		QueueSize:      4096,
		Workers:        1,
		BulkEvery:      8,
		GroupWindow:    4 * 32,
	}
}

// OnlineRecent is how long after an Online item arrives Bulk batches stay
// capped at Options.BulkBatchSizeWhileOnline.
const OnlineRecent = time.Second

// maxQueueSize keeps each priority's depth within the 32 bits it has in the
// packed depth counter.
const maxQueueSize = 1 << 30

// withDefaults validates o and fills its zero fields.
func (o Options) withDefaults() (Options, error) {
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"MaxBatchSize", int64(o.MaxBatchSize)},
		{"MaxBatchTokens", int64(o.MaxBatchTokens)},
		{"MaxQueueDelay", int64(o.MaxQueueDelay)},
		{"QueueSize", int64(o.QueueSize)},
		{"Workers", int64(o.Workers)},
		{"BulkEvery", int64(o.BulkEvery)},
		{"BulkBatchSizeWhileOnline", int64(o.BulkBatchSizeWhileOnline)},
		{"GroupWindow", int64(o.GroupWindow)},
		{"RunTimeout", int64(o.RunTimeout)},
	} {
		if f.v < 0 {
			return o, fmt.Errorf("%w: %s is %d; want >= 0", ErrInvalidOptions, f.name, f.v)
		}
	}
	if o.QueueSize > maxQueueSize {
		return o, fmt.Errorf("%w: QueueSize is %d; want <= %d", ErrInvalidOptions, o.QueueSize, maxQueueSize)
	}
	d := DefaultOptions()
	if o.MaxBatchSize == 0 {
		o.MaxBatchSize = d.MaxBatchSize
	}
	if o.MaxBatchTokens == 0 {
		o.MaxBatchTokens = d.MaxBatchTokens
	}
	if o.QueueSize == 0 {
		o.QueueSize = d.QueueSize
	}
	if o.Workers == 0 {
		o.Workers = d.Workers
	}
	if o.BulkEvery == 0 {
		o.BulkEvery = d.BulkEvery
	}
	if o.BulkBatchSizeWhileOnline == 0 {
		o.BulkBatchSizeWhileOnline = max(1, o.MaxBatchSize/4)
	}
	o.BulkBatchSizeWhileOnline = min(o.BulkBatchSizeWhileOnline, o.MaxBatchSize)
	if o.GroupWindow == 0 {
		o.GroupWindow = 4 * o.MaxBatchSize
	}
	o.GroupWindow = max(o.GroupWindow, o.MaxBatchSize)
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	return o, nil
}

// Observer receives events for metrics. Implementations must be fast, must
// not block and must be safe for concurrent use: BatchRun and Dropped are
// called from worker goroutines and the dispatcher goroutine. They must not
// call back into the Batcher that reports to them.
type Observer interface {
	// BatchRun reports one RunFunc call: the items it computed, their total
	// and padded token counts (size times the largest count), how long the
	// oldest of them waited since admission, how long RunFunc took and the
	// error that failed the whole batch (nil when it ran, even if single
	// items failed).
	BatchRun(size, tokens, paddedTokens int, wait time.Duration, run time.Duration, err error)
	// QueueDepth reports the admitted, not yet dispatched items of each
	// priority. The dispatcher goroutine alone calls it, after each change it
	// makes or sees, so successive calls are ordered.
	QueueDepth(online, bulk int)
	// Dropped reports an item removed before compute because its context
	// ended (reason is that context's error) or because of Abort (reason is
	// ErrAborted).
	Dropped(reason error)
}

type nopObserver struct{}

func (nopObserver) BatchRun(int, int, int, time.Duration, time.Duration, error) {}
func (nopObserver) QueueDepth(int, int)                                         {}
func (nopObserver) Dropped(error)                                               {}
