package service

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/embedd/embedd/internal/features"
	"github.com/embedd/embedd/internal/features/session"
	"github.com/embedd/embedd/internal/features/window"
)

// The ingest flow: Ingest validates each event against Limits, runs the
// valid ones through the sessionizer, applies them to their entities'
// states in one batch and counts the outcomes (metrics.go).

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

// Ingest applies events and returns one error per event (nil where it was
// applied). An error for the whole call (too many events) is returned as
// err with no per-event errors.
func (s *Service) Ingest(ctx context.Context, events []features.Event) (errs []error, err error) {
	if len(events) > s.opts.Limits.Events {
		return nil, fmt.Errorf("%w: %d events; limit %d", ErrInvalid, len(events), s.opts.Limits.Events)
	}
	now := s.opts.Clock.Now()
	errs = make([]error, len(events))
	var valid []int
	for i := range events {
		if err := s.opts.Limits.event(&events[i], now, s.opts.MaxFutureSkew); err != nil {
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
	// fn may run more than once per entity (optimistic retries): each run
	// starts its entity's outcomes afresh.
	evErrs := make([]map[int]error, len(order))
	dups := make([]int, len(order))
	uerrs := s.opts.States.UpdateBatch(ctx, order, func(k int, st *State) error {
		m := map[int]error{}
		evErrs[k], dups[k] = m, 0
		applied := 0
		for _, i := range byEntity[order[k]] {
			ev := &events[i]
			if ev.ID != "" {
				if st.hasID(ev.ID) {
					dups[k]++ // applied before: once is enough
					continue
				}
				if err := st.checkIDFloor(ev, s.opts.DedupeIDs); err != nil {
					m[i] = err
					continue
				}
			}
			if err := s.apply(st, ev, results[i]); err != nil {
				m[i] = err
				continue
			}
			if ev.ID != "" {
				st.recordID(ev.ID, ev.Timestamp.UnixNano())
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
		if from, ok := st.acceptFrom(s.winCfg.AllowedLateness); ok {
			st.trimIDs(from, s.opts.DedupeIDs)
		}
		return nil
	})
	duplicates := 0
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
		duplicates += dups[k]
		s.invalidate(id)
	}
	s.count(errs, lateForSession, duplicates)
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
