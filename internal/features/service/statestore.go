package service

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/embedd/embedd/internal/features/window"
	"github.com/embedd/embedd/internal/seal"
	storeredis "github.com/embedd/embedd/internal/store/redis"
)

// StateStore keeps entity states. UpdateBatch is an atomic
// read-modify-write of each entity's state (per entity, not across
// entities), also across replicas sharing the store; Load reads many.
type StateStore interface {
	// UpdateBatch loads the state of every entity (a new one if absent),
	// calls fn(k, state) for entities[k] and stores the results; it returns
	// one error per entity. If fn returns an error that entity's state is
	// not stored. fn may run more than once for an entity (optimistic
	// retries) and concurrently for different entities; it must be a pure
	// function of the state it is given.
	UpdateBatch(ctx context.Context, entities []string, fn func(k int, st *State) error) []error
	// Load returns one state per entity, nil where absent.
	Load(ctx context.Context, entities []string) ([]*State, error)
	// Scan calls fn with every entity id stored, in no order, until fn
	// returns false.
	Scan(ctx context.Context, fn func(entity string) bool) error
	// Name names the store in errors ("redis", "memory").
	Name() string
}

// Revisioner is implemented by state stores that can tell cheaply whether
// states changed: Revisions returns each entity's current revision, ""
// when absent. The service uses it to revalidate cached states with one
// small round trip instead of reloading them.
type Revisioner interface {
	Revisions(ctx context.Context, entities []string) ([]string, error)
}

// ErrUnavailable reports a state store that cannot be reached.
var ErrUnavailable = errors.New("features: state store unavailable")

// Memory is a StateStore in process memory, for the embedded mode: states
// are kept encoded (so a reader never shares a Series with a writer);
// Save and LoadFile carry them across restarts (the server saves
// periodically and at shutdown, so a crash loses the updates since the last
// save).
//
// Bounded: it holds at most MemoryLimits.Entities entities and
// MemoryLimits.Bytes bytes of encoded state (ids included). An update that
// would pass either fails with ErrUnavailable naming the limit and changes
// nothing; the entities already held keep updating (within the bytes).
// Per-entity serialization uses a fixed set of striped locks, so ids that
// are refused leave nothing behind.
type Memory struct {
	cfg    window.Config
	limits MemoryLimits
	stripe [memoryStripes]sync.Mutex

	keys *seal.Keyring // seals the file; nil: plaintext (SetKeys)

	mu     sync.Mutex
	states map[string][]byte
	bytes  int64 // sum of len(id)+len(state) over states
}

// MemoryLimits bound a Memory store.
type MemoryLimits struct {
	// Entities is the most entities held. Required (> 0).
	Entities int
	// Bytes is the most bytes of encoded state, ids included. Required.
	Bytes int64
}

const memoryStripes = 256

// DefaultMemoryBytes is NewMemory's bound on bytes of state.
const DefaultMemoryBytes = 512 << 20

// NewMemory returns an empty Memory store of at most maxEntities entities
// and DefaultMemoryBytes bytes.
func NewMemory(cfg window.Config, maxEntities int) *Memory {
	return NewMemoryLimited(cfg, MemoryLimits{Entities: maxEntities, Bytes: DefaultMemoryBytes})
}

// NewMemoryLimited returns an empty Memory store bounded by limits.
func NewMemoryLimited(cfg window.Config, limits MemoryLimits) *Memory {
	return &Memory{cfg: cfg, limits: limits, states: map[string][]byte{}}
}

// Name implements StateStore.
func (m *Memory) Name() string { return "memory" }

func (m *Memory) lock(entity string) *sync.Mutex {
	h := fnv.New32a()
	h.Write([]byte(entity))
	return &m.stripe[h.Sum32()%memoryStripes]
}

// UpdateBatch implements StateStore.
func (m *Memory) UpdateBatch(ctx context.Context, entities []string, fn func(int, *State) error) []error {
	errs := make([]error, len(entities))
	for k, entity := range entities {
		errs[k] = m.update(entity, func(st *State) error { return fn(k, st) })
	}
	return errs
}

func (m *Memory) update(entity string, fn func(*State) error) error {
	l := m.lock(entity)
	l.Lock()
	defer l.Unlock()
	m.mu.Lock()
	data, ok := m.states[entity]
	n := len(m.states)
	m.mu.Unlock()
	if !ok && n >= m.limits.Entities {
		return fmt.Errorf("%w: the memory state store holds %d entities; limit %d (--feature-state-max-entities)", ErrUnavailable, n, m.limits.Entities)
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
	defer m.mu.Unlock()
	grow := int64(len(enc) - len(data))
	if !ok {
		grow += int64(len(entity))
	}
	if grow > 0 && m.bytes+grow > m.limits.Bytes {
		return fmt.Errorf("%w: entity %q: the memory state store holds %d bytes; this update needs %d more; limit %d (--feature-state-max-bytes)", ErrUnavailable, entity, m.bytes, grow, m.limits.Bytes)
	}
	m.states[entity] = enc
	m.bytes += grow
	return nil
}

// Usage returns the entities and bytes held.
func (m *Memory) Usage() (entities int, bytes int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.states), m.bytes
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

// Redis is a StateStore on Redis: one hash per entity,
// Prefix + "{" + entity + "}" (default "embedd:fst:{user42}"), with fields
// d (the encoded State) and r (a revision counter), and a TTL (the window
// horizon plus a margin, refreshed by every update, so a quiet entity's
// state expires once every window is empty and reads fall back to the
// offline layer).
//
// UpdateBatch is optimistic and costs two round trips per batch, not per
// entity: one pipeline of HMGET d r for every entity, fn in Go, then one
// pipeline of a compare-and-set script (EVALSHA; loaded again only when
// Redis reports NOSCRIPT) per entity that writes only if r is unchanged. Entities another replica updated meanwhile are read and
// applied again (up to MaxRetries), so no update is lost.
type Redis struct {
	c      goredis.UniversalClient
	cfg    window.Config
	prefix string
	ttl    time.Duration
	cas    *goredis.Script
	keys   *seal.Keyring // seals d; nil: plaintext (SetKeys)
}

// MaxRetries bounds the optimistic retries of one entity's update.
const MaxRetries = 64

// casSource sets d and bumps r when r still has the value read.
const casSource = `
local r = redis.call('HGET', KEYS[1], 'r')
if (r or '') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'd', ARGV[2], 'r', tostring((tonumber(r) or 0) + 1))
if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1`

// DefaultRedisPrefix is the key prefix of Redis state hashes when NewRedis
// is given none (cmd/embedd: --redis-feature-prefix).
const DefaultRedisPrefix = "embedd:fst:"

// NewRedis returns a Redis state store on c (owned by the caller); an
// empty prefix means DefaultRedisPrefix.
func NewRedis(c goredis.UniversalClient, cfg window.Config, prefix string, ttl time.Duration) *Redis {
	if prefix == "" {
		prefix = DefaultRedisPrefix
	}
	return &Redis{c: c, cfg: cfg, prefix: prefix, ttl: ttl, cas: goredis.NewScript(casSource)}
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

// UpdateBatch implements StateStore.
func (r *Redis) UpdateBatch(ctx context.Context, entities []string, fn func(int, *State) error) []error {
	errs := make([]error, len(entities))
	todo := make([]int, len(entities))
	for k := range todo {
		todo[k] = k
	}
	for attempt := 0; len(todo) > 0; attempt++ {
		if attempt == MaxRetries {
			for _, k := range todo {
				errs[k] = fmt.Errorf("%w: entity %q: %d conflicting updates in a row", ErrUnavailable, entities[k], MaxRetries)
			}
			break
		}
		reads := make([]*goredis.SliceCmd, len(todo))
		if _, err := r.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for j, k := range todo {
				reads[j] = p.HMGet(ctx, r.Key(entities[k]), "d", "r")
			}
			return nil
		}); err != nil {
			for _, k := range todo {
				errs[k] = r.wrap(err)
			}
			break
		}
		type write struct {
			k        int
			rev, enc string
		}
		var writes []write
		for j, k := range todo {
			vals, _ := reads[j].Result()
			st := newState()
			if d, ok := vals[0].(string); ok {
				var err error
				if st, err = decodeState(r.keys, entities[k], []byte(d), r.cfg); err != nil {
					errs[k] = fmt.Errorf("entity %q: %w", entities[k], err)
					continue
				}
			}
			if err := fn(k, st); err != nil {
				errs[k] = err
				continue
			}
			enc, err := encodeState(r.keys, entities[k], st)
			if err != nil {
				errs[k] = err
				continue
			}
			rev, _ := vals[1].(string)
			writes = append(writes, write{k, rev, string(enc)})
		}
		cas := make([]*goredis.Cmd, len(writes))
		_, err := r.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for j, w := range writes {
				cas[j] = r.cas.EvalSha(ctx, p, []string{r.Key(entities[w.k])}, w.rev, w.enc, r.ttl.Milliseconds())
			}
			return nil
		})
		if err != nil && !isNoScript(err) {
			for _, w := range writes {
				errs[w.k] = r.wrap(err)
			}
			break
		}
		todo = todo[:0]
		reload := false
		for j, w := range writes {
			if isNoScript(cas[j].Err()) {
				reload = true // Redis lost the script (restart, SCRIPT FLUSH)
				todo = append(todo, w.k)
			} else if n, _ := cas[j].Int(); n != 1 {
				todo = append(todo, w.k) // another replica wrote first
			}
		}
		if reload {
			if err := r.cas.Load(ctx, r.c).Err(); err != nil {
				for _, k := range todo {
					errs[k] = r.wrap(err)
				}
				break
			}
		}
	}
	return errs
}

func isNoScript(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") }

// Load implements StateStore: one pipelined HMGET d r per entity.
func (r *Redis) Load(ctx context.Context, entities []string) ([]*State, error) {
	cmds := make([]*goredis.SliceCmd, len(entities))
	_, err := r.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, e := range entities {
			cmds[i] = p.HMGet(ctx, r.Key(e), "d", "r")
		}
		return nil
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, r.wrap(err)
	}
	out := make([]*State, len(entities))
	errs := make([]error, len(entities))
	parallel(len(cmds), func(i int) {
		vals, err := cmds[i].Result()
		if err != nil {
			errs[i] = r.wrap(err)
			return
		}
		data, ok := vals[0].(string)
		if !ok {
			return // absent
		}
		if out[i], err = decodeState(r.keys, entities[i], []byte(data), r.cfg); err != nil {
			errs[i] = fmt.Errorf("entity %q: %w", entities[i], err)
			return
		}
		out[i].Rev, _ = vals[1].(string)
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// parallel runs fn(0..n-1) on up to GOMAXPROCS goroutines, each taking at
// least 8 items, and returns when all are done.
func parallel(n int, fn func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n/8)
	if workers <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				fn(i)
			}
		})
	}
	wg.Wait()
}

// Revisions implements Revisioner: one pipelined HGET r per entity.
func (r *Redis) Revisions(ctx context.Context, entities []string) ([]string, error) {
	cmds := make([]*goredis.StringCmd, len(entities))
	_, err := r.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, e := range entities {
			cmds[i] = p.HGet(ctx, r.Key(e), "r")
		}
		return nil
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, r.wrap(err)
	}
	out := make([]string, len(entities))
	for i, c := range cmds {
		out[i], _ = c.Result()
	}
	return out, nil
}

// Scan implements StateStore with SCAN over the prefix, on every master of
// a Redis Cluster in turn (storeredis.ScanKeys).
func (r *Redis) Scan(ctx context.Context, fn func(string) bool) error {
	return r.wrap(storeredis.ScanKeys(ctx, r.c, r.prefix+"{*}", 512, func(k string) bool {
		return fn(k[len(r.prefix)+1 : len(k)-1])
	}))
}
