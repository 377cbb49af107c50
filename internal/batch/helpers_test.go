package batch

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// gateID marks the item of the batch that holds the only worker busy (see
// fake.hold), so that a test can queue items and choose when they run.
const gateID = -1

// gateTokens makes the gate item too large to share a batch, so that it
// runs at once instead of waiting for the queue delay.
const gateTokens = 1 << 30

// fake is the computation under test: it maps x to 10x, records every batch
// it is given, and blocks a batch holding gateID until gate is closed.
type fake struct {
	start time.Time
	gate  chan struct{}
	// compute, when set, is how long each batch takes (inside a synctest
	// bubble, in fake time).
	compute time.Duration
	// fail, when set, decides per-item and batch errors; it may panic.
	fail func(batch []int) ([]error, error)

	mu      sync.Mutex // guards batches
	batches []ran
}

// ran is one RunFunc call: its inputs and when it started, since fake.start.
type ran struct {
	ins []int
	at  time.Duration
}

func newFake() *fake {
	return &fake{start: time.Now(), gate: make(chan struct{})}
}

func (f *fake) run(ctx context.Context, batch []int) ([]int, []error, error) {
	f.mu.Lock()
	f.batches = append(f.batches, ran{slices.Clone(batch), time.Since(f.start)})
	f.mu.Unlock()
	if slices.Contains(batch, gateID) {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
	if f.compute > 0 {
		time.Sleep(f.compute)
	}
	var errs []error
	if f.fail != nil {
		var err error
		if errs, err = f.fail(batch); err != nil {
			return nil, nil, err
		}
	}
	outs := make([]int, len(batch))
	for i, x := range batch {
		outs[i] = 10 * x
	}
	return outs, errs, nil
}

// ran returns the batches run so far, without the gate's.
func (f *fake) ran() []ran {
	f.mu.Lock()
	defer f.mu.Unlock()
	var rs []ran
	for _, r := range f.batches {
		if !slices.Contains(r.ins, gateID) {
			rs = append(rs, r)
		}
	}
	return rs
}

// inputs returns the inputs of the batches run so far, without the gate's.
func (f *fake) inputs() [][]int {
	var ins [][]int
	for _, r := range f.ran() {
		ins = append(ins, r.ins)
	}
	return ins
}

// newBatcher returns a Batcher over f that is shut down when the test ends.
func newBatcher(t *testing.T, f *fake, o Options) *Batcher[int, int] {
	t.Helper()
	b, err := New(f.run, o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		select {
		case <-f.gate:
		default:
			close(f.gate)
		}
		if err := b.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return b
}

// res is what a submitter got.
type res struct {
	out  int
	outs []int
	err  error
}

// submit starts a Submit and, inside a synctest bubble, waits until it is
// queued (or has returned), so that successive calls arrive in call order.
func submit(b *Batcher[int, int], ctx context.Context, x, tokens int, p Priority) <-chan res {
	ch := make(chan res, 1)
	go func() {
		out, err := b.Submit(ctx, x, tokens, p)
		ch <- res{out: out, err: err}
	}()
	synctest.Wait()
	return ch
}

// submitAll is submit for SubmitAll.
func submitAll(b *Batcher[int, int], ctx context.Context, xs, tokens []int, p Priority) <-chan res {
	ch := make(chan res, 1)
	go func() {
		outs, err := b.SubmitAll(ctx, xs, tokens, p)
		ch <- res{outs: outs, err: err}
	}()
	synctest.Wait()
	return ch
}

// hold occupies the Batcher's only worker with the gate item, which is too
// large to share a batch and so runs at once. Items submitted afterwards
// queue until f.gate is closed. The returned function closes the gate and
// waits for everything to settle.
func hold(t *testing.T, b *Batcher[int, int], f *fake) (release func()) {
	t.Helper()
	g := submit(b, context.Background(), gateID, gateTokens, Online)
	return func() {
		t.Helper()
		close(f.gate)
		synctest.Wait()
		if r := <-g; r.err != nil {
			t.Fatalf("gate item: %v", r.err)
		}
	}
}

// recv returns what a submitter got, failing if it has not returned.
func recv(t *testing.T, ch <-chan res) res {
	t.Helper()
	select {
	case r := <-ch:
		return r
	default:
		t.Fatalf("submitter has not returned")
		return res{}
	}
}

// blocked reports whether a submitter is still waiting.
func blocked(ch <-chan res) bool { return len(ch) == 0 }

// counter is an Observer that counts events.
type counter struct {
	mu       sync.Mutex // guards all fields
	batches  int
	items    int
	tokens   int
	padded   int
	runErrs  int
	dropped  []error
	online   int
	bulk     int
	depthSet int
}

func (c *counter) BatchRun(size, tokens, padded int, wait, run time.Duration, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batches++
	c.items += size
	c.tokens += tokens
	c.padded += padded
	if err != nil {
		c.runErrs++
	}
}

func (c *counter) QueueDepth(online, bulk int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.online, c.bulk = online, bulk
	c.depthSet++
}

func (c *counter) Dropped(reason error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropped = append(c.dropped, reason)
}

func (c *counter) droppedCount(target error) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, err := range c.dropped {
		if errors.Is(err, target) {
			n++
		}
	}
	return n
}

var _ Observer = (*counter)(nil)

// seq returns [from, from+n).
func seq(from, n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = from + i
	}
	return s
}

// fill returns n copies of v.
func fill(n, v int) []int { return slices.Repeat([]int{v}, n) }

// settle lets fake time pass, then waits until everything is blocked again,
// so that work due at the end of d has been done.
func settle(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}
