package session

import (
	"container/list"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/embedd/embedd/internal/features"
)

var _ Store = (*Memory)(nil)

// MemoryOptions configures Memory. The zero value is valid: each zero field
// takes its default.
type MemoryOptions struct {
	// MaxEntities bounds the entities whose state is kept; when a new
	// entity would exceed it, the least recently touched one is evicted.
	// Default 1<<20 (roughly 200 bytes plus the id per entity, plus the
	// event ids of its session: up to Config.DedupeIDs × (id + 40 bytes)).
	// Negative is invalid.
	MaxEntities int
	// Clock is the wall clock that ages states (Config.TTLMargin). Default
	// features.SystemClock.
	Clock features.Clock
}

// DefaultMemoryOptions returns the defaults: 1<<20 entities on the system
// clock.
func DefaultMemoryOptions() MemoryOptions {
	return MemoryOptions{MaxEntities: 1 << 20, Clock: features.SystemClock{}}
}

// Memory is a Store in process memory, for the embedded mode without
// Redis. A state untouched (by an applied event) for Config.Timeout +
// Config.TTLMargin by the Clock is dropped, as the Redis key would expire;
// expired states are removed lazily, when looked up or when they reach the
// least recently touched end of the list, so memory stays bounded by
// MaxEntities. Safe for concurrent use; a batch is applied under one lock,
// so it is atomic with respect to other calls.
type Memory struct {
	cfg   Config
	clock features.Clock
	max   int

	mu sync.Mutex // guards entries, lru and closed
	// entries maps an entity id to its element in lru.
	entries map[string]*list.Element
	// lru holds *memEntry, most recently touched first.
	lru    *list.List
	closed bool
}

type memEntry struct {
	entity  string
	st      state
	rec     idRecord  // ids of the events the session counted
	touched time.Time // wall clock of the last applied event
}

// NewMemory returns an empty in-memory store.
func NewMemory(cfg Config, opts MemoryOptions) (*Memory, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	d := DefaultMemoryOptions()
	if opts.MaxEntities < 0 {
		return nil, fmt.Errorf("%w: MaxEntities is %d; want >= 0 (0: default %d)", ErrInvalidConfig, opts.MaxEntities, d.MaxEntities)
	}
	if opts.MaxEntities == 0 {
		opts.MaxEntities = d.MaxEntities
	}
	if opts.Clock == nil {
		opts.Clock = d.Clock
	}
	return &Memory{cfg: cfg, clock: opts.Clock, max: opts.MaxEntities, entries: make(map[string]*list.Element), lru: list.New()}, nil
}

// Process applies one event.
func (m *Memory) Process(ctx context.Context, ev features.Event) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, itemError(-1, &ev, err)
	}
	t, err := validateEvent(&ev)
	if err != nil {
		return Result{}, itemError(-1, &ev, err)
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return Result{}, itemError(-1, &ev, ErrClosed)
	}
	st, isNew, dup, err := m.apply(m.clock.Now(), ev.EntityID, t, ev.ID)
	m.mu.Unlock()
	if err != nil {
		return Result{}, itemError(-1, &ev, err)
	}
	res := m.cfg.result(&ev, st, isNew)
	res.Duplicate = dup
	return res, nil
}

// ProcessBatch applies events in order under one lock.
func (m *Memory) ProcessBatch(ctx context.Context, evs []features.Event) ([]Result, []error) {
	res := make([]Result, len(evs))
	ts, errs, ok := prepare(ctx, evs)
	if !ok {
		return res, errs
	}
	type applied struct {
		st         state
		isNew, dup bool
	}
	out := make([]applied, len(evs))
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		closedErrs(evs, errs)
		return res, errs
	}
	now := m.clock.Now()
	for i := range evs {
		if errs[i] != nil {
			continue
		}
		st, isNew, dup, err := m.apply(now, evs[i].EntityID, ts[i], evs[i].ID)
		if err != nil {
			errs[i] = itemError(i, &evs[i], err)
			continue
		}
		out[i] = applied{st, isNew, dup}
	}
	m.mu.Unlock()
	for i := range evs {
		if errs[i] == nil {
			res[i] = m.cfg.result(&evs[i], out[i].st, out[i].isNew)
			res[i].Duplicate = out[i].dup
		}
	}
	return res, errs
}

// apply runs the transition for the event id of entity at event time t,
// wall time now; dup reports a duplicate id (nothing changed). Callers
// hold m.mu.
func (m *Memory) apply(now time.Time, entity string, t int64, id string) (st state, isNew, dup bool, err error) {
	ttl := m.cfg.ttl()
	el := m.entries[entity]
	var prev *state
	rec := newIDRecord()
	if el != nil {
		if e := el.Value.(*memEntry); now.Sub(e.touched) < ttl {
			prev, rec = &e.st, e.rec
		}
	}
	if dup, err := rec.check(prev, id, t, m.cfg.DedupeIDs); dup || err != nil {
		if prev != nil {
			st = *prev
		}
		return st, false, dup, err // unchanged and not touched, as in Redis
	}
	next, isNew, err := transition(prev, entity, t, m.cfg.Timeout)
	if err != nil {
		return next, false, false, err // state unchanged and not touched, as in Redis
	}
	rec.add(id, t, isNew, m.cfg.DedupeIDs)
	if el != nil {
		e := el.Value.(*memEntry)
		e.st, e.rec, e.touched = next, rec, now
		m.lru.MoveToFront(el)
	} else {
		m.entries[entity] = m.lru.PushFront(&memEntry{entity: entity, st: next, rec: rec, touched: now})
	}
	// Drop the expired and, past the bound, the least recently touched. The
	// front element was just touched, so it is never removed (ttl > 0).
	for back := m.lru.Back(); back != nil && back != m.lru.Front(); back = m.lru.Back() {
		e := back.Value.(*memEntry)
		if m.lru.Len() <= m.max && now.Sub(e.touched) < ttl {
			break
		}
		m.lru.Remove(back)
		delete(m.entries, e.entity)
	}
	return next, isNew, false, nil
}

// Len returns the number of entities whose state is held, expired ones not
// yet removed included.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lru.Len()
}

// Close drops all state; later calls fail with ErrClosed.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.entries = nil
	m.lru.Init()
	return nil
}
