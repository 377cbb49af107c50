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
// Writes: one pipeline per batch of a Lua script per entity (setSource:
// DEL, HSET and, when ttl > 0, PEXPIRE of its one key), so each entity is
// replaced whole and never visible without its TTL; a cluster client sends
// one such pipeline to each master. Reads: one pipeline of HGETALL per id.
//
// Validation: entity ids and a non-negative TTL (store.CheckEntities), and
// Redis's own bound, a TTL of at least 1ms (PEXPIRE); request limits are
// the caller's (internal/index).
//
// Errors: a connection failure is store.ErrUnavailable naming "redis".
//
// Clients: Options and NewClient are embedd's one Redis client
// configuration; cmd/embedd builds the online store's client and the
// feature stores' client from the same Options. Several comma-separated
// addresses in Options.Addr, or Options.Cluster, make NewClient a Redis
// Cluster client (goredis.ClusterClient: it follows MOVED and ASK
// redirections, so a failover moves clients to the promoted replica);
// otherwise it is a single-node client.
//
// Redis Cluster: every key embedd writes carries its entity id as the hash
// tag ("{" + id + "}"), every Lua script (the entity write here, feature
// state compare-and-set and reseal, session transition) is given exactly
// one key, and there is no MULTI/EXEC (go-redis refuses a cluster
// transaction across slots). TestClusterSlots checks the scripts' sources
// and every script call on a real cluster.
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
	"sync"
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
	// Addr is host:port, or several comma-separated host:port seed
	// addresses of a Redis Cluster (any of its nodes; the client discovers
	// the rest). Default "127.0.0.1:6379".
	Addr string
	// Cluster makes NewClient a Redis Cluster client even when Addr holds
	// one address (a cluster's configuration endpoint). Several addresses
	// imply it. Redis Cluster has database 0 only: DB must then be 0.
	Cluster bool
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

// Addrs returns the addresses of Addr (split at commas, spaces trimmed,
// empty parts dropped).
func (o Options) Addrs() []string {
	var out []string
	for _, a := range strings.Split(o.Addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// IsCluster reports whether NewClient builds a Redis Cluster client: with
// Cluster set or several addresses.
func (o Options) IsCluster() bool { return o.Cluster || len(o.Addrs()) > 1 }

// Check reports options NewClient cannot honour: a DB other than 0 for a
// cluster, a cluster without an address.
func (o Options) Check() error {
	if o.IsCluster() && o.DB != 0 {
		return fmt.Errorf("redis: database %d requested for a Redis Cluster (%s), which has database 0 only", o.DB, o.Addr)
	}
	if o.Cluster && len(o.Addrs()) == 0 {
		return errors.New("redis: cluster mode needs at least one address")
	}
	return nil
}

// NewClient returns a go-redis client (connecting lazily) with opts'
// connection settings, defaults applied and MaxRetries retries: a
// *goredis.ClusterClient when opts.IsCluster(), else a *goredis.Client. It
// is the one place embedd turns Options into a client; the caller owns and
// closes it. Options that fail Check are the caller's to refuse first; a
// cluster client ignores DB.
func NewClient(opts Options) goredis.UniversalClient {
	opts = withDefaults(opts)
	if opts.IsCluster() {
		return goredis.NewClusterClient(&goredis.ClusterOptions{
			Addrs: opts.Addrs(), Username: opts.Username, Password: opts.Password, PoolSize: opts.PoolSize,
			DialTimeout: opts.DialTimeout, ReadTimeout: opts.ReadTimeout, WriteTimeout: opts.WriteTimeout,
			MaxRetries: MaxRetries, TLSConfig: opts.TLS,
		})
	}
	return goredis.NewClient(&goredis.Options{
		Addr: opts.Addr, Username: opts.Username, Password: opts.Password, DB: opts.DB, PoolSize: opts.PoolSize,
		DialTimeout: opts.DialTimeout, ReadTimeout: opts.ReadTimeout, WriteTimeout: opts.WriteTimeout,
		MaxRetries: MaxRetries, TLSConfig: opts.TLS,
	})
}

// Online is the Redis-backed online store.
type Online struct {
	c      goredis.UniversalClient
	prefix string
}

// New connects (lazily) to Redis, or a Redis Cluster, with a client of its
// own from NewClient; use Ping to check reachability.
func New(opts Options) *Online {
	opts = withDefaults(opts)
	return &Online{c: NewClient(opts), prefix: opts.Prefix}
}

// Ping checks that the server answers; on a cluster, that every master
// answers (a cluster with a master down cannot serve its slots).
func (o *Online) Ping(ctx context.Context) error {
	return o.wrap(Ping(ctx, o.c))
}

// Ping checks that c's server answers, or every master of c's cluster.
func Ping(ctx context.Context, c goredis.UniversalClient) error {
	if cc, ok := c.(*goredis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, m *goredis.Client) error {
			if err := m.Ping(ctx).Err(); err != nil {
				return fmt.Errorf("master %s: %w", m.Options().Addr, err)
			}
			return nil
		})
	}
	return c.Ping(ctx).Err()
}

func (o *Online) key(id string) string { return o.prefix + "{" + id + "}" }

// wrap maps network failures and transient cluster states to
// store.ErrUnavailable.
func (o *Online) wrap(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if Transient(err) {
		return fmt.Errorf("%w: redis: %w", store.ErrUnavailable, err)
	}
	return fmt.Errorf("redis: %w", err)
}

// ScanKeys calls fn with every key matching pattern (SCAN MATCH, count
// keys per step), in no order, until fn returns false. On a Redis Cluster
// it scans every master in turn (a SCAN reaches one node only; each master
// holds its own slots' keys); fn is never called concurrently. A slot
// that moves between masters during the scan (resharding, failover) may
// have its keys visited twice or missed, as SCAN allows on one node for
// keys written meanwhile.
func ScanKeys(ctx context.Context, c goredis.UniversalClient, pattern string, count int64, fn func(key string) bool) error {
	nodes := []goredis.UniversalClient{c}
	if cc, ok := c.(*goredis.ClusterClient); ok {
		var mu sync.Mutex // ForEachMaster calls its fn concurrently
		nodes = nodes[:0]
		if err := cc.ForEachMaster(ctx, func(_ context.Context, m *goredis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			nodes = append(nodes, m)
			return nil
		}); err != nil {
			return err
		}
	}
	for _, n := range nodes {
		it := n.Scan(ctx, 0, pattern, count).Iterator()
		for it.Next(ctx) {
			if !fn(it.Val()) {
				return nil
			}
		}
		if err := it.Err(); err != nil {
			return err
		}
	}
	return nil
}

// Transient reports errors after which the same command may succeed later:
// network failures, a closed or exhausted pool, and the replies of a
// cluster (or a node) in transition: CLUSTERDOWN, TRYAGAIN, MOVED and ASK
// left after the client's redirections, LOADING, READONLY (a master
// demoted to a replica) and MASTERDOWN. Callers report them as unavailable
// (gRPC UNAVAILABLE), never as a bad request or silently.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, goredis.ErrClosed) || errors.Is(err, goredis.ErrPoolTimeout) || strings.Contains(err.Error(), "connection refused") {
		return true
	}
	if goredis.IsClusterDownError(err) || goredis.IsTryAgainError(err) || goredis.IsLoadingError(err) || goredis.IsReadOnlyError(err) || goredis.IsMasterDownError(err) {
		return true
	}
	if _, moved := goredis.IsMovedError(err); moved {
		return true
	}
	_, ask := goredis.IsAskError(err)
	return ask
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
	args := make([][]any, len(ents))
	for i, e := range ents {
		emb := make([]byte, len(e.Embedding))
		for j, v := range e.Embedding {
			emb[j] = byte(v)
		}
		a := make([]any, 0, 9+2*len(e.Features))
		a = append(a, ttl.Milliseconds(),
			"emb", emb,
			"scale", strconv.FormatFloat(float64(e.Scale), 'g', -1, 32),
			"mv", e.ModelVersion,
			"ts", strconv.FormatInt(e.UpdatedAt.UnixMilli(), 10))
		for n, v := range e.Features {
			a = append(a, "f:"+n, strconv.FormatFloat(v, 'g', -1, 64))
		}
		args[i] = a
	}
	cmds := make([]*goredis.Cmd, len(ents))
	run := func(idx []int) error {
		_, err := o.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for _, i := range idx {
				cmds[i] = setScript.EvalSha(ctx, p, []string{o.key(ents[i].ID)}, args[i]...)
			}
			return nil
		})
		return err
	}
	all := make([]int, len(ents))
	for i := range all {
		all[i] = i
	}
	err := run(all)
	var retry []int
	for _, i := range all {
		if isNoScript(cmds[i].Err()) {
			retry = append(retry, i)
		}
	}
	if len(retry) > 0 { // the server lost the script (restart, failover, SCRIPT FLUSH)
		if err := setScript.Load(ctx, o.c).Err(); err != nil {
			return o.wrap(err)
		}
		err = run(retry)
	}
	if err != nil {
		return o.wrap(err)
	}
	return nil
}

func isNoScript(err error) bool {
	return err != nil && (errors.Is(err, goredis.ErrNoScript) || goredis.HasErrorPrefix(err, "NOSCRIPT"))
}

// setSource replaces one entity's hash: DEL, HSET of the fields (ARGV[2..],
// in chunks under Lua's stack limit) and PEXPIRE when ARGV[1] (TTL, ms) >
// 0, in one atomic step on one key, so a reader never sees an entity half
// written or without its TTL, on one node or a cluster.
const setSource = `
local key = KEYS[1]
redis.call('DEL', key)
for i = 2, #ARGV, 1000 do
  redis.call('HSET', key, unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
if tonumber(ARGV[1]) > 0 then redis.call('PEXPIRE', key, ARGV[1]) end
return 1`

var setScript = goredis.NewScript(setSource)

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
