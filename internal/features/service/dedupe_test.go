package service

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/features"
	"github.com/embedd/embedd/internal/features/window"
)

// TestIngestRetry: a client that retries an IngestEvents call with the same
// event ids (after a timeout it cannot tell from a failure) has every event
// applied once, in the windows and in the sessions, for both state stores;
// a retry that reaches another replica (a second Service on the same
// stores) too.
func TestIngestRetry(t *testing.T) {
	for _, b := range []backend{memoryBackend(), redisBackend(), clusterBackend()} {
		t.Run(b.name, func(t *testing.T) {
			opts, clk := testOptions(t, b)
			clk.Set(t0.Add(10 * time.Minute))
			svc, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			replica, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			call := func(svc *Service, evs []features.Event) {
				t.Helper()
				errs, err := svc.Ingest(context.Background(), evs)
				if err != nil {
					t.Fatal(err)
				}
				for i, e := range errs {
					if e != nil {
						t.Fatalf("events[%d]: %v", i, e)
					}
				}
			}
			var evs []features.Event
			for i := range 30 {
				e := ev(fmt.Sprintf("u%d", i%3), "view", t0.Add(time.Duration(i)*time.Second), float64(i))
				e.ID = fmt.Sprintf("req1-%d", i)
				evs = append(evs, e)
			}
			call(svc, evs)
			call(svc, evs)     // the retry
			call(replica, evs) // the retry, on another replica
			// A retry of half the call together with new events, and a
			// redelivery inside one call.
			more := append([]features.Event{}, evs[:15]...)
			extra := ev("u0", "click", t0.Add(40*time.Second), 100)
			extra.ID = "req2-0"
			more = append(more, extra, extra)
			call(replica, more)
			if st, rst := svc.Stats(), replica.Stats(); st.Accepted != 60 || st.Duplicate != 30 || rst.Accepted != 47 || rst.Duplicate != 46 {
				t.Errorf("stats: %+v and %+v; want 60 accepted, 30 duplicates and 47, 46", st, rst)
			}
			// u0 got events 0, 3, ..., 27 (amounts 0..27 step 3: 10 events,
			// sum 135) and extra (100) once.
			res, err := svc.Get(context.Background(), GetRequest{Entities: []string{"u0", "u1"}, AsOf: t0.Add(40 * time.Second),
				Features: []string{"events_count_1h", "amount_sum_1h", "events_in_session"}})
			if err != nil {
				t.Fatal(err)
			}
			for k, w := range [][]float64{{11, 235, 11}, {10, 145, 10}} {
				for j, v := range res[k].Values {
					if v.Null || v.Value != w[j] {
						t.Errorf("%s %s: got %v (null %v); want %v", res[k].EntityID, v.Name, v.Value, v.Null, w[j])
					}
				}
			}
		})
	}
}

// TestDedupeBounds: the record forgets ids whose events are too late to be
// applied anyway, keeps at most Options.DedupeIDs per entity and, past
// that, rejects ids it can no longer tell about as too late: never applied
// twice.
func TestDedupeBounds(t *testing.T) {
	for _, b := range []backend{memoryBackend(), redisBackend(), clusterBackend()} {
		t.Run(b.name, func(t *testing.T) {
			opts, clk := testOptions(t, b)
			opts.DedupeIDs = 3
			clk.Set(t0.Add(time.Hour))
			svc, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			f := &fixture{svc: svc, clk: clk}
			at := func(sec int, id string) features.Event {
				e := ev("u1", "view", t0.Add(time.Duration(sec)*time.Second), 1)
				e.ID = id
				return e
			}
			load := func() *State {
				sts, err := opts.States.Load(context.Background(), []string{"u1"})
				if err != nil {
					t.Fatal(err)
				}
				return sts[0]
			}
			for i, e := range f.ingest(t, at(0, "a"), at(10, "b"), at(20, "c"), at(30, "d"), at(5, "late")) {
				if e != nil {
					t.Fatalf("events[%d]: %v", i, e)
				}
			}
			// Five ids, three kept: a and late (the oldest) dropped, the
			// floor at late's time.
			st := load()
			if got := fmt.Sprint(st.Applied); got != fmt.Sprintf("[{b %d} {c %d} {d %d}]", t0.Add(10*time.Second).UnixNano(), t0.Add(20*time.Second).UnixNano(), t0.Add(30*time.Second).UnixNano()) ||
				st.IDFloor != t0.Add(5*time.Second).UnixNano() {
				t.Errorf("record: %v floor %d", st.Applied, st.IDFloor)
			}
			// a again, and a new id at the floor: too late, not applied;
			// b again: a duplicate; no id at the floor: applied.
			errs := f.ingest(t, at(0, "a"), at(5, "new"), at(10, "b"), at(5, ""))
			for _, i := range []int{0, 1} {
				if !errors.Is(errs[i], window.ErrTooLate) || !strings.Contains(errs[i].Error(), "it keeps its last 3; Options.DedupeIDs") || !strings.Contains(errs[i].Error(), fmt.Sprintf("events[%d]", i)) {
					t.Errorf("events[%d]: got %v; want ErrTooLate naming the index and Options.DedupeIDs", i, errs[i])
				}
			}
			if errs[2] != nil || errs[3] != nil {
				t.Errorf("b again, no id: %v, %v; want nil, nil", errs[2], errs[3])
			}
			v := f.get(t, t0.Add(30*time.Second), nil, "events_count_1h")
			want(t, v, "events_count_1h", 6)
			// At +330s the ids before +30s are behind the allowed lateness
			// (5m): they are dropped, and their events are too late anyway.
			f.ingest(t, at(330, "e"))
			st = load()
			if len(st.Applied) != 2 || st.Applied[0].ID != "d" || st.Applied[1].ID != "e" {
				t.Errorf("after the watermark moved: %v; want d, e", st.Applied)
			}
			if e := f.ingest(t, at(10, "b"))[0]; !errors.Is(e, window.ErrTooLate) {
				t.Errorf("b after the lateness: got %v; want ErrTooLate", e)
			}
			if st := svc.Stats(); st.Duplicate != 1 || st.TooLate != 3 {
				t.Errorf("stats %+v; want 1 duplicate, 3 too late", st)
			}
		})
	}
}

// TestEventIDLimit: an id longer than MaxEventIDBytes or not UTF-8 is
// rejected with an error naming the event and the limit.
func TestEventIDLimit(t *testing.T) {
	f := newFixture(t, memoryBackend(), "")
	ok := ev("u1", "view", t0, 1)
	ok.ID = strings.Repeat("é", MaxEventIDBytes/2)
	long := ok
	long.ID += "x"
	bad := ok
	bad.ID = "\xff"
	errs := f.ingest(t, ok, long, bad)
	if errs[0] != nil {
		t.Errorf("128-byte id: %v", errs[0])
	}
	for i, e := range errs[1:] {
		if !errors.Is(e, ErrInvalid) || !strings.Contains(e.Error(), fmt.Sprintf("events[%d]", i+1)) || !strings.Contains(e.Error(), "event_id must be at most 128 bytes of UTF-8") {
			t.Errorf("events[%d]: got %v; want ErrInvalid naming the index and the limit", i+1, e)
		}
	}
	if _, err := New(Options{Registry: f.svc.reg, States: NewMemory(f.svc.winCfg, 1), Sessions: f.svc.opts.Sessions, DedupeIDs: MaxDedupeIDs + 1}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "DedupeIDs") {
		t.Errorf("DedupeIDs above the ceiling: got %v; want ErrInvalid naming it", err)
	}
}

// TestStateVersions: a state without ids is written as version 1 (readable
// by replicas that predate ids), one with ids as version 2; both decode,
// and version 2 rejects a record that is not canonical.
func TestStateVersions(t *testing.T) {
	cfg := window.DefaultConfig()
	st := fuzzState(t)
	v1 := mustMarshal(t, st)
	if v1[4] != 1 {
		t.Fatalf("a state without ids: version %d; want 1", v1[4])
	}
	st.recordID("b", 20)
	st.recordID("a", 10)
	st.recordID("c", 20)
	st.IDFloor = 5
	v2 := mustMarshal(t, st)
	if v2[4] != 2 {
		t.Fatalf("a state with ids: version %d; want 2", v2[4])
	}
	for _, b := range [][]byte{v1, v2} {
		got, err := unmarshalState(b, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if b2 := mustMarshal(t, got); string(b2) != string(b) {
			t.Errorf("version %d: re-encoding differs", b[4])
		}
	}
	got, _ := unmarshalState(v2, cfg)
	if fmt.Sprint(got.Applied) != "[{a 10} {b 20} {c 20}]" || got.IDFloor != 5 || !got.hasID("b") || got.hasID("d") {
		t.Errorf("decoded %v floor %d", got.Applied, got.IDFloor)
	}
	old, _ := unmarshalState(v1, cfg)
	if len(old.Applied) != 0 || old.IDFloor != -1 {
		t.Errorf("version 1: %v floor %d; want none, -1", old.Applied, old.IDFloor)
	}
	// Swap the last two ids: sorted no more.
	bad := newState()
	bad.Applied = []AppliedID{{"a", 10}, {"c", 20}, {"b", 20}}
	if _, err := unmarshalState(mustMarshal(t, bad), cfg); !errors.Is(err, errCorrupt) {
		t.Errorf("unsorted ids: got %v; want errCorrupt", err)
	}
}
