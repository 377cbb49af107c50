package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"github.com/embedd/embedd/internal/features"
	"github.com/embedd/embedd/internal/features/drift"
	"github.com/embedd/embedd/internal/features/offline"
	"github.com/embedd/embedd/internal/features/registry"
	"github.com/embedd/embedd/internal/features/service"
	"github.com/embedd/embedd/internal/features/session"
	"github.com/embedd/embedd/internal/features/stream"
	"github.com/embedd/embedd/internal/features/window"
	"github.com/embedd/embedd/internal/fsutil"
	"github.com/embedd/embedd/internal/store/redis"
)

// featureConfig holds the real-time feature settings of `embedd serve`.
type featureConfig struct {
	enabled          bool
	registryDir      string
	lockFile         string
	sessionTimeout   time.Duration
	allowedLateness  time.Duration
	asOfHorizon      time.Duration
	cacheTTL         time.Duration
	offlineDir       string
	materializeEvery time.Duration
	eventsStream     string
	consumerName     string
	monitor          bool
	driftReference   int
	driftFile        string
	// Key prefixes of the feature stores on Redis (with --redis-addr).
	redisStatePrefix   string
	redisSessionPrefix string
}

func (c *featureConfig) register(fs *flag.FlagSet) {
	w := window.DefaultConfig()
	fs.BoolVar(&c.enabled, "features", true, "serve embedd.v1.FeatureService (real-time features)")
	fs.StringVar(&c.registryDir, "features-dir", "", "directory of feature registry YAML files (default: the built-in registry)")
	fs.StringVar(&c.lockFile, "features-lock", "", "lock file of feature fingerprints to check the registry against (empty: no check)")
	fs.DurationVar(&c.sessionTimeout, "session-timeout", session.DefaultConfig().Timeout, "inactivity gap that starts a new session")
	fs.DurationVar(&c.allowedLateness, "allowed-lateness", w.AllowedLateness, "how far behind an entity's newest event an event may arrive and still be counted")
	fs.DurationVar(&c.asOfHorizon, "as-of-horizon", time.Hour, "how far back GetFeatures as_of may go")
	fs.DurationVar(&c.cacheTTL, "feature-cache-ttl", time.Second, "how long a replica serves an entity's state from memory; negative disables")
	fs.StringVar(&c.offlineDir, "offline-dir", "", "directory of offline Parquet snapshots (default: <data-dir>/offline)")
	fs.DurationVar(&c.materializeEvery, "materialize-every", 5*time.Minute, "how often to write an offline snapshot; 0 disables")
	fs.StringVar(&c.eventsStream, "events-stream", "", "Redis stream to consume events from with a consumer group (needs --redis-addr); empty disables")
	fs.StringVar(&c.consumerName, "consumer-name", "", "this replica's consumer name in the group (default: host name and pid)")
	fs.BoolVar(&c.monitor, "feature-monitor", true, "keep statistics and drift of served feature values (metrics and GetFeatureStats)")
	fs.IntVar(&c.driftReference, "drift-reference-size", 1000, "the first N served values of a feature become its drift reference")
	fs.StringVar(&c.redisStatePrefix, "redis-feature-prefix", service.DefaultRedisPrefix, "Redis key prefix of feature state hashes")
	fs.StringVar(&c.redisSessionPrefix, "redis-session-prefix", session.DefaultRedisOptions().Prefix, "Redis key prefix of session hashes")
	fs.StringVar(&c.driftFile, "drift-reference", "", "drift references file: loaded at start if it exists, written at shutdown (e.g. a training window's statistics)")
}

func loadRegistry(dir, lock string) (*registry.Registry, error) {
	var reg *registry.Registry
	var err error
	if dir == "" {
		reg, err = registry.Default()
	} else {
		reg, err = registry.LoadDir(dir)
	}
	if err != nil {
		return nil, err
	}
	if lock != "" {
		if err := reg.CheckLock(lock); err != nil {
			return nil, err
		}
	}
	return reg, nil
}

// openedFeatures is what serve runs and closes.
type openedFeatures struct {
	svc     *service.Service
	monitor *drift.Monitor
	run     []func(context.Context) error // background loops
	closers []func() error
}

func (o *openedFeatures) close() {
	for i := len(o.closers) - 1; i >= 0; i-- {
		o.closers[i]()
	}
}

// open builds the features service on Redis (when redisAddr is set) or in
// memory.
func (c *featureConfig) open(ctx context.Context, st *storeConfig, reg prometheus.Registerer, logger *slog.Logger) (_ *openedFeatures, err error) {
	o := &openedFeatures{}
	defer func() {
		if err != nil {
			o.close()
		}
	}()
	freg, err := loadRegistry(c.registryDir, c.lockFile)
	if err != nil {
		return nil, err
	}
	base := window.DefaultConfig()
	base.AllowedLateness = c.allowedLateness
	wcfg, err := service.WindowConfig(freg, base, c.asOfHorizon)
	if err != nil {
		return nil, err
	}
	scfg := session.DefaultConfig()
	scfg.Timeout = c.sessionTimeout
	clock := features.SystemClock{}
	opts := service.Options{Registry: freg, Window: base, Clock: clock, CacheTTL: c.cacheTTL, AsOfHorizon: c.asOfHorizon, Logger: logger}
	var rc *goredis.Client
	if st.redisAddr != "" {
		rc = redis.NewClient(st.redisOptions())
		o.closers = append(o.closers, rc.Close)
		opts.States = service.NewRedis(rc, wcfg, c.redisStatePrefix, wcfg.Horizon+time.Hour)
		if opts.Sessions, err = session.NewRedis(rc, scfg, session.RedisOptions{Prefix: c.redisSessionPrefix}); err != nil {
			return nil, err
		}
	}
	dataDir := st.dataDir
	if dataDir == "" {
		dataDir = defaultDataDir()
	}
	if rc == nil {
		// Embedded mode: states in memory, saved every 10s and at shutdown.
		mem := service.NewMemory(wcfg, 1<<20)
		path := filepath.Join(dataDir, "features", "state.bin")
		if err := mem.LoadFile(path); err != nil {
			return nil, err
		}
		opts.States = mem
		o.closers = append(o.closers, func() error { return mem.Save(path) })
		o.run = append(o.run, every(10*time.Second, func(context.Context) {
			if err := mem.Save(path); err != nil {
				logger.Warn("saving feature state failed", "path", path, "err", err)
			}
		}))
		if opts.Sessions, err = session.NewMemory(scfg, session.MemoryOptions{}); err != nil {
			return nil, err
		}
	}
	offDir := c.offlineDir
	if offDir == "" {
		offDir = filepath.Join(dataDir, "offline")
	}
	if opts.Offline, err = offline.Open(offDir, 0); err != nil {
		return nil, err
	}
	if c.monitor {
		dopts := drift.DefaultOptions()
		dopts.AutoReference = c.driftReference
		if o.monitor, err = drift.New(clock, dopts); err != nil {
			return nil, err
		}
		tracked := map[string]bool{}
		for _, d := range freg.List() {
			if !tracked[d.Name] && d.Status != registry.StatusRetired && len(tracked) < dopts.MaxFeatures {
				tracked[d.Name] = true
				if err := o.monitor.Track(d.Name, d.Sensitive); err != nil {
					return nil, err
				}
			}
		}
		if _, err := drift.Register(reg, o.monitor); err != nil {
			return nil, err
		}
		if c.driftFile != "" {
			mon, path := o.monitor, c.driftFile
			if f, err := os.Open(path); err == nil {
				err = mon.LoadReferences(f)
				f.Close()
				if err != nil {
					return nil, fmt.Errorf("--drift-reference %s: %w", path, err)
				}
			} else if !os.IsNotExist(err) {
				return nil, err
			}
			o.closers = append(o.closers, func() error {
				return fsutil.WriteAtomic(path, 0o644, mon.SaveReferences)
			})
		}
		opts.Monitor = o.monitor
	}
	if o.svc, err = service.New(opts); err != nil {
		return nil, err
	}
	for _, r := range []struct {
		result string
		get    func(service.IngestStats) uint64
	}{
		{"accepted", func(s service.IngestStats) uint64 { return s.Accepted }},
		{"invalid", func(s service.IngestStats) uint64 { return s.Invalid }},
		{"too_late", func(s service.IngestStats) uint64 { return s.TooLate }},
		{"failed", func(s service.IngestStats) uint64 { return s.Failed }},
		{"before_session", func(s service.IngestStats) uint64 { return s.BeforeSession }},
	} {
		svc := o.svc
		if err := reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "embedd_feature_events_total",
			Help:        "Events given to the feature service, by result (before_session: accepted but older than the entity's current session).",
			ConstLabels: prometheus.Labels{"result": r.result},
		}, func() float64 { return float64(r.get(svc.Stats())) })); err != nil {
			return nil, err
		}
	}
	if c.materializeEvery > 0 {
		o.run = append(o.run, every(c.materializeEvery, func(ctx context.Context) {
			path, n, err := o.svc.Materialize(ctx)
			if err != nil {
				logger.Warn("materialize failed", "err", err)
				return
			}
			logger.Info("offline snapshot written", "path", path, "entities", n)
		}))
	}
	if c.eventsStream != "" {
		if rc == nil {
			return nil, fmt.Errorf("%w: --events-stream needs --redis-addr", errUsage)
		}
		name := c.consumerName
		if name == "" {
			host, _ := os.Hostname()
			name = fmt.Sprintf("%s-%d", host, os.Getpid())
		}
		cons, err := stream.New(rc, o.svc, stream.Options{Stream: c.eventsStream, Consumer: name, Logger: logger})
		if err != nil {
			return nil, err
		}
		o.run = append(o.run, cons.Run)
	}
	return o, nil
}

// every returns a background loop that calls fn every d until its context
// ends.
func every(d time.Duration, fn func(context.Context)) func(context.Context) error {
	return func(ctx context.Context) error {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				fn(ctx)
			}
		}
	}
}

// cmdFeatures runs `embedd features list|describe|lock`.
func cmdFeatures(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: features needs list, describe NAME[@VERSION] or lock", errUsage)
	}
	sub, rest := args[0], args[1:]
	fs := newFlagSet("features "+sub, "")
	dir := fs.String("features-dir", "", "directory of feature registry YAML files (default: the built-in registry)")
	full := fs.Bool("full", false, "describe: show sensitive features' definitions too")
	if err := fs.Parse(rest); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	reg, err := loadRegistry(*dir, "")
	if err != nil {
		return err
	}
	switch sub {
	case "list":
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tVERSION\tKIND\tTYPE\tWINDOW\tSTATUS\tTAGS")
		for _, d := range reg.List() {
			win := "-"
			if d.Window > 0 {
				win = d.Window.String()
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", d.Name, d.Version, d.Kind(), d.Type, win, d.Status, strings.Join(d.Tags, ","))
		}
		for _, s := range reg.Sets() {
			fmt.Fprintf(tw, "set %s\t\t\t\t\t\t%d features\n", s.Name, len(s.Features))
		}
		return tw.Flush()
	case "describe":
		if fs.NArg() != 1 {
			return fmt.Errorf("%w: features describe needs one NAME[@VERSION]", errUsage)
		}
		describe := reg.Describe
		if *full {
			describe = reg.DescribeFull
		}
		text, err := describe(fs.Arg(0))
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, text)
		return nil
	case "lock":
		_, err := stdout.Write(reg.Lock())
		return err
	}
	return fmt.Errorf("%w: unknown features command %q", errUsage, sub)
}
