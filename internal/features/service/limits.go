package service

import (
	"fmt"
	"math"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/embedd/embedd/internal/features"
	"github.com/embedd/embedd/internal/features/session"
	"github.com/embedd/embedd/internal/features/window"
)

// The largest value, and the default, of each Limits field. Where a store
// below the service holds the same thing in its own state (the session
// store keys its state by entity id, looks the event type up in its
// engagement weights and applies a batch in one call), the ceiling is that
// store's invariant, so an event the service accepts is never rejected
// there for a limit the caller was not told.
const (
	MaxEvents         = session.MaxBatch          // events per Ingest
	MaxEntities       = 1024                      // entities per Get
	MaxFeatures       = 512                       // features per Get, listed or in a set
	MaxEntityIDBytes  = session.MaxEntityIDBytes  // bytes of an entity id, ingest and read
	MaxEventTypeBytes = session.MaxEventTypeBytes // bytes of an event type
	MaxValuesPerEvent = 64                        // values of one event
	MaxContextEntries = 32                        // context entries of one event or one Get
	MaxContextBytes   = 256                       // bytes of a context key and of a value
)

// Event times the service accepts: within window's range (series points)
// and session's (Unix nanoseconds that are non-negative and fit an int64),
// that is 1970-01-01T00:00:00Z to about 2116-02-20.
const (
	minEventNanos = max(window.MinTS, session.MinEventNanos)
	maxEventNanos = min(window.MaxTS, session.MaxEventNanos)
)

// Limits bounds the requests of the two flows this package owns: ingest
// (Ingest, and so IngestEvents and the stream consumer) and read (Get,
// GetFeatures). They are checked here and nowhere else: the transport only
// converts, and the stores keep only the invariants of their own state,
// which these limits never exceed. Every field may lower its default and
// none may raise it: a field above its ceiling fails New; zero means the
// default; negative is invalid.
type Limits struct {
	// Events is the most events in one Ingest call; more fail the call.
	// Default and ceiling MaxEvents (4096).
	Events int
	// EntityIDBytes is the longest entity id, in bytes of UTF-8, of an
	// event or of a Get. Default and ceiling MaxEntityIDBytes (256).
	EntityIDBytes int
	// EventTypeBytes is the longest event type, in bytes of UTF-8.
	// Default and ceiling MaxEventTypeBytes (256).
	EventTypeBytes int
	// ValuesPerEvent is the most numeric values of one event. Default and
	// ceiling MaxValuesPerEvent (64).
	ValuesPerEvent int
	// ContextEntries is the most context entries of one event or one Get.
	// Default and ceiling MaxContextEntries (32).
	ContextEntries int
	// ContextBytes is the longest context key and the longest context
	// value, in bytes of UTF-8. Default and ceiling MaxContextBytes (256).
	ContextBytes int
	// Entities is the most entities of one Get. Default and ceiling
	// MaxEntities (1024).
	Entities int
	// Features is the most features one Get serves, listed or as a feature
	// set (New rejects a registry with a larger set). Default and ceiling
	// MaxFeatures (512).
	Features int
}

// DefaultLimits returns the defaults, which are also the ceilings.
func DefaultLimits() Limits {
	return Limits{
		Events:         MaxEvents,
		EntityIDBytes:  MaxEntityIDBytes,
		EventTypeBytes: MaxEventTypeBytes,
		ValuesPerEvent: MaxValuesPerEvent,
		ContextEntries: MaxContextEntries,
		ContextBytes:   MaxContextBytes,
		Entities:       MaxEntities,
		Features:       MaxFeatures,
	}
}

// withDefaults fills the zero fields and checks the others.
func (l Limits) withDefaults() (Limits, error) {
	d := DefaultLimits()
	for _, f := range []struct {
		name     string
		v        *int
		def, max int
	}{
		{"Events", &l.Events, d.Events, MaxEvents},
		{"EntityIDBytes", &l.EntityIDBytes, d.EntityIDBytes, MaxEntityIDBytes},
		{"EventTypeBytes", &l.EventTypeBytes, d.EventTypeBytes, MaxEventTypeBytes},
		{"ValuesPerEvent", &l.ValuesPerEvent, d.ValuesPerEvent, MaxValuesPerEvent},
		{"ContextEntries", &l.ContextEntries, d.ContextEntries, MaxContextEntries},
		{"ContextBytes", &l.ContextBytes, d.ContextBytes, MaxContextBytes},
		{"Entities", &l.Entities, d.Entities, MaxEntities},
		{"Features", &l.Features, d.Features, MaxFeatures},
	} {
		switch {
		case *f.v < 0 || *f.v > f.max:
			return l, fmt.Errorf("%w: Limits.%s is %d; want 0 (default %d) to %d", ErrInvalid, f.name, *f.v, f.def, f.max)
		case *f.v == 0:
			*f.v = f.def
		}
	}
	return l, nil
}

// entityID checks an entity id; item names it in the error ("entity_id",
// "entities[3]").
func (l *Limits) entityID(item, id string) error {
	if id == "" || len(id) > l.EntityIDBytes || !utf8.ValidString(id) {
		return fmt.Errorf("%w: %s must be 1 to %d bytes of UTF-8 (got %d bytes)", ErrInvalid, item, l.EntityIDBytes, len(id))
	}
	return nil
}

// context checks the context of an event or a Get.
func (l *Limits) context(m map[string]string) error {
	if len(m) > l.ContextEntries {
		return fmt.Errorf("%w: %d context entries; limit %d", ErrInvalid, len(m), l.ContextEntries)
	}
	for _, k := range slices.Sorted(mapKeys(m)) {
		v := m[k]
		if k == "" || len(k) > l.ContextBytes || len(v) > l.ContextBytes || !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fmt.Errorf("%w: context entry %q: key 1 to %d bytes and value at most %d bytes of UTF-8", ErrInvalid, k, l.ContextBytes, l.ContextBytes)
		}
	}
	return nil
}

// event checks one event at the server time now; maxSkew bounds how far
// ahead of now its timestamp may be.
func (l *Limits) event(ev *features.Event, now time.Time, maxSkew time.Duration) error {
	if err := l.entityID("entity_id", ev.EntityID); err != nil {
		return err
	}
	switch {
	case len(ev.Type) > l.EventTypeBytes || !utf8.ValidString(ev.Type):
		return fmt.Errorf("%w: event_type must be at most %d bytes of UTF-8 (got %d)", ErrInvalid, l.EventTypeBytes, len(ev.Type))
	case checkEventID(ev.ID) != nil:
		return checkEventID(ev.ID)
	case ev.Timestamp.IsZero():
		return fmt.Errorf("%w: timestamp is missing", ErrInvalid)
	case ev.Timestamp.After(now.Add(maxSkew)):
		return fmt.Errorf("%w: timestamp %s is %v ahead of the server clock; limit %v", ErrInvalid,
			ev.Timestamp.UTC().Format(time.RFC3339Nano), ev.Timestamp.Sub(now).Round(time.Millisecond), maxSkew)
	case ev.Timestamp.Before(time.Unix(0, minEventNanos)) || ev.Timestamp.After(time.Unix(0, maxEventNanos)):
		return fmt.Errorf("%w: timestamp %s is outside [%s, %s]", ErrInvalid, ev.Timestamp.UTC().Format(time.RFC3339Nano),
			time.Unix(0, minEventNanos).UTC().Format(time.RFC3339Nano), time.Unix(0, maxEventNanos).UTC().Format(time.RFC3339Nano))
	case len(ev.Values) > l.ValuesPerEvent:
		return fmt.Errorf("%w: %d values; limit %d", ErrInvalid, len(ev.Values), l.ValuesPerEvent)
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
	return l.context(ev.Context)
}

// checkGet validates a request's entities, context and as_of against the
// limits and returns its as_of (now when unset).
func (s *Service) checkGet(req *GetRequest, now time.Time) (time.Time, error) {
	lim := &s.opts.Limits
	switch {
	case len(req.Entities) == 0:
		return now, fmt.Errorf("%w: no entities", ErrInvalid)
	case len(req.Entities) > lim.Entities:
		return now, fmt.Errorf("%w: %d entities; limit %d", ErrInvalid, len(req.Entities), lim.Entities)
	}
	for i, id := range req.Entities {
		if err := lim.entityID(fmt.Sprintf("entities[%d]", i), id); err != nil {
			return now, err
		}
	}
	if err := lim.context(req.Context); err != nil {
		return now, err
	}
	asOf := req.AsOf
	if asOf.IsZero() {
		asOf = now
	}
	if asOf.After(now.Add(s.opts.MaxFutureSkew)) {
		return now, fmt.Errorf("%w: as_of %s is ahead of the server clock by more than %v", ErrInvalid, asOf.UTC().Format(time.RFC3339), s.opts.MaxFutureSkew)
	}
	if oldest := now.Add(-s.opts.AsOfHorizon); asOf.Before(oldest) {
		return now, fmt.Errorf("%w: as_of %s is before the retained horizon (%v before now: %s)", ErrInvalid,
			asOf.UTC().Format(time.RFC3339), s.opts.AsOfHorizon, oldest.UTC().Format(time.RFC3339))
	}
	return asOf, nil
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
