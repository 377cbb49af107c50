// Package service composes embedd's real-time features: it ingests events
// into per-entity state (window series, session features, external
// values), and serves feature values computed from that state at any as_of
// within the retained horizon, with rule and temporal features derived on
// top, through a read path of in-process cache → state store (Redis or
// memory) → offline Parquet snapshot.
//
// Ingest, per call:
//  1. every event is validated on its own against Options.Limits (entity
//     id, type, timestamp not more than MaxFutureSkew ahead of the clock,
//     finite values, counts and sizes, event id); an invalid event gets its
//     own error naming its index, the item and the limit, and the rest go
//     on;
//  2. the sessionizer (Redis Lua or memory) applies the valid events; an
//     event older than its entity's current session belongs to a closed
//     session, which is not reopened: windows still count it;
//  3. each entity's state is updated atomically (one read-modify-write per
//     entity and call, all entities of the call in one batch, retried on
//     conflict with another replica): every
//     event adds a point to the "events" series and one per numeric value
//     that a window feature aggregates; an event later than the allowed
//     lateness fails with window.ErrTooLate and changes nothing;
//  4. an event with an id (features.Event.ID) is applied once: its id is
//     recorded in the entity's state by the same atomic update, and an
//     event whose id the state recorded is a duplicate, not applied again
//     and not an error (IngestStats.Duplicate). Ids are remembered while
//     their event could still be accepted (within the allowed lateness)
//     and at most Options.DedupeIDs per entity; see dedupe.go for the
//     exact rule. The sessionizer deduplicates the same way (package
//     session), so a redelivered event is not counted twice in its session
//     either.
//
// Ingest returns only after the state store acknowledged the writes, so a
// caller (the gRPC handler, the Redis Streams consumer) may acknowledge the
// events it was given once Ingest returns without error for them. With
// event ids, delivery to Ingest may be at least once (a redelivery after a
// crash before the acknowledgment, a client retry after a timeout) and the
// effect is exactly once.
//
// Reads: a feature of kind window is aggregated at as_of with exactly the
// semantics of package window; session features are those of the entity's
// latest event, served when that event is at or before as_of and null
// otherwise; external features are the latest value received; temporal and
// rule features are evaluated at as_of by package derive. Every value
// carries its version, timestamp and source.
//
// When the state store is unavailable (ErrUnavailable: Redis down) and an
// offline layer is configured, Get answers every entity from the offline
// snapshots (source offline, each value with its snapshot's timestamp)
// instead of failing; entities the snapshots lack are null with Found
// false. Ingest still fails while the store is down (nothing is
// acknowledged that was not written).
//
// The cache holds decoded states. Within CacheTTL (default 1s) an entry is
// served as is; after it, its revision is checked against Redis (one small
// pipelined read) and it is served only if unchanged. An Ingest through
// the same Service drops the entries of its entities at once, so a reader
// on the ingesting replica always sees its writes, and a reader on another
// replica sees them within CacheTTL.
//
// Limits: this package is the one owner of the validation of both flows,
// ingest and read (limits.go). The transport converts messages and maps
// errors; the stores below keep only the invariants of their own state
// (package session's, package window's), which Limits never exceed.
//
// Encryption at rest: with a keyring (Redis.SetKeys, Memory.SetKeys,
// offline.Options.Keys) entity states and the values of sensitive features
// in snapshots are sealed with AES-256-GCM (package seal); Reseal and
// offline.Store.Reseal move them to the current key (seal.go).
//
// Files follow the flows: ingest.go (with dedupe.go), read.go (with cache.go),
// materialize.go, limits.go, metrics.go for what the service reports, and
// statestore.go, memoryfile.go and seal.go for the stores.
//
// Concurrency: a *Service is safe for concurrent use.
package service

import (
	"container/list"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/embedd/embedd/internal/features"
	"github.com/embedd/embedd/internal/features/drift"
	"github.com/embedd/embedd/internal/features/offline"
	"github.com/embedd/embedd/internal/features/registry"
	"github.com/embedd/embedd/internal/features/session"
	"github.com/embedd/embedd/internal/features/window"
)

// Errors.
var (
	// ErrInvalid reports a bad request or event; the message names the item.
	ErrInvalid = errors.New("features: invalid argument")
	// ErrUnknown reports an unknown feature, set or entity kind.
	ErrUnknown = errors.New("features: unknown")
)

// Options configures a Service. Registry, States and Sessions are
// required; every other zero field takes its default (DefaultOptions).
type Options struct {
	Registry *registry.Registry
	States   StateStore
	Sessions session.Store
	// Offline, if set, answers entities the state store does not have.
	Offline *offline.Store
	// Monitor, if set, observes every value served (drift of what models
	// see). New has it track the registry's features: every name with a
	// version that is not retired, up to the monitor's MaxFeatures.
	Monitor *drift.Monitor
	// Window configures every series; Windows is ignored (the registry's
	// windows are used). Default window.DefaultConfig() (when both
	// MaxPoints and Horizon are zero).
	Window window.Config
	// Clock tells the time. Default features.SystemClock.
	Clock features.Clock
	// AsOfHorizon is how far back from now a read's as_of may go, for
	// every window: series keep points for the largest window plus the
	// larger of this and the allowed lateness. Default 1h; zero or negative
	// means the default.
	AsOfHorizon time.Duration
	// MaxFutureSkew rejects events (and reads' as_of) whose timestamp is
	// further ahead of the clock. Default 5m; zero or negative means the
	// default.
	MaxFutureSkew time.Duration
	// CacheTTL is how long a decoded state is served from memory without
	// asking the store; after that a store with revisions (Redis) is asked
	// for the entity's revision only, and the cached state is served again
	// if it is unchanged (one small round trip instead of a reload).
	// Negative disables the cache. Default 1s.
	CacheTTL time.Duration
	// CacheEntities bounds the cache (LRU), in entities. Default 100_000;
	// zero or negative means the default.
	CacheEntities int
	// Limits bounds ingest and read requests. Default DefaultLimits();
	// each zero field takes its default.
	Limits Limits
	// DedupeIDs is the most event ids one entity's state remembers to
	// apply each event with an id once (dedupe.go): past it, the oldest are
	// forgotten and events with ids at or before them are rejected as too
	// late. Default DefaultDedupeIDs (1024); zero means the default; at
	// most MaxDedupeIDs; negative is invalid.
	DedupeIDs int
	// Logger receives warnings (Materialize). Default slog.Default().
	Logger *slog.Logger
}

// DefaultOptions returns the defaults of every field but the required ones
// and Logger.
func DefaultOptions() Options {
	return Options{
		Window:        window.DefaultConfig(),
		Clock:         features.SystemClock{},
		AsOfHorizon:   time.Hour,
		MaxFutureSkew: 5 * time.Minute,
		CacheTTL:      time.Second,
		CacheEntities: 100_000,
		Limits:        DefaultLimits(),
		DedupeIDs:     DefaultDedupeIDs,
	}
}

// withDefaults fills the zero fields of o and checks it.
func (o Options) withDefaults() (Options, error) {
	if o.Registry == nil || o.States == nil || o.Sessions == nil {
		return o, fmt.Errorf("%w: Registry, States and Sessions are required", ErrInvalid)
	}
	d := DefaultOptions()
	if o.Clock == nil {
		o.Clock = d.Clock
	}
	if o.AsOfHorizon <= 0 {
		o.AsOfHorizon = d.AsOfHorizon
	}
	if o.MaxFutureSkew <= 0 {
		o.MaxFutureSkew = d.MaxFutureSkew
	}
	if o.CacheTTL == 0 {
		o.CacheTTL = d.CacheTTL
	}
	if o.CacheEntities <= 0 {
		o.CacheEntities = d.CacheEntities
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	switch {
	case o.DedupeIDs < 0 || o.DedupeIDs > MaxDedupeIDs:
		return o, fmt.Errorf("%w: DedupeIDs is %d; want 0 (default %d) to %d", ErrInvalid, o.DedupeIDs, DefaultDedupeIDs, MaxDedupeIDs)
	case o.DedupeIDs == 0:
		o.DedupeIDs = DefaultDedupeIDs
	}
	if o.Window.MaxPoints == 0 && o.Window.Horizon == 0 {
		o.Window = d.Window
	}
	var err error
	if o.Limits, err = o.Limits.withDefaults(); err != nil {
		return o, err
	}
	for _, set := range o.Registry.Sets() {
		if len(set.Features) > o.Limits.Features {
			return o, fmt.Errorf("%w: feature set %q has %d features; limit Limits.Features=%d", ErrInvalid, set.Name, len(set.Features), o.Limits.Features)
		}
	}
	return o, nil
}

// Service ingests events and serves features.
type Service struct {
	opts Options
	reg  *registry.Registry
	// sources are the numeric value names some window feature aggregates
	// (EventsSource included); externals the external feature names.
	sources   map[string]bool
	externals map[string]bool
	winCfg    window.Config

	cacheMu sync.Mutex // guards cache and lru
	cache   map[string]*list.Element
	lru     *list.List

	evalMu sync.Mutex // guards evals
	evals  map[string]*plan

	statsMu sync.Mutex // guards stats
	stats   IngestStats

	offlineWarned atomic.Int64 // unix ns of the last offline-fallback warning
}

// WindowConfig returns the series configuration for reg: its windows,
// base's lateness and limits, and a horizon of at least the largest window
// plus the larger of the lateness and asOfHorizon, so that every window can
// be read at any as_of up to asOfHorizon before the newest event.
func WindowConfig(reg *registry.Registry, base window.Config, asOfHorizon time.Duration) (window.Config, error) {
	cfg := base
	cfg.Windows = nil
	for _, d := range reg.List() {
		if d.Kind() == registry.KindWindow && !slices.Contains(cfg.Windows, d.Window) {
			cfg.Windows = append(cfg.Windows, d.Window)
		}
	}
	slices.Sort(cfg.Windows)
	if len(cfg.Windows) > window.MaxWindows {
		return cfg, fmt.Errorf("%w: the registry uses %d distinct windows; limit %d", ErrInvalid, len(cfg.Windows), window.MaxWindows)
	}
	if len(cfg.Windows) == 0 {
		cfg.Windows = window.DefaultConfig().Windows
	}
	if need := cfg.Windows[len(cfg.Windows)-1] + max(cfg.AllowedLateness, asOfHorizon); cfg.Horizon < need {
		cfg.Horizon = need
	}
	cfg = cfg.WithDefaults()
	return cfg, cfg.Validate()
}

// StateTTL is the TTL to give NewRedis for states of configuration cfg
// (from WindowConfig): the horizon plus an hour, so a state expires only
// once every window of it is empty.
func StateTTL(cfg window.Config) time.Duration { return cfg.Horizon + time.Hour }

// New returns a Service. opts.States must have been built with the
// configuration WindowConfig returns.
func New(opts Options) (*Service, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	cfg, err := WindowConfig(opts.Registry, opts.Window, opts.AsOfHorizon)
	if err != nil {
		return nil, err
	}
	s := &Service{
		opts: opts, reg: opts.Registry, winCfg: cfg,
		sources: map[string]bool{EventsSource: true}, externals: map[string]bool{},
		cache: map[string]*list.Element{}, lru: list.New(), evals: map[string]*plan{},
	}
	for _, d := range opts.Registry.List() {
		switch d.Kind() {
		case registry.KindWindow:
			s.sources[d.Source] = true
		case registry.KindExternal:
			s.externals[d.Name] = true
		}
	}
	if err := s.trackFeatures(); err != nil {
		return nil, err
	}
	return s, nil
}

// Registry returns the feature registry.
func (s *Service) Registry() *registry.Registry { return s.reg }

// WindowConfig returns the series configuration in use.
func (s *Service) WindowConfig() window.Config { return s.winCfg }

// Limits returns the request limits in effect (defaults filled in).
func (s *Service) Limits() Limits { return s.opts.Limits }

// Monitor returns the drift monitor of served values, nil when there is
// none.
func (s *Service) Monitor() *drift.Monitor { return s.opts.Monitor }
