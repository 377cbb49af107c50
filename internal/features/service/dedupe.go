package service

import (
	"cmp"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/embedd/embedd/internal/features"
	"github.com/embedd/embedd/internal/features/session"
	"github.com/embedd/embedd/internal/features/window"
)

// Exactly-once ingestion. An event with an id (features.Event.ID) is
// applied to its entity at most once: the entity's State records the ids it
// applied (Applied) and the id is recorded by the same atomic update (the
// Memory store's lock, the Redis compare-and-set) that adds the event's
// points, so a crash can never leave the points without the id or the id
// without the points. A later event with a recorded id is a duplicate: it is
// not applied, it is not an error (the caller may acknowledge it: it was
// applied once), and it is counted in IngestStats.Duplicate.
//
// The record is bounded two ways, and never forgets an id while it would
// still apply an event carrying it:
//
//   - by time: after each update, the ids of events older than the entity's
//     acceptance bound (the events series' watermark minus the allowed
//     lateness, or its retained horizon when that is later) are dropped. An
//     event that old is rejected with window.ErrTooLate whether or not it
//     was applied before, so it can never be counted twice;
//   - by count: at most Options.DedupeIDs ids per entity (default 1024).
//     When more are applied within the lateness window the oldest (by event
//     time, then id) are dropped and IDFloor rises to the latest time
//     dropped. From then on an event with an id that is not recorded and a
//     time at or before IDFloor is rejected with window.ErrTooLate (naming
//     the limit), because whether it was applied cannot be told: for an
//     entity with more than DedupeIDs events per lateness window, the
//     lateness allowed to events with ids shrinks to what the record spans.
//
// Events without an id are never deduplicated and never rejected by
// IDFloor.

// MaxEventIDBytes is the longest event id, in bytes of UTF-8: the session
// store's bound, which holds ids in its state too.
const MaxEventIDBytes = session.MaxEventIDBytes

// DefaultDedupeIDs is the default of Options.DedupeIDs; MaxDedupeIDs its
// ceiling.
const (
	DefaultDedupeIDs = 1024
	MaxDedupeIDs     = 1 << 16
)

// AppliedID is the id of an applied event and its event time (unix nanos).
type AppliedID struct {
	ID string
	TS int64
}

func (a AppliedID) compare(b AppliedID) int {
	if c := cmp.Compare(a.TS, b.TS); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}

// checkEventID validates an event id (empty: none).
func checkEventID(id string) error {
	if len(id) > MaxEventIDBytes || !utf8.ValidString(id) {
		return fmt.Errorf("%w: event_id must be at most %d bytes of UTF-8 (got %d bytes)", ErrInvalid, MaxEventIDBytes, len(id))
	}
	return nil
}

// hasID reports whether the state applied an event with id.
func (s *State) hasID(id string) bool {
	if s.ids == nil {
		s.ids = make(map[string]struct{}, len(s.Applied))
		for _, a := range s.Applied {
			s.ids[a.ID] = struct{}{}
		}
	}
	_, ok := s.ids[id]
	return ok
}

// checkIDFloor fails with window.ErrTooLate when ev (with an id the state
// has not recorded) is at or before IDFloor: it may have been applied and
// its id forgotten for the count bound.
func (s *State) checkIDFloor(ev *features.Event, limit int) error {
	if ts := ev.Timestamp.UnixNano(); s.IDFloor >= 0 && ts <= s.IDFloor {
		return fmt.Errorf("%w: event_id %q at %s is at or before %s, the oldest time the entity still remembers event ids for (it keeps its last %d; Options.DedupeIDs); whether it was applied cannot be told",
			window.ErrTooLate, ev.ID, ev.Timestamp.UTC().Format(time.RFC3339Nano), time.Unix(0, s.IDFloor).UTC().Format(time.RFC3339Nano), limit)
	}
	return nil
}

// recordID records that the event with id at ts (unix nanos) was applied.
func (s *State) recordID(id string, ts int64) {
	a := AppliedID{ID: id, TS: ts}
	if n := len(s.Applied); n == 0 || s.Applied[n-1].compare(a) < 0 {
		s.Applied = append(s.Applied, a) // the common case: in time order
	} else {
		i, _ := slices.BinarySearchFunc(s.Applied, a, AppliedID.compare)
		s.Applied = slices.Insert(s.Applied, i, a)
	}
	if s.ids != nil {
		s.ids[id] = struct{}{}
	}
}

// trimIDs drops the ids of events before from (unix nanos: no event before
// it can be applied any more), then the oldest beyond limit, raising
// IDFloor to the latest time dropped for the count.
func (s *State) trimIDs(from int64, limit int) {
	drop, _ := slices.BinarySearchFunc(s.Applied, from, func(a AppliedID, t int64) int { return cmp.Compare(a.TS, t) })
	if over := len(s.Applied) - drop - limit; over > 0 {
		drop += over
		s.IDFloor = max(s.IDFloor, s.Applied[drop-1].TS)
	}
	if drop == 0 {
		return
	}
	if s.ids != nil {
		for _, a := range s.Applied[:drop] {
			delete(s.ids, a.ID)
		}
	}
	s.Applied = slices.Delete(s.Applied, 0, drop)
}

// acceptFrom is the earliest event time the state can still accept: the
// events series' watermark minus the allowed lateness, or its retained
// horizon when later (window.Series.Insert rejects anything before).
func (s *State) acceptFrom(lateness time.Duration) (int64, bool) {
	ser := s.Series[EventsSource]
	if ser == nil {
		return 0, false
	}
	wm, ok := ser.Watermark()
	if !ok {
		return 0, false
	}
	from := wm - int64(lateness)
	if r, ok := ser.RetainedFrom(); ok {
		from = max(from, r)
	}
	return from, true
}

// decodeApplied reads the applied-id section of a version 2 state and
// checks it is canonical: ids 1 to MaxEventIDBytes bytes of UTF-8, sorted
// strictly by (TS, ID), times non-negative, the floor -1 or non-negative.
// (Uniqueness of ids across times is what the writer keeps; it is not
// checked here, so that reads do not pay for an index.)
func (s *State) decodeApplied(r *reader) error {
	s.IDFloor = int64(r.u64())
	if s.IDFloor < -1 {
		return fmt.Errorf("%w: id floor %d", errCorrupt, s.IDFloor)
	}
	for i, count := 0, int(r.u32()); i < count && r.err == nil; i++ {
		a := AppliedID{ID: r.str(), TS: int64(r.u64())}
		if r.err != nil {
			break
		}
		if a.ID == "" || len(a.ID) > MaxEventIDBytes || !utf8.ValidString(a.ID) || a.TS < 0 ||
			(len(s.Applied) > 0 && s.Applied[len(s.Applied)-1].compare(a) >= 0) {
			return fmt.Errorf("%w: applied id %d is not canonical", errCorrupt, i)
		}
		s.Applied = append(s.Applied, a)
	}
	return nil
}
