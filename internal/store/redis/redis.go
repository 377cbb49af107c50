// Package redis is store.Online on Redis (github.com/redis/go-redis/v9).
//
// Layout: one hash per entity at key Prefix + "{" + id + "}" (default
// prefix "embedd:ent:", so "embedd:ent:{user42}"); the braces make the id
// the Redis Cluster hash tag. Fields:
//
//	emb    int8 embedding as raw bytes
//	scale  float32, decimal
//	mv     model version
//	ts     updated_at, unix milliseconds
//	f:<n>  one numeric feature per field, decimal
//
// Writes: one MULTI/EXEC pipeline per batch with DEL, HSET and (when ttl > 0)
// PEXPIRE per entity, so each entity is replaced whole and never visible
// without its TTL. Reads: one pipeline of HGETALL per id.
//
// Validation: entity ids and a non-negative TTL (store.CheckEntities), and
// Redis's own bound, a TTL of at least 1ms (PEXPIRE); request limits are
// the caller's (internal/index).
//
// Errors: a connection failure is store.ErrUnavailable naming "redis".
//
// Clients: Options and NewClient are embedd's one Redis client
// configuration; cmd/embedd builds the online store's client and the
// feature stores' client from the same Options.
//
// Concurrency: safe for concurrent use (the go-redis client pools
// connections).
package redis

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/embedd/embedd/internal/store"
)

var _ store.Online = (*Online)(nil)

// Options is embedd's one Redis configuration: the connection settings
// every go-redis client of the process is built from (NewClient: the online
// store here and the feature state, session and stream stores of
// internal/features), plus this store's key prefix. Zero fields take the
// defaults of DefaultOptions.
type Options struct {
	// Addr is host:port. Default "127.0.0.1:6379".
	Addr string
	// Username is the ACL user (Redis 6+); empty: the default user.
	Username string
	// Password for AUTH; empty means none. Never logged: cmd/embedd reads
	// it from --redis-password or EMBEDD_REDIS_PASSWORD and prints neither.
	Password string
	// DB is the database number. Default 0.
	DB int
	// Prefix is prepended to every key of the online store (entity
	// hashes). Default "embedd:ent:". NewClient ignores it; the feature
	// stores have their own prefixes.
	Prefix string
	// PoolSize is the connection pool size of each client. Default 10 per
	// CPU (go-redis).
	PoolSize int
	// DialTimeout, ReadTimeout, WriteTimeout bound each network step.
	// Defaults 2s, 1s, 1s; zero means the default. Blocking stream reads
	// (XREADGROUP BLOCK) get their block time plus 10s from go-redis.
	DialTimeout, ReadTimeout, WriteTimeout time.Duration
	// TLS, when not nil, makes the client negotiate TLS with it. Default
	// nil: plaintext.
	TLS *tls.Config
}

// MaxRetries is how often a client built by NewClient retries a command
// after a network error (go-redis's default is 3).
const MaxRetries = 1

// DefaultOptions returns the defaults.
func DefaultOptions() Options {
	return Options{Addr: "127.0.0.1:6379", Prefix: "embedd:ent:", DialTimeout: 2 * time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second}
}

// withDefaults fills the zero fields of opts from DefaultOptions.
func withDefaults(opts Options) Options {
	d := DefaultOptions()
	if opts.Addr == "" {
		opts.Addr = d.Addr
	}
	if opts.Prefix == "" {
		opts.Prefix = d.Prefix
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = d.DialTimeout
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = d.ReadTimeout
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = d.WriteTimeout
	}
	return opts
}

// NewClient returns a go-redis client (connecting lazily) with opts'
// connection settings, defaults applied and MaxRetries retries. It is the
// one place embedd turns Options into a client; the caller owns and closes
// it.
func NewClient(opts Options) *goredis.Client {
	opts = withDefaults(opts)
	return goredis.NewClient(&goredis.Options{
		Addr: opts.Addr, Username: opts.Username, Password: opts.Password, DB: opts.DB, PoolSize: opts.PoolSize,
		DialTimeout: opts.DialTimeout, ReadTimeout: opts.ReadTimeout, WriteTimeout: opts.WriteTimeout,
		MaxRetries: MaxRetries, TLSConfig: opts.TLS,
	})
}

// Online is the Redis-backed online store.
type Online struct {
	c      *goredis.Client
	prefix string
}

// New connects (lazily) to Redis with a client of its own from NewClient;
// use Ping to check reachability.
func New(opts Options) *Online {
	opts = withDefaults(opts)
	return &Online{c: NewClient(opts), prefix: opts.Prefix}
}

// Ping checks that the server answers.
func (o *Online) Ping(ctx context.Context) error {
	return o.wrap(o.c.Ping(ctx).Err())
}

func (o *Online) key(id string) string { return o.prefix + "{" + id + "}" }

// wrap maps network failures to store.ErrUnavailable.
func (o *Online) wrap(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, goredis.ErrClosed) || errors.Is(err, goredis.ErrPoolTimeout) || strings.Contains(err.Error(), "connection refused") {
		return fmt.Errorf("%w: redis: %w", store.ErrUnavailable, err)
	}
	return fmt.Errorf("redis: %w", err)
}

// SetEntities implements store.Online. Besides the data model
// (store.CheckEntities) Redis imposes a TTL of at least 1ms (PEXPIRE).
func (o *Online) SetEntities(ctx context.Context, ents []store.Entity, ttl time.Duration) error {
	if err := store.CheckEntities(ents, ttl); err != nil {
		return err
	}
	if ttl > 0 && ttl < time.Millisecond {
		return fmt.Errorf("%w: ttl %v is under 1ms", store.ErrInvalid, ttl)
	}
	if len(ents) == 0 {
		return nil
	}
	_, err := o.c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		for _, e := range ents {
			k := o.key(e.ID)
			emb := make([]byte, len(e.Embedding))
			for i, v := range e.Embedding {
				emb[i] = byte(v)
			}
			fields := make([]any, 0, 8+2*len(e.Features))
			fields = append(fields,
				"emb", emb,
				"scale", strconv.FormatFloat(float64(e.Scale), 'g', -1, 32),
				"mv", e.ModelVersion,
				"ts", strconv.FormatInt(e.UpdatedAt.UnixMilli(), 10))
			for n, v := range e.Features {
				fields = append(fields, "f:"+n, strconv.FormatFloat(v, 'g', -1, 64))
			}
			p.Del(ctx, k)
			p.HSet(ctx, k, fields...)
			if ttl > 0 {
				p.PExpire(ctx, k, ttl)
			}
		}
		return nil
	})
	return o.wrap(err)
}

// GetEntities implements store.Online.
func (o *Online) GetEntities(ctx context.Context, ids []string) ([]*store.Entity, error) {
	if err := store.CheckEntityIDs(ids); err != nil {
		return nil, err
	}
	out := make([]*store.Entity, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	cmds := make([]*goredis.MapStringStringCmd, len(ids))
	_, err := o.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGetAll(ctx, o.key(id))
		}
		return nil
	})
	if err != nil {
		return nil, o.wrap(err)
	}
	for i, c := range cmds {
		m := c.Val()
		if len(m) == 0 {
			continue
		}
		e, err := decode(ids[i], m)
		if err != nil {
			return nil, fmt.Errorf("redis: key %s: %w", o.key(ids[i]), err)
		}
		out[i] = e
	}
	return out, nil
}

func decode(id string, m map[string]string) (*store.Entity, error) {
	e := &store.Entity{ID: id, ModelVersion: m["mv"]}
	emb := m["emb"]
	e.Embedding = make([]int8, len(emb))
	for i := 0; i < len(emb); i++ {
		e.Embedding[i] = int8(emb[i])
	}
	if s, ok := m["scale"]; ok {
		f, err := strconv.ParseFloat(s, 32)
		if err != nil {
			return nil, fmt.Errorf("field scale: %w", err)
		}
		e.Scale = float32(f)
	}
	if s, ok := m["ts"]; ok {
		ms, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("field ts: %w", err)
		}
		e.UpdatedAt = time.UnixMilli(ms).UTC()
	}
	for k, v := range m {
		name, ok := strings.CutPrefix(k, "f:")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, fmt.Errorf("field %s: %w", k, err)
		}
		if e.Features == nil {
			e.Features = map[string]float64{}
		}
		e.Features[name] = f
	}
	return e, nil
}

// DeleteEntities implements store.Online.
func (o *Online) DeleteEntities(ctx context.Context, ids []string) error {
	if err := store.CheckEntityIDs(ids); err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	_, err := o.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for _, id := range ids {
			p.Del(ctx, o.key(id))
		}
		return nil
	})
	return o.wrap(err)
}

// Close implements store.Online.
func (o *Online) Close() error { return o.c.Close() }
