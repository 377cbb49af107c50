package session

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/embedd/embedd/internal/features"
)

// Names of the features in Result.Values, in their order there.
const (
	FeatureDuration   = "session_duration"
	FeatureEvents     = "events_in_session"
	FeatureAvgGap     = "avg_time_between_events"
	FeatureEngagement = "session_engagement_score"
	FeatureIsNew      = "is_new_session"
)

// FeatureNames returns the names of Result.Values in order.
func FeatureNames() []string {
	return []string{FeatureDuration, FeatureEvents, FeatureAvgGap, FeatureEngagement, FeatureIsNew}
}

// Store applies events to per-entity session state, atomically per event,
// and returns each event's session features.
type Store interface {
	// Process applies one event.
	Process(ctx context.Context, ev features.Event) (Result, error)
	// ProcessBatch applies events in order. Both slices have len(evs)
	// elements; errs[i] is nil when evs[i] was applied, and res[i] is then
	// its Result. One bad event does not affect the others.
	ProcessBatch(ctx context.Context, evs []features.Event) (res []Result, errs []error)
	// Close releases the store; later calls fail with ErrClosed.
	Close() error
}

// Result is the session of one applied event and its features.
type Result struct {
	EntityID string
	// SessionID is SessionID(EntityID, Start).
	SessionID string
	// Start and LastActivity are the session's first and latest event times
	// after this event, in UTC.
	Start, LastActivity time.Time
	// Events is the number of events in the session, this one included.
	Events int64
	// IsNew is true when this event started the session.
	IsNew bool
	// Duplicate is true when the session had already counted an event with
	// this event's id: nothing changed, and the other fields describe the
	// session as it is.
	Duplicate bool
	// Values are the features named by FeatureNames, in that order, each
	// with Timestamp = the event time and Source = features.SourceComputed.
	Values []features.Value
}

// SessionID returns the id of entityID's session that started at start: 32
// hex digits of SHA-1 over the entity id, a zero byte and the start time in
// decimal Unix nanoseconds. The Redis script computes the same.
func SessionID(entityID string, start time.Time) string {
	return sessionID(entityID, start.UnixNano())
}

func sessionID(entity string, start int64) string {
	b := make([]byte, 0, len(entity)+1+20)
	b = append(b, entity...)
	b = append(b, 0)
	b = strconv.AppendInt(b, start, 10)
	sum := sha1.Sum(b)
	return hex.EncodeToString(sum[:16])
}

// state is one entity's current session. Times are Unix nanoseconds of
// event time; start <= last and count >= 1 always.
type state struct {
	id          string
	start, last int64
	count       int64
}

// transition is the session rule (see the package documentation); the Lua
// script in session.lua implements the same. prev is nil when the entity
// has no state. On ErrOutOfOrder the state is unchanged.
func transition(prev *state, entity string, t int64, timeout time.Duration) (next state, isNew bool, err error) {
	switch {
	case prev == nil:
		// First event, or state expired or evicted.
	case t < prev.start:
		return *prev, false, outOfOrder(t, prev.id, prev.start)
	case t < prev.last:
		next = *prev
		next.count++
		return next, false, nil
	case t-prev.last < int64(timeout): // t >= last >= 0: no overflow
		next = *prev
		next.last = t
		next.count++
		return next, false, nil
	}
	return state{id: sessionID(entity, t), start: t, last: t, count: 1}, true, nil
}

// idRecord is the deduplication record of an entity's current session:
// the ids of the events it counted with their event times, at most
// Config.DedupeIDs, and floor, the latest event time of an id dropped for
// that bound (-1: none). The Redis script keeps the same in the hash: one
// field "i:" + id per id, n their number, and floor.
type idRecord struct {
	ids   map[string]int64
	floor int64
}

func newIDRecord() idRecord { return idRecord{floor: -1} }

// check runs before the transition for an event with id at t on a session
// whose record is rec: dup when the session counted id; ErrOutOfOrder
// when t is before the session or at or before the floor (it may have been
// counted and its id dropped).
func (rec *idRecord) check(prev *state, id string, t int64, limit int) (dup bool, err error) {
	if id == "" || prev == nil {
		return false, nil
	}
	if _, ok := rec.ids[id]; ok {
		return true, nil
	}
	if t < prev.start {
		return false, outOfOrder(t, prev.id, prev.start)
	}
	if rec.floor >= 0 && t <= rec.floor {
		return false, idFloor(id, t, prev.id, rec.floor, limit)
	}
	return false, nil
}

// add records id at t after the event was applied (isNew: it started a new
// session, so the record starts afresh). Past limit ids it drops the older
// half at once (amortized O(1) per event): with T the ceil(n/2)-th
// smallest time, every id at or before T, and the floor rises to T. The
// rule depends on times only, not on the order ids arrived in, so the
// Redis script, which sees the ids of a hash in no order, drops the same.
func (rec *idRecord) add(id string, t int64, isNew bool, limit int) {
	if isNew {
		*rec = newIDRecord()
	}
	if id == "" {
		return
	}
	if rec.ids == nil {
		rec.ids = map[string]int64{}
	}
	rec.ids[id] = t
	if len(rec.ids) <= limit {
		return
	}
	ts := slices.Sorted(maps.Values(rec.ids))
	cut := ts[(len(ts)+1)/2-1]
	maps.DeleteFunc(rec.ids, func(_ string, t int64) bool { return t <= cut })
	rec.floor = max(rec.floor, cut)
}

func idFloor(id string, t int64, session string, floor int64, limit int) error {
	return fmt.Errorf("%w: event id %q at %s is at or before %s, the oldest time session %s remembers event ids for (its last %d; Config.DedupeIDs): not counted in the session",
		ErrOutOfOrder, id, fmtNanos(t), fmtNanos(floor), session, limit)
}

func outOfOrder(t int64, id string, start int64) error {
	return fmt.Errorf("%w: event time %s precedes the start %s of session %s",
		ErrOutOfOrder, fmtNanos(t), fmtNanos(start), id)
}

func fmtNanos(n int64) string { return time.Unix(0, n).UTC().Format(time.RFC3339Nano) }

// result computes the features of event ev, whose application left the
// entity in state st.
func (c *Config) result(ev *features.Event, st state, isNew bool) Result {
	d := time.Duration(st.last - st.start)
	secs := d.Seconds()
	val := func(name string, v float64) features.Value {
		return features.Value{Name: name, Version: c.FeatureVersion, Value: v, Timestamp: ev.Timestamp, Source: features.SourceComputed}
	}
	avg := val(FeatureAvgGap, 0)
	if st.count < 2 {
		avg.Null = true
	} else {
		avg.Value = secs / float64(st.count-1)
	}
	fresh := 0.0
	if isNew {
		fresh = 1
	}
	return Result{
		EntityID:     ev.EntityID,
		SessionID:    st.id,
		Start:        time.Unix(0, st.start).UTC(),
		LastActivity: time.Unix(0, st.last).UTC(),
		Events:       st.count,
		IsNew:        isNew,
		Values: []features.Value{
			val(FeatureDuration, secs),
			val(FeatureEvents, float64(st.count)),
			avg,
			val(FeatureEngagement, c.Engagement.score(ev.Type, d)),
			val(FeatureIsNew, fresh),
		},
	}
}

// validateEvent checks the invariants of the state (see Limits in the
// package documentation) and returns ev's time in Unix nanoseconds.
func validateEvent(ev *features.Event) (int64, error) {
	switch id := ev.EntityID; {
	case id == "":
		return 0, fmt.Errorf("%w: entity id is empty", ErrInvalidEvent)
	case len(id) > MaxEntityIDBytes:
		return 0, fmt.Errorf("%w: entity id is %d bytes; limit %d", ErrInvalidEvent, len(id), MaxEntityIDBytes)
	case !utf8.ValidString(id):
		return 0, fmt.Errorf("%w: entity id is not valid UTF-8", ErrInvalidEvent)
	case len(ev.Type) > MaxEventTypeBytes:
		return 0, fmt.Errorf("%w: event type is %d bytes; limit %d", ErrInvalidEvent, len(ev.Type), MaxEventTypeBytes)
	case len(ev.ID) > MaxEventIDBytes || !utf8.ValidString(ev.ID):
		return 0, fmt.Errorf("%w: event id must be at most %d bytes of UTF-8 (got %d bytes)", ErrInvalidEvent, MaxEventIDBytes, len(ev.ID))
	}
	t := ev.Timestamp
	if t.Before(time.Unix(0, MinEventNanos)) || t.After(time.Unix(0, MaxEventNanos)) {
		return 0, fmt.Errorf("%w: event time %s is outside %s to %s", ErrInvalidEvent,
			t.UTC().Format(time.RFC3339Nano), fmtNanos(MinEventNanos), fmtNanos(MaxEventNanos))
	}
	return t.UnixNano(), nil
}

// itemError names the event of an error: its index i in a batch (none when
// i < 0, for Process) and its entity id when that is printable.
func itemError(i int, ev *features.Event, err error) error {
	item := "event"
	if i >= 0 {
		item = "events[" + strconv.Itoa(i) + "]"
	}
	if ev.EntityID == "" || len(ev.EntityID) > MaxEntityIDBytes || !utf8.ValidString(ev.EntityID) {
		return fmt.Errorf("%s: %w", item, err)
	}
	return fmt.Errorf("%s (entity %q): %w", item, ev.EntityID, err)
}

// prepare validates a batch: it returns the event times and, per event,
// nil or the error that excludes it. ok is false when no event can run.
func prepare(ctx context.Context, evs []features.Event) (ts []int64, errs []error, ok bool) {
	errs = make([]error, len(evs))
	fail := func(err error) ([]int64, []error, bool) {
		for i := range errs {
			errs[i] = itemError(i, &evs[i], err)
		}
		return nil, errs, false
	}
	if len(evs) > MaxBatch {
		return fail(fmt.Errorf("%w: batch of %d events; limit %d", ErrInvalidEvent, len(evs), MaxBatch))
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	ts = make([]int64, len(evs))
	for i := range evs {
		t, err := validateEvent(&evs[i])
		if err != nil {
			errs[i] = itemError(i, &evs[i], err)
			continue
		}
		ts[i], ok = t, true
	}
	return ts, errs, ok
}

// closedErrs marks every event of a batch with ErrClosed.
func closedErrs(evs []features.Event, errs []error) {
	for i := range errs {
		if errs[i] == nil {
			errs[i] = itemError(i, &evs[i], ErrClosed)
		}
	}
}
