package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/embedd/embedd/internal/features/registry"
	"github.com/embedd/embedd/internal/features/service"
	"github.com/embedd/embedd/internal/features/session"
	"github.com/embedd/embedd/internal/tracing"
)

// featureConfig holds the real-time feature settings of `embedd serve`;
// features_open.go builds the features service from them. Defaults come
// from the packages' DefaultOptions and DefaultConfig.
type featureConfig struct {
	enabled          bool
	stateEntities    int
	stateBytes       int64
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
	// Encryption at rest of feature state, snapshots and drift references
	// (featurekeys.go).
	keysFile       string
	allowPlaintext bool
	// trace wraps the state and session stores in spans; nil: off.
	trace *tracing.Tracing
}

func (c *featureConfig) register(fs *flag.FlagSet) {
	d := service.DefaultOptions()
	fs.BoolVar(&c.enabled, "features", true, "serve embedd.v1.FeatureService (real-time features)")
	fs.IntVar(&c.stateEntities, "feature-state-max-entities", memoryStateEntities, "embedded mode (no --redis-addr): most entities whose feature state memory holds; events of new entities beyond it fail with UNAVAILABLE")
	fs.Int64Var(&c.stateBytes, "feature-state-max-bytes", service.DefaultMemoryBytes, "embedded mode: most bytes of feature state in memory; updates beyond it fail with UNAVAILABLE")
	fs.StringVar(&c.registryDir, "features-dir", "", "directory of feature registry YAML files (default: the built-in registry)")
	fs.StringVar(&c.lockFile, "features-lock", "", "lock file of feature fingerprints to check the registry against (empty: no check)")
	fs.DurationVar(&c.sessionTimeout, "session-timeout", session.DefaultConfig().Timeout, "inactivity gap that starts a new session")
	fs.DurationVar(&c.allowedLateness, "allowed-lateness", d.Window.AllowedLateness, "how far behind an entity's newest event an event may arrive and still be counted")
	fs.DurationVar(&c.asOfHorizon, "as-of-horizon", d.AsOfHorizon, "how far back GetFeatures as_of may go")
	fs.DurationVar(&c.cacheTTL, "feature-cache-ttl", d.CacheTTL, "how long a replica serves an entity's state from memory; negative disables")
	fs.StringVar(&c.offlineDir, "offline-dir", "", "directory of offline Parquet snapshots (default: <data-dir>/offline)")
	fs.DurationVar(&c.materializeEvery, "materialize-every", 5*time.Minute, "how often to write an offline snapshot; 0 disables")
	fs.StringVar(&c.eventsStream, "events-stream", "", "Redis stream to consume events from with a consumer group (needs --redis-addr); empty disables")
	fs.StringVar(&c.consumerName, "consumer-name", "", "this replica's consumer name in the group (default: host name and pid)")
	fs.BoolVar(&c.monitor, "feature-monitor", true, "keep statistics and drift of served feature values (metrics and GetFeatureStats)")
	fs.IntVar(&c.driftReference, "drift-reference-size", 1000, "the first N served values of a feature become its drift reference")
	fs.StringVar(&c.redisStatePrefix, "redis-feature-prefix", service.DefaultRedisPrefix, "Redis key prefix of feature state hashes")
	fs.StringVar(&c.redisSessionPrefix, "redis-session-prefix", session.DefaultRedisOptions().Prefix, "Redis key prefix of session hashes")
	fs.StringVar(&c.driftFile, "drift-reference", "", "drift references file: loaded at start if it exists, written at shutdown (e.g. a training window's statistics)")
	fs.StringVar(&c.keysFile, "feature-keys", "", "keyring file (mode 0600) encrypting feature state, offline snapshots' sensitive values and drift references at rest (AES-256-GCM); or its content in $"+featureKeysEnv)
	fs.BoolVar(&c.allowPlaintext, "allow-plaintext-sensitive", false, "serve a registry with sensitive features without --feature-keys, storing their values in plaintext (logged as a warning)")
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

// cmdFeatures runs `embedd features list|describe|lock`.
func cmdFeatures(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: features needs list, describe NAME[@VERSION] or lock", errUsage)
	}
	sub, rest := args[0], args[1:]
	fs := newFlagSet("features "+sub, "")
	dir := fs.String("features-dir", "", "directory of feature registry YAML files (default: the built-in registry)")
	full := fs.Bool("full", false, "describe: show sensitive features' definitions too")
	if err := parse(fs, rest); err != nil {
		return err
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
