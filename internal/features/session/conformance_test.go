package session

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/features"
)

// t0 is the start of most test streams.
var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func ev(entity, typ string, at time.Time) features.Event {
	return features.Event{EntityID: entity, Type: typ, Timestamp: at}
}

// want is a hand-computed Result: seconds for durations, NaN avg for Null.
type want struct {
	startAt, last time.Time
	events        int64
	dur, avg, eng float64
	isNew         bool
}

const eps = 1e-12

func checkResult(t *testing.T, what string, got Result, ev features.Event, w want) {
	t.Helper()
	if got.EntityID != ev.EntityID || !got.Start.Equal(w.startAt) || !got.LastActivity.Equal(w.last) || got.Events != w.events || got.IsNew != w.isNew {
		t.Errorf("%s: got entity %q start %v last %v events %d new %v; want %q %v %v %d %v", what,
			got.EntityID, got.Start, got.LastActivity, got.Events, got.IsNew, ev.EntityID, w.startAt, w.last, w.events, w.isNew)
	}
	if id := SessionID(ev.EntityID, w.startAt); got.SessionID != id {
		t.Errorf("%s: session id got %q; want %q", what, got.SessionID, id)
	}
	names := FeatureNames()
	if len(got.Values) != len(names) {
		t.Fatalf("%s: got %d values; want %d", what, len(got.Values), len(names))
	}
	isNew := 0.0
	if w.isNew {
		isNew = 1
	}
	vals := []float64{w.dur, float64(w.events), w.avg, w.eng, isNew}
	for k, v := range got.Values {
		if v.Name != names[k] || v.Version != 1 || !v.Timestamp.Equal(ev.Timestamp) || v.Source != features.SourceComputed {
			t.Errorf("%s: value %d got name %q version %d ts %v source %v; want %q 1 %v computed", what, k, v.Name, v.Version, v.Timestamp, v.Source, names[k], ev.Timestamp)
		}
		wantNull := math.IsNaN(vals[k])
		if v.Null != wantNull || (!wantNull && math.Abs(v.Value-vals[k]) > eps) || (wantNull && v.Value != 0) {
			t.Errorf("%s: %s got %v (null %v); want %v", what, v.Name, v.Value, v.Null, vals[k])
		}
	}
}

func mustProcess(t *testing.T, s Store, e features.Event) Result {
	t.Helper()
	r, err := s.Process(context.Background(), e)
	if err != nil {
		t.Fatalf("Process(%s %s %v): %v", e.EntityID, e.Type, e.Timestamp, err)
	}
	return r
}

// testStore is the conformance suite every Store passes. open returns a
// new, empty store for cfg; it is called once per subtest or more.
func testStore(t *testing.T, open func(t *testing.T, cfg Config) Store) {
	ctx := context.Background()
	def := DefaultConfig()
	nan := math.NaN()

	t.Run("HandComputed", func(t *testing.T) {
		// One session through the engagement boundaries (29 s, 30 s, 300 s,
		// 301 s) with the seed's weights.
		s := open(t, def)
		steps := []struct {
			typ string
			off time.Duration
			w   want
		}{
			{"view", 0, want{events: 1, dur: 0, avg: nan, eng: 0.55 * 0.8, isNew: true}},
			{"click", 10 * time.Second, want{events: 2, dur: 10, avg: 10, eng: 0.6 * 0.8}},
			{"purchase", 29 * time.Second, want{events: 3, dur: 29, avg: 14.5, eng: 0.8 * 0.8}},
			{"view", 30 * time.Second, want{events: 4, dur: 30, avg: 10, eng: 0.55}},
			{"purchase", 300 * time.Second, want{events: 5, dur: 300, avg: 75, eng: 0.8}},
			{"purchase", 301 * time.Second, want{events: 6, dur: 301, avg: 60.2, eng: 0.8 * 1.2}},
			{"scroll", 400 * time.Second, want{events: 7, dur: 400, avg: 400.0 / 6, eng: 0.5 * 1.2}},
		}
		for _, st := range steps {
			e := ev("hand", st.typ, t0.Add(st.off))
			st.w.startAt, st.w.last = t0, e.Timestamp
			checkResult(t, fmt.Sprintf("%s at +%v", st.typ, st.off), mustProcess(t, s, e), e, st.w)
		}
	})

	t.Run("Cap", func(t *testing.T) {
		cfg := def
		cfg.Engagement = DefaultEngagement()
		cfg.Engagement.Base = 0.9
		s := open(t, cfg)
		e1 := ev("cap", "purchase", t0)
		// (0.9+0.3)*0.8 = 0.96: under the cap.
		checkResult(t, "first", mustProcess(t, s, e1), e1, want{startAt: t0, last: t0, events: 1, dur: 0, avg: nan, eng: 0.96, isNew: true})
		e2 := ev("cap", "purchase", t0.Add(31*time.Second))
		// (0.9+0.3)*1 = 1.2: capped at 1.
		checkResult(t, "second", mustProcess(t, s, e2), e2, want{startAt: t0, last: e2.Timestamp, events: 2, dur: 31, avg: 31, eng: 1})
	})

	t.Run("Gaps", func(t *testing.T) {
		s := open(t, def)
		to := def.Timeout
		cases := []struct {
			name    string
			gap     time.Duration
			newSess bool
		}{
			{"below", to - time.Nanosecond, false},
			{"exactly", to, true},
			{"above", to + time.Second, true},
		}
		for i, c := range cases {
			entity := "gap-" + c.name
			a := ev(entity, "view", t0)
			b := ev(entity, "view", t0.Add(c.gap))
			ra := mustProcess(t, s, a)
			rb := mustProcess(t, s, b)
			if rb.IsNew != c.newSess || (rb.SessionID != ra.SessionID) == !c.newSess {
				t.Errorf("case %d %s: gap %v got new %v, ids %s/%s; want new %v", i, c.name, c.gap, rb.IsNew, ra.SessionID, rb.SessionID, c.newSess)
			}
			if c.newSess {
				checkResult(t, c.name, rb, b, want{startAt: b.Timestamp, last: b.Timestamp, events: 1, avg: nan, eng: 0.44, isNew: true})
			} else {
				d := c.gap.Seconds()
				checkResult(t, c.name, rb, b, want{startAt: t0, last: b.Timestamp, events: 2, dur: d, avg: d, eng: 0.55 * 1.2})
			}
		}
	})

	t.Run("ShortTimeout", func(t *testing.T) {
		cfg := def
		cfg.Timeout = 10 * time.Second
		s := open(t, cfg)
		r := mustProcess(t, s, ev("short", "view", t0))
		r2 := mustProcess(t, s, ev("short", "view", t0.Add(9999*time.Millisecond)))
		r3 := mustProcess(t, s, ev("short", "view", t0.Add(19999*time.Millisecond)))
		if r2.SessionID != r.SessionID || !r3.IsNew || r3.Events != 1 {
			t.Errorf("got ids %s %s %s new %v events %d; want the third alone in a new session", r.SessionID, r2.SessionID, r3.SessionID, r3.IsNew, r3.Events)
		}
	})

	t.Run("OutOfOrder", func(t *testing.T) {
		s := open(t, def)
		mustProcess(t, s, ev("ooo", "view", t0))
		mustProcess(t, s, ev("ooo", "view", t0.Add(60*time.Second)))
		late := ev("ooo", "click", t0.Add(30*time.Second))
		// Late but inside the session: counted, last stays at +60 s.
		checkResult(t, "late inside", mustProcess(t, s, late), late, want{startAt: t0, last: t0.Add(60 * time.Second), events: 3, dur: 60, avg: 30, eng: 0.6})
		// A new session at +2 h, then an event of +1 h: before its start.
		t2 := t0.Add(2 * time.Hour)
		r := mustProcess(t, s, ev("ooo", "view", t2))
		_, err := s.Process(ctx, ev("ooo", "view", t0.Add(time.Hour)))
		if !errors.Is(err, ErrOutOfOrder) {
			t.Fatalf("event before start: got %v; want ErrOutOfOrder", err)
		}
		for _, part := range []string{"2024-05-01T13:00:00Z", "2024-05-01T14:00:00Z", r.SessionID, `"ooo"`} {
			if !strings.Contains(err.Error(), part) {
				t.Errorf("error %q does not name %s", err, part)
			}
		}
		// The state is unchanged by the rejected event.
		e := ev("ooo", "view", t2.Add(time.Second))
		checkResult(t, "after reject", mustProcess(t, s, e), e, want{startAt: t2, last: e.Timestamp, events: 2, dur: 1, avg: 1, eng: 0.55 * 0.8})
	})

	t.Run("Batch", func(t *testing.T) {
		s := open(t, def)
		evs := []features.Event{
			ev("b1", "view", t0),
			ev("", "view", t0),                                      // empty entity
			ev("b1", "click", t0.Add(5*time.Second)),                // sees events[0]
			ev("b2", "view", time.Unix(-1, 0)),                      // before 1970
			ev("b2", strings.Repeat("x", MaxEventTypeBytes+1), t0),  // long type
			ev(strings.Repeat("e", MaxEntityIDBytes+1), "view", t0), // long id
			ev("b1", "view", t0.Add(-time.Second)),                  // before start
			ev("b2", "view", t0),                                    // b2's first
			ev("b1", "purchase", t0.Add(5*time.Second+def.Timeout)), // new session
		}
		res, errs := s.ProcessBatch(ctx, evs)
		if len(res) != len(evs) || len(errs) != len(evs) {
			t.Fatalf("got %d results, %d errors; want %d each", len(res), len(errs), len(evs))
		}
		wantErr := map[int]struct {
			sentinel error
			text     string
		}{
			1: {ErrInvalidEvent, "events[1]: session: invalid event: entity id is empty"},
			3: {ErrInvalidEvent, "events[3] (entity \"b2\"): session: invalid event: event time 1969-12-31T23:59:59Z is outside"},
			4: {ErrInvalidEvent, fmt.Sprintf("is %d bytes; limit %d", MaxEventTypeBytes+1, MaxEventTypeBytes)},
			5: {ErrInvalidEvent, fmt.Sprintf("events[5]: session: invalid event: entity id is %d bytes; limit %d", MaxEntityIDBytes+1, MaxEntityIDBytes)},
			6: {ErrOutOfOrder, "events[6] (entity \"b1\")"},
		}
		for i, err := range errs {
			w, bad := wantErr[i]
			switch {
			case !bad && err != nil:
				t.Errorf("events[%d]: got %v; want nil", i, err)
			case bad && (!errors.Is(err, w.sentinel) || !strings.Contains(fmt.Sprint(err), w.text)):
				t.Errorf("events[%d]: got %v; want %v containing %q", i, err, w.sentinel, w.text)
			}
		}
		checkResult(t, "events[0]", res[0], evs[0], want{startAt: t0, last: t0, events: 1, avg: nan, eng: 0.44, isNew: true})
		checkResult(t, "events[2]", res[2], evs[2], want{startAt: t0, last: evs[2].Timestamp, events: 2, dur: 5, avg: 5, eng: 0.48})
		checkResult(t, "events[7]", res[7], evs[7], want{startAt: t0, last: t0, events: 1, avg: nan, eng: 0.44, isNew: true})
		checkResult(t, "events[8]", res[8], evs[8], want{startAt: evs[8].Timestamp, last: evs[8].Timestamp, events: 1, avg: nan, eng: 0.64, isNew: true})
		if res[1].SessionID != "" || res[6].Values != nil {
			t.Errorf("failed events got results %+v %+v; want zero", res[1], res[6])
		}
	})

	t.Run("Dedupe", func(t *testing.T) {
		// An event delivered again (same id) is counted once; the record
		// keeps DedupeIDs ids and, past them, drops the older half: an id
		// at or before the floor is then not counted (it may have been).
		cfg := def
		cfg.DedupeIDs = 3
		s := open(t, cfg)
		at := func(sec int, id string) features.Event {
			e := ev("dd", "view", t0.Add(time.Duration(sec)*time.Second))
			e.ID = id
			return e
		}
		a, b, c, d := at(0, "a"), at(10, "b"), at(20, "c"), at(30, "d")
		for _, e := range []features.Event{a, b, a, b} {
			mustProcess(t, s, e)
		}
		r := mustProcess(t, s, b)
		if !r.Duplicate || r.Events != 2 {
			t.Errorf("b again: got duplicate %v, %d events; want true, 2", r.Duplicate, r.Events)
		}
		// A batch with a redelivery inside it and events without id.
		res, errs := s.ProcessBatch(ctx, []features.Event{c, c, at(15, ""), at(15, "")})
		for i, want := range []struct {
			dup    bool
			events int64
		}{{false, 3}, {true, 3}, {false, 4}, {false, 5}} {
			if errs[i] != nil || res[i].Duplicate != want.dup || res[i].Events != want.events {
				t.Errorf("batch[%d]: got duplicate %v, %d events, %v; want %v, %d, nil", i, res[i].Duplicate, res[i].Events, errs[i], want.dup, want.events)
			}
		}
		// d is the fourth id: the older half (times 0 and 10, the 2nd
		// smallest of 4) goes and the floor is 10. a and b again, and a new
		// id at the floor, are not counted; c and d are duplicates; a new
		// id after the floor counts.
		mustProcess(t, s, d)
		for _, e := range []features.Event{a, b, at(10, "new")} {
			if _, err := s.Process(ctx, e); !errors.Is(err, ErrOutOfOrder) || !strings.Contains(err.Error(), "remembers event ids") {
				t.Errorf("id %q at the floor: got %v; want ErrOutOfOrder naming the id record", e.ID, err)
			}
		}
		for _, e := range []features.Event{c, d} {
			if r := mustProcess(t, s, e); !r.Duplicate || r.Events != 6 {
				t.Errorf("%s again: got duplicate %v, %d events; want true, 6", e.ID, r.Duplicate, r.Events)
			}
		}
		if r := mustProcess(t, s, at(11, "e")); r.Duplicate || r.Events != 7 {
			t.Errorf("e: got duplicate %v, %d events; want false, 7", r.Duplicate, r.Events)
		}
		// A new session starts a new record.
		f := at(30+int(def.Timeout/time.Second), "f")
		if r := mustProcess(t, s, f); !r.IsNew || r.Events != 1 {
			t.Errorf("f: got new %v, %d events; want a new session", r.IsNew, r.Events)
		}
		if r := mustProcess(t, s, f); !r.Duplicate || r.Events != 1 {
			t.Errorf("f again: got duplicate %v, %d events; want true, 1", r.Duplicate, r.Events)
		}
		if r := mustProcess(t, s, at(30+int(def.Timeout/time.Second)+1, "c")); r.Duplicate || r.Events != 2 {
			t.Errorf("c in the new session: got duplicate %v, %d events; want false, 2 (a new record)", r.Duplicate, r.Events)
		}
		if _, err := s.Process(ctx, at(1, strings.Repeat("x", MaxEventIDBytes+1))); !errors.Is(err, ErrInvalidEvent) || !strings.Contains(err.Error(), "event id must be at most 128 bytes") {
			t.Errorf("long id: got %v; want ErrInvalidEvent naming the limit", err)
		}
	})

	t.Run("BatchLimit", func(t *testing.T) {
		s := open(t, def)
		evs := make([]features.Event, MaxBatch+1)
		for i := range evs {
			evs[i] = ev("lim", "view", t0)
		}
		_, errs := s.ProcessBatch(ctx, evs)
		for _, i := range []int{0, MaxBatch} {
			if !errors.Is(errs[i], ErrInvalidEvent) || !strings.Contains(errs[i].Error(), fmt.Sprintf("events[%d] (entity \"lim\"): session: invalid event: batch of %d events; limit %d", i, MaxBatch+1, MaxBatch)) {
				t.Errorf("errs[%d]: got %v; want the batch limit", i, errs[i])
			}
		}
		// Nothing was applied.
		if r := mustProcess(t, s, ev("lim", "view", t0)); !r.IsNew {
			t.Errorf("after a rejected batch: got a continued session; want a new one")
		}
		res, errs := s.ProcessBatch(ctx, nil)
		if len(res) != 0 || len(errs) != 0 {
			t.Errorf("empty batch: got %d, %d; want 0, 0", len(res), len(errs))
		}
	})

	t.Run("TimeRange", func(t *testing.T) {
		// The ends of the time range, where Unix nanoseconds exceed the 2^53
		// that a double holds exactly: 1 ns either side of the timeout.
		cfg := def
		s := open(t, cfg)
		end := time.Unix(0, math.MaxInt64)
		a := end.Add(-2*cfg.Timeout + time.Nanosecond)
		b := a.Add(cfg.Timeout - time.Nanosecond) // extends
		c := b.Add(cfg.Timeout)                   // exactly the timeout: new
		if !c.Equal(end) {
			t.Fatalf("c = %v; want the last valid time %v", c, end)
		}
		ra := mustProcess(t, s, ev("far", "view", a))
		rb := mustProcess(t, s, ev("far", "view", b))
		// Late, 1 ns after the start: counted, last stays b.
		rl := mustProcess(t, s, ev("far", "view", a.Add(time.Nanosecond)))
		rc := mustProcess(t, s, ev("far", "view", c))
		if !ra.IsNew || rb.IsNew || rb.SessionID != ra.SessionID || rb.Events != 2 || rl.Events != 3 || !rl.LastActivity.Equal(b) || !rc.IsNew || rc.SessionID == rb.SessionID {
			t.Errorf("got new %v %v %v events %d %d; want new, extended, counted, new", ra.IsNew, rb.IsNew, rc.IsNew, rb.Events, rl.Events)
		}
		if d := rb.Values[0].Value; d != (cfg.Timeout - time.Nanosecond).Seconds() {
			t.Errorf("duration got %v; want %v", d, (cfg.Timeout - time.Nanosecond).Seconds())
		}
		// 1 ns before the start of the session at c.
		if _, err := s.Process(ctx, ev("far", "view", c.Add(-time.Nanosecond))); !errors.Is(err, ErrOutOfOrder) {
			t.Errorf("1 ns before start: got %v; want ErrOutOfOrder", err)
		}
		mustProcess(t, s, ev("zero", "view", time.Unix(0, 0)))
		r := mustProcess(t, s, ev("zero", "view", time.Unix(0, 999_999_999)))
		if r.Events != 2 || r.SessionID != SessionID("zero", time.Unix(0, 0)) {
			t.Errorf("epoch: got events %d id %s; want 2 %s", r.Events, r.SessionID, SessionID("zero", time.Unix(0, 0)))
		}
		_, err := s.Process(ctx, ev("far", "view", end.Add(time.Nanosecond)))
		if !errors.Is(err, ErrInvalidEvent) {
			t.Errorf("past the range: got %v; want ErrInvalidEvent", err)
		}
		_, err = s.Process(ctx, ev("zero", "view", time.Time{}))
		if !errors.Is(err, ErrInvalidEvent) {
			t.Errorf("zero time: got %v; want ErrInvalidEvent", err)
		}
	})

	t.Run("EntitiesIndependent", func(t *testing.T) {
		s := open(t, def)
		mustProcess(t, s, ev("x", "view", t0))
		r := mustProcess(t, s, ev("y", "view", t0.Add(time.Second)))
		rx := mustProcess(t, s, ev("x", "view", t0.Add(2*time.Second)))
		if !r.IsNew || rx.IsNew || rx.Events != 2 {
			t.Errorf("got y new %v, x new %v events %d; want true, false, 2", r.IsNew, rx.IsNew, rx.Events)
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		// Goroutines race on one entity; after a first event, every time is
		// inside the session, so every event must be counted once.
		s := open(t, def)
		mustProcess(t, s, ev("race", "view", t0))
		const workers, per = 4, 50
		var wg sync.WaitGroup
		errc := make(chan error, workers)
		for w := range workers {
			wg.Go(func() {
				for k := range per {
					at := t0.Add(time.Duration(1+w*per+k) * time.Millisecond)
					var err error
					if k%2 == 0 {
						_, err = s.Process(ctx, ev("race", "click", at))
					} else {
						_, errs := s.ProcessBatch(ctx, []features.Event{ev("race", "click", at)})
						err = errs[0]
					}
					if err != nil {
						errc <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Fatal(err)
		}
		last := t0.Add(time.Duration(workers*per+1) * time.Millisecond)
		r := mustProcess(t, s, ev("race", "view", last))
		if r.Events != workers*per+2 || !r.Start.Equal(t0) || !r.LastActivity.Equal(last) {
			t.Errorf("got events %d start %v last %v; want %d %v %v", r.Events, r.Start, r.LastActivity, workers*per+2, t0, last)
		}
	})

	t.Run("Context", func(t *testing.T) {
		s := open(t, def)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := s.Process(cctx, ev("ctx", "view", t0))
		_, errs := s.ProcessBatch(cctx, []features.Event{ev("ctx", "view", t0)})
		if !errors.Is(err, context.Canceled) || !errors.Is(errs[0], context.Canceled) {
			t.Errorf("got %v, %v; want context.Canceled", err, errs[0])
		}
	})

	t.Run("Closed", func(t *testing.T) {
		s := open(t, def)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		_, err := s.Process(ctx, ev("c", "view", t0))
		_, errs := s.ProcessBatch(ctx, []features.Event{ev("c", "view", t0), ev("", "view", t0)})
		if !errors.Is(err, ErrClosed) || !errors.Is(errs[0], ErrClosed) || !errors.Is(errs[1], ErrInvalidEvent) {
			t.Errorf("got %v, %v, %v; want ErrClosed, ErrClosed, ErrInvalidEvent", err, errs[0], errs[1])
		}
	})
}
