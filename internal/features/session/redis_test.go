package session

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/embedd/embedd/internal/features"
)

// redisAddr returns EMBEDD_REDIS_ADDR, skipping (or failing under
// EMBEDD_REQUIRE_STORES=1) when it is unset.
func redisAddr(tb testing.TB) string {
	a := os.Getenv("EMBEDD_REDIS_ADDR")
	if a == "" {
		if os.Getenv("EMBEDD_REQUIRE_STORES") == "1" {
			tb.Fatal("EMBEDD_REDIS_ADDR is unset and EMBEDD_REQUIRE_STORES=1")
		}
		tb.Skip("EMBEDD_REDIS_ADDR is unset; run scripts/redis.sh and export EMBEDD_REDIS_ADDR=127.0.0.1:6390")
	}
	return a
}

// prefixSeq makes every test prefix unique within the process; the pid
// makes it unique among processes sharing the server.
var prefixSeq atomic.Int64

// redisClient connects to the test server; it fails the test when the
// server does not answer.
func redisClient(tb testing.TB) *goredis.Client {
	c := goredis.NewClient(&goredis.Options{Addr: redisAddr(tb), DialTimeout: 2 * time.Second})
	if err := c.Ping(context.Background()).Err(); err != nil {
		c.Close()
		tb.Fatalf("redis at %s: %v", redisAddr(tb), err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// testPrefix returns a key prefix unique to this test and deletes its keys
// when the test ends.
func testPrefix(tb testing.TB, c *goredis.Client) string {
	p := fmt.Sprintf("embedd-test:sess:%d:%d:", os.Getpid(), prefixSeq.Add(1))
	tb.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, p+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if len(keys) > 0 {
			c.Del(ctx, keys...)
		}
	})
	return p
}

func openRedis(tb testing.TB, c *goredis.Client, cfg Config, prefix string) *Redis {
	tb.Helper()
	r, err := NewRedis(c, cfg, RedisOptions{Prefix: prefix})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close() })
	return r
}

func TestRedisConformance(t *testing.T) {
	redisAddr(t) // skip (or fail) once, not per subtest
	testStore(t, func(t *testing.T, cfg Config) Store {
		c := redisClient(t)
		return openRedis(t, c, cfg, testPrefix(t, c))
	})
}

func TestRedisLayout(t *testing.T) {
	c := redisClient(t)
	p := testPrefix(t, c)
	cfg := DefaultConfig()
	r := openRedis(t, c, cfg, p)
	ctx := context.Background()
	e := ev("user42", "view", time.Unix(0, 1_700_000_000_123_456_789))
	mustProcess(t, r, e)
	mustProcess(t, r, ev("user42", "view", e.Timestamp.Add(time.Second)))
	key := p + "{user42}"
	if r.Key("user42") != key {
		t.Errorf("Key: got %q; want %q", r.Key("user42"), key)
	}
	m, err := c.HGetAll(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"id": SessionID("user42", e.Timestamp), "start": "1700000000123456789", "last": "1700000001123456789", "count": "2"}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("hash: got %q; want %q", m, want)
	}
	if ttl := c.PTTL(ctx, key).Val(); ttl <= cfg.Timeout || ttl > cfg.Timeout+cfg.TTLMargin {
		t.Errorf("pttl: got %v; want (%v, %v]", ttl, cfg.Timeout, cfg.Timeout+cfg.TTLMargin)
	}
	// A rejected event writes nothing, TTL included.
	c.PExpire(ctx, key, time.Minute)
	if _, err := r.Process(ctx, ev("user42", "view", e.Timestamp.Add(-1))); !errors.Is(err, ErrOutOfOrder) {
		t.Fatalf("got %v; want ErrOutOfOrder", err)
	}
	if ttl := c.PTTL(ctx, key).Val(); ttl > time.Minute {
		t.Errorf("pttl after a rejected event: got %v; want <= 1m", ttl)
	}
	if m2 := c.HGetAll(ctx, key).Val(); !reflect.DeepEqual(m2, want) {
		t.Errorf("hash after a rejected event: got %q; want %q", m2, want)
	}
}

// TestRedisRestart: a new Store (new client, as after a restart or on
// another replica) over the same keys continues the sessions.
func TestRedisRestart(t *testing.T) {
	c1 := redisClient(t)
	p := testPrefix(t, c1)
	a := openRedis(t, c1, Config{}, p)
	r1 := mustProcess(t, a, ev("u", "view", t0))
	mustProcess(t, a, ev("u", "click", t0.Add(time.Minute)))
	a.Close()
	b := openRedis(t, redisClient(t), Config{}, p)
	e := ev("u", "purchase", t0.Add(2*time.Minute))
	checkResult(t, "after restart", mustProcess(t, b, e), e, want{startAt: t0, last: e.Timestamp, events: 3, dur: 120, avg: 60, eng: 0.8})
	if r1.SessionID != SessionID("u", t0) {
		t.Errorf("id: got %s; want %s", r1.SessionID, SessionID("u", t0))
	}
}

// TestRedisReplicasRace: two stores, each with its own client, apply
// events of one entity at once, singly and in batches; no event is lost.
func TestRedisReplicasRace(t *testing.T) {
	c := redisClient(t)
	p := testPrefix(t, c)
	stores := []*Redis{openRedis(t, c, Config{}, p), openRedis(t, redisClient(t), Config{}, p)}
	ctx := context.Background()
	mustProcess(t, stores[0], ev("hot", "view", t0))
	const perReplica, batch = 400, 8
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w, s := range stores {
		for g := range 2 { // two goroutines per replica
			wg.Go(func() {
				base := (w*2 + g) * perReplica
				for k := 0; k < perReplica; k += batch {
					evs := make([]features.Event, batch)
					for j := range evs {
						evs[j] = ev("hot", "click", t0.Add(time.Duration(1+base+k+j)*time.Millisecond))
					}
					if k%(2*batch) == 0 {
						for _, e := range evs {
							if _, err := s.Process(ctx, e); err != nil {
								t.Error(err)
								failed.Add(1)
							}
						}
						continue
					}
					_, errs := s.ProcessBatch(ctx, evs)
					for _, err := range errs {
						if err != nil {
							t.Error(err)
							failed.Add(1)
						}
					}
				}
			})
		}
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d events failed", failed.Load())
	}
	total := 4*perReplica + 1
	last := t0.Add(time.Duration(4*perReplica) * time.Millisecond)
	n, err := c.HGet(ctx, p+"{hot}", "count").Int()
	if err != nil || n != total {
		t.Fatalf("count: got %d, %v; want %d", n, err, total)
	}
	if got := c.HGet(ctx, p+"{hot}", "last").Val(); got != fmt.Sprint(last.UnixNano()) {
		t.Errorf("last: got %s; want %d", got, last.UnixNano())
	}
}

// TestRedisNoScript: a server that lacks the script (restart, SCRIPT
// FLUSH) gets it loaded again. A private copy of the script, unknown to
// the server, stands in for a flush so that other users of the server are
// not disturbed.
func TestRedisNoScript(t *testing.T) {
	c := redisClient(t)
	p := testPrefix(t, c)
	for _, batch := range []bool{true, false} {
		r := openRedis(t, c, Config{}, p)
		r.script = goredis.NewScript(transitionLua + fmt.Sprintf("\n-- test copy %d %d %v\n", os.Getpid(), time.Now().UnixNano(), batch))
		if ok, err := r.script.Exists(context.Background(), c).Result(); err != nil || ok[0] {
			t.Fatalf("script copy exists: %v, %v; want false", ok, err)
		}
		entity := fmt.Sprint("ns-", batch)
		evs := []features.Event{ev(entity, "view", t0), ev(entity, "view", t0.Add(time.Second)), ev(entity, "view", t0.Add(2*time.Second))}
		var res []Result
		if batch {
			var errs []error
			res, errs = r.ProcessBatch(context.Background(), evs)
			if err := errors.Join(errs...); err != nil {
				t.Fatalf("batch: %v", err)
			}
		} else {
			for _, e := range evs {
				res = append(res, mustProcess(t, r, e))
			}
		}
		if res[2].Events != 3 || res[2].SessionID != res[0].SessionID {
			t.Errorf("batch %v: got %d events; want 3 in one session", batch, res[2].Events)
		}
	}
}

func TestRedisCorruptState(t *testing.T) {
	c := redisClient(t)
	p := testPrefix(t, c)
	r := openRedis(t, c, Config{}, p)
	ctx := context.Background()
	for i, fields := range []map[string]any{
		{"id": SessionID("x", t0), "start": "abc", "last": "1", "count": "1"},
		{"id": "short", "start": "1", "last": "1", "count": "1"},
		{"start": "1"},
		{"id": SessionID("x", t0), "start": "1", "last": "1", "count": "1.5"},
	} {
		entity := fmt.Sprint("bad", i)
		c.HSet(ctx, r.Key(entity), fields)
		_, errs := r.ProcessBatch(ctx, []features.Event{ev(entity, "view", t0)})
		if !errors.Is(errs[0], ErrCorruptState) || !strings.Contains(errs[0].Error(), r.Key(entity)) {
			t.Errorf("case %d: got %v; want ErrCorruptState naming the key", i, errs[0])
		}
	}
}

func TestRedisUnavailable(t *testing.T) {
	c := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1", DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	r, err := NewRedis(c, Config{}, RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Process(context.Background(), ev("u", "view", t0))
	_, errs := r.ProcessBatch(context.Background(), []features.Event{ev("u", "view", t0), ev("v", "view", t0)})
	for _, err := range []error{err, errs[0], errs[1]} {
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "redis") {
			t.Errorf("got %v; want ErrUnavailable naming redis", err)
		}
	}
	if !strings.Contains(errs[1].Error(), "events[1]") {
		t.Errorf("got %v; want it to name events[1]", errs[1])
	}
	if _, err := NewRedis(nil, Config{}, RedisOptions{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("nil client: got %v; want ErrInvalidConfig", err)
	}
	if _, err := NewRedis(c, Config{}, RedisOptions{Prefix: strings.Repeat("p", MaxPrefixBytes+1)}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("long prefix: got %v; want ErrInvalidConfig", err)
	}
}

// TestDifferential runs random streams through Memory (the Go transition)
// and Redis (the Lua script) and requires identical results and errors.
// The gaps cluster around the timeout (±1 ns) and the session start, and
// times range up to the end of the int64 nanosecond range, where the Lua
// arithmetic must stay exact.
func TestDifferential(t *testing.T) {
	c := redisClient(t)
	ctx := context.Background()
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			cfg := Config{Timeout: time.Duration(1+rng.IntN(3600)) * time.Second}
			if seed == 3 {
				cfg.Timeout = MaxTimeout
			}
			cfg.DedupeIDs = []int{1, 2, 32, 1}[seed]
			red := openRedis(t, c, cfg, testPrefix(t, c))
			mem := openMemory(t, cfg, MemoryOptions{})
			entities := []string{"a", "b", "ü-ñ", "d"}
			types := []string{"view", "click", "purchase", "scroll", ""}
			cur := map[string]int64{} // the last time sent per entity
			startSpan := int64(math.MaxInt64) - int64(1000*cfg.Timeout)
			var nApplied, nNew, nLate, nOOO, nDup, nFloor int
			var sent []features.Event // events with ids, to send again
			for round := range 60 {
				n := 1 + rng.IntN(40)
				evs := make([]features.Event, n)
				for i := range evs {
					e := entities[rng.IntN(len(entities))]
					last, seen := cur[e]
					to := int64(cfg.Timeout)
					var tn int64
					switch k := rng.IntN(10); {
					case !seen:
						tn = rng.Int64N(startSpan)
						if rng.IntN(2) == 0 {
							tn = rng.Int64N(1 << 53)
						}
					case k == 0:
						tn = last + to - 1
					case k == 1:
						tn = last + to
					case k == 2:
						tn = last + to + 1
					case k == 3:
						tn = last - rng.Int64N(to/2+1) // late, maybe before start
					case k == 4:
						tn = last
					default:
						tn = last + rng.Int64N(to+to/4)
					}
					tn = max(tn, 0)
					cur[e] = max(last, tn)
					evs[i] = ev(e, types[rng.IntN(len(types))], time.Unix(0, tn))
					switch k := rng.IntN(10); {
					case k < 2 && len(sent) > 0: // a redelivery
						evs[i] = sent[len(sent)-1-rng.IntN(min(len(sent), 8))]
					case k < 8:
						evs[i].ID = fmt.Sprintf("ev-%d-%d", round, i)
						sent = append(sent, evs[i])
					}
				}
				var rr, mr []Result
				var re, me []error
				if round%5 == 0 { // single events: EVALSHA/EVAL through Run
					for _, e := range evs {
						r1, e1 := red.Process(ctx, e)
						r2, e2 := mem.Process(ctx, e)
						rr, re, mr, me = append(rr, r1), append(re, e1), append(mr, r2), append(me, e2)
					}
				} else {
					rr, re = red.ProcessBatch(ctx, evs)
					mr, me = mem.ProcessBatch(ctx, evs)
				}
				for i := range evs {
					if fmt.Sprint(re[i]) != fmt.Sprint(me[i]) {
						t.Fatalf("round %d events[%d] %+v: redis error %v; memory error %v", round, i, evs[i], re[i], me[i])
					}
					if re[i] != nil && !errors.Is(re[i], ErrOutOfOrder) {
						t.Fatalf("round %d events[%d]: unexpected error %v", round, i, re[i])
					}
					if !reflect.DeepEqual(rr[i], mr[i]) {
						t.Fatalf("round %d events[%d] %+v:\nredis  %+v\nmemory %+v", round, i, evs[i], rr[i], mr[i])
					}
					switch {
					case re[i] != nil && strings.Contains(re[i].Error(), "remembers event ids"):
						nFloor++
					case re[i] != nil:
						nOOO++
					case rr[i].Duplicate:
						nDup++
					case rr[i].IsNew:
						nNew++
					case rr[i].LastActivity.After(evs[i].Timestamp):
						nLate++
					}
					if re[i] == nil {
						nApplied++
					}
				}
			}
			// The stream must exercise every branch.
			if nNew < 10 || nLate < 10 || nOOO < 10 || nApplied-nNew-nLate-nDup < 10 || nDup < 10 || (cfg.DedupeIDs < 32 && nFloor < 5) {
				t.Errorf("coverage: %d applied, %d new, %d late, %d out of order, %d duplicates, %d below the id floor; want >= 10 of each (5 below the floor)",
					nApplied, nNew, nLate, nOOO, nDup, nFloor)
			}
		})
	}
}
