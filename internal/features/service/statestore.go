package service

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/embedd/embedd/internal/features/window"
)

// StateStore keeps entity states. Update is an atomic read-modify-write of
// one entity's state, also across replicas sharing the store; Load reads
// many (pipelined where the store allows).
type StateStore interface {
	// Update loads the state of entity (a new one if absent), calls fn and
	// stores the result. If fn returns an error nothing is stored. fn may
	// run more than once (optimistic retries); it must be a pure function
	// of the state it is given.
	Update(ctx context.Context, entity string, fn func(*State) error) error
	// Load returns one state per entity, nil where absent.
	Load(ctx context.Context, entities []string) ([]*State, error)
	// Scan calls fn with every entity id stored, in no order, until fn
	// returns false.
	Scan(ctx context.Context, fn func(entity string) bool) error
	// Name names the store in errors ("redis", "memory").
	Name() string
}

// ErrUnavailable reports a state store that cannot be reached.
var ErrUnavailable = errors.New("features: state store unavailable")

// Memory is a StateStore in process memory, for the embedded mode: states
// are kept encoded (so a reader never shares a Series with a writer) and
// are lost with the process; bounded by MaxEntities (an Update of a new
// entity beyond it fails).
type Memory struct {
	cfg         window.Config
	maxEntities int

	mu     sync.Mutex
	states map[string][]byte
	locks  map[string]*sync.Mutex
}

// NewMemory returns an empty Memory store.
func NewMemory(cfg window.Config, maxEntities int) *Memory {
	return &Memory{cfg: cfg, maxEntities: maxEntities, states: map[string][]byte{}, locks: map[string]*sync.Mutex{}}
}

// Name implements StateStore.
func (m *Memory) Name() string { return "memory" }

func (m *Memory) lock(entity string) *sync.Mutex {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.locks[entity]
	if l == nil {
		l = &sync.Mutex{}
		m.locks[entity] = l
	}
	return l
}

// Update implements StateStore.
func (m *Memory) Update(ctx context.Context, entity string, fn func(*State) error) error {
	l := m.lock(entity)
	l.Lock()
	defer l.Unlock()
	m.mu.Lock()
	data, ok := m.states[entity]
	full := !ok && len(m.states) >= m.maxEntities
	m.mu.Unlock()
	if full {
		return fmt.Errorf("features: memory state store holds %d entities; limit %d", m.maxEntities, m.maxEntities)
	}
	st := newState()
	if ok {
		var err error
		if st, err = unmarshalState(data, m.cfg); err != nil {
			return err
		}
	}
	if err := fn(st); err != nil {
		return err
	}
	enc, err := st.MarshalBinary()
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.states[entity] = enc
	m.mu.Unlock()
	return nil
}

// Load implements StateStore.
func (m *Memory) Load(ctx context.Context, entities []string) ([]*State, error) {
	out := make([]*State, len(entities))
	for i, e := range entities {
		m.mu.Lock()
		data, ok := m.states[e]
		m.mu.Unlock()
		if !ok {
			continue
		}
		st, err := unmarshalState(data, m.cfg)
		if err != nil {
			return nil, fmt.Errorf("entity %q: %w", e, err)
		}
		out[i] = st
	}
	return out, nil
}

// Scan implements StateStore.
func (m *Memory) Scan(ctx context.Context, fn func(string) bool) error {
	m.mu.Lock()
	ids := make([]string, 0, len(m.states))
	for id := range m.states {
		ids = append(ids, id)
	}
	m.mu.Unlock()
	for _, id := range ids {
		if !fn(id) {
			break
		}
	}
	return nil
}

// Redis is a StateStore on Redis: one string key per entity,
// Prefix + "{" + entity + "}" (default "embedd:fst:{user42}"), holding the
// encoded State, with a TTL (the window horizon plus a margin, refreshed by
// every update, so a quiet entity's state expires once every window is
// empty and reads fall back to the offline layer).
//
// Update is optimistic: WATCH the key, GET, apply, MULTI SET EXEC; a
// concurrent update from another replica aborts the EXEC and the update is
// retried (up to MaxRetries), so no update is lost.
type Redis struct {
	c      goredis.UniversalClient
	cfg    window.Config
	prefix string
	ttl    time.Duration
}

// MaxRetries bounds the optimistic retries of one Redis Update.
const MaxRetries = 64

// NewRedis returns a Redis state store on c (owned by the caller).
func NewRedis(c goredis.UniversalClient, cfg window.Config, prefix string, ttl time.Duration) *Redis {
	if prefix == "" {
		prefix = "embedd:fst:"
	}
	return &Redis{c: c, cfg: cfg, prefix: prefix, ttl: ttl}
}

// Name implements StateStore.
func (r *Redis) Name() string { return "redis" }

// Key returns the key of entity.
func (r *Redis) Key(entity string) string { return r.prefix + "{" + entity + "}" }

func (r *Redis) wrap(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errCorrupt) {
		return err
	}
	return fmt.Errorf("%w: redis: %w", ErrUnavailable, err)
}

// Update implements StateStore.
func (r *Redis) Update(ctx context.Context, entity string, fn func(*State) error) error {
	key := r.Key(entity)
	var fnErr error
	txf := func(tx *goredis.Tx) error {
		data, err := tx.Get(ctx, key).Bytes()
		st := newState()
		switch {
		case errors.Is(err, goredis.Nil):
		case err != nil:
			return err
		default:
			if st, err = unmarshalState(data, r.cfg); err != nil {
				return fmt.Errorf("entity %q: %w", entity, err)
			}
		}
		if fnErr = fn(st); fnErr != nil {
			return fnErr
		}
		enc, err := st.MarshalBinary()
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p goredis.Pipeliner) error {
			p.Set(ctx, key, enc, r.ttl)
			return nil
		})
		return err
	}
	for range MaxRetries {
		err := r.c.Watch(ctx, txf, key)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, goredis.TxFailedErr):
			continue
		case fnErr != nil && errors.Is(err, fnErr):
			return err
		}
		return r.wrap(err)
	}
	return fmt.Errorf("%w: entity %q: %d conflicting updates in a row", ErrUnavailable, entity, MaxRetries)
}

// Load implements StateStore: one pipelined GET per entity.
func (r *Redis) Load(ctx context.Context, entities []string) ([]*State, error) {
	cmds := make([]*goredis.StringCmd, len(entities))
	_, err := r.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, e := range entities {
			cmds[i] = p.Get(ctx, r.Key(e))
		}
		return nil
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, r.wrap(err)
	}
	out := make([]*State, len(entities))
	for i, c := range cmds {
		data, err := c.Bytes()
		if errors.Is(err, goredis.Nil) {
			continue
		}
		if err != nil {
			return nil, r.wrap(err)
		}
		if out[i], err = unmarshalState(data, r.cfg); err != nil {
			return nil, fmt.Errorf("entity %q: %w", entities[i], err)
		}
	}
	return out, nil
}

// Scan implements StateStore with SCAN over the prefix.
func (r *Redis) Scan(ctx context.Context, fn func(string) bool) error {
	it := r.c.Scan(ctx, 0, r.prefix+"{*}", 512).Iterator()
	for it.Next(ctx) {
		k := it.Val()
		id := k[len(r.prefix)+1 : len(k)-1]
		if !fn(id) {
			return nil
		}
	}
	return r.wrap(it.Err())
}
