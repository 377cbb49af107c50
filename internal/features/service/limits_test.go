package service

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/embedd/embedd/internal/features"
	"github.com/embedd/embedd/internal/features/drift"
	"github.com/embedd/embedd/internal/features/registry"
	"github.com/embedd/embedd/internal/features/session"
)

// newService builds a service on b with the default registry, the clock at
// t0 and opts changed by edit.
func newService(t *testing.T, b backend, edit func(*Options)) (*Service, error) {
	t.Helper()
	opts, _ := testOptions(t, b)
	if edit != nil {
		edit(&opts)
	}
	return New(opts)
}

// TestLimitsAgree: each ingest limit accepts an event exactly at it, end to
// end through the session and state stores of each backend, and rejects one
// just over it with ErrInvalid naming the index, the item and the limit,
// the rest of the batch applied. Event type and entity id are the session
// store's own bounds too: the two agree.
func TestLimitsAgree(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	values := func(n int) map[string]float64 {
		m := map[string]float64{}
		for i := range n {
			m[fmt.Sprintf("v%d", i)] = 1
		}
		return m
	}
	ctxMap := func(n, bytes int) map[string]string {
		m := map[string]string{}
		for i := range n {
			m[fmt.Sprintf("k%d", i)] = long(bytes)
		}
		return m
	}
	at := t0.Add(-time.Minute)
	cases := []struct {
		name     string
		ok, bad  features.Event
		contains string
	}{
		{"entity id", features.Event{EntityID: long(MaxEntityIDBytes), Timestamp: at}, features.Event{EntityID: long(MaxEntityIDBytes + 1), Timestamp: at},
			fmt.Sprintf("entity_id must be 1 to %d bytes of UTF-8 (got %d bytes)", MaxEntityIDBytes, MaxEntityIDBytes+1)},
		{"event type", features.Event{EntityID: "a", Type: long(MaxEventTypeBytes), Timestamp: at}, features.Event{EntityID: "a", Type: long(MaxEventTypeBytes + 1), Timestamp: at},
			fmt.Sprintf("event_type must be at most %d bytes of UTF-8 (got %d)", MaxEventTypeBytes, MaxEventTypeBytes+1)},
		{"values", features.Event{EntityID: "a", Timestamp: at, Values: values(MaxValuesPerEvent)}, features.Event{EntityID: "a", Timestamp: at, Values: values(MaxValuesPerEvent + 1)},
			fmt.Sprintf("%d values; limit %d", MaxValuesPerEvent+1, MaxValuesPerEvent)},
		{"context entries", features.Event{EntityID: "a", Timestamp: at, Context: ctxMap(MaxContextEntries, 1)}, features.Event{EntityID: "a", Timestamp: at, Context: ctxMap(MaxContextEntries+1, 1)},
			fmt.Sprintf("%d context entries; limit %d", MaxContextEntries+1, MaxContextEntries)},
		{"context bytes", features.Event{EntityID: "a", Timestamp: at, Context: ctxMap(1, MaxContextBytes)}, features.Event{EntityID: "a", Timestamp: at, Context: ctxMap(1, MaxContextBytes+1)},
			fmt.Sprintf(`context entry "k0": key 1 to %d bytes and value at most %d bytes`, MaxContextBytes, MaxContextBytes)},
		{"before 1970", features.Event{EntityID: "a", Timestamp: at}, features.Event{EntityID: "a", Timestamp: time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC)},
			"timestamp 1969-12-31T23:59:59Z is outside [1970-01-01T00:00:00Z, "},
	}
	for _, b := range []backend{memoryBackend(), redisBackend(), clusterBackend()} {
		for _, c := range cases {
			t.Run(b.name+"/"+c.name, func(t *testing.T) {
				svc, err := newService(t, b, nil)
				if err != nil {
					t.Fatal(err)
				}
				errs, err := svc.Ingest(context.Background(), []features.Event{c.bad, c.ok})
				if err != nil {
					t.Fatal(err)
				}
				want := fmt.Sprintf("events[0] (entity %q): ", c.bad.EntityID)
				if !errors.Is(errs[0], ErrInvalid) || errors.Is(errs[0], session.ErrInvalidEvent) ||
					!strings.HasPrefix(errs[0].Error(), want) || !strings.Contains(errs[0].Error(), c.contains) {
					t.Errorf("over the limit: got %v; want ErrInvalid from the service starting %q containing %q", errs[0], want, c.contains)
				}
				if errs[1] != nil {
					t.Errorf("at the limit: got %v; want nil", errs[1])
				}
				if st := svc.Stats(); st.Accepted != 1 || st.Invalid != 1 {
					t.Errorf("stats: got %+v; want 1 accepted, 1 invalid", st)
				}
			})
		}
	}
}

// TestLimitsOptions: a field may lower its default, not raise it; the
// lowered limits apply to both flows.
func TestLimitsOptions(t *testing.T) {
	b := memoryBackend()
	for _, c := range []struct {
		edit func(*Limits)
		want string
	}{
		{func(l *Limits) { l.Events = MaxEvents + 1 }, fmt.Sprintf("Limits.Events is %d; want 0 (default %d) to %d", MaxEvents+1, MaxEvents, MaxEvents)},
		{func(l *Limits) { l.EventTypeBytes = -1 }, "Limits.EventTypeBytes is -1"},
		{func(l *Limits) { l.Features = 3 }, `feature set "default" has`},
	} {
		_, err := newService(t, b, func(o *Options) { c.edit(&o.Limits) })
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v; want ErrInvalid containing %q", err, c.want)
		}
	}
	largest := 0 // the largest feature set of the registry
	svc, err := newService(t, b, func(o *Options) {
		for _, s := range o.Registry.Sets() {
			largest = max(largest, len(s.Features))
		}
		o.Limits = Limits{Events: 2, EventTypeBytes: 4, Entities: 1, Features: largest, ContextBytes: 2}
	})
	if err != nil {
		t.Fatal(err)
	}
	if l := svc.Limits(); l.Events != 2 || l.EntityIDBytes != MaxEntityIDBytes || l.Features != largest {
		t.Errorf("Limits(): got %+v; want the given fields and defaults for the rest", l)
	}
	ctx := context.Background()
	ev := features.Event{EntityID: "a", Type: "click", Timestamp: t0}
	if _, err := svc.Ingest(ctx, []features.Event{ev, ev, ev}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "3 events; limit 2") {
		t.Errorf("3 events: got %v; want ErrInvalid, limit 2", err)
	}
	errs, err := svc.Ingest(ctx, []features.Event{ev})
	if err != nil || !errors.Is(errs[0], ErrInvalid) || !strings.Contains(errs[0].Error(), "event_type must be at most 4 bytes") {
		t.Errorf("type of 5 bytes: got %v %v; want ErrInvalid, limit 4", errs, err)
	}
	for _, c := range []struct {
		req  GetRequest
		want string
	}{
		{GetRequest{Entities: []string{"a", "b"}, Features: []string{"events_count_1m"}}, "2 entities; limit 1"},
		{GetRequest{Entities: []string{"a"}, Set: "default"}, ""},
		{GetRequest{Entities: []string{"a"}, Features: make([]string, largest+1)}, fmt.Sprintf("%d features; limit %d", largest+1, largest)},
		{GetRequest{Entities: []string{"a"}, Features: []string{"events_count_1m"}, Context: map[string]string{"tier": "gold"}},
			`context entry "tier": key 1 to 2 bytes and value at most 2 bytes`},
		{GetRequest{Entities: []string{""}, Features: []string{"events_count_1m"}}, "entities[0] must be 1 to 256 bytes"},
	} {
		_, err := svc.Get(ctx, c.req)
		if c.want == "" {
			if err != nil {
				t.Errorf("%+v: got %v; want nil", c.req, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v; want ErrInvalid containing %q", c.req, err, c.want)
		}
	}
}

// TestIngestMetrics: the service exports its own ingest counters.
func TestIngestMetrics(t *testing.T) {
	svc, err := newService(t, memoryBackend(), nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if err := svc.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Ingest(context.Background(), []features.Event{{ID: "x", EntityID: "a", Timestamp: t0}, {Timestamp: t0}, {ID: "x", EntityID: "a", Timestamp: t0}}); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP embedd_feature_events_total Events given to the feature service, by result (before_session: accepted but older than the entity's current session; duplicate: accepted, its event id already applied, not applied again).
# TYPE embedd_feature_events_total counter
embedd_feature_events_total{result="accepted"} 2
embedd_feature_events_total{result="before_session"} 0
embedd_feature_events_total{result="duplicate"} 1
embedd_feature_events_total{result="failed"} 0
embedd_feature_events_total{result="invalid"} 1
embedd_feature_events_total{result="too_late"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if err := svc.RegisterMetrics(reg); err == nil {
		t.Error("registering twice: got nil; want an error")
	}
}

// TestMonitorTracksRegistry: New has the monitor track the registry's
// features that are not retired, up to its MaxFeatures.
func TestMonitorTracksRegistry(t *testing.T) {
	reg, err := registry.Default()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range reg.List() {
		if d.Status != registry.StatusRetired && (len(names) == 0 || names[len(names)-1] != d.Name) {
			names = append(names, d.Name)
		}
	}
	for _, max := range []int{3, 256} {
		mon, err := drift.New(features.SystemClock{}, drift.Options{MaxFeatures: max})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := newService(t, memoryBackend(), func(o *Options) { o.Monitor = mon }); err != nil {
			t.Fatal(err)
		}
		want := min(max, len(names))
		if got := len(mon.Reports()); got != want {
			t.Errorf("MaxFeatures %d: got %d tracked; want %d", max, got, want)
		}
		for _, n := range names[:want] {
			if _, err := mon.Report(n); err != nil {
				t.Errorf("MaxFeatures %d: %s: got %v; want tracked", max, n, err)
			}
		}
	}
}
