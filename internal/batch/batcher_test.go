package batch

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// hour is a queue delay no test waits for in real time: inside a synctest
// bubble it passes as soon as everything is blocked, and a batch that runs
// at 0 instead of at hour was flushed for another reason than the delay.
const hour = time.Hour

func TestNewValidates(t *testing.T) {
	run := newFake().run
	for _, tc := range []struct {
		name string
		o    Options
		want string // substring of the error, "" for success
	}{
		{"zero value", Options{}, ""},
		{"defaults", DefaultOptions(), ""},
		{"negative MaxBatchSize", Options{MaxBatchSize: -1}, "MaxBatchSize"},
		{"negative MaxBatchTokens", Options{MaxBatchTokens: -1}, "MaxBatchTokens"},
		{"negative MaxQueueDelay", Options{MaxQueueDelay: -time.Millisecond}, "MaxQueueDelay"},
		{"negative QueueSize", Options{QueueSize: -1}, "QueueSize"},
		{"huge QueueSize", Options{QueueSize: 1<<30 + 1}, "QueueSize"},
		{"negative Workers", Options{Workers: -1}, "Workers"},
		{"negative BulkEvery", Options{BulkEvery: -1}, "BulkEvery"},
		{"negative GroupWindow", Options{GroupWindow: -1}, "GroupWindow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := New(run, tc.o)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("got %v; want nil", err)
				}
				if err := b.Shutdown(context.Background()); err != nil {
					t.Fatalf("Shutdown: got %v; want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v; want ErrInvalidOptions naming %s", err, tc.want)
			}
		})
	}
	if _, err := New[int, int](nil, Options{}); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("nil RunFunc: got %v; want ErrInvalidOptions", err)
	}
}

func TestDefaults(t *testing.T) {
	o, err := Options{MaxBatchSize: 4}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	want := Options{MaxBatchSize: 4, MaxBatchTokens: 8192, QueueSize: 4096, Workers: 1, BulkEvery: 8, BulkBatchSizeWhileOnline: 1, GroupWindow: 16}
	o.Observer = nil
	if o != want {
		t.Errorf("got %+v; want %+v", o, want)
	}
	if o, _ := (Options{MaxBatchSize: 8, GroupWindow: 3}).withDefaults(); o.GroupWindow != 8 {
		t.Errorf("GroupWindow below MaxBatchSize: got %d; want 8", o.GroupWindow)
	}
	if o, _ := (Options{MaxBatchSize: 8, BulkBatchSizeWhileOnline: 64}).withDefaults(); o.BulkBatchSizeWhileOnline != 8 {
		t.Errorf("BulkBatchSizeWhileOnline above MaxBatchSize: got %d; want 8", o.BulkBatchSizeWhileOnline)
	}
}

func TestInvalidInput(t *testing.T) {
	f := newFake()
	b := newBatcher(t, f, DefaultOptions())
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"negative tokens", func() error { _, err := b.Submit(ctx, 1, -1, Online); return err }},
		{"unknown priority", func() error { _, err := b.Submit(ctx, 1, 1, Priority(7)); return err }},
		{"length mismatch", func() error { _, err := b.SubmitAll(ctx, []int{1, 2}, []int{1}, Online); return err }},
		{"negative tokens in request", func() error { _, err := b.SubmitAll(ctx, []int{1, 2}, []int{1, -3}, Bulk); return err }},
	} {
		if err := tc.call(); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("%s: got %v; want ErrInvalidInput", tc.name, err)
		}
	}
	if outs, err := b.SubmitAll(ctx, nil, nil, Online); err != nil || len(outs) != 0 {
		t.Errorf("empty request: got %v, %v; want [], nil", outs, err)
	}
	if got := len(f.ran()); got != 0 {
		t.Errorf("batches run: got %d; want 0", got)
	}
}

func TestFlushBySize(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		b := newBatcher(t, f, Options{MaxBatchSize: 4, MaxQueueDelay: hour})
		release := hold(t, b, f)
		var chs []<-chan res
		for i := range 10 {
			chs = append(chs, submit(b, context.Background(), i, 5, Online))
		}
		release()
		synctest.Wait() // the last, partial batch waits for the delay
		for i, ch := range chs {
			if i < 8 {
				if r := recv(t, ch); r.err != nil || r.out != 10*i {
					t.Errorf("item %d: got %d, %v; want %d, nil", i, r.out, r.err, 10*i)
				}
			} else if !blocked(ch) {
				t.Errorf("item %d returned before the queue delay", i)
			}
		}
		settle(hour)
		synctest.Wait()
		want := []ran{{seq(0, 4), 0}, {seq(4, 4), 0}, {seq(8, 2), hour}}
		if got := f.ran(); !equalRuns(got, want) {
			t.Errorf("got batches %v; want %v", got, want)
		}
	})
}

func TestFlushByTokens(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tokens []int
		want   []ran // inputs are indices into tokens
	}{
		{"padded budget reached", []int{30, 30, 30, 30}, []ran{{[]int{0, 1, 2}, 0}, {[]int{3}, hour}}},
		{"exactly at budget", []int{25, 25, 25, 25, 1}, []ran{{[]int{0, 1, 2, 3}, 0}, {[]int{4}, hour}}},
		{"longest item sets the padding", []int{10, 60, 10}, []ran{{[]int{0, 2}, 0}, {[]int{1}, 0}}}, // 2×60 > 100: nothing can join 60
		{"larger than budget runs alone", []int{150, 10}, []ran{{[]int{0}, 0}, {[]int{1}, hour}}},
		{"under budget waits for the delay", []int{20, 20}, []ran{{[]int{0, 1}, hour}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFake()
				b := newBatcher(t, f, Options{MaxBatchSize: 32, MaxBatchTokens: 100, MaxQueueDelay: hour, FixedQueueDelay: true})
				release := hold(t, b, f)
				for i, tok := range tc.tokens {
					submit(b, context.Background(), i, tok, Online)
				}
				release()
				settle(2 * hour)
				if got := f.ran(); !equalRuns(got, tc.want) {
					t.Errorf("got batches %v; want %v", got, tc.want)
				}
			})
		})
	}
}

func TestFlushByDelay(t *testing.T) {
	for _, tc := range []struct {
		name  string
		delay time.Duration
		gap   time.Duration // between the two submits
		want  []ran
	}{
		// The delay counts from the first item of the forming batch, not
		// from the latest one.
		{"delay from first item", 2 * time.Millisecond, time.Millisecond, []ran{{[]int{0, 1}, 2 * time.Millisecond}}},
		{"first batch leaves", 2 * time.Millisecond, 3 * time.Millisecond, []ran{{[]int{0}, 2 * time.Millisecond}, {[]int{1}, 5 * time.Millisecond}}},
		{"zero delay flushes at once", 0, time.Millisecond, []ran{{[]int{0}, 0}, {[]int{1}, time.Millisecond}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFake()
				b := newBatcher(t, f, Options{MaxQueueDelay: tc.delay, FixedQueueDelay: true})
				a := submit(b, context.Background(), 0, 5, Online)
				time.Sleep(tc.gap)
				c := submit(b, context.Background(), 1, 5, Online)
				settle(hour)
				for i, ch := range []<-chan res{a, c} {
					if r := recv(t, ch); r.err != nil || r.out != 10*i {
						t.Errorf("item %d: got %d, %v; want %d, nil", i, r.out, r.err, 10*i)
					}
				}
				if got := f.ran(); !equalRuns(got, tc.want) {
					t.Errorf("got batches %v; want %v", got, tc.want)
				}
			})
		})
	}
}

// TestAdaptiveFlush: without FixedQueueDelay a partial batch leaves before
// the delay once as many items wait as the last batch of its priority took.
func TestAdaptiveFlush(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		b := newBatcher(t, f, Options{MaxBatchSize: 8, MaxQueueDelay: 2 * time.Millisecond})
		// The first batch has no history: it waits for the delay.
		var chs []<-chan res
		for i := range 3 {
			chs = append(chs, submit(b, context.Background(), i, 5, Online))
		}
		time.Sleep(10 * time.Millisecond)
		// Three items again: the third completes the last batch's size, so
		// they leave without waiting.
		for i := 3; i < 6; i++ {
			chs = append(chs, submit(b, context.Background(), i, 5, Online))
			time.Sleep(100 * time.Microsecond)
		}
		time.Sleep(10 * time.Millisecond)
		// A lone item after a batch of one leaves at once too.
		chs = append(chs, submit(b, context.Background(), 6, 5, Online))
		time.Sleep(10 * time.Millisecond)
		chs = append(chs, submit(b, context.Background(), 7, 5, Online))
		settle(hour)
		for i, ch := range chs {
			if r := recv(t, ch); r.err != nil || r.out != 10*i {
				t.Errorf("item %d: got %d, %v; want %d, nil", i, r.out, r.err, 10*i)
			}
		}
		ms := time.Millisecond
		want := []ran{
			{seq(0, 3), 2 * ms},
			{seq(3, 3), 10*ms + 200*time.Microsecond},
			{[]int{6}, 20*ms + 300*time.Microsecond + 2*ms}, // last batch had 3: waits the delay
			{[]int{7}, 30*ms + 300*time.Microsecond},        // last batch had 1: at once
		}
		if got := f.ran(); !equalRuns(got, want) {
			t.Errorf("got batches %v; want %v", got, want)
		}
	})
}

func TestSubmitAllSplitsAndReassembles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		b := newBatcher(t, f, Options{MaxBatchSize: 8, MaxQueueDelay: time.Millisecond})
		rng := rand.New(rand.NewPCG(1, 2))
		release := hold(t, b, f)
		var chs []<-chan res
		var reqs [][]int
		for r := range 3 { // three requests interleave in batches
			xs := seq(1000*r, 100)
			toks := make([]int, len(xs))
			for i := range toks {
				toks[i] = 1 + rng.IntN(200)
			}
			reqs = append(reqs, xs)
			chs = append(chs, submitAll(b, context.Background(), xs, toks, Bulk))
		}
		release()
		settle(hour)
		for r, ch := range chs {
			got := recv(t, ch)
			if got.err != nil {
				t.Fatalf("request %d: %v", r, got.err)
			}
			for i, x := range reqs[r] {
				if got.outs[i] != 10*x {
					t.Fatalf("request %d item %d: got %d; want %d", r, i, got.outs[i], 10*x)
				}
			}
		}
		runs := f.ran()
		seen := map[int]int{}
		for _, r := range runs {
			if len(r.ins) > 8 {
				t.Errorf("batch of %d; want at most 8", len(r.ins))
			}
			for _, x := range r.ins {
				seen[x]++
			}
		}
		if len(seen) != 300 || len(runs) < 300/8 {
			t.Errorf("got %d distinct items in %d batches; want 300 in at least %d", len(seen), len(runs), 300/8)
		}
		for x, n := range seen {
			if n != 1 {
				t.Errorf("item %d computed %d times; want 1", x, n)
			}
		}
	})
}

func TestQueueFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		b := newBatcher(t, f, Options{QueueSize: 4, MaxBatchSize: 2, MaxQueueDelay: hour})
		release := hold(t, b, f)
		var chs []<-chan res
		for i := range 3 {
			chs = append(chs, submit(b, context.Background(), i, 1, Online))
		}
		start := time.Now()
		// Two items do not fit in the one free slot: neither is admitted.
		_, err := b.SubmitAll(context.Background(), []int{10, 11}, []int{1, 1}, Bulk)
		if !errors.Is(err, ErrQueueFull) || !strings.Contains(err.Error(), "QueueSize 4") || !strings.Contains(err.Error(), "3 queued") {
			t.Errorf("SubmitAll of 2: got %v; want ErrQueueFull naming 3 queued and QueueSize 4", err)
		}
		if on, bu := b.Len(); on != 3 || bu != 0 {
			t.Errorf("Len after rejected request: got %d, %d; want 3, 0", on, bu)
		}
		if _, err := b.SubmitAll(context.Background(), seq(20, 5), fill(5, 1), Bulk); !errors.Is(err, ErrQueueFull) {
			t.Errorf("request larger than QueueSize: got %v; want ErrQueueFull", err)
		}
		chs = append(chs, submitAll(b, context.Background(), []int{3}, []int{1}, Bulk))
		_, err = b.Submit(context.Background(), 4, 1, Online)
		if !errors.Is(err, ErrQueueFull) {
			t.Errorf("Submit to a full queue: got %v; want ErrQueueFull", err)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("rejections took %v; want 0 (never block)", d)
		}
		release()
		settle(2 * hour)
		for i, ch := range chs {
			if r := recv(t, ch); r.err != nil {
				t.Errorf("admitted item %d: %v", i, r.err)
			}
		}
		want := [][]int{{0, 1}, {2}, {3}} // Online first, then Bulk; item 4 and 10, 11 never ran
		if got := f.inputs(); !slices.EqualFunc(got, want, slices.Equal) {
			t.Errorf("got batches %v; want %v", got, want)
		}
	})
}

func TestCancelledItemsNeverComputed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		obs := &counter{}
		b := newBatcher(t, f, Options{MaxQueueDelay: hour, Observer: obs})
		release := hold(t, b, f)
		cctx, cancel := context.WithCancel(context.Background())
		dctx, cancelD := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancelD()
		actx, cancelA := context.WithCancel(context.Background())
		c := submit(b, cctx, 1, 5, Online)
		d := submit(b, dctx, 2, 5, Online)
		live := submit(b, context.Background(), 3, 5, Online)
		all := submitAll(b, actx, []int{4, 5}, []int{5, 5}, Bulk)
		if on, bu := b.Len(); on != 3 || bu != 2 {
			t.Fatalf("Len: got %d, %d; want 3, 2", on, bu)
		}
		cancel()
		cancelA()
		time.Sleep(2 * time.Millisecond) // d's deadline passes while the worker is busy
		// The callers return at once and the dispatcher purges their items.
		if r := recv(t, c); !errors.Is(r.err, context.Canceled) {
			t.Errorf("cancelled Submit: got %v; want context.Canceled", r.err)
		}
		if r := recv(t, d); !errors.Is(r.err, context.DeadlineExceeded) {
			t.Errorf("expired Submit: got %v; want context.DeadlineExceeded", r.err)
		}
		if r := recv(t, all); !errors.Is(r.err, context.Canceled) {
			t.Errorf("cancelled SubmitAll: got %v; want context.Canceled", r.err)
		}
		synctest.Wait()
		if on, bu := b.Len(); on != 1 || bu != 0 {
			t.Errorf("Len after purge: got %d, %d; want 1, 0", on, bu)
		}
		release()
		settle(2 * hour)
		if r := recv(t, live); r.err != nil || r.out != 30 {
			t.Errorf("live item: got %d, %v; want 30, nil", r.out, r.err)
		}
		if got, want := f.inputs(), [][]int{{3}}; !slices.EqualFunc(got, want, slices.Equal) {
			t.Errorf("got batches %v; want %v", got, want)
		}
		if got := obs.droppedCount(context.Canceled); got != 3 {
			t.Errorf("dropped as Canceled: got %d; want 3", got)
		}
		if got := obs.droppedCount(context.DeadlineExceeded); got != 1 {
			t.Errorf("dropped as DeadlineExceeded: got %d; want 1", got)
		}
	})
}

// TestRunBatchSkipsDeadItems covers the last check before compute: items
// whose ctx ends after the dispatcher picked them, while the batch is handed
// to a worker.
func TestRunBatchSkipsDeadItems(t *testing.T) {
	f := newFake()
	obs := &counter{}
	b := newBatcher(t, f, Options{Observer: obs})
	dead, cancel := context.WithCancel(context.Background())
	cancel()
	mk := func(ctx context.Context, x int) *item[int, int] {
		it := b.newItem(ctx, x, 1, Online)
		return it
	}
	for _, tc := range []struct {
		name string
		ctxs []context.Context
		want [][]int
	}{
		{"some dead", []context.Context{dead, context.Background(), dead}, [][]int{{1}}},
		{"all dead skips the call", []context.Context{dead, dead}, nil},
	} {
		f.mu.Lock()
		f.batches = nil
		f.mu.Unlock()
		bt := &batch[int, int]{}
		var its []*item[int, int]
		for i, ctx := range tc.ctxs {
			it := mk(ctx, i)
			its = append(its, it)
			bt.items = append(bt.items, it)
		}
		b.runBatch(bt)
		if got := f.inputs(); !slices.EqualFunc(got, tc.want, slices.Equal) {
			t.Errorf("%s: got batches %v; want %v", tc.name, got, tc.want)
		}
		for i, it := range its {
			r := <-it.reply
			if tc.ctxs[i] == dead && !errors.Is(r.err, context.Canceled) {
				t.Errorf("%s: item %d: got %v; want context.Canceled", tc.name, i, r.err)
			}
			if tc.ctxs[i] != dead && (r.err != nil || r.out != 10*i) {
				t.Errorf("%s: item %d: got %d, %v; want %d, nil", tc.name, i, r.out, r.err, 10*i)
			}
		}
		if len(bt.items) != 0 || len(bt.ins) != 0 {
			t.Errorf("%s: batch buffers not reset: %d items, %d ins", tc.name, len(bt.items), len(bt.ins))
		}
	}
	if got := obs.droppedCount(context.Canceled); got != 4 {
		t.Errorf("dropped: got %d; want 4", got)
	}
}

var errOdd = errors.New("odd input")

func TestPerItemErrorsIsolated(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.fail = func(batch []int) ([]error, error) {
			errs := make([]error, len(batch))
			for i, x := range batch {
				if x%2 == 1 {
					errs[i] = fmt.Errorf("input %d: %w", x, errOdd)
				}
			}
			return errs, nil
		}
		b := newBatcher(t, f, Options{MaxBatchSize: 8, MaxQueueDelay: time.Millisecond})
		var chs []<-chan res
		for i := range 8 {
			chs = append(chs, submit(b, context.Background(), i, 3, Online))
		}
		settle(hour)
		if got := len(f.ran()); got != 1 {
			t.Fatalf("batches: got %d; want 1", got)
		}
		for i, ch := range chs {
			r := recv(t, ch)
			if i%2 == 1 {
				if !errors.Is(r.err, errOdd) || !strings.Contains(r.err.Error(), fmt.Sprintf("input %d:", i)) {
					t.Errorf("item %d: got %v; want its own errOdd", i, r.err)
				}
			} else if r.err != nil || r.out != 10*i {
				t.Errorf("item %d: got %d, %v; want %d, nil", i, r.out, r.err, 10*i)
			}
		}
	})
}

var errBatch = errors.New("device lost")

func TestRunFailures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fail   func([]int) ([]error, error)
		wantIs error
	}{
		{"error", func(batch []int) ([]error, error) {
			if slices.Contains(batch, 0) {
				return nil, errBatch
			}
			return nil, nil
		}, errBatch},
		{"panic", func(batch []int) ([]error, error) {
			if slices.Contains(batch, 0) {
				panic("kernel bug")
			}
			return nil, nil
		}, ErrPanic},
		{"wrong error count", func(batch []int) ([]error, error) {
			if slices.Contains(batch, 0) {
				return []error{nil}, nil
			}
			return nil, nil
		}, ErrBadOutput},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFake()
				f.fail = tc.fail
				obs := &counter{}
				b := newBatcher(t, f, Options{MaxBatchSize: 2, MaxQueueDelay: hour, Observer: obs})
				release := hold(t, b, f)
				var chs []<-chan res
				for i := range 4 {
					chs = append(chs, submit(b, context.Background(), i, 1, Online))
				}
				release()
				if got, want := f.inputs(), [][]int{{0, 1}, {2, 3}}; !slices.EqualFunc(got, want, slices.Equal) {
					t.Fatalf("got batches %v; want %v", got, want)
				}
				for i, ch := range chs {
					r := recv(t, ch)
					if i < 2 && !errors.Is(r.err, tc.wantIs) {
						t.Errorf("item %d in the failed batch: got %v; want %v", i, r.err, tc.wantIs)
					}
					if i >= 2 && (r.err != nil || r.out != 10*i) {
						t.Errorf("item %d in the other batch: got %d, %v; want %d, nil", i, r.out, r.err, 10*i)
					}
				}
				// The Batcher keeps working.
				if out, err := b.Submit(context.Background(), 7, 1, Online); err != nil || out != 70 {
					t.Errorf("after the failure: got %d, %v; want 70, nil", out, err)
				}
				if obs.runErrs != 1 {
					t.Errorf("failed batches observed: got %d; want 1", obs.runErrs)
				}
			})
		})
	}
}

func TestPanicError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		errKernel := errors.New("kernel")
		f := newFake()
		f.fail = func([]int) ([]error, error) { panic(errKernel) }
		b := newBatcher(t, f, Options{MaxQueueDelay: 0})
		_, err := b.Submit(context.Background(), 1, 1, Online)
		var pe *PanicError
		if !errors.As(err, &pe) || !errors.Is(err, ErrPanic) || !errors.Is(err, errKernel) {
			t.Fatalf("got %v; want a *PanicError matching ErrPanic and the panic value", err)
		}
		if !strings.Contains(string(pe.Stack), "panic") || strings.Contains(pe.Error(), "goroutine") {
			t.Errorf("Stack holds the trace and Error() does not: got Error() = %q", pe.Error())
		}
	})
}

func TestWrongOutputCount(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, err := New(func(ctx context.Context, batch []int) ([]int, []error, error) {
			return make([]int, len(batch)-1), nil, nil
		}, Options{MaxQueueDelay: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Shutdown(context.Background())
		_, err = b.SubmitAll(context.Background(), []int{1, 2}, []int{1, 1}, Online)
		var ie *ItemError
		if !errors.Is(err, ErrBadOutput) || !errors.As(err, &ie) || ie.Index != 0 {
			t.Errorf("got %v; want *ItemError at index 0 wrapping ErrBadOutput", err)
		}
	})
}

func TestSubmitAllItemError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.compute = time.Millisecond // lets the caller see the failure between batches
		f.fail = func(batch []int) ([]error, error) {
			errs := make([]error, len(batch))
			for i, x := range batch {
				if x == 3 || x == 7 {
					errs[i] = errOdd
				}
			}
			return errs, nil
		}
		obs := &counter{}
		b := newBatcher(t, f, Options{MaxBatchSize: 2, MaxQueueDelay: time.Millisecond, Observer: obs})
		release := hold(t, b, f)
		ch := submitAll(b, context.Background(), seq(0, 10), fill(10, 4), Online)
		release()
		settle(hour)
		r := recv(t, ch)
		var ie *ItemError
		if !errors.As(r.err, &ie) || ie.Index != 3 || !errors.Is(r.err, errOdd) {
			t.Fatalf("got %v; want *ItemError at index 3 wrapping errOdd", r.err)
		}
		if want := []int{0, 10, 20, 0, 0, 0, 0, 0, 0, 0}; !slices.Equal(r.outs, want) {
			t.Errorf("outputs: got %v; want %v", r.outs, want)
		}
		// Batches are formed only when the worker is free, so after the
		// failure in batch {2, 3} at most the one batch already handed over
		// ran; the rest was dropped.
		n := 0
		for _, ins := range f.inputs() {
			n += len(ins)
		}
		if n > 6 {
			t.Errorf("items computed: got %d; want at most 6", n)
		}
		if got := obs.droppedCount(context.Canceled); got != 10-n {
			t.Errorf("dropped: got %d; want %d", got, 10-n)
		}
	})
}

func TestPriority(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		b := newBatcher(t, f, Options{MaxBatchSize: 2, MaxQueueDelay: hour})
		release := hold(t, b, f)
		bulk := submitAll(b, context.Background(), seq(100, 4), fill(4, 1), Bulk) // older
		online := submitAll(b, context.Background(), seq(0, 3), fill(3, 1), Online)
		if on, bu := b.Len(); on != 3 || bu != 4 {
			t.Errorf("Len: got %d, %d; want 3, 4", on, bu)
		}
		release()
		settle(2 * hour)
		// The partial Online batch waits for its delay; Bulk, though ready,
		// does not run before it.
		want := []ran{{[]int{0, 1}, 0}, {[]int{2}, hour}, {[]int{100, 101}, hour}, {[]int{102, 103}, hour}}
		if got := f.ran(); !equalRuns(got, want) {
			t.Errorf("got batches %v; want %v", got, want)
		}
		for _, ch := range []<-chan res{bulk, online} {
			if r := recv(t, ch); r.err != nil {
				t.Error(r.err)
			}
		}
	})
}

func TestBulkAntiStarvation(t *testing.T) {
	t.Run("backlog", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := newFake()
			b := newBatcher(t, f, Options{MaxBatchSize: 1, BulkEvery: 2, MaxQueueDelay: hour})
			release := hold(t, b, f)
			submitAll(b, context.Background(), seq(100, 3), fill(3, 1), Bulk)
			submitAll(b, context.Background(), seq(0, 6), fill(6, 1), Online)
			release()
			want := [][]int{{0}, {1}, {100}, {2}, {3}, {101}, {4}, {5}, {102}}
			if got := f.inputs(); !slices.EqualFunc(got, want, slices.Equal) {
				t.Errorf("got batches %v; want %v", got, want)
			}
		})
	})
	t.Run("continuous online load", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := newFake()
			f.compute = time.Millisecond
			b, err := New(f.run, Options{MaxBatchSize: 4, BulkEvery: 3, MaxQueueDelay: 100 * time.Microsecond})
			if err != nil {
				t.Fatal(err)
			}
			ctx, stop := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for g := range 8 { // more Online load than the worker can serve
				wg.Go(func() {
					for i := 0; ctx.Err() == nil; i++ {
						b.Submit(ctx, g*1000+i%1000, 1, Online)
					}
				})
			}
			time.Sleep(10 * time.Millisecond)
			bctx, cancelB := context.WithTimeout(context.Background(), time.Second) // fails instead of hanging if Bulk starves
			out, err := b.Submit(bctx, 1_000_000, 1, Bulk)
			cancelB()
			stop()
			wg.Wait()
			b.Shutdown(context.Background())
			if err != nil || out != 10_000_000 {
				t.Fatalf("bulk item: got %d, %v; want 10000000, nil", out, err)
			}
			// Count the Online batches that started after the Bulk item was
			// admitted (at 10ms) and before it ran. One may have been formed in
			// the same instant as the admission; then at most BulkEvery.
			passed, found := 0, false
			for _, r := range f.ran() {
				if slices.Contains(r.ins, 1_000_000) {
					found = true
					break
				}
				if r.at >= 10*time.Millisecond {
					passed++
				}
			}
			if !found || passed > 3+1 {
				t.Errorf("Online batches before the Bulk one: got %d (found %v); want at most BulkEvery+1 = 4", passed, found)
			}
			if n := len(f.ran()); n < 12 {
				t.Errorf("batches: got %d; want a loaded run of at least 12", n)
			}
		})
	})
}

func TestShutdownDrains(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		b := newBatcher(t, f, Options{MaxBatchSize: 4, MaxQueueDelay: hour})
		release := hold(t, b, f)
		var chs []<-chan res
		for i := range 10 {
			chs = append(chs, submit(b, context.Background(), i, 1, Priority(i%2)))
		}
		chs = append(chs, submitAll(b, context.Background(), seq(10, 6), fill(6, 1), Bulk))
		done := make(chan error, 1)
		go func() { done <- b.Shutdown(context.Background()) }()
		synctest.Wait()
		if _, err := b.Submit(context.Background(), 99, 1, Online); !errors.Is(err, ErrClosed) {
			t.Errorf("Submit after Shutdown: got %v; want ErrClosed", err)
		}
		if _, err := b.SubmitAll(context.Background(), []int{99}, []int{1}, Bulk); !errors.Is(err, ErrClosed) {
			t.Errorf("SubmitAll after Shutdown: got %v; want ErrClosed", err)
		}
		if len(done) != 0 {
			t.Fatal("Shutdown returned with items queued")
		}
		start := time.Now()
		release()
		if err := <-done; err != nil {
			t.Fatalf("Shutdown: got %v; want nil", err)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("drain took %v; want 0 (no queue delay while draining)", d)
		}
		n := 0
		for i, ch := range chs {
			r := recv(t, ch)
			if r.err != nil {
				t.Errorf("submitter %d: %v", i, r.err)
			}
			n += max(len(r.outs), 1)
		}
		computed := 0
		for _, ins := range f.inputs() {
			computed += len(ins)
		}
		if n != 16 || computed != 16 {
			t.Errorf("items answered %d, computed %d; want 16, 16", n, computed)
		}
		if err := b.Shutdown(context.Background()); err != nil {
			t.Errorf("second Shutdown: got %v; want nil", err)
		}
	})
}

func TestShutdownTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		b := newBatcher(t, f, Options{MaxQueueDelay: hour})
		release := hold(t, b, f)
		queued := submit(b, context.Background(), 1, 1, Online)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		start := time.Now()
		if err := b.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v; want context.DeadlineExceeded", err)
		}
		if d := time.Since(start); d != 10*time.Millisecond {
			t.Errorf("Shutdown returned after %v; want 10ms", d)
		}
		// The drain goes on: the queued item is still computed.
		release()
		if r := recv(t, queued); r.err != nil || r.out != 10 {
			t.Errorf("queued item: got %d, %v; want 10, nil", r.out, r.err)
		}
		if err := b.Shutdown(context.Background()); err != nil {
			t.Errorf("second Shutdown: got %v; want nil", err)
		}
	})
}

func TestWorkersRunInParallel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const workers = 3
		var active, peak atomic.Int32
		run := func(ctx context.Context, batch []int) ([]int, []error, error) {
			n := active.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			time.Sleep(time.Millisecond)
			active.Add(-1)
			return batch, nil, nil
		}
		b, err := New(run, Options{Workers: workers, MaxBatchSize: 1})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := b.SubmitAll(context.Background(), seq(0, 9), fill(9, 1), Bulk); err != nil {
			t.Fatal(err)
		}
		if err := b.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := peak.Load(); got != workers {
			t.Errorf("concurrent RunFunc calls: got %d; want %d", got, workers)
		}
		if d := time.Since(start); d != 3*time.Millisecond {
			t.Errorf("9 batches of 1ms on %d workers took %v; want 3ms", workers, d)
		}
	})
}

// TestNextBatchFormsDuringCompute checks that items keep queueing and the
// next batch is ready the moment a worker frees: with a 1ms compute and a
// steady stream, every batch after the first is full.
func TestNextBatchFormsDuringCompute(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.compute = time.Millisecond
		b, err := New(f.run, Options{MaxBatchSize: 8, MaxQueueDelay: 0})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for g := range 16 {
			wg.Go(func() {
				for i := range 10 {
					if out, err := b.Submit(context.Background(), g*100+i, 1, Online); err != nil || out != 10*(g*100+i) {
						t.Errorf("got %d, %v; want %d, nil", out, err, 10*(g*100+i))
					}
				}
			})
		}
		wg.Wait()
		b.Shutdown(context.Background())
		runs := f.inputs()
		for i, ins := range runs[1 : len(runs)-2] {
			if len(ins) != 8 {
				t.Errorf("batch %d: got %d items; want 8", i+1, len(ins))
			}
		}
	})
}

func TestConcurrentSubmitters(t *testing.T) {
	const goroutines, perG = 64, 200
	obs := &counter{}
	f := newFake()
	b := newBatcher(t, f, Options{MaxBatchSize: 16, MaxQueueDelay: 50 * time.Microsecond, Workers: 2, Observer: obs})
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			p := Priority(g % 2)
			for i := 0; i < perG; {
				x := g*perG + i
				if g%4 == 3 { // some goroutines send requests of several items
					n := min(1+rng.IntN(20), perG-i)
					xs, toks := seq(x, n), make([]int, n)
					for j := range toks {
						toks[j] = 1 + rng.IntN(300)
					}
					outs, err := b.SubmitAll(context.Background(), xs, toks, p)
					if err != nil {
						t.Errorf("SubmitAll: %v", err)
						return
					}
					for j, out := range outs {
						if out != 10*xs[j] {
							t.Errorf("item %d: got %d; want %d", xs[j], out, 10*xs[j])
						}
					}
					i += n
					continue
				}
				out, err := b.Submit(context.Background(), x, 1+rng.IntN(300), p)
				if err != nil || out != 10*x {
					t.Errorf("item %d: got %d, %v; want %d, nil", x, out, err, 10*x)
				}
				i++
			}
		})
	}
	wg.Wait()
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	seen := make([]int, goroutines*perG)
	for _, ins := range f.inputs() {
		if len(ins) > 16 {
			t.Errorf("batch of %d; want at most 16", len(ins))
		}
		for _, x := range ins {
			seen[x]++
		}
	}
	for x, n := range seen {
		if n != 1 {
			t.Fatalf("item %d computed %d times; want 1", x, n)
		}
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.items != goroutines*perG || obs.online != 0 || obs.bulk != 0 || len(obs.dropped) != 0 {
		t.Errorf("observer: %d items, final depth %d/%d, %d dropped; want %d, 0/0, 0",
			obs.items, obs.online, obs.bulk, len(obs.dropped), goroutines*perG)
	}
	if on, bu := b.Len(); on != 0 || bu != 0 {
		t.Errorf("Len: got %d, %d; want 0, 0", on, bu)
	}
}

func TestObserver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		obs := &counter{}
		b := newBatcher(t, f, Options{MaxBatchSize: 4, MaxQueueDelay: time.Millisecond, Observer: obs})
		release := hold(t, b, f)
		submitAll(b, context.Background(), seq(0, 4), []int{10, 20, 30, 40}, Online)
		synctest.Wait()
		obs.mu.Lock()
		if obs.online != 4 || obs.bulk != 0 {
			t.Errorf("QueueDepth while queued: got %d, %d; want 4, 0", obs.online, obs.bulk)
		}
		obs.mu.Unlock()
		release()
		settle(hour)
		b.Shutdown(context.Background())
		obs.mu.Lock()
		defer obs.mu.Unlock()
		// The gate's batch is the first.
		if obs.batches != 2 || obs.items != 5 || obs.tokens != gateTokens+100 || obs.padded != gateTokens+4*40 {
			t.Errorf("got %d batches, %d items, %d tokens, %d padded; want 2, 5, %d, %d",
				obs.batches, obs.items, obs.tokens, obs.padded, gateTokens+100, gateTokens+160)
		}
		if obs.online != 0 || obs.bulk != 0 {
			t.Errorf("final QueueDepth: got %d, %d; want 0, 0", obs.online, obs.bulk)
		}
	})
}

// TestLengthGroupingPadding runs a backlog of mixed-length items through the
// Batcher with and without length grouping and checks that grouping wastes
// less compute on padding. It logs both efficiencies (sum of tokens / padded
// tokens).
func TestLengthGroupingPadding(t *testing.T) {
	toks := textLengths(rand.New(rand.NewPCG(3, 4)), 1000)
	eff := map[bool]float64{}
	for _, group := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			f := newFake()
			obs := &counter{}
			b := newBatcher(t, f, Options{MaxBatchSize: 32, MaxQueueDelay: hour, DisableLengthGrouping: !group, Observer: obs})
			release := hold(t, b, f)
			ch := submitAll(b, context.Background(), seq(0, len(toks)), toks, Bulk)
			release()
			settle(2 * hour)
			if r := recv(t, ch); r.err != nil {
				t.Fatal(r.err)
			}
			obs.mu.Lock()
			defer obs.mu.Unlock()
			eff[group] = float64(obs.tokens-gateTokens) / float64(obs.padded-gateTokens)
		})
	}
	t.Logf("padding efficiency: FIFO %.3f, length grouping %.3f", eff[false], eff[true])
	if eff[true] < eff[false]+0.2 {
		t.Errorf("efficiency with grouping: got %.3f; want at least FIFO's %.3f + 0.2", eff[true], eff[false])
	}
}

// textLengths draws token counts shaped like real embedding inputs: mostly
// short queries and titles, some paragraphs, a few long documents.
func textLengths(rng *rand.Rand, n int) []int {
	toks := make([]int, n)
	for i := range toks {
		switch u := rng.Float64(); {
		case u < 0.6:
			toks[i] = 4 + rng.IntN(28)
		case u < 0.9:
			toks[i] = 32 + rng.IntN(96)
		default:
			toks[i] = 128 + rng.IntN(385)
		}
	}
	return toks
}

func TestPick(t *testing.T) {
	for _, tc := range []struct {
		name      string
		toks      []int
		size, max int
		group     bool
		want      []int
		wantFull  bool
	}{
		{"fifo takes in order", []int{10, 200, 10, 10}, 3, 1000, false, []int{0, 1, 2}, true},
		{"fifo stops at first misfit", []int{10, 200, 10}, 8, 300, false, []int{0}, true},
		{"fifo not full", []int{10, 20}, 8, 1000, false, []int{0, 1}, false},
		{"group by closeness", []int{10, 200, 12, 9, 500}, 3, 10000, true, []int{0, 2, 3}, true},
		{"group shorter first on ties", []int{10, 12, 8}, 2, 10000, true, []int{0, 2}, true},
		{"group older first on ties", []int{10, 11, 11}, 2, 10000, true, []int{0, 1}, true},
		{"group skips misfits", []int{10, 200, 300, 5}, 8, 600, true, []int{0, 1, 3}, true},
		{"oldest always in", []int{500, 10, 10, 10}, 2, 10000, true, []int{0, 1}, true},
		{"oversized oldest alone", []int{900, 10}, 8, 800, true, []int{0}, true},
		{"all fit, not full", []int{10, 90, 40}, 8, 1000, true, []int{0, 1, 2}, false},
	} {
		got, _, full := pick(tc.toks, tc.size, tc.max, tc.group, nil, nil)
		if !slices.Equal(got, tc.want) || full != tc.wantFull {
			t.Errorf("%s: got %v, full %v; want %v, full %v", tc.name, got, full, tc.want, tc.wantFull)
		}
	}
}

func TestFifo(t *testing.T) {
	var q fifo[int, int]
	items := make([]*item[int, int], 10)
	for i := range items {
		items[i] = &item[int, int]{in: i}
		q.push(items[i])
	}
	q.set(0, nil)
	q.set(2, nil)
	q.set(3, nil)
	q.compact(5)
	var got []int
	for i := range q.len() {
		got = append(got, q.at(i).in)
	}
	if want := []int{1, 4, 5, 6, 7, 8, 9}; !slices.Equal(got, want) {
		t.Errorf("got %v; want %v", got, want)
	}
	for i := range q.len() {
		q.set(i, nil)
	}
	q.compact(q.len())
	if q.len() != 0 || q.head != 0 {
		t.Errorf("emptied queue: got len %d head %d; want 0, 0", q.len(), q.head)
	}
}

// equalRuns compares batches by inputs and start time.
func equalRuns(got, want []ran) bool {
	return slices.EqualFunc(got, want, func(a, b ran) bool { return slices.Equal(a.ins, b.ins) && a.at == b.at })
}

// TestBulkBatchCappedWhileOnline: while Online items arrived within
// OnlineRecent, Bulk batches take at most BulkBatchSizeWhileOnline items,
// so an Online arrival waits for a short run; a Bulk backlog alone gets
// MaxBatchSize again.
func TestBulkBatchCappedWhileOnline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		b := newBatcher(t, f, Options{MaxBatchSize: 8, BulkBatchSizeWhileOnline: 2})
		release := hold(t, b, f)
		bulk := submitAll(b, context.Background(), seq(100, 6), fill(6, 1), Bulk)
		online := submit(b, context.Background(), 0, 1, Online)
		release()
		for _, ch := range []<-chan res{bulk, online} {
			if r := recv(t, ch); r.err != nil {
				t.Fatal(r.err)
			}
		}
		want := [][]int{{0}, {100, 101}, {102, 103}, {104, 105}}
		if got := f.inputs(); !slices.EqualFunc(got, want, slices.Equal) {
			t.Errorf("with Online traffic: got batches %v; want %v", got, want)
		}
		time.Sleep(2 * OnlineRecent)
		if r := recv(t, submitAll(b, context.Background(), seq(200, 6), fill(6, 1), Bulk)); r.err != nil {
			t.Fatal(r.err)
		}
		if got := f.inputs(); !slices.Equal(got[len(got)-1], seq(200, 6)) {
			t.Errorf("Bulk alone: got batches %v; want the last one %v", got, seq(200, 6))
		}
	})
}
