package session

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/features"
)

func TestSessionID(t *testing.T) {
	// Pinned with: printf 'user-42\x001700000000000000000' | sha1sum
	cases := []struct {
		entity string
		start  time.Time
		want   string
	}{
		{"user-42", time.Unix(0, 1_700_000_000_000_000_000), "4e870566900fefacf860f8f4e76a3399"},
		{"user-42", time.Unix(0, 0), "cb105b6a13235ff21a8b360e72253391"},
	}
	for _, c := range cases {
		if got := SessionID(c.entity, c.start); got != c.want {
			t.Errorf("SessionID(%q, %d): got %s; want %s", c.entity, c.start.UnixNano(), got, c.want)
		}
	}
	if SessionID("a", time.Unix(0, 1)) == SessionID("a", time.Unix(0, 2)) || SessionID("a", time.Unix(0, 1)) == SessionID("b", time.Unix(0, 1)) {
		t.Error("distinct sessions share an id")
	}
}

func TestTransition(t *testing.T) {
	const to = 10 * time.Second
	prev := &state{id: "s", start: 100, last: 200, count: 3}
	cases := []struct {
		name  string
		prev  *state
		t     int64
		want  state
		isNew bool
		err   error
	}{
		{"first", nil, 50, state{id: sessionID("e", 50), start: 50, last: 50, count: 1}, true, nil},
		{"extend", prev, 200 + int64(to) - 1, state{id: "s", start: 100, last: 200 + int64(to) - 1, count: 4}, false, nil},
		{"same time", prev, 200, state{id: "s", start: 100, last: 200, count: 4}, false, nil},
		{"gap = timeout", prev, 200 + int64(to), state{id: sessionID("e", 200+int64(to)), start: 200 + int64(to), last: 200 + int64(to), count: 1}, true, nil},
		{"late inside", prev, 150, state{id: "s", start: 100, last: 200, count: 4}, false, nil},
		{"at start", prev, 100, state{id: "s", start: 100, last: 200, count: 4}, false, nil},
		{"before start", prev, 99, *prev, false, ErrOutOfOrder},
		{"max time", &state{id: "m", start: math.MaxInt64 - 5, last: math.MaxInt64 - 5, count: 1}, math.MaxInt64, state{id: "m", start: math.MaxInt64 - 5, last: math.MaxInt64, count: 2}, false, nil},
	}
	for _, c := range cases {
		got, isNew, err := transition(c.prev, "e", c.t, to)
		if got != c.want || isNew != c.isNew || !errors.Is(err, c.err) {
			t.Errorf("%s: got %+v %v %v; want %+v %v %v", c.name, got, isNew, err, c.want, c.isNew, c.err)
		}
	}
	if *prev != (state{id: "s", start: 100, last: 200, count: 3}) {
		t.Errorf("transition changed its input: %+v", *prev)
	}
}

func TestEngagementScore(t *testing.T) {
	e := DefaultEngagement()
	cases := []struct {
		typ  string
		d    time.Duration
		want float64
	}{
		{"purchase", 0, 0.8 * 0.8},
		{"purchase", 29 * time.Second, 0.8 * 0.8},
		{"purchase", 30*time.Second - time.Nanosecond, 0.8 * 0.8},
		{"purchase", 30 * time.Second, 0.8},
		{"click", 300 * time.Second, 0.6},
		{"click", 300*time.Second + time.Nanosecond, 0.6 * 1.2},
		{"view", 301 * time.Second, 0.55 * 1.2},
		{"other", 301 * time.Second, 0.5 * 1.2},
		{"", 100 * time.Second, 0.5},
	}
	for _, c := range cases {
		if got := e.score(c.typ, c.d); math.Abs(got-c.want) > eps {
			t.Errorf("score(%q, %v): got %v; want %v", c.typ, c.d, got, c.want)
		}
	}
	// First matching rule wins; the cap applies last.
	e2 := Engagement{Base: 2, Cap: 1.5, DurationFactors: []DurationFactor{
		{When: Above, Threshold: 0, Factor: 0.5},
		{When: Above, Threshold: time.Second, Factor: 10},
	}}
	if got := e2.score("x", time.Minute); got != 1 {
		t.Errorf("first rule: got %v; want 1", got)
	}
	if got := e2.score("x", 0); got != 1.5 {
		t.Errorf("cap: got %v; want 1.5", got)
	}
}

func TestConfig(t *testing.T) {
	got, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	d := DefaultConfig()
	if got.Timeout != 30*time.Minute || got.TTLMargin != d.TTLMargin || got.FeatureVersion != 1 || got.Engagement.Base != 0.5 || len(got.Engagement.DurationFactors) != 2 {
		t.Errorf("zero config: got %+v; want the defaults", got)
	}
	// The config is copied: changing the caller's map later has no effect.
	cfg := DefaultConfig()
	c, err := cfg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Engagement.TypeWeights["view"] = 9
	if c.Engagement.TypeWeights["view"] != 0.05 {
		t.Errorf("config shares the caller's map")
	}
	bad := []struct {
		name string
		mod  func(*Config)
		text string
	}{
		{"timeout", func(c *Config) { c.Timeout = -1 }, "Timeout is -1ns"},
		{"timeout max", func(c *Config) { c.Timeout = MaxTimeout + 1 }, "Timeout is"},
		{"margin", func(c *Config) { c.TTLMargin = -time.Second }, "TTLMargin is -1s"},
		{"version", func(c *Config) { c.FeatureVersion = -2 }, "FeatureVersion is -2"},
		{"cap", func(c *Config) { c.Engagement.Cap = 0 }, "Engagement.Cap is 0"},
		{"base", func(c *Config) { c.Engagement.Base = math.NaN() }, "Engagement.Base is NaN"},
		{"weight", func(c *Config) { c.Engagement.TypeWeights["click"] = math.Inf(1) }, `TypeWeights["click"] is +Inf`},
		{"when", func(c *Config) { c.Engagement.DurationFactors[1].When = 0 }, "DurationFactors[1].When is Compare(0)"},
		{"threshold", func(c *Config) { c.Engagement.DurationFactors[0].Threshold = -1 }, "DurationFactors[0].Threshold is -1ns"},
		{"factor", func(c *Config) { c.Engagement.DurationFactors[0].Factor = -1 }, "DurationFactors[0].Factor is -1"},
		{"rules", func(c *Config) { c.Engagement.DurationFactors = make([]DurationFactor, MaxDurationFactors+1) }, "limit 64"},
	}
	for _, b := range bad {
		c := DefaultConfig()
		b.mod(&c)
		_, err := NewMemory(c, MemoryOptions{})
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), b.text) {
			t.Errorf("%s: got %v; want ErrInvalidConfig containing %q", b.name, err, b.text)
		}
	}
	if _, err := NewMemory(Config{}, MemoryOptions{MaxEntities: -1}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("MaxEntities -1: got %v; want ErrInvalidConfig", err)
	}
}

func TestValidateEvent(t *testing.T) {
	bad := []struct {
		name string
		e    features.Event
		text string
	}{
		{"utf8", ev("a\xffb", "view", t0), "entity id is not valid UTF-8"},
		{"empty", ev("", "view", t0), "entity id is empty"},
		{"long id", ev(strings.Repeat("i", MaxEntityIDBytes+1), "view", t0), "entity id is 257 bytes; limit 256"},
		{"long type", ev("a", strings.Repeat("t", MaxEventTypeBytes+1), t0), "event type is 257 bytes; limit 256"},
		{"before 1970", ev("a", "view", time.Unix(0, -1)), "event time 1969-12-31T23:59:59.999999999Z is outside 1970-01-01T00:00:00Z to 2262-04-11T23:47:16.854775807Z"},
		{"after 2262", ev("a", "view", time.Unix(0, math.MaxInt64).Add(time.Nanosecond)), "is outside"},
	}
	for _, b := range bad {
		if _, err := validateEvent(&b.e); !errors.Is(err, ErrInvalidEvent) || !strings.Contains(err.Error(), b.text) {
			t.Errorf("%s: got %v; want ErrInvalidEvent containing %q", b.name, err, b.text)
		}
	}
	e := ev(strings.Repeat("i", MaxEntityIDBytes), strings.Repeat("t", MaxEventTypeBytes), time.Unix(0, math.MaxInt64))
	if n, err := validateEvent(&e); err != nil || n != math.MaxInt64 {
		t.Errorf("at the limits: got %d, %v; want %d, nil", n, err, int64(math.MaxInt64))
	}
}

// FuzzTransition checks the invariants of the rule on any state and time:
// start <= last, the count grows by one (or restarts at 1), last never
// moves backwards within a session, and an event is rejected exactly when
// it precedes the start.
func FuzzTransition(f *testing.F) {
	f.Add(int64(100), int64(50), int64(3), int64(170), int64(10))
	f.Add(int64(math.MaxInt64-5), int64(0), int64(1), int64(math.MaxInt64), int64(1))
	f.Fuzz(func(t *testing.T, start, span, count, tn, timeout int64) {
		if start < 0 || span < 0 || start > math.MaxInt64-span || count < 1 || tn < 0 || timeout <= 0 || timeout > int64(MaxTimeout) {
			t.Skip()
		}
		prev := state{id: "p", start: start, last: start + span, count: count}
		next, isNew, err := transition(&prev, "e", tn, time.Duration(timeout))
		switch {
		case tn < prev.start:
			if !errors.Is(err, ErrOutOfOrder) || next != prev {
				t.Fatalf("t %d < start %d: got %+v, %v; want ErrOutOfOrder, unchanged", tn, start, next, err)
			}
		case err != nil:
			t.Fatalf("got %v; want nil", err)
		case next.start > next.last:
			t.Fatalf("start %d > last %d", next.start, next.last)
		case isNew:
			if tn-prev.last < timeout || next != (state{id: sessionID("e", tn), start: tn, last: tn, count: 1}) {
				t.Fatalf("new session at %d after last %d (timeout %d): %+v", tn, prev.last, timeout, next)
			}
		default:
			if next.id != "p" || next.start != start || next.count != count+1 || next.last != max(prev.last, tn) {
				t.Fatalf("continued: got %+v from %+v at %d", next, prev, tn)
			}
		}
	})
}
