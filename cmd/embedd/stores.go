package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/embedd/embedd/internal/index"
	"github.com/embedd/embedd/internal/store/embedded"
	"github.com/embedd/embedd/internal/store/milvus"
	"github.com/embedd/embedd/internal/store/redis"
	"github.com/embedd/embedd/internal/store/wal"
	"github.com/embedd/embedd/internal/tracing"
)

// storeConfig selects the vector and online stores of `embedd serve`. With
// neither --milvus-addr nor --redis-addr the embedded store under
// --data-dir serves both; each one configured replaces the embedded store
// for its role.
type storeConfig struct {
	dataDir           string
	collections       string
	milvusAddr        string
	milvusIndex       string
	milvusMetric      string
	milvusConsistency string
	redisAddr         string
	redisCluster      bool
	redisPassword     string
	redisUser         string
	redisTLS          clientTLS
	milvusUser        string
	milvusPassword    string
	milvusTLS         bool
	milvusTLSFiles    clientTLS
	milvusTimeout     time.Duration
	redisPrefix       string
	entityTTL         time.Duration
	durable           bool
	walDir            string
	walMaxBytes       int64
	hybrid            string
	// trace wraps the stores in spans (internal/tracing); nil: off.
	trace *tracing.Tracing
	// maxItems is the most items of one Upsert and ids of one Get, Delete
	// or UpsertHybrid (index.Limits.MaxItems): serve sets it from
	// --max-client-batch, the one per-request count of the server.
	maxItems int
}

// dir returns --data-dir, or the default data directory when it is empty.
func (c *storeConfig) dir() string {
	if c.dataDir == "" {
		return defaultDataDir()
	}
	return c.dataDir
}

func (c *storeConfig) register(fs *flag.FlagSet) {
	m := milvus.DefaultOptions()
	r := redis.DefaultOptions()
	c.redisTLS.flagPrefix, c.milvusTLSFiles.flagPrefix = "redis-", "milvus-"
	fs.StringVar(&c.dataDir, "data-dir", "", "directory of the embedded store and the WAL (default: $XDG_DATA_HOME/embedd or ~/.local/share/embedd)")
	fs.StringVar(&c.collections, "collections", "default", "comma-separated collections, each NAME or NAME=MODEL (bare names use --model); the first is the default")
	fs.StringVar(&c.milvusAddr, "milvus-addr", "", "Milvus host:port for vectors; empty uses the embedded store")
	fs.StringVar(&c.milvusIndex, "milvus-index", m.Index, "Milvus index for new collections: HNSW or IVF_SQ8")
	fs.StringVar(&c.milvusMetric, "milvus-metric", m.Metric, "Milvus metric for new collections: COSINE or IP")
	fs.StringVar(&c.milvusConsistency, "milvus-consistency", milvus.ConsistencySession, "Milvus read consistency: Session (read-your-writes for this server, ~3 ms searches), Strong (across all clients, one time tick: ~200-400 ms on Milvus 2.3) or Bounded")
	fs.StringVar(&c.redisAddr, "redis-addr", "", "Redis host:port for the online store and the feature stores; several comma-separated host:port are the seeds of a Redis Cluster; empty uses the embedded store")
	fs.BoolVar(&c.redisCluster, "redis-cluster", false, "--redis-addr is a Redis Cluster (implied by several addresses): use the cluster client, which follows MOVED/ASK redirections and failovers")
	fs.StringVar(&c.redisPassword, "redis-password", "", "Redis AUTH password (prefer EMBEDD_REDIS_PASSWORD; never logged)")
	fs.StringVar(&c.redisUser, "redis-user", "", "Redis ACL user (default: the default user)")
	fs.StringVar(&c.redisTLS.ca, "redis-tls-ca", "", "PEM CA bundle of the Redis server's certificate: connect over TLS")
	fs.StringVar(&c.redisTLS.cert, "redis-tls-cert", "", "PEM client certificate for Redis (tls-auth-clients yes)")
	fs.StringVar(&c.redisTLS.key, "redis-tls-key", "", "PEM private key of --redis-tls-cert")
	fs.StringVar(&c.milvusUser, "milvus-user", "", "Milvus user (authorizationEnabled)")
	fs.StringVar(&c.milvusPassword, "milvus-password", "", "Milvus password (prefer EMBEDD_MILVUS_PASSWORD; never logged)")
	fs.BoolVar(&c.milvusTLS, "milvus-tls", false, "connect to Milvus over TLS (server verified against the system roots)")
	fs.StringVar(&c.milvusTLSFiles.ca, "milvus-tls-ca", "", "PEM CA bundle of the Milvus server's certificate: connect over TLS")
	fs.StringVar(&c.milvusTLSFiles.cert, "milvus-tls-cert", "", "PEM client certificate for Milvus (tlsMode 2, mutual TLS)")
	fs.StringVar(&c.milvusTLSFiles.key, "milvus-tls-key", "", "PEM private key of --milvus-tls-cert")
	fs.StringVar(&c.milvusTLSFiles.serverName, "milvus-tls-server-name", "", "name to verify the Milvus certificate against (default: the host of --milvus-addr)")
	fs.DurationVar(&c.milvusTimeout, "milvus-timeout", 30*time.Second, "deadline of every Milvus call; a hung Milvus fails the request UNAVAILABLE")
	fs.StringVar(&c.redisPrefix, "redis-prefix", r.Prefix, "Redis key prefix of entity hashes")
	fs.DurationVar(&c.entityTTL, "entity-ttl", 0, "TTL of online entity rows; 0 keeps them")
	fs.BoolVar(&c.durable, "durable", false, "queue writes a store could not take in a local write-ahead log and replay them when it is back")
	fs.StringVar(&c.walDir, "wal-dir", "", "write-ahead log directory (default: <data-dir>/wal)")
	fs.Int64Var(&c.walMaxBytes, "wal-max-bytes", wal.DefaultMaxBytes, "most bytes of writes the write-ahead log queues during an outage; writes beyond it fail UNAVAILABLE (not acknowledged)")
	fs.StringVar(&c.hybrid, "hybrid", "", `hybrid collections, ";"-separated, each NAME=BASE:FEATURE[*WEIGHT],...:ALPHA, e.g. "docs_h=default:amount_avg_1h,events_count_1h*2:0.3"`)
}

// redisOptions is the one Redis client configuration of serve: the online
// store and the feature stores (featureConfig.open) each build their client
// from it, so both get the same address (one node, or a cluster's seeds
// with --redis-cluster or several addresses), password, ACL user, TLS,
// timeouts, pool size and retries. Each keeps its own client (pool) rather than sharing one: they
// open and close at different times (features first, stores last), and the
// stream consumer's blocking reads and the feature stores' write bursts then
// cannot take pooled connections from entity reads and writes.
func (c *storeConfig) redisOptions() (redis.Options, error) {
	ro := redis.DefaultOptions()
	ro.Addr, ro.Username, ro.Password, ro.Prefix = c.redisAddr, c.redisUser, c.redisPassword, c.redisPrefix
	ro.Cluster = c.redisCluster
	if c.redisCluster && c.redisAddr == "" {
		return ro, fmt.Errorf("%w: --redis-cluster needs --redis-addr (the cluster's seed addresses)", errUsage)
	}
	if err := ro.Check(); err != nil {
		return ro, fmt.Errorf("%w: %v", errUsage, err)
	}
	if c.redisTLS.ca != "" || c.redisTLS.cert != "" {
		cfg, err := c.redisTLS.config()
		if err != nil {
			return ro, fmt.Errorf("redis TLS: %w", err)
		}
		ro.TLS = cfg
	}
	return ro, nil
}

// parseHybrid reads the --hybrid flag.
func parseHybrid(spec string) ([]index.HybridConfig, error) {
	var out []index.HybridConfig
	for _, part := range strings.Split(spec, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, rest, ok := strings.Cut(part, "=")
		fields := strings.Split(rest, ":")
		if !ok || len(fields) != 3 {
			return nil, fmt.Errorf("%w: --hybrid %q: want NAME=BASE:FEATURES:ALPHA", errUsage, part)
		}
		alpha, err := strconv.ParseFloat(fields[2], 64)
		if err != nil {
			return nil, fmt.Errorf("%w: --hybrid %q: alpha: %v", errUsage, part, err)
		}
		hc := index.HybridConfig{Name: name, Base: fields[0], Alpha: alpha, Weights: map[string]float64{}}
		for _, f := range strings.Split(fields[1], ",") {
			fname, w, weighted := strings.Cut(strings.TrimSpace(f), "*")
			hc.Features = append(hc.Features, fname)
			if weighted {
				if hc.Weights[fname], err = strconv.ParseFloat(w, 64); err != nil {
					return nil, fmt.Errorf("%w: --hybrid %q: weight of %s: %v", errUsage, part, fname, err)
				}
			}
		}
		out = append(out, hc)
	}
	return out, nil
}

// openedStores is what serve holds open.
type openedStores struct {
	idx     *index.Index
	closers []func() error
	probes  []probe // the remote stores, for health
}

func (o *openedStores) close() {
	for i := len(o.closers) - 1; i >= 0; i-- {
		o.closers[i]()
	}
}

func defaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "embedd")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "share", "embedd")
	}
	return filepath.Join(os.TempDir(), "embedd-data")
}

// parseCollections reads "a,b=model" into configs.
func parseCollections(spec, defaultModel string) ([]index.CollectionConfig, error) {
	var out []index.CollectionConfig
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, model, ok := strings.Cut(part, "=")
		if !ok {
			model = defaultModel
		}
		out = append(out, index.CollectionConfig{Name: strings.TrimSpace(name), Model: strings.TrimSpace(model)})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: --collections is empty", errUsage)
	}
	return out, nil
}

// open connects the configured stores and builds the index.
func (c *storeConfig) open(ctx context.Context, emb index.Embedder, defaultModel string, feats index.FeatureSource, logger *slog.Logger) (_ *openedStores, err error) {
	o := &openedStores{}
	defer func() {
		if err != nil {
			o.close()
		}
	}()
	colls, err := parseCollections(c.collections, defaultModel)
	if err != nil {
		return nil, err
	}
	dataDir := c.dir()
	var emb2 *embedded.Store
	needEmbedded := c.milvusAddr == "" || c.redisAddr == ""
	if needEmbedded {
		eo := embedded.DefaultOptions(filepath.Join(dataDir, "store"))
		eo.Logger = logger
		if emb2, err = embedded.Open(eo); err != nil {
			return nil, fmt.Errorf("embedded store: %w", err)
		}
		o.closers = append(o.closers, emb2.Close)
	}
	hybrids, err := parseHybrid(c.hybrid)
	if err != nil {
		return nil, err
	}
	if len(hybrids) > 0 && feats == nil {
		return nil, fmt.Errorf("%w: --hybrid needs the feature service (--features)", errUsage)
	}
	opts := index.Options{Collections: colls, EntityTTL: c.entityTTL, Logger: logger, Hybrid: hybrids, SnapshotDir: dataDir, Limits: index.DefaultLimits()}
	if c.maxItems > 0 {
		opts.Limits.MaxItems = c.maxItems
	}
	if feats != nil {
		opts.Features = feats
	}
	if c.milvusAddr != "" {
		mo := milvus.DefaultOptions()
		mo.Address, mo.Index, mo.Metric, mo.Consistency = c.milvusAddr, c.milvusIndex, c.milvusMetric, c.milvusConsistency
		mo.Username, mo.Password, mo.TLS, mo.CallTimeout = c.milvusUser, c.milvusPassword, c.milvusTLS, c.milvusTimeout
		if f := c.milvusTLSFiles; f.ca != "" || f.cert != "" || f.key != "" {
			cfg, err := f.config()
			if err != nil {
				return nil, fmt.Errorf("milvus TLS: %w", err)
			}
			mo.TLSConfig = cfg
		}
		mv, err := milvus.New(ctx, mo)
		if err != nil {
			return nil, fmt.Errorf("milvus at %s: %w", c.milvusAddr, err)
		}
		o.closers = append(o.closers, mv.Close)
		opts.Vectors, opts.VectorsName = c.trace.Vectors(mv, "milvus"), "milvus"
		probeColl := colls[0].Name
		o.probes = append(o.probes, probe{name: "milvus", services: []string{vectorService, jobService}, check: func(ctx context.Context) error {
			_, err := mv.Get(ctx, probeColl, []string{"embedd-health-probe"})
			return err
		}})
	} else {
		opts.Vectors, opts.VectorsName = c.trace.Vectors(emb2, "embedded"), "embedded"
	}
	if c.redisAddr != "" {
		ropts, err := c.redisOptions()
		if err != nil {
			return nil, err
		}
		rd := redis.New(ropts)
		o.closers = append(o.closers, rd.Close)
		if err := rd.Ping(ctx); err != nil && !c.durable {
			return nil, fmt.Errorf("redis at %s: %w", c.redisAddr, err)
		} else if err != nil {
			logger.Warn("redis unreachable at start; writes queue in the WAL", "addr", c.redisAddr, "err", err)
		}
		opts.Online, opts.OnlineName = c.trace.Online(rd, "redis"), "redis"
		o.probes = append(o.probes, probe{name: "redis", services: []string{vectorService, jobService}, check: rd.Ping})
	} else {
		opts.Online, opts.OnlineName = c.trace.Online(emb2, "embedded"), "embedded"
	}
	if c.durable {
		dir := c.walDir
		if dir == "" {
			dir = filepath.Join(dataDir, "wal")
		}
		l, err := wal.Open(wal.Options{Dir: dir, Logger: logger, MaxBytes: c.walMaxBytes})
		if err != nil {
			return nil, err
		}
		o.closers = append(o.closers, l.Close)
		opts.WAL = l
	}
	if o.idx, err = index.New(ctx, emb, opts); err != nil {
		return nil, err
	}
	return o, nil
}
