package session

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"

	goredis "github.com/redis/go-redis/v9"

	"github.com/embedd/embedd/internal/features"
	storeredis "github.com/embedd/embedd/internal/store/redis"
)

var _ Store = (*Redis)(nil)

// transitionLua is the script source; embedded, never written.
//
//go:embed session.lua
var transitionLua string

// MaxPrefixBytes is the longest RedisOptions.Prefix.
const MaxPrefixBytes = 256

// RedisOptions configures Redis. The zero value is valid.
type RedisOptions struct {
	// Prefix starts every key: Prefix + "{" + entity id + "}". The braces
	// make the entity id the Redis Cluster hash tag. Default "embedd:sess:";
	// at most MaxPrefixBytes.
	Prefix string
}

// DefaultRedisOptions returns the defaults.
func DefaultRedisOptions() RedisOptions { return RedisOptions{Prefix: "embedd:sess:"} }

// Redis is a Store in Redis, so that sessions survive a restart and are
// shared by replicas.
//
// Layout: one hash per entity at Prefix + "{" + entity + "}" (by default
// "embedd:sess:{user42}") with fields
//
//	id     the session id (SessionID)
//	start  session start, Unix nanoseconds, decimal
//	last   last activity, Unix nanoseconds, decimal
//	count  events in the session, decimal
//	i:<event id>  one field per event id the session counted (see
//	              Deduplication): its event time, decimal; at most
//	              Config.DedupeIDs of them
//	n      the number of i: fields, decimal; absent before the first
//	floor  the latest time of an id dropped for that bound; absent when none
//
// and a TTL of Config.Timeout + Config.TTLMargin, refreshed on every applied
// event. An event is applied by a Lua script (session.lua, run with EVALSHA
// and reloaded when the server lacks it) that reads the hash, applies the
// transition and writes it in one atomic step, so replicas racing on one
// entity never lose an update. A batch is one pipeline of scripts, which
// Redis runs in order.
//
// Errors: a connection failure is ErrUnavailable naming "redis"; a hash
// that is not in this layout is ErrCorruptState naming the key.
//
// Concurrency: safe for concurrent use and across processes.
type Redis struct {
	c         goredis.UniversalClient
	cfg       Config
	prefix    string
	script    *goredis.Script
	timeout   string // Config.Timeout in nanoseconds, decimal
	ttlMillis int64
	closed    atomic.Bool
}

// NewRedis returns a Store on c. The caller owns c: Close does not close it,
// so one client can serve several stores. Nothing is sent to the server
// until the first event.
func NewRedis(c goredis.UniversalClient, cfg Config, opts RedisOptions) (*Redis, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: nil redis client", ErrInvalidConfig)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultRedisOptions().Prefix
	}
	if len(opts.Prefix) > MaxPrefixBytes {
		return nil, fmt.Errorf("%w: Prefix is %d bytes; limit %d", ErrInvalidConfig, len(opts.Prefix), MaxPrefixBytes)
	}
	return &Redis{
		c:         c,
		cfg:       cfg,
		prefix:    opts.Prefix,
		script:    goredis.NewScript(transitionLua),
		timeout:   strconv.FormatInt(int64(cfg.Timeout), 10),
		ttlMillis: cfg.ttl().Milliseconds(),
	}, nil
}

// Key returns the key of entityID's state.
func (r *Redis) Key(entityID string) string { return r.prefix + "{" + entityID + "}" }

func (r *Redis) args(ev *features.Event, t int64) []any {
	return []any{strconv.FormatInt(t, 10), r.timeout, r.ttlMillis, ev.EntityID, ev.ID, r.cfg.DedupeIDs}
}

// Process applies one event (EVALSHA, falling back to EVAL when the server
// lacks the script).
func (r *Redis) Process(ctx context.Context, ev features.Event) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, itemError(-1, &ev, err)
	}
	t, err := validateEvent(&ev)
	if err != nil {
		return Result{}, itemError(-1, &ev, err)
	}
	if r.closed.Load() {
		return Result{}, itemError(-1, &ev, ErrClosed)
	}
	cmd := r.script.Run(ctx, r.c, []string{r.Key(ev.EntityID)}, r.args(&ev, t)...)
	st, isNew, dup, err := r.reply(cmd, &ev, t)
	if err != nil {
		return Result{}, itemError(-1, &ev, err)
	}
	res := r.cfg.result(&ev, st, isNew)
	res.Duplicate = dup
	return res, nil
}

// ProcessBatch applies events in order in one pipeline. When the server
// lacks the script (after a restart or SCRIPT FLUSH) every EVALSHA fails
// without effect; the script is then loaded and the failed events are
// retried, in order, in a second pipeline. (Only a flush in the middle of a
// pipeline, with the script loaded again by another client before the
// pipeline ends, could apply a retried event after a later event of the
// same entity; a late event is then counted or rejected by the rule.)
func (r *Redis) ProcessBatch(ctx context.Context, evs []features.Event) ([]Result, []error) {
	res := make([]Result, len(evs))
	ts, errs, ok := prepare(ctx, evs)
	if !ok {
		return res, errs
	}
	if r.closed.Load() {
		closedErrs(evs, errs)
		return res, errs
	}
	cmds := make([]*goredis.Cmd, len(evs))
	run := func(idx []int) {
		pipe := r.c.Pipeline()
		for _, i := range idx {
			cmds[i] = r.script.EvalSha(ctx, pipe, []string{r.Key(evs[i].EntityID)}, r.args(&evs[i], ts[i])...)
		}
		_, _ = pipe.Exec(ctx) // errors are read per command below
	}
	all := make([]int, 0, len(evs))
	for i := range evs {
		if errs[i] == nil {
			all = append(all, i)
		}
	}
	run(all)
	var retry []int
	for _, i := range all {
		if isNoScript(cmds[i].Err()) {
			retry = append(retry, i)
		}
	}
	if len(retry) > 0 {
		if err := r.script.Load(ctx, r.c).Err(); err != nil {
			err = r.wrap(err)
			for _, i := range retry {
				errs[i] = itemError(i, &evs[i], err)
			}
			retry = nil
		}
		if len(retry) > 0 {
			run(retry)
		}
	}
	for _, i := range all {
		if errs[i] != nil {
			continue
		}
		st, isNew, dup, err := r.reply(cmds[i], &evs[i], ts[i])
		if err != nil {
			errs[i] = itemError(i, &evs[i], err)
			continue
		}
		res[i] = r.cfg.result(&evs[i], st, isNew)
		res[i].Duplicate = dup
	}
	return res, errs
}

func isNoScript(err error) bool {
	return err != nil && (errors.Is(err, goredis.ErrNoScript) || goredis.HasErrorPrefix(err, "NOSCRIPT"))
}

// reply reads the script's reply (see session.lua) for event ev at time t;
// dup reports a duplicate id.
func (r *Redis) reply(cmd *goredis.Cmd, ev *features.Event, t int64) (st state, isNew, dup bool, err error) {
	v, err := cmd.Slice()
	if err != nil {
		return state{}, false, false, r.wrap(err)
	}
	key := r.Key(ev.EntityID)
	bad := func(why string) (state, bool, bool, error) {
		return state{}, false, false, fmt.Errorf("%w: key %q: %s (reply %v)", ErrCorruptState, key, why, v)
	}
	if len(v) == 2 {
		if code, _ := v[0].(int64); code == 2 {
			return bad(fmt.Sprint(v[1]))
		}
	}
	if len(v) != 7 {
		return bad("reply has " + strconv.Itoa(len(v)) + " elements; want 7")
	}
	code, ok0 := v[0].(int64)
	id, ok1 := v[1].(string)
	start, ok2 := v[2].(string)
	last, ok3 := v[3].(string)
	count, ok4 := v[4].(int64)
	fresh, ok5 := v[5].(int64)
	floor, ok6 := v[6].(string)
	if !(ok0 && ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return bad("reply elements of the wrong types")
	}
	st = state{id: id, count: count}
	var err1, err2 error
	st.start, err1 = strconv.ParseInt(start, 10, 64)
	st.last, err2 = strconv.ParseInt(last, 10, 64)
	if err1 != nil || err2 != nil || st.start < 0 || st.last < st.start || count < 1 {
		return bad("start, last or count out of range")
	}
	switch code {
	case 0:
		return st, fresh == 1, false, nil
	case 1:
		return st, false, false, outOfOrder(t, st.id, st.start)
	case 3:
		return st, false, true, nil
	case 4:
		f, err := strconv.ParseInt(floor, 10, 64)
		if err != nil {
			return bad("floor out of range")
		}
		return st, false, false, idFloor(ev.ID, t, st.id, f, r.cfg.DedupeIDs)
	}
	return bad("unknown status " + strconv.FormatInt(code, 10))
}

// wrap maps network failures to ErrUnavailable.
func (r *Redis) wrap(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if storeredis.Transient(err) { // network errors, a cluster in transition
		return fmt.Errorf("%w: redis: %w", ErrUnavailable, err)
	}
	return fmt.Errorf("session: redis: %w", err)
}

// Close marks the store closed; it does not close the client.
func (r *Redis) Close() error {
	r.closed.Store(true)
	return nil
}
