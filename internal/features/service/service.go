// Package service composes embedd's real-time features: it ingests events
// into per-entity state (window series, session features, external
// values), and serves feature values computed from that state at any as_of
// within the retained horizon, with rule and temporal features derived on
// top, through a read path of in-process cache → state store (Redis or
// memory) → offline Parquet snapshot.
//
// Ingest, per call:
//  1. every event is validated on its own (entity id, type, timestamp not
//     more than MaxFutureSkew ahead of the clock, finite values, limits);
//     an invalid event gets its own error and the rest go on;
//  2. the sessionizer (Redis Lua or memory) applies the valid events; an
//     event older than its entity's current session belongs to a closed
//     session, which is not reopened: windows still count it;
//  3. each entity's state is updated atomically (one read-modify-write per
//     entity and call, all entities of the call in one batch, retried on
//     conflict with another replica): every
//     event adds a point to the "events" series and one per numeric value
//     that a window feature aggregates; an event later than the allowed
//     lateness fails with window.ErrTooLate and changes nothing.
//
// Ingest returns only after the state store acknowledged the writes, so a
// caller (the gRPC handler, the Redis Streams consumer) may acknowledge the
// events it was given once Ingest returns without error for them.
//
// Reads: a feature of kind window is aggregated at as_of with exactly the
// semantics of package window; session features are those of the entity's
// latest event, served when that event is at or before as_of and null
// otherwise; external features are the latest value received; temporal and
// rule features are evaluated at as_of by package derive. Every value
// carries its version, timestamp and source.
//
// The cache holds decoded states. Within CacheTTL (default 1s) an entry is
// served as is; after it, its revision is checked against Redis (one small
// pipelined read) and it is served only if unchanged. An Ingest through
// the same Service drops the entries of its entities at once, so a reader
// on the ingesting replica always sees its writes, and a reader on another
// replica sees them within CacheTTL.
//
// Concurrency: a *Service is safe for concurrent use.
package service

import (
	"cmp"
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/embedd/embedd/internal/features"
	"github.com/embedd/embedd/internal/features/drift"
	"github.com/embedd/embedd/internal/features/offline"
	"github.com/embedd/embedd/internal/features/registry"
	"github.com/embedd/embedd/internal/features/registry/derive"
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

// Limits.
const (
	MaxEvents         = 4096 // events per Ingest
	MaxEntities       = 1024 // entities per Get
	MaxFeatures       = 512  // features per Get
	MaxEntityIDBytes  = 256
	MaxTypeBytes      = 64
	MaxValuesPerEvent = 64
	MaxContextEntries = 32
	MaxContextBytes   = 256 // per key and per value
)

// Options configures a Service.
type Options struct {
	Registry *registry.Registry
	States   StateStore
	Sessions session.Store
	// Offline, if set, answers entities the state store does not have.
	Offline *offline.Store
	// Monitor, if set, observes every value served (drift of what models
	// see).
	Monitor *drift.Monitor
	// Window configures every series; Windows is ignored (the registry's
	// windows are used). Default window.DefaultConfig().
	Window window.Config
	Clock  features.Clock
	// AsOfHorizon is how far back from now a read's as_of may go, for
	// every window: series keep points for the largest window plus the
	// larger of this and the allowed lateness. Default 1h.
	AsOfHorizon time.Duration
	// MaxFutureSkew rejects events whose timestamp is further ahead of the
	// clock. Default 5m.
	MaxFutureSkew time.Duration
	// CacheTTL is how long a decoded state is served from memory without
	// asking the store; after that a store with revisions (Redis) is asked
	// for the entity's revision only, and the cached state is served again
	// if it is unchanged (one small round trip instead of a reload).
	// Negative disables the cache. Default 1s.
	CacheTTL time.Duration
	// CacheEntities bounds the cache (LRU). Default 100_000.
	CacheEntities int
	Logger        *slog.Logger
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

	cacheMu sync.Mutex
	cache   map[string]*list.Element
	lru     *list.List

	evalMu sync.Mutex
	evals  map[string]*plan

	statsMu sync.Mutex
	stats   IngestStats
}

// IngestStats counts ingested events by outcome since New.
type IngestStats struct {
	Accepted, Invalid, TooLate, Failed uint64
	// BeforeSession counts accepted events older than their entity's
	// current session (windows count them; sessions do not reopen).
	BeforeSession uint64
}

type cached struct {
	entity string
	st     *State
	at     time.Time
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

// New returns a Service. opts.States must have been built with the
// configuration WindowConfig returns.
func New(opts Options) (*Service, error) {
	if opts.Registry == nil || opts.States == nil || opts.Sessions == nil {
		return nil, fmt.Errorf("%w: Registry, States and Sessions are required", ErrInvalid)
	}
	if opts.Clock == nil {
		opts.Clock = features.SystemClock{}
	}
	if opts.AsOfHorizon <= 0 {
		opts.AsOfHorizon = time.Hour
	}
	if opts.MaxFutureSkew <= 0 {
		opts.MaxFutureSkew = 5 * time.Minute
	}
	if opts.CacheTTL == 0 {
		opts.CacheTTL = time.Second
	}
	if opts.CacheEntities <= 0 {
		opts.CacheEntities = 100_000
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Window.MaxPoints == 0 && opts.Window.Horizon == 0 {
		opts.Window = window.DefaultConfig()
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
	return s, nil
}

// Registry returns the feature registry.
func (s *Service) Registry() *registry.Registry { return s.reg }

// WindowConfig returns the series configuration in use.
func (s *Service) WindowConfig() window.Config { return s.winCfg }

// Stats returns the ingest counters.
func (s *Service) Stats() IngestStats {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	return s.stats
}

// EventError is the failure of one event of an Ingest call.
type EventError struct {
	Index    int
	EntityID string
	Err      error
}

func (e *EventError) Error() string {
	return fmt.Sprintf("events[%d] (entity %q): %v", e.Index, e.EntityID, e.Err)
}
func (e *EventError) Unwrap() error { return e.Err }

func (s *Service) validate(ev *features.Event, now time.Time) error {
	switch {
	case ev.EntityID == "" || len(ev.EntityID) > MaxEntityIDBytes || !utf8.ValidString(ev.EntityID):
		return fmt.Errorf("%w: entity_id must be 1 to %d bytes of UTF-8 (got %d bytes)", ErrInvalid, MaxEntityIDBytes, len(ev.EntityID))
	case len(ev.Type) > MaxTypeBytes || !utf8.ValidString(ev.Type):
		return fmt.Errorf("%w: event_type must be at most %d bytes of UTF-8 (got %d)", ErrInvalid, MaxTypeBytes, len(ev.Type))
	case ev.Timestamp.IsZero():
		return fmt.Errorf("%w: timestamp is missing", ErrInvalid)
	case ev.Timestamp.After(now.Add(s.opts.MaxFutureSkew)):
		return fmt.Errorf("%w: timestamp %s is %v ahead of the server clock; limit %v", ErrInvalid,
			ev.Timestamp.UTC().Format(time.RFC3339Nano), ev.Timestamp.Sub(now).Round(time.Millisecond), s.opts.MaxFutureSkew)
	case len(ev.Values) > MaxValuesPerEvent:
		return fmt.Errorf("%w: %d values; limit %d", ErrInvalid, len(ev.Values), MaxValuesPerEvent)
	case len(ev.Context) > MaxContextEntries:
		return fmt.Errorf("%w: %d context entries; limit %d", ErrInvalid, len(ev.Context), MaxContextEntries)
	}
	if _, err := window.UnixNanos(ev.Timestamp); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	for _, k := range slices.Sorted(mapKeys(ev.Values)) {
		v := ev.Values[k]
		if err := window.ValidateValueName(k); err != nil {
			return fmt.Errorf("%w: value name: %v", ErrInvalid, err)
		}
		if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > window.MaxAbsValue {
			return fmt.Errorf("%w: value %q is %v; must be finite with magnitude at most %g", ErrInvalid, k, v, window.MaxAbsValue)
		}
	}
	for k, v := range ev.Context {
		if k == "" || len(k) > MaxContextBytes || len(v) > MaxContextBytes || !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fmt.Errorf("%w: context entry %q: key 1 to %d bytes and value at most %d bytes of UTF-8", ErrInvalid, k, MaxContextBytes, MaxContextBytes)
		}
	}
	return nil
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Ingest applies events and returns one error per event (nil where it was
// applied). An error for the whole call (too many events) is returned as
// err with no per-event errors.
func (s *Service) Ingest(ctx context.Context, events []features.Event) (errs []error, err error) {
	if len(events) > MaxEvents {
		return nil, fmt.Errorf("%w: %d events; limit %d", ErrInvalid, len(events), MaxEvents)
	}
	now := s.opts.Clock.Now()
	errs = make([]error, len(events))
	var valid []int
	for i := range events {
		if err := s.validate(&events[i], now); err != nil {
			errs[i] = err
			continue
		}
		valid = append(valid, i)
	}
	// Sessions first: one pipelined call for the batch.
	evs := make([]features.Event, len(valid))
	for k, i := range valid {
		evs[k] = events[i]
	}
	sres, serrs := s.opts.Sessions.ProcessBatch(ctx, evs)
	byEntity := map[string][]int{}
	var order []string
	results := map[int]*session.Result{}
	lateForSession := 0
	for k, i := range valid {
		switch {
		case errors.Is(serrs[k], session.ErrOutOfOrder):
			// Older than the entity's current session: it belongs to a
			// closed session, which is not reopened; windows still count
			// it and the session features stay those of the latest event.
			lateForSession++
		case errors.Is(serrs[k], session.ErrUnavailable):
			errs[i] = fmt.Errorf("%w: session: %w", ErrUnavailable, serrs[k])
			continue
		case serrs[k] != nil:
			errs[i] = fmt.Errorf("session: %w", serrs[k])
			continue
		default:
			results[i] = &sres[k]
		}
		id := events[i].EntityID
		if _, ok := byEntity[id]; !ok {
			order = append(order, id)
		}
		byEntity[id] = append(byEntity[id], i)
	}
	// One atomic state update per entity, all entities in one batch.
	evErrs := make([]map[int]error, len(order))
	uerrs := s.opts.States.UpdateBatch(ctx, order, func(k int, st *State) error {
		m := map[int]error{}
		evErrs[k] = m
		applied := 0
		for _, i := range byEntity[order[k]] {
			if err := s.apply(st, &events[i], results[i]); err != nil {
				m[i] = err
				continue
			}
			applied++
		}
		if applied == 0 {
			return errNothing
		}
		for _, ser := range st.Series {
			if err := ser.Trim(now.UnixNano()); err != nil {
				return err
			}
		}
		return nil
	})
	for k, id := range order {
		if uerr := uerrs[k]; uerr != nil && !errors.Is(uerr, errNothing) {
			for _, i := range byEntity[id] {
				errs[i] = fmt.Errorf("state (%s): %w", s.opts.States.Name(), uerr)
			}
			continue
		}
		for i, e := range evErrs[k] {
			errs[i] = e
		}
		s.invalidate(id)
	}
	s.count(errs, lateForSession)
	for i, e := range errs {
		if e != nil {
			errs[i] = &EventError{Index: i, EntityID: events[i].EntityID, Err: e}
		}
	}
	return errs, nil
}

var errNothing = errors.New("no event applied")

// Permanent reports whether an event's error is final: the event is
// invalid or too late and retrying it can never succeed. Any other error
// (a store unavailable, a cancelled call, an unexpected failure) may pass
// and the event should be retried.
func Permanent(err error) bool {
	return errors.Is(err, ErrInvalid) || errors.Is(err, window.ErrTooLate) || errors.Is(err, window.ErrInvalid) ||
		errors.Is(err, session.ErrInvalidEvent)
}

func (s *Service) count(errs []error, lateForSession int) {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	s.stats.BeforeSession += uint64(lateForSession)
	for _, e := range errs {
		switch {
		case e == nil:
			s.stats.Accepted++
		case errors.Is(e, window.ErrTooLate):
			s.stats.TooLate++
		case errors.Is(e, ErrInvalid), errors.Is(e, session.ErrInvalidEvent):
			s.stats.Invalid++
		default:
			s.stats.Failed++
		}
	}
}

// apply adds one event to st; it changes nothing if it fails.
func (s *Service) apply(st *State, ev *features.Event, sr *session.Result) error {
	ts := ev.Timestamp.UnixNano()
	seq := st.Seq + 1
	evs, err := st.series(EventsSource, s.winCfg)
	if err != nil {
		return err
	}
	// The events series sees every event, so its watermark is the
	// highest: if the event is in time for it, it is in time for all.
	if err := evs.Insert(window.Point{TS: ts, Seq: seq, V: 1}); err != nil {
		return err
	}
	for _, name := range slices.Sorted(mapKeys(ev.Values)) {
		v := ev.Values[name]
		if s.externals[name] {
			if e, ok := st.External[name]; !ok || ts >= e.TS {
				st.External[name] = External{V: v, TS: ts}
			}
		}
		if !s.sources[name] || name == EventsSource {
			continue
		}
		ser, err := st.series(name, s.winCfg)
		if err != nil {
			return err
		}
		if err := ser.Insert(window.Point{TS: ts, Seq: seq, V: v}); err != nil {
			return fmt.Errorf("value %q: %w", name, err)
		}
	}
	st.Seq = seq
	if sr != nil {
		if la := sr.LastActivity.UnixNano(); la >= st.LastActivity {
			st.LastActivity, st.SessionID, st.Session = la, sr.SessionID, slices.Clone(sr.Values)
		}
	}
	return nil
}

// GetRequest asks for features of entities.
type GetRequest struct {
	Entities []string
	// Features are refs ("name" or "name@version"); Set names a feature
	// set. Exactly one of them.
	Features []string
	Set      string
	// AsOf is the time the values refer to; zero means now.
	AsOf time.Time
	// Context is read by rules (context.<key>).
	Context map[string]string
}

// EntityValues are the values of one entity, in the order of the request's
// features.
type EntityValues struct {
	EntityID string
	Values   []features.Value
	// Found is false when neither the state store nor the offline layer
	// knows the entity (every value is then null).
	Found bool
}

// Get serves features; see the package doc for the read path.
func (s *Service) Get(ctx context.Context, req GetRequest) ([]EntityValues, error) {
	defs, err := s.resolve(req)
	if err != nil {
		return nil, err
	}
	switch {
	case len(req.Entities) == 0:
		return nil, fmt.Errorf("%w: no entities", ErrInvalid)
	case len(req.Entities) > MaxEntities:
		return nil, fmt.Errorf("%w: %d entities; limit %d", ErrInvalid, len(req.Entities), MaxEntities)
	case len(req.Context) > MaxContextEntries:
		return nil, fmt.Errorf("%w: %d context entries; limit %d", ErrInvalid, len(req.Context), MaxContextEntries)
	}
	for i, id := range req.Entities {
		if id == "" || len(id) > MaxEntityIDBytes || !utf8.ValidString(id) {
			return nil, fmt.Errorf("%w: entities[%d] must be 1 to %d bytes of UTF-8", ErrInvalid, i, MaxEntityIDBytes)
		}
	}
	now := s.opts.Clock.Now()
	asOf := req.AsOf
	if asOf.IsZero() {
		asOf = now
	}
	if asOf.After(now.Add(s.opts.MaxFutureSkew)) {
		return nil, fmt.Errorf("%w: as_of %s is ahead of the server clock by more than %v", ErrInvalid, asOf.UTC().Format(time.RFC3339), s.opts.MaxFutureSkew)
	}
	if oldest := now.Add(-s.opts.AsOfHorizon); asOf.Before(oldest) {
		return nil, fmt.Errorf("%w: as_of %s is before the retained horizon (%v before now: %s)", ErrInvalid,
			asOf.UTC().Format(time.RFC3339), s.opts.AsOfHorizon, oldest.UTC().Format(time.RFC3339))
	}
	eval, err := s.evaluator(defs)
	if err != nil {
		return nil, err
	}
	states, sources, err := s.states(ctx, req.Entities, now)
	if err != nil {
		return nil, err
	}
	out := make([]EntityValues, len(req.Entities))
	errs := make([]error, len(req.Entities))
	parallel(len(req.Entities), func(i int) {
		id := req.Entities[i]
		ev := EntityValues{EntityID: id}
		if states[i] != nil {
			ev.Found = true
			var err error
			if ev.Values, err = s.compute(states[i], sources[i], defs, eval, asOf, req.Context); err != nil {
				errs[i] = fmt.Errorf("entity %q: %w", id, err)
				return
			}
		} else {
			ev.Values, ev.Found = s.fromOffline(id, defs)
		}
		out[i] = ev
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if s.opts.Monitor != nil {
		for _, ev := range out {
			s.observe(ev.Values)
		}
	}
	return out, nil
}

func (s *Service) observe(vals []features.Value) {
	for _, v := range vals {
		if v.Null {
			_ = s.opts.Monitor.ObserveNull(v.Name)
		} else {
			_ = s.opts.Monitor.Observe(v.Name, v.Value)
		}
	}
}

func (s *Service) resolve(req GetRequest) ([]registry.Def, error) {
	if (len(req.Features) == 0) == (req.Set == "") {
		return nil, fmt.Errorf("%w: give exactly one of features and feature_set", ErrInvalid)
	}
	if req.Set != "" {
		defs, err := s.reg.Set(req.Set)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnknown, err)
		}
		return defs, nil
	}
	if len(req.Features) > MaxFeatures {
		return nil, fmt.Errorf("%w: %d features; limit %d", ErrInvalid, len(req.Features), MaxFeatures)
	}
	defs := make([]registry.Def, len(req.Features))
	for i, f := range req.Features {
		d, err := s.reg.Resolve(f)
		if err != nil {
			return nil, fmt.Errorf("%w: features[%d]: %v", ErrUnknown, i, err)
		}
		defs[i] = d
	}
	return defs, nil
}

// plan is how the derived features of a request are computed: the derive
// evaluator and the definitions of the base features it reads, looked up
// once per distinct feature list rather than per entity.
type plan struct {
	eval   *derive.Evaluator
	inputs []registry.Def
}

// evaluator returns the plan of the derived features among defs (nil if
// none), cached by the list.
func (s *Service) evaluator(defs []registry.Def) (*plan, error) {
	var derived []registry.Def
	var key strings.Builder
	for _, d := range defs {
		if d.Kind() == registry.KindRule || d.Kind() == registry.KindTemporal {
			derived = append(derived, d)
			fmt.Fprintf(&key, "%s,", d.Ref())
		}
	}
	if len(derived) == 0 {
		return nil, nil
	}
	s.evalMu.Lock()
	defer s.evalMu.Unlock()
	if p := s.evals[key.String()]; p != nil {
		return p, nil
	}
	e, err := derive.New(s.reg, derived)
	if err != nil {
		return nil, err
	}
	p := &plan{eval: e}
	for _, ref := range e.Inputs() {
		d, err := s.reg.Lookup(ref)
		if err != nil {
			return nil, err
		}
		p.inputs = append(p.inputs, d)
	}
	if len(s.evals) < 1024 {
		s.evals[key.String()] = p
	}
	return p, nil
}

// states returns the state of each entity and where it came from (cache or
// online), reading the store once, pipelined, for the misses.
func (s *Service) states(ctx context.Context, ids []string, now time.Time) ([]*State, []features.Source, error) {
	out := make([]*State, len(ids))
	src := make([]features.Source, len(ids))
	var miss, stale []int
	var staleSt []*State
	s.cacheMu.Lock()
	for i, id := range ids {
		if el, ok := s.cache[id]; ok && s.opts.CacheTTL > 0 {
			c := el.Value.(*cached)
			s.lru.MoveToFront(el)
			if now.Sub(c.at) < s.opts.CacheTTL {
				out[i], src[i] = c.st, features.SourceCache
				continue
			}
			if c.st.Rev != "" {
				stale, staleSt = append(stale, i), append(staleSt, c.st)
				continue
			}
		}
		miss = append(miss, i)
	}
	s.cacheMu.Unlock()
	// Revalidate stale entries: one small round trip; unchanged states
	// are served from memory, changed ones reloaded.
	if rv, ok := s.opts.States.(Revisioner); ok && len(stale) > 0 {
		sids := make([]string, len(stale))
		for k, i := range stale {
			sids[k] = ids[i]
		}
		revs, err := rv.Revisions(ctx, sids)
		if err != nil {
			return nil, nil, fmt.Errorf("state (%s): %w", s.opts.States.Name(), err)
		}
		for k, i := range stale {
			if revs[k] == staleSt[k].Rev {
				out[i], src[i] = staleSt[k], features.SourceCache
				s.put(ids[i], staleSt[k], now)
			} else {
				miss = append(miss, i)
			}
		}
	} else {
		miss = append(miss, stale...)
	}
	if len(miss) == 0 {
		return out, src, nil
	}
	mids := make([]string, len(miss))
	for k, i := range miss {
		mids[k] = ids[i]
	}
	loaded, err := s.opts.States.Load(ctx, mids)
	if err != nil {
		return nil, nil, fmt.Errorf("state (%s): %w", s.opts.States.Name(), err)
	}
	for k, i := range miss {
		out[i], src[i] = loaded[k], features.SourceOnline
		if loaded[k] != nil && s.opts.CacheTTL > 0 {
			s.put(ids[i], loaded[k], now)
		}
	}
	return out, src, nil
}

func (s *Service) put(id string, st *State, now time.Time) {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	if el, ok := s.cache[id]; ok {
		el.Value = &cached{id, st, now}
		s.lru.MoveToFront(el)
		return
	}
	s.cache[id] = s.lru.PushFront(&cached{id, st, now})
	for s.lru.Len() > s.opts.CacheEntities {
		last := s.lru.Back()
		s.lru.Remove(last)
		delete(s.cache, last.Value.(*cached).entity)
	}
}

func (s *Service) invalidate(id string) {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	if el, ok := s.cache[id]; ok {
		s.lru.Remove(el)
		delete(s.cache, id)
	}
}

// compute evaluates defs for one state at asOf.
func (s *Service) compute(st *State, src features.Source, defs []registry.Def, eval *plan, asOf time.Time, ctxMap map[string]string) ([]features.Value, error) {
	t := asOf.UnixNano()
	vals := make([]features.Value, len(defs))
	memo := make(aggMemo, 0, 16)
	var derivedAt []int
	for i, d := range defs {
		switch d.Kind() {
		case registry.KindRule, registry.KindTemporal:
			derivedAt = append(derivedAt, i)
			continue
		}
		v, err := s.base(st, d, t, asOf, &memo)
		if err != nil {
			return nil, err
		}
		v.Source = src
		vals[i] = v
	}
	if eval == nil {
		return vals, nil
	}
	inputs := make([]features.Value, 0, len(eval.inputs))
	for _, d := range eval.inputs {
		v, err := s.base(st, d, t, asOf, &memo)
		if err != nil {
			return nil, err
		}
		inputs = append(inputs, v)
	}
	in := derive.Input{At: asOf, Values: inputs, Context: ctxMap}
	if last, ok := st.lastEventAtOrBefore(t); ok {
		in.LastEvent = time.Unix(0, last).UTC()
	}
	dv, err := eval.eval.Eval(in)
	if err != nil {
		return nil, err
	}
	for k, i := range derivedAt {
		vals[i] = dv[k]
	}
	return vals, nil
}

// aggMemo holds the aggregates of each (source, window) within one compute
// call, so every aggregation of a window comes from one pass. A request
// touches a handful of windows: a slice beats a map.
type aggMemo []aggEntry

type aggEntry struct {
	src string
	w   time.Duration
	a   window.Aggregates
}

func (m aggMemo) get(src string, w time.Duration) (window.Aggregates, bool) {
	for _, e := range m {
		if e.w == w && e.src == src {
			return e.a, true
		}
	}
	return window.Aggregates{}, false
}

// base computes a window, session or external feature.
func (s *Service) base(st *State, d registry.Def, t int64, asOf time.Time, memo *aggMemo) (features.Value, error) {
	v := features.Value{Name: d.Name, Version: d.Version, Timestamp: asOf.UTC(), Null: true}
	switch d.Kind() {
	case registry.KindWindow:
		src := d.Source
		if src == registry.SourceEvents {
			src = EventsSource
		}
		ser := st.Series[src]
		if ser == nil {
			if d.Aggregation == registry.AggCount || d.Aggregation == registry.AggSum {
				v.Null = false // an empty window: count and sum 0
			}
			return v, nil
		}
		a, ok := memo.get(src, d.Window)
		if !ok {
			var err error
			if a, err = ser.Aggregate(t, d.Window); err != nil {
				return v, fmt.Errorf("%s: %w", d.Ref(), err)
			}
			*memo = append(*memo, aggEntry{src, d.Window, a})
		}
		pick := func(n window.NullFloat) { v.Value, v.Null = n.V, !n.Valid }
		switch d.Aggregation {
		case registry.AggCount:
			v.Value, v.Null = float64(a.Count), false
		case registry.AggSum:
			v.Value, v.Null = a.Sum, false
		case registry.AggAvg:
			pick(a.Avg)
		case registry.AggMin:
			pick(a.Min)
		case registry.AggMax:
			pick(a.Max)
		case registry.AggStddev:
			pick(a.Stddev)
		case registry.AggZScore:
			pick(a.ZScore)
		}
	case registry.KindSession:
		if st.LastActivity == 0 || st.LastActivity > t {
			return v, nil
		}
		for _, sv := range st.Session {
			if sv.Name == d.Aggregation || sv.Name == d.Name {
				v.Value, v.Null, v.Timestamp = sv.Value, sv.Null, sv.Timestamp
				break
			}
		}
	case registry.KindExternal:
		if e, ok := st.External[d.Name]; ok && e.TS <= t {
			v.Value, v.Null, v.Timestamp = e.V, false, time.Unix(0, e.TS).UTC()
		}
	}
	return v, nil
}

// fromOffline answers an entity the state store does not hold.
func (s *Service) fromOffline(id string, defs []registry.Def) ([]features.Value, bool) {
	vals := make([]features.Value, len(defs))
	found := false
	for i, d := range defs {
		vals[i] = features.Value{Name: d.Name, Version: d.Version, Null: true}
		if s.opts.Offline == nil {
			continue
		}
		if v, ok := s.opts.Offline.Get(id, d.Name, d.Version); ok {
			vals[i], found = v, true
		}
	}
	return vals, found
}

// Materialize computes every active feature of every entity in the state
// store at the clock's now and writes them as an offline snapshot. It
// returns the snapshot's path and the number of entities.
func (s *Service) Materialize(ctx context.Context) (string, int, error) {
	if s.opts.Offline == nil {
		return "", 0, fmt.Errorf("%w: no offline store configured", ErrInvalid)
	}
	now := s.opts.Clock.Now()
	var defs []registry.Def
	for _, d := range s.reg.List() {
		if d.Status == registry.StatusActive {
			defs = append(defs, d)
		}
	}
	eval, err := s.evaluator(defs)
	if err != nil {
		return "", 0, err
	}
	var ids []string
	if err := s.opts.States.Scan(ctx, func(id string) bool {
		ids = append(ids, id)
		return len(ids) < offline.MaxRows/max(1, len(defs))
	}); err != nil {
		return "", 0, err
	}
	slices.Sort(ids)
	var rows []offline.Row
	for start := 0; start < len(ids); start += MaxEntities {
		chunk := ids[start:min(len(ids), start+MaxEntities)]
		states, err := s.opts.States.Load(ctx, chunk)
		if err != nil {
			return "", 0, err
		}
		for k, st := range states {
			if st == nil {
				continue
			}
			vals, err := s.compute(st, features.SourceOnline, defs, eval, now, nil)
			if err != nil {
				s.opts.Logger.Warn("materialize: entity skipped", "entity", chunk[k], "err", err)
				continue
			}
			for _, v := range vals {
				rows = append(rows, offline.Row{EntityID: chunk[k], Feature: v.Name, Version: int32(v.Version), Value: v.Value, Null: v.Null, TimestampMicros: cmp.Or(v.Timestamp, now).UnixMicro()})
			}
		}
	}
	path, err := s.opts.Offline.Write(rows, now)
	return path, len(ids), err
}

// FeatureValues returns the current non-null values of names for each id
// (nil for an unknown entity); it serves hybrid vectors.
func (s *Service) FeatureValues(ctx context.Context, ids []string, names []string) ([]map[string]float64, error) {
	out := make([]map[string]float64, len(ids))
	for lo := 0; lo < len(ids); lo += MaxEntities {
		chunk := ids[lo:min(len(ids), lo+MaxEntities)]
		res, err := s.Get(ctx, GetRequest{Entities: chunk, Features: names})
		if err != nil {
			return nil, err
		}
		for k, ev := range res {
			if !ev.Found {
				continue
			}
			m := make(map[string]float64, len(ev.Values))
			for _, v := range ev.Values {
				if !v.Null {
					m[v.Name] = v.Value
				}
			}
			out[lo+k] = m
		}
	}
	return out, nil
}
