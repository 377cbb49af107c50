package embedcache

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/maypok86/otter/v2"
)

// Errors of the cache.
var (
	// ErrNoBudget reports Options.MaxBytes <= 0 (a cache that holds nothing).
	ErrNoBudget = errors.New("embedcache: MaxBytes must be positive")
	// ErrShared reports a text whose computation, shared with other calls,
	// failed maxRounds times in a row in those calls.
	ErrShared = errors.New("embedcache: a computation shared with other calls kept failing")
	// ErrCompute reports a ComputeFunc that broke its contract (wrong number
	// of values) or panicked; the waiters of its keys see it and retry.
	ErrCompute = errors.New("embedcache: compute failed")
)

// Key identifies one embedding: everything that changes the vector.
type Key struct {
	// Model is the model's name; Stats and the metrics are labelled by it.
	Model string
	// Version identifies the weights, graph and everything else of the
	// model that changes its output (the engine: manifest version, a digest
	// of the manifest, the backend).
	Version string
	// Dims is the vector's width after Matryoshka truncation.
	Dims int
	// Normalize says the vector is L2-normalized.
	Normalize bool
	// Truncate says a text longer than the model's window was cut.
	Truncate bool
	// Text is the input, byte for byte.
	Text string
}

// Value is one embedding.
type Value struct {
	// Vec is the vector. A Value from Lookup or Fill is the caller's own.
	Vec []float32
	// Tokens is the number of tokens the model saw for the text.
	Tokens int
}

// ComputeFunc computes the values of keys[i] for each i in idx, in the
// order of idx; keys is the slice given to Fill. It returns one Value per
// index, or an error for all of them. The cache copies what it stores, so
// the returned vectors stay the caller's.
type ComputeFunc func(ctx context.Context, idx []int) ([]Value, error)

// Options configures a Cache.
type Options struct {
	// MaxBytes bounds the entries' bytes (see Cost). Required: zero or
	// negative is ErrNoBudget. DefaultOptions: 256 MiB, about 150,000
	// vectors of 384 float32s with short texts.
	MaxBytes int64
}

// DefaultOptions returns the defaults documented on Options.
func DefaultOptions() Options { return Options{MaxBytes: 256 << 20} }

// entryOverhead estimates the bytes of one entry beside its strings and its
// vector: the key and entry structs (string and slice headers, counters),
// otter's node (links, weight, frequency and policy fields) and its hash
// table slot.
const entryOverhead = 192

// maxRounds is how many times Fill takes up a key again after the
// computation it waited for failed in another call.
const maxRounds = 3

// Cost is the bytes an entry of k with a vector of dims float32s counts
// against Options.MaxBytes.
func Cost(k Key, dims int) int64 {
	return entryOverhead + int64(len(k.Model)+len(k.Version)+len(k.Text)) + 4*int64(dims)
}

// entry is a stored value. Its vector is never written after insert.
type entry struct {
	vec    []float32
	tokens int
	stats  *counters
}

// counters are one model's Stats.
type counters struct {
	hits, misses, evictions atomic.Uint64
	bytes, entries          atomic.Int64
}

// call is one key's computation in flight. done is closed once val or err
// is set; neither changes after.
type call struct {
	done chan struct{}
	val  entry
	err  error
}

// Cache is an embedding cache. The zero value is not usable; call New.
type Cache struct {
	store *otter.Cache[Key, entry]

	mu       sync.Mutex // guards inflight
	inflight map[Key]*call

	smu    sync.RWMutex // guards models
	models map[string]*counters

	// waiting, if set (tests), is called before Fill waits for a key that
	// another computation has in flight.
	waiting func(Key)
}

// New returns an empty cache.
func New(opts Options) (*Cache, error) {
	if opts.MaxBytes <= 0 {
		return nil, fmt.Errorf("%w: got %d", ErrNoBudget, opts.MaxBytes)
	}
	store, err := otter.New(&otter.Options[Key, entry]{
		MaximumWeight: uint64(opts.MaxBytes),
		Weigher: func(k Key, e entry) uint32 {
			return uint32(min(Cost(k, len(e.vec)), math.MaxUint32))
		},
		// Runs under otter's bucket lock: atomics only.
		OnAtomicDeletion: func(ev otter.DeletionEvent[Key, entry]) {
			st := ev.Value.stats
			st.bytes.Add(-Cost(ev.Key, len(ev.Value.vec)))
			st.entries.Add(-1)
			if ev.WasEvicted() {
				st.evictions.Add(1)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("embedcache: %w", err)
	}
	return &Cache{store: store, inflight: map[Key]*call{}, models: map[string]*counters{}}, nil
}

// counters returns the counters of model, creating them on first use.
func (c *Cache) counters(model string) *counters {
	c.smu.RLock()
	st := c.models[model]
	c.smu.RUnlock()
	if st != nil {
		return st
	}
	c.smu.Lock()
	defer c.smu.Unlock()
	if st = c.models[model]; st == nil {
		st = &counters{}
		c.models[model] = st
	}
	return st
}

// statsFor finds the counters of each key's model for one call: its keys
// usually share one model, so the map is read once.
type statsFor struct {
	c     *Cache
	model string
	st    *counters
}

func (s *statsFor) of(k Key) *counters {
	if s.st == nil || k.Model != s.model {
		s.model, s.st = k.Model, s.c.counters(k.Model)
	}
	return s.st
}

// Lookup sets vals[i] to a copy of the cached value of keys[i] for each
// cached key and returns the indices of the others, in order. vals must be
// as long as keys.
func (c *Cache) Lookup(keys []Key, vals []Value) (missing []int) {
	sf := statsFor{c: c}
	for i, k := range keys {
		if e, ok := c.store.GetIfPresent(k); ok {
			vals[i] = e.value()
			sf.of(k).hits.Add(1)
			continue
		}
		missing = append(missing, i)
	}
	return missing
}

// Fill sets vals[i] for each i in missing (indices into keys, as Lookup
// returns them): from the cache, from another call's computation of
// keys[i], or from one call of compute for the keys no other call is
// computing. It returns ctx's error if ctx ends first, or compute's error;
// then some vals may be set and others not.
func (c *Cache) Fill(ctx context.Context, keys []Key, vals []Value, missing []int, compute ComputeFunc) error {
	sf := statsFor{c: c}
	pending := missing
	var lastErr error
	for round := 0; len(pending) > 0; round++ {
		if round == maxRounds {
			return fmt.Errorf("%w: texts[%d]: %v", ErrShared, pending[0], lastErr)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		lead, leadCalls, wait, waitCalls := c.claim(keys, vals, pending, &sf)
		if len(lead) > 0 {
			if err := c.lead(ctx, keys, vals, lead, leadCalls, compute, &sf); err != nil {
				return err
			}
		}
		pending = nil
		for j, i := range wait {
			cl := waitCalls[j]
			if c.waiting != nil {
				c.waiting(keys[i])
			}
			select {
			case <-cl.done:
			case <-ctx.Done():
				return ctx.Err()
			}
			if cl.err != nil {
				pending, lastErr = append(pending, i), cl.err
				continue
			}
			vals[i] = cl.val.value()
			sf.of(keys[i]).hits.Add(1)
		}
	}
	return nil
}

// claim sorts pending into keys cached by now (vals set), keys another call
// (or an earlier index of this one) is computing (wait), and keys this call
// will compute (lead), registering those in flight.
func (c *Cache) claim(keys []Key, vals []Value, pending []int, sf *statsFor) (lead []int, leadCalls []*call, wait []int, waitCalls []*call) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, i := range pending {
		k := keys[i]
		if cl := c.inflight[k]; cl != nil {
			wait, waitCalls = append(wait, i), append(waitCalls, cl)
			continue
		}
		// A leader stores its values before it leaves inflight, so a key
		// that is neither in flight nor cached here is not computed.
		if e, ok := c.store.GetIfPresent(k); ok {
			vals[i] = e.value()
			sf.of(k).hits.Add(1)
			continue
		}
		cl := &call{done: make(chan struct{})}
		c.inflight[k] = cl
		lead, leadCalls = append(lead, i), append(leadCalls, cl)
	}
	return lead, leadCalls, wait, waitCalls
}

// lead computes keys[lead], stores and publishes the values, and always
// releases the calls, also when compute fails or panics.
func (c *Cache) lead(ctx context.Context, keys []Key, vals []Value, lead []int, calls []*call, compute ComputeFunc, sf *statsFor) (err error) {
	published := false
	defer func() {
		if !published {
			if err == nil {
				err = fmt.Errorf("%w: it panicked", ErrCompute)
			}
			c.release(keys, lead, calls, err)
		}
	}()
	res, err := compute(ctx, lead)
	if err == nil && len(res) != len(lead) {
		err = fmt.Errorf("%w: %d values for %d keys", ErrCompute, len(res), len(lead))
	}
	if err != nil {
		return err
	}
	for j, i := range lead {
		k, v := keys[i], res[j]
		st := sf.of(k)
		st.misses.Add(1)
		e := entry{vec: slices.Clone(v.Vec), tokens: v.Tokens, stats: st}
		k.Text = strings.Clone(k.Text)
		if _, inserted := c.store.SetIfAbsent(k, e); inserted {
			st.bytes.Add(Cost(k, len(e.vec)))
			st.entries.Add(1)
		}
		calls[j].val = e
		vals[i] = v
	}
	published = true
	c.release(keys, lead, calls, nil)
	return nil
}

// release takes the calls out of flight and wakes their waiters, with err
// if the computation failed.
func (c *Cache) release(keys []Key, lead []int, calls []*call, err error) {
	c.mu.Lock()
	for _, i := range lead {
		delete(c.inflight, keys[i])
	}
	c.mu.Unlock()
	for _, cl := range calls {
		cl.err = err
		close(cl.done)
	}
}

// value returns a copy of e for a caller.
func (e entry) value() Value { return Value{Vec: slices.Clone(e.vec), Tokens: e.tokens} }

// Stats are one model's counters.
type Stats struct {
	// Model is the Key.Model the counters are of.
	Model string
	// Hits counts texts served without computing them for the call.
	Hits uint64
	// Misses counts texts computed.
	Misses uint64
	// Evictions counts entries dropped to stay within MaxBytes.
	Evictions uint64
	// Bytes is the Cost of the model's entries; Entries is their number.
	Bytes, Entries int64
}

// Stats returns each model's counters, by model name.
func (c *Cache) Stats() []Stats {
	c.smu.RLock()
	out := make([]Stats, 0, len(c.models))
	for name, st := range c.models {
		out = append(out, Stats{
			Model: name, Hits: st.hits.Load(), Misses: st.misses.Load(), Evictions: st.evictions.Load(),
			Bytes: st.bytes.Load(), Entries: st.entries.Load(),
		})
	}
	c.smu.RUnlock()
	slices.SortFunc(out, func(a, b Stats) int { return strings.Compare(a.Model, b.Model) })
	return out
}

// MaxBytes reports the bound on the entries' bytes.
func (c *Cache) MaxBytes() int64 { return int64(c.store.GetMaximum()) }
