package service

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/embedd/embedd/internal/features"
	"github.com/embedd/embedd/internal/features/offline"
	"github.com/embedd/embedd/internal/features/registry"
	"github.com/embedd/embedd/internal/features/session"
	"github.com/embedd/embedd/internal/features/window"
)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

var t0 = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

// backend builds the state and session stores of one service.
type backend struct {
	name string
	open func(t testing.TB, cfg window.Config, clk features.Clock) (StateStore, session.Store)
}

func memoryBackend() backend {
	return backend{"memory", func(t testing.TB, cfg window.Config, clk features.Clock) (StateStore, session.Store) {
		ss, err := session.NewMemory(session.DefaultConfig(), session.MemoryOptions{Clock: clk})
		if err != nil {
			t.Fatal(err)
		}
		return NewMemory(cfg, 1<<20), ss
	}}
}

func redisClient(t testing.TB) *goredis.Client {
	addr := os.Getenv("EMBEDD_REDIS_ADDR")
	if addr == "" {
		if os.Getenv("EMBEDD_REQUIRE_STORES") == "1" {
			t.Fatal("EMBEDD_REDIS_ADDR is unset and EMBEDD_REQUIRE_STORES=1")
		}
		t.Skip("EMBEDD_REDIS_ADDR is unset; run `make services`")
	}
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	return c
}

// redisBackend shares one key prefix per test, so two services built in
// one test are two replicas over the same data.
func redisBackend() backend {
	prefixes := map[testing.TB]string{}
	var mu sync.Mutex
	return backend{"redis", func(t testing.TB, cfg window.Config, _ features.Clock) (StateStore, session.Store) {
		c := redisClient(t)
		mu.Lock()
		p, ok := prefixes[t]
		if !ok {
			p = fmt.Sprintf("embedd-test:f%d:", rand.Uint32())
			prefixes[t] = p
			t.Cleanup(func() {
				keys, _ := c.Keys(context.Background(), p+"*").Result()
				if len(keys) > 0 {
					c.Del(context.Background(), keys...)
				}
			})
		}
		mu.Unlock()
		ss, err := session.NewRedis(c, session.DefaultConfig(), session.RedisOptions{Prefix: p + "sess:"})
		if err != nil {
			t.Fatal(err)
		}
		return NewRedis(c, cfg, p+"fst:", 2*time.Hour), ss
	}}
}

type fixture struct {
	svc *Service
	clk *clock
	dir string
}

func newFixture(t testing.TB, b backend, offlineDir string) *fixture {
	t.Helper()
	opts, clk := testOptions(t, b)
	if offlineDir != "" {
		var err error
		if opts.Offline, err = offline.Open(offlineDir, 2); err != nil {
			t.Fatal(err)
		}
	}
	svc, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{svc: svc, clk: clk, dir: offlineDir}
}

// testOptions returns Options on b with the default registry and a clock at
// t0.
func testOptions(t testing.TB, b backend) (Options, *clock) {
	t.Helper()
	reg, err := registry.Default()
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: t0}
	cfg, err := WindowConfig(reg, window.DefaultConfig(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	st, ss := b.open(t, cfg, clk)
	return Options{Registry: reg, States: st, Sessions: ss, Clock: clk}, clk
}

func ev(entity, typ string, at time.Time, amount float64) features.Event {
	e := features.Event{EntityID: entity, Type: typ, Timestamp: at}
	if !math.IsNaN(amount) {
		e.Values = map[string]float64{"amount": amount}
	}
	return e
}

func (f *fixture) ingest(t *testing.T, evs ...features.Event) []error {
	t.Helper()
	errs, err := f.svc.Ingest(context.Background(), evs)
	if err != nil {
		t.Fatal(err)
	}
	return errs
}

func (f *fixture) get(t *testing.T, asOf time.Time, ctx map[string]string, names ...string) map[string]features.Value {
	t.Helper()
	res, err := f.svc.Get(context.Background(), GetRequest{Entities: []string{"u1"}, Features: names, AsOf: asOf, Context: ctx})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]features.Value{}
	for _, v := range res[0].Values {
		out[v.Name] = v
	}
	return out
}

func want(t *testing.T, vals map[string]features.Value, name string, w float64) {
	t.Helper()
	v, ok := vals[name]
	switch {
	case !ok:
		t.Errorf("%s missing", name)
	case math.IsNaN(w) && !v.Null:
		t.Errorf("%s = %v; want null", name, v.Value)
	case !math.IsNaN(w) && (v.Null || math.Abs(v.Value-w) > 1e-9*math.Max(1, math.Abs(w))):
		t.Errorf("%s = %v (null %v); want %v", name, v.Value, v.Null, w)
	}
}

var null = math.NaN()

func TestService(t *testing.T) {
	for _, b := range []backend{memoryBackend(), redisBackend(), clusterBackend()} {
		t.Run(b.name, func(t *testing.T) {
			t.Run("windows ties and bounds", func(t *testing.T) { testWindows(t, b) })
			t.Run("late and bad events", func(t *testing.T) { testLateAndBad(t, b) })
			t.Run("sessions", func(t *testing.T) { testSessions(t, b) })
			t.Run("rules temporal external", func(t *testing.T) { testRules(t, b) })
			t.Run("cache and offline", func(t *testing.T) { testCacheOffline(t, b) })
			if b.name != "memory" { // memory state is per process: no replicas share it
				t.Run("replicas", func(t *testing.T) { testReplicas(t, b) })
			}
		})
	}
}

// testWindows: hand-computed aggregates. Events (amount): t0 → 1,
// t0+30s → 2, t0+60s → 3 and, arriving later, t0+60s → 6 (a tie).
func testWindows(t *testing.T, b backend) {
	f := newFixture(t, b, "")
	f.clk.Set(t0.Add(2 * time.Minute))
	for i, e := range f.ingest(t,
		ev("u1", "view", t0, 1),
		ev("u1", "view", t0.Add(30*time.Second), 2),
		ev("u1", "click", t0.Add(60*time.Second), 3),
		ev("u1", "click", t0.Add(60*time.Second), 6),
	) {
		if e != nil {
			t.Fatalf("event %d: %v", i, e)
		}
	}
	// as_of t0+60s, W=1m: [t0, t0+60s] includes the event exactly at t-W
	// and both ties: 1,2,3,6 → n 4, sum 12, avg 3, sample sd sqrt(14/3);
	// z of the later-arrived tie (6): (6-3)/sqrt(14/3).
	sd := math.Sqrt(14.0 / 3)
	v := f.get(t, t0.Add(60*time.Second), nil, "amount_count_1m", "amount_sum_1m", "amount_avg_1m", "amount_min_1m", "amount_max_1m", "amount_stddev_1m", "amount_zscore_1m", "events_count_1m")
	want(t, v, "amount_count_1m", 4)
	want(t, v, "events_count_1m", 4)
	want(t, v, "amount_sum_1m", 12)
	want(t, v, "amount_avg_1m", 3)
	want(t, v, "amount_min_1m", 1)
	want(t, v, "amount_max_1m", 6)
	want(t, v, "amount_stddev_1m", sd)
	want(t, v, "amount_zscore_1m", 3/sd)
	if v["amount_sum_1m"].Version != 1 || !v["amount_sum_1m"].Timestamp.Equal(t0.Add(60*time.Second)) {
		t.Errorf("version/timestamp: %+v", v["amount_sum_1m"])
	}
	// One nanosecond later t0 falls out: 2,3,6.
	v = f.get(t, t0.Add(60*time.Second+1), nil, "amount_count_1m", "amount_sum_1m")
	want(t, v, "amount_count_1m", 3)
	want(t, v, "amount_sum_1m", 11)
	// as_of t0 (only the first event): stddev and z-score null.
	v = f.get(t, t0, nil, "amount_count_5m", "amount_stddev_5m", "amount_zscore_5m")
	want(t, v, "amount_count_5m", 1)
	want(t, v, "amount_stddev_5m", null)
	want(t, v, "amount_zscore_5m", null)
	// as_of now (t0+2m): W=1m covers (t0+60s exactly at the lower bound).
	v = f.get(t, time.Time{}, nil, "amount_count_1m", "amount_count_1h")
	want(t, v, "amount_count_1m", 2)
	want(t, v, "amount_count_1h", 4)
	// Out of order within lateness: t0+45s → 10; a later read reflects it.
	if e := f.ingest(t, ev("u1", "view", t0.Add(45*time.Second), 10))[0]; e != nil {
		t.Fatal(e)
	}
	v = f.get(t, t0.Add(60*time.Second), nil, "amount_count_1m", "amount_sum_1m", "amount_max_1m")
	want(t, v, "amount_count_1m", 5)
	want(t, v, "amount_sum_1m", 22)
	want(t, v, "amount_max_1m", 10)
	// as_of beyond the horizon: an error naming it.
	_, err := f.svc.Get(context.Background(), GetRequest{Entities: []string{"u1"}, Features: []string{"amount_sum_1m"}, AsOf: t0.Add(-2 * time.Hour)})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "retained horizon") {
		t.Errorf("as_of beyond horizon: %v", err)
	}
}

func testLateAndBad(t *testing.T, b backend) {
	f := newFixture(t, b, "")
	f.clk.Set(t0.Add(time.Hour))
	errs := f.ingest(t,
		ev("u1", "view", t0.Add(50*time.Minute), 1),
		ev("u1", "view", t0.Add(44*time.Minute), 2),           // 6m behind the watermark: too late
		ev("u1", "view", t0.Add(46*time.Minute), 3),           // 4m behind: placed in order
		ev("u1", "view", t0.Add(70*time.Minute), 4),           // 10m in the future: rejected
		ev("", "view", t0.Add(50*time.Minute), 5),             // no entity
		ev("u1", "view", t0.Add(51*time.Minute), math.Inf(1)), // Inf
		ev("u1", "view", t0.Add(52*time.Minute), 7),
	)
	checks := []struct {
		i    int
		want error
		msg  string
	}{
		{1, window.ErrTooLate, `events[1] (entity "u1"): `},
		{3, ErrInvalid, "ahead of the server clock; limit 5m0s"},
		{4, ErrInvalid, "entity_id must be 1 to 256 bytes"},
		{5, ErrInvalid, `value "amount" is +Inf`},
	}
	for _, c := range checks {
		if !errors.Is(errs[c.i], c.want) || !strings.Contains(errs[c.i].Error(), c.msg) {
			t.Errorf("event %d: %v; want %v containing %q", c.i, errs[c.i], c.want, c.msg)
		}
	}
	for _, i := range []int{0, 2, 6} {
		if errs[i] != nil {
			t.Errorf("event %d: %v", i, errs[i])
		}
	}
	v := f.get(t, t0.Add(52*time.Minute), nil, "amount_count_1h", "amount_sum_1h")
	want(t, v, "amount_count_1h", 3)
	want(t, v, "amount_sum_1h", 11)
	st := f.svc.Stats()
	if st.Accepted != 3 || st.TooLate != 1 || st.Invalid != 3 {
		t.Errorf("stats %+v", st)
	}
}

func testSessions(t *testing.T, b backend) {
	f := newFixture(t, b, "")
	f.clk.Set(t0.Add(50 * time.Minute))
	names := []string{"session_duration", "events_in_session", "avg_time_between_events", "session_engagement_score", "is_new_session"}
	f.ingest(t, ev("u1", "view", t0, 1), ev("u1", "click", t0.Add(10*time.Minute), 1))
	v := f.get(t, t0.Add(10*time.Minute), nil, names...)
	want(t, v, "session_duration", 600)
	want(t, v, "events_in_session", 2)
	want(t, v, "avg_time_between_events", 600)
	want(t, v, "session_engagement_score", math.Min(1, (0.5+0.1)*1.2)) // click, > 300 s
	want(t, v, "is_new_session", 0)
	// A gap exactly the timeout (30m) starts a new session.
	f.ingest(t, ev("u1", "purchase", t0.Add(40*time.Minute), 1))
	v = f.get(t, t0.Add(40*time.Minute), nil, names...)
	want(t, v, "session_duration", 0)
	want(t, v, "events_in_session", 1)
	want(t, v, "avg_time_between_events", null)
	want(t, v, "session_engagement_score", (0.5+0.3)*0.8) // purchase, < 30 s
	want(t, v, "is_new_session", 1)
	// Before the latest event, session features are null.
	v = f.get(t, t0.Add(20*time.Minute), nil, "events_in_session")
	want(t, v, "events_in_session", null)
}

func testRules(t *testing.T, b backend) {
	f := newFixture(t, b, "")
	f.clk.Set(t0.Add(10 * time.Minute))
	var evs []features.Event
	for i := range 12 {
		evs = append(evs, ev("u1", "view", t0.Add(time.Duration(i)*10*time.Second), float64(i)))
	}
	last := evs[len(evs)-1].Timestamp
	e := ev("u1", "view", last, null)
	e.Values = map[string]float64{"opportunity_score": 0.4}
	evs = append(evs, e)
	for i, err := range f.ingest(t, evs...) {
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	at := last.Add(30 * time.Second)
	v := f.get(t, at, map[string]string{"tier": "premium", "region": "high_growth"},
		"user_engagement_score", "market_opportunity_score", "hour_of_day", "day_of_week", "time_since_last_event", "opportunity_score")
	want(t, v, "user_engagement_score", 0.9*1.2) // 13 events in 5m > 10, premium
	want(t, v, "market_opportunity_score", 0.4*1.3)
	want(t, v, "hour_of_day", 10)
	want(t, v, "day_of_week", 4) // 2026-11-26 is a Thursday
	want(t, v, "time_since_last_event", 30)
	want(t, v, "opportunity_score", 0.4)
	if v["user_engagement_score"].Source != features.SourceComputed {
		t.Errorf("rule source %v", v["user_engagement_score"].Source)
	}
	v = f.get(t, at, nil, "user_engagement_score", "market_opportunity_score")
	want(t, v, "user_engagement_score", 0.9)
	want(t, v, "market_opportunity_score", 0.4)
	// Unknown feature and set: ErrUnknown naming it.
	_, err := f.svc.Get(context.Background(), GetRequest{Entities: []string{"u1"}, Features: []string{"amount_sum_5m", "nope"}})
	if !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), "features[1]") {
		t.Errorf("unknown feature: %v", err)
	}
	res, err := f.svc.Get(context.Background(), GetRequest{Entities: []string{"u1", "ghost"}, Set: "default"})
	if err != nil || len(res) != 2 || !res[0].Found || res[1].Found || len(res[0].Values) != len(res[1].Values) {
		t.Errorf("set default: %v", err)
	}
}

func testCacheOffline(t *testing.T, b backend) {
	dir := t.TempDir()
	f := newFixture(t, b, dir)
	f.clk.Set(t0.Add(time.Minute))
	f.ingest(t, ev("u1", "view", t0, 5), ev("u1", "view", t0.Add(10*time.Second), 7))
	src := func() features.Source {
		return f.get(t, time.Time{}, nil, "amount_sum_5m")["amount_sum_5m"].Source
	}
	if s := src(); s != features.SourceOnline {
		t.Errorf("first read from %v", s)
	}
	if s := src(); s != features.SourceCache {
		t.Errorf("second read from %v", s)
	}
	f.ingest(t, ev("u1", "view", t0.Add(20*time.Second), 1))
	v := f.get(t, time.Time{}, nil, "amount_sum_5m")
	if v["amount_sum_5m"].Source != features.SourceOnline || v["amount_sum_5m"].Value != 13 {
		t.Errorf("read after ingest: %+v (the cache must be dropped)", v["amount_sum_5m"])
	}
	path, n, err := f.svc.Materialize(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("materialize: %s %d %v", path, n, err)
	}
	// A replica whose state store lost u1 (expired) answers from Parquet.
	g := newFixture(t, memoryBackend(), dir)
	g.clk.Set(t0.Add(time.Minute))
	v = g.get(t, time.Time{}, nil, "amount_sum_5m", "amount_stddev_5m")
	if s := v["amount_sum_5m"]; s.Source != features.SourceOffline || s.Value != 13 {
		t.Errorf("offline value %+v", s)
	}
	if s := v["amount_stddev_5m"]; s.Source != features.SourceOffline || s.Null || math.Abs(s.Value-math.Sqrt(9.333333333333334)) > 1e-9 {
		t.Errorf("offline stddev %+v", s)
	}
}

// testReplicas: two services over one store ingest events of one entity
// concurrently; none is lost.
func testReplicas(t *testing.T, b backend) {
	f1 := newFixture(t, b, "")
	f2 := newFixture(t, b, "")
	f1.clk.Set(t0.Add(time.Hour))
	f2.clk.Set(t0.Add(time.Hour))
	const n = 200
	var wg sync.WaitGroup
	for r, f := range []*fixture{f1, f2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				at := t0.Add(time.Duration(r*n+i) * 100 * time.Millisecond)
				errs, err := f.svc.Ingest(context.Background(), []features.Event{ev("u1", "view", at, 1)})
				if err == nil {
					err = errs[0]
				}
				if err != nil && !errors.Is(err, window.ErrTooLate) {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	f1.svc.opts.CacheTTL = -1
	v := f1.get(t, t0.Add(time.Hour), nil, "events_count_1h")
	if got := v["events_count_1h"].Value; got != 2*n {
		t.Errorf("count %v; want %d (no lost update)", got, 2*n)
	}
}

// TestRevalidatedCache: past CacheTTL a cached state is served only while
// its Redis revision is unchanged; a write by another replica is seen.
func TestRevalidatedCache(t *testing.T) {
	b := redisBackend()
	f1 := newFixture(t, b, "")
	f2 := newFixture(t, b, "")
	f1.svc.opts.CacheTTL = time.Nanosecond
	for _, f := range []*fixture{f1, f2} {
		f.clk.Set(t0.Add(time.Minute))
	}
	f2.ingest(t, ev("u1", "view", t0, 1))
	src := func() (features.Source, float64) {
		v := f1.get(t, time.Time{}, nil, "amount_sum_5m")["amount_sum_5m"]
		return v.Source, v.Value
	}
	if s, v := src(); s != features.SourceOnline || v != 1 {
		t.Fatalf("first read: %v %v", s, v)
	}
	f1.clk.Set(t0.Add(time.Minute + time.Second))
	if s, v := src(); s != features.SourceCache || v != 1 {
		t.Fatalf("unchanged: %v %v; want a revalidated cache hit", s, v)
	}
	f2.ingest(t, ev("u1", "view", t0.Add(time.Second), 2)) // another replica
	f1.clk.Set(t0.Add(time.Minute + 2*time.Second))
	if s, v := src(); s != features.SourceOnline || v != 3 {
		t.Fatalf("after a remote write: %v %v; want a reload with 3", s, v)
	}
}

// TestRedisScriptReload: a compare-and-set script Redis does not have
// (never loaded, or lost in a restart) is loaded on NOSCRIPT and the
// updates of the batch still apply, once each.
func TestRedisScriptReload(t *testing.T) {
	c := redisClient(t)
	prefix := fmt.Sprintf("embedd-test:noscript%d:", rand.Uint32())
	defer func() {
		keys, _ := c.Keys(context.Background(), prefix+"*").Result()
		if len(keys) > 0 {
			c.Del(context.Background(), keys...)
		}
	}()
	r := NewRedis(c, window.DefaultConfig(), prefix, time.Minute)
	r.cas = goredis.NewScript(casSource + fmt.Sprintf("\n-- %d", rand.Uint64())) // unknown to Redis
	errs := r.UpdateBatch(context.Background(), []string{"a", "b"}, func(k int, st *State) error {
		st.Seq++
		return nil
	})
	if errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	sts, err := r.Load(context.Background(), []string{"a", "b"})
	if err != nil || sts[0].Seq != 1 || sts[1].Seq != 1 {
		t.Fatalf("after reload: %+v %v", sts, err)
	}
}

// TestOfflineFallbackWhenRedisDown: with the state store's Redis
// unreachable, Get answers from the offline snapshots (source offline)
// instead of failing, and Ingest fails UNAVAILABLE.
func TestOfflineFallbackWhenRedisDown(t *testing.T) {
	dir := t.TempDir()
	f := newFixture(t, memoryBackend(), dir)
	f.clk.Set(t0.Add(time.Minute))
	f.ingest(t, ev("u1", "view", t0, 5), ev("u1", "view", t0.Add(10*time.Second), 7))
	if _, n, err := f.svc.Materialize(context.Background()); err != nil || n != 1 {
		t.Fatalf("materialize: %d %v", n, err)
	}
	down := backend{"redis-down", func(t testing.TB, cfg window.Config, clk features.Clock) (StateStore, session.Store) {
		c := goredis.NewClient(&goredis.Options{Addr: unreachableAddr(t), DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
		t.Cleanup(func() { c.Close() })
		ss, err := session.NewMemory(session.DefaultConfig(), session.MemoryOptions{Clock: clk})
		if err != nil {
			t.Fatal(err)
		}
		return NewRedis(c, cfg, "embedd-test:down:", time.Hour), ss
	}}
	g := newFixture(t, down, dir)
	g.clk.Set(t0.Add(time.Minute))
	v := g.get(t, time.Time{}, nil, "amount_sum_5m")
	if s := v["amount_sum_5m"]; s.Source != features.SourceOffline || s.Value != 12 {
		t.Errorf("read during the outage: %+v; want 12 from offline", s)
	}
	errs, err := g.svc.Ingest(context.Background(), []features.Event{ev("u1", "view", t0.Add(20*time.Second), 1)})
	if err == nil && (len(errs) == 0 || !errors.Is(errs[0], ErrUnavailable)) {
		t.Errorf("ingest during the outage: %v, %v; want ErrUnavailable", errs, err)
	}
}

// unreachableAddr returns a loopback address nothing listens on.
func unreachableAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
