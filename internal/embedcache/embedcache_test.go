package embedcache

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"sync"
	"testing"
	"unsafe"
)

const dims = 8

// vecOf is the "embedding" of k in these tests: distinct keys get distinct
// vectors.
func vecOf(k Key) []float32 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%#v", k)
	s := h.Sum64()
	v := make([]float32, k.Dims)
	for i := range v {
		v[i] = float32(s>>(i*8)&0xff) + float32(i)/16
	}
	return v
}

// recorder is a ComputeFunc that embeds with vecOf and records the keys of
// each call.
type recorder struct {
	mu    sync.Mutex // guards calls
	calls [][]Key
	// before, if set, runs at the start of each call; a non-nil error fails it.
	before func(ctx context.Context, keys []Key) error
}

func (r *recorder) compute(keys []Key) ComputeFunc {
	return func(ctx context.Context, idx []int) ([]Value, error) {
		ks := make([]Key, len(idx))
		for j, i := range idx {
			ks[j] = keys[i]
		}
		r.mu.Lock()
		r.calls = append(r.calls, ks)
		r.mu.Unlock()
		if r.before != nil {
			if err := r.before(ctx, ks); err != nil {
				return nil, err
			}
		}
		out := make([]Value, len(ks))
		for j, k := range ks {
			out[j] = Value{Vec: vecOf(k), Tokens: len(k.Text) + 2}
		}
		return out, nil
	}
}

func (r *recorder) keysComputed() []Key {
	r.mu.Lock()
	defer r.mu.Unlock()
	var all []Key
	for _, c := range r.calls {
		all = append(all, c...)
	}
	return all
}

func newCache(t testing.TB, maxBytes int64) *Cache {
	t.Helper()
	c, err := New(Options{MaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func keys(model string, texts ...string) []Key {
	out := make([]Key, len(texts))
	for i, s := range texts {
		out[i] = Key{Model: model, Version: "v1", Dims: dims, Normalize: true, Text: s}
	}
	return out
}

// get is one cache call: Lookup, then Fill with r.
func get(ctx context.Context, c *Cache, ks []Key, r *recorder) ([]Value, error) {
	vals := make([]Value, len(ks))
	miss := c.Lookup(ks, vals)
	if len(miss) == 0 {
		return vals, nil
	}
	return vals, c.Fill(ctx, ks, vals, miss, r.compute(ks))
}

// checkVals fails unless vals are the vectors of ks, bit for bit.
func checkVals(t *testing.T, ks []Key, vals []Value) {
	t.Helper()
	for i, k := range ks {
		want := vecOf(k)
		if !bitsEqual(vals[i].Vec, want) {
			t.Errorf("vals[%d] (%q): got %v; want %v", i, k.Text, vals[i].Vec, want)
		}
		if vals[i].Tokens != len(k.Text)+2 {
			t.Errorf("vals[%d].Tokens: got %d; want %d", i, vals[i].Tokens, len(k.Text)+2)
		}
	}
}

func bitsEqual(a, b []float32) bool {
	return slices.EqualFunc(a, b, func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) })
}

func statsOf(c *Cache, model string) Stats {
	for _, s := range c.Stats() {
		if s.Model == model {
			return s
		}
	}
	return Stats{Model: model}
}

func TestNewNeedsBudget(t *testing.T) {
	for _, n := range []int64{0, -1} {
		if _, err := New(Options{MaxBytes: n}); !errors.Is(err, ErrNoBudget) {
			t.Errorf("MaxBytes %d: got %v; want ErrNoBudget", n, err)
		}
	}
}

func TestHitsAndMisses(t *testing.T) {
	c := newCache(t, 1<<20)
	ctx := context.Background()
	var r recorder
	first := keys("m", "a", "b", "c")
	vals, err := get(ctx, c, first, &r)
	if err != nil {
		t.Fatal(err)
	}
	checkVals(t, first, vals)
	// b and c cached, d new: only d is computed, results in order.
	second := keys("m", "d", "b", "c")
	vals, err = get(ctx, c, second, &r)
	if err != nil {
		t.Fatal(err)
	}
	checkVals(t, second, vals)
	if got, want := r.keysComputed(), keys("m", "a", "b", "c", "d"); !slices.Equal(got, want) {
		t.Errorf("computed: got %v; want %v", got, want)
	}
	if len(r.calls) != 2 {
		t.Errorf("compute calls: got %d; want 2 (one per cache call)", len(r.calls))
	}
	s := statsOf(c, "m")
	if s.Hits != 2 || s.Misses != 4 || s.Entries != 4 || s.Evictions != 0 {
		t.Errorf("stats: got %+v; want 2 hits, 4 misses, 4 entries, 0 evictions", s)
	}
	var bytes int64
	for _, k := range first[:3] {
		bytes += Cost(k, dims)
	}
	bytes += Cost(second[0], dims)
	if s.Bytes != bytes {
		t.Errorf("bytes: got %d; want %d", s.Bytes, bytes)
	}
}

func TestDuplicateKeysComputedOnce(t *testing.T) {
	c := newCache(t, 1<<20)
	var r recorder
	ks := keys("m", "x", "y", "x", "x")
	vals, err := get(context.Background(), c, ks, &r)
	if err != nil {
		t.Fatal(err)
	}
	checkVals(t, ks, vals)
	if got, want := r.keysComputed(), keys("m", "x", "y"); !slices.Equal(got, want) {
		t.Errorf("computed: got %v; want %v", got, want)
	}
}

func TestByteBound(t *testing.T) {
	const maxBytes = 64 << 10
	c := newCache(t, maxBytes)
	var r recorder
	ctx := context.Background()
	const n = 2000
	for i := range n {
		ks := keys("m", fmt.Sprintf("text %d", i))
		if _, err := get(ctx, c, ks, &r); err != nil {
			t.Fatal(err)
		}
	}
	c.store.CleanUp()
	s := statsOf(c, "m")
	if w := c.store.WeightedSize(); w > maxBytes {
		t.Errorf("weighted size: got %d; want <= %d", w, maxBytes)
	}
	if s.Bytes > maxBytes || s.Bytes != int64(c.store.WeightedSize()) {
		t.Errorf("stats bytes: got %d; want %d (the store's weight, <= %d)", s.Bytes, c.store.WeightedSize(), maxBytes)
	}
	if s.Evictions == 0 || s.Misses != n || int64(s.Evictions) != n-s.Entries {
		t.Errorf("stats: got %+v; want %d misses, evictions = misses - entries > 0", s, n)
	}
	if int64(c.store.EstimatedSize()) != s.Entries {
		t.Errorf("entries: got %d; want %d", s.Entries, c.store.EstimatedSize())
	}
	// Each key and vector is counted: a longer text costs more.
	small, big := keys("m", "a")[0], keys("m", "a"+string(make([]byte, 1000)))[0]
	if d := Cost(big, dims) - Cost(small, dims); d != 1000 {
		t.Errorf("cost of 1000 more text bytes: got %d; want 1000", d)
	}
	if d := Cost(small, dims+10) - Cost(small, dims); d != 40 {
		t.Errorf("cost of 10 more dims: got %d; want 40", d)
	}
}

func TestSingleflight(t *testing.T) {
	c := newCache(t, 1<<20)
	const n = 32
	release := make(chan struct{})
	var joined sync.WaitGroup
	joined.Add(n - 1)
	c.waiting = func(Key) { joined.Done() }
	r := recorder{before: func(context.Context, []Key) error { <-release; return nil }}
	ks := keys("m", "same")
	var wg sync.WaitGroup
	results := make([][]Value, n)
	errs := make([]error, n)
	for g := range n {
		wg.Go(func() { results[g], errs[g] = get(context.Background(), c, ks, &r) })
	}
	joined.Wait() // n-1 callers wait on the one computation
	close(release)
	wg.Wait()
	for g := range n {
		if errs[g] != nil {
			t.Fatalf("caller %d: %v", g, errs[g])
		}
		checkVals(t, ks, results[g])
	}
	if len(r.calls) != 1 {
		t.Errorf("computations: got %d; want 1", len(r.calls))
	}
	if s := statsOf(c, "m"); s.Hits != n-1 || s.Misses != 1 {
		t.Errorf("stats: got %+v; want %d hits, 1 miss", s, n-1)
	}
}

// TestMixedCall: a call whose keys are cached, in flight in another call,
// and missing computes only the missing ones, in one compute call, and
// returns every value in order.
func TestMixedCall(t *testing.T) {
	c := newCache(t, 1<<20)
	ctx := context.Background()
	var r recorder
	if _, err := get(ctx, c, keys("m", "hit"), &r); err != nil {
		t.Fatal(err)
	}
	// Another call holds "flight" in flight until released.
	started, release := make(chan struct{}), make(chan struct{})
	other := recorder{before: func(context.Context, []Key) error { close(started); <-release; return nil }}
	otherDone := make(chan error, 1)
	go func() {
		_, err := get(ctx, c, keys("m", "flight"), &other)
		otherDone <- err
	}()
	<-started

	joined := make(chan struct{})
	c.waiting = func(Key) { close(joined) }
	var mine recorder
	ks := keys("m", "miss1", "hit", "flight", "miss2")
	done := make(chan struct{})
	var vals []Value
	var err error
	go func() {
		defer close(done)
		vals, err = get(ctx, c, ks, &mine)
	}()
	<-joined // mine computed its misses and waits for "flight"
	if got, want := mine.calls, [][]Key{keys("m", "miss1", "miss2")}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("computed: got %v; want %v (one call, misses only)", got, want)
	}
	close(release)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if err := <-otherDone; err != nil {
		t.Fatal(err)
	}
	checkVals(t, ks, vals)
	if len(mine.calls) != 1 {
		t.Errorf("compute calls: got %d; want 1", len(mine.calls))
	}
}

// TestFailureDoesNotPoison: when the computation a caller waits for fails
// (an error, its leader's ctx cancelled, a panic), nothing is cached and the
// waiter computes the text itself and gets its vector.
func TestFailureDoesNotPoison(t *testing.T) {
	boom := errors.New("model exploded")
	for _, tc := range []struct {
		name string
		// fail makes the leader's computation fail once it runs; cancel
		// cancels the leader's ctx.
		fail func(ctx context.Context) error
	}{
		{"error", func(context.Context) error { return boom }},
		{"cancel", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }},
		{"panic", func(context.Context) error { panic("compute panicked") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache(t, 1<<20)
			ks := keys("m", "t")
			lctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			started, proceed := make(chan struct{}), make(chan struct{})
			leader := recorder{before: func(ctx context.Context, _ []Key) error {
				close(started)
				<-proceed
				return tc.fail(ctx)
			}}
			leaderErr := make(chan any, 1)
			go func() {
				defer func() {
					if p := recover(); p != nil {
						leaderErr <- p
					}
				}()
				_, err := get(lctx, c, ks, &leader)
				leaderErr <- err
			}()
			<-started
			joined := make(chan struct{})
			c.waiting = func(Key) {
				c.waiting = nil // only the first wait
				close(joined)
			}
			var waiter recorder
			done := make(chan struct{})
			var vals []Value
			var err error
			go func() {
				defer close(done)
				vals, err = get(context.Background(), c, ks, &waiter)
			}()
			<-joined
			if tc.name == "cancel" {
				cancel()
			}
			close(proceed)
			if got := <-leaderErr; got == nil {
				t.Errorf("leader: got no error; want its failure")
			}
			<-done
			if err != nil {
				t.Fatalf("waiter: got %v; want its vector", err)
			}
			checkVals(t, ks, vals)
			if len(waiter.calls) != 1 {
				t.Errorf("waiter computations: got %d; want 1 (it recomputes)", len(waiter.calls))
			}
			if s := statsOf(c, "m"); s.Entries != 1 || s.Misses != 1 {
				t.Errorf("stats: got %+v; want 1 entry and 1 miss (the waiter's)", s)
			}
		})
	}
}

// TestWaiterCancelled: a waiter whose ctx ends returns its ctx's error; the
// computation it waited for still completes and is cached.
func TestWaiterCancelled(t *testing.T) {
	c := newCache(t, 1<<20)
	ks := keys("m", "t")
	started, release := make(chan struct{}), make(chan struct{})
	leader := recorder{before: func(context.Context, []Key) error { close(started); <-release; return nil }}
	leaderDone := make(chan error, 1)
	go func() {
		_, err := get(context.Background(), c, ks, &leader)
		leaderDone <- err
	}()
	<-started
	wctx, cancel := context.WithCancel(context.Background())
	c.waiting = func(Key) { cancel() }
	var waiter recorder
	if _, err := get(wctx, c, ks, &waiter); !errors.Is(err, context.Canceled) {
		t.Errorf("waiter: got %v; want context.Canceled", err)
	}
	close(release)
	if err := <-leaderDone; err != nil {
		t.Fatalf("leader: %v", err)
	}
	c.waiting = nil
	vals := make([]Value, 1)
	if miss := c.Lookup(ks, vals); len(miss) != 0 {
		t.Fatalf("after the leader: %v missing; want cached", miss)
	}
	checkVals(t, ks, vals)
	if len(waiter.calls) != 0 {
		t.Errorf("waiter computations: got %d; want 0", len(waiter.calls))
	}
}

// TestSharedFailureGivesUp: a waiter whose shared computation fails in
// other calls maxRounds times in a row gets ErrShared, not another call's
// error as its own.
func TestSharedFailureGivesUp(t *testing.T) {
	c := newCache(t, 1<<20)
	ks := keys("m", "t")
	otherErr := fmt.Errorf("other call: %w", context.Canceled)
	// Another call has the key in flight; each time the waiter waits for
	// it, that call fails and a new one takes the key before the waiter
	// can: the waiter never leads.
	c.inflight[ks[0]] = &call{done: make(chan struct{})}
	rounds := 0
	c.waiting = func(k Key) {
		rounds++
		c.mu.Lock()
		old := c.inflight[k]
		c.inflight[k] = &call{done: make(chan struct{})}
		c.mu.Unlock()
		old.err = otherErr
		close(old.done)
	}
	var mine recorder
	_, err := get(context.Background(), c, ks, &mine)
	if !errors.Is(err, ErrShared) || errors.Is(err, context.Canceled) {
		t.Errorf("got %v; want ErrShared, not the other call's context.Canceled", err)
	}
	if rounds != maxRounds || len(mine.calls) != 0 {
		t.Errorf("rounds %d, computations %d; want %d, 0", rounds, len(mine.calls), maxRounds)
	}
}

// TestKeySensitivity: every field of the key selects its own entry.
func TestKeySensitivity(t *testing.T) {
	base := Key{Model: "m", Version: "v1", Dims: dims, Normalize: true, Truncate: true, Text: "hello"}
	for _, tc := range []struct {
		field string
		mod   func(k *Key)
	}{
		{"Model", func(k *Key) { k.Model = "m2" }},
		{"Version", func(k *Key) { k.Version = "v2" }},
		{"Dims", func(k *Key) { k.Dims = dims / 2 }},
		{"Normalize", func(k *Key) { k.Normalize = false }},
		{"Truncate", func(k *Key) { k.Truncate = false }},
		{"Text", func(k *Key) { k.Text = "hello " }},
		{"Text case", func(k *Key) { k.Text = "Hello" }},
	} {
		t.Run(tc.field, func(t *testing.T) {
			c := newCache(t, 1<<20)
			var r recorder
			if _, err := get(context.Background(), c, []Key{base}, &r); err != nil {
				t.Fatal(err)
			}
			k := base
			tc.mod(&k)
			vals, err := get(context.Background(), c, []Key{k}, &r)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.calls) != 2 {
				t.Errorf("computations: got %d; want 2 (the changed key misses)", len(r.calls))
			}
			checkVals(t, []Key{k}, vals)
		})
	}
}

// TestCopies: neither the caller nor compute can change a cached vector.
func TestCopies(t *testing.T) {
	c := newCache(t, 1<<20)
	ks := keys("m", "t")
	want := vecOf(ks[0])
	var computed []float32
	compute := func(ctx context.Context, idx []int) ([]Value, error) {
		computed = vecOf(ks[0])
		return []Value{{Vec: computed, Tokens: 3}}, nil
	}
	vals := make([]Value, 1)
	if err := c.Fill(context.Background(), ks, vals, c.Lookup(ks, vals), compute); err != nil {
		t.Fatal(err)
	}
	computed[0] = -1 // compute's buffer, also the caller's result
	again := make([]Value, 1)
	c.Lookup(ks, again)
	if !bitsEqual(again[0].Vec, want) {
		t.Fatalf("after compute's buffer changed: got %v; want %v", again[0].Vec, want)
	}
	again[0].Vec[1] = -1 // a hit's vector
	third := make([]Value, 1)
	c.Lookup(ks, third)
	if !bitsEqual(third[0].Vec, want) {
		t.Errorf("after a hit's vector changed: got %v; want %v", third[0].Vec, want)
	}
}

// TestTextCloned: a key does not retain the caller's buffer.
func TestTextCloned(t *testing.T) {
	c := newCache(t, 1<<20)
	buf := []byte("a text inside a bigger buffer")
	k := keys("m", string(buf[2:6]))
	var r recorder
	if _, err := get(context.Background(), c, k, &r); err != nil {
		t.Fatal(err)
	}
	for stored := range c.store.Keys() {
		if unsafeData(stored.Text) == unsafeData(k[0].Text) {
			t.Errorf("stored key shares the caller's text memory")
		}
	}
}

func TestComputeContract(t *testing.T) {
	c := newCache(t, 1<<20)
	ks := keys("m", "a", "b")
	vals := make([]Value, 2)
	short := func(context.Context, []int) ([]Value, error) { return []Value{{Vec: []float32{1}}}, nil }
	if err := c.Fill(context.Background(), ks, vals, c.Lookup(ks, vals), short); !errors.Is(err, ErrCompute) {
		t.Errorf("1 value for 2 keys: got %v; want ErrCompute", err)
	}
	if miss := c.Lookup(ks, vals); len(miss) != 2 {
		t.Errorf("after a broken compute: %d missing; want 2 (nothing cached)", len(miss))
	}
	if len(c.inflight) != 0 {
		t.Errorf("in flight after a broken compute: %d; want 0", len(c.inflight))
	}
}

func TestStatsByModel(t *testing.T) {
	c := newCache(t, 1<<20)
	var r recorder
	ctx := context.Background()
	mixed := append(keys("a", "x", "y"), keys("b", "x")...)
	for range 2 {
		if _, err := get(ctx, c, mixed, &r); err != nil {
			t.Fatal(err)
		}
	}
	got := c.Stats()
	if len(got) != 2 || got[0].Model != "a" || got[1].Model != "b" {
		t.Fatalf("models: got %+v; want a and b", got)
	}
	if got[0].Hits != 2 || got[0].Misses != 2 || got[1].Hits != 1 || got[1].Misses != 1 {
		t.Errorf("got %+v; want a: 2 hits 2 misses, b: 1 hit 1 miss", got)
	}
}

func unsafeData(s string) *byte { return unsafe.StringData(s) }
