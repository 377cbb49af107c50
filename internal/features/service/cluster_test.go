package service

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/embedd/embedd/internal/features"
	"github.com/embedd/embedd/internal/features/session"
	"github.com/embedd/embedd/internal/features/window"
	"github.com/embedd/embedd/internal/testassets"
)

// clusterBackend is redisBackend on the test Redis Cluster (TestService,
// the dedupe, limits and sensitive tests run on all three backends): the state and
// session stores share one cluster client per test, whose every command a
// SlotLog checks (a script or multi-key command across hash slots fails
// the test).
func clusterBackend() backend {
	type shared struct {
		c      *goredis.ClusterClient
		prefix string
	}
	per := map[testing.TB]shared{}
	var mu sync.Mutex
	return backend{"redis-cluster", func(t testing.TB, cfg window.Config, _ features.Clock) (StateStore, session.Store) {
		s := func() shared {
			mu.Lock()
			defer mu.Unlock() // clusterClient may end the test (t.Fatal)
			s, ok := per[t]
			if !ok {
				s = shared{c: clusterClient(t), prefix: fmt.Sprintf("embedd-test:f%d:", rand.Uint32())}
				per[t] = s
			}
			return s
		}()
		ss, err := session.NewRedis(s.c, session.DefaultConfig(), session.RedisOptions{Prefix: s.prefix + "sess:"})
		if err != nil {
			t.Fatal(err)
		}
		return NewRedis(s.c, cfg, s.prefix+"fst:", 2*time.Hour), ss
	}}
}

// clusterClient returns a client on the test cluster that checks every
// command's hash slots and deletes the test's keys at the end.
func clusterClient(t testing.TB) *goredis.ClusterClient {
	c := testassets.RedisCluster(t)
	log := testassets.NewSlotLog()
	c.AddHook(log)
	t.Cleanup(func() {
		testassets.DeleteKeys(context.Background(), c, "embedd-test:f*")
		if v := log.Violations(); len(v) > 0 {
			t.Errorf("commands across hash slots: %q", v)
		}
		if len(log.Scripts()) == 0 && log.Commands() > 0 {
			t.Logf("no script ran (%d commands)", log.Commands())
		}
	})
	return c
}

// TestStateStoreCluster: UpdateBatch, Load, Revisions and Scan of the
// Redis state store on a cluster, with entities on every master: Scan
// (and so Materialize and Reseal) must visit every master, not one.
func TestStateStoreCluster(t *testing.T) {
	c := clusterClient(t)
	ctx := context.Background()
	prefix := fmt.Sprintf("embedd-test:fscan%d:", rand.Uint32())
	r := NewRedis(c, window.DefaultConfig(), prefix, time.Minute)
	var ids []string
	masters := map[int]bool{}
	for i := range 200 {
		id := fmt.Sprintf("u%d", i)
		ids = append(ids, id)
		masters[testassets.KeySlot(r.Key(id))*3/16384] = true
	}
	if len(masters) != 3 {
		t.Fatalf("ids on %d of 3 slot thirds", len(masters))
	}
	for k, err := range r.UpdateBatch(ctx, ids, func(k int, st *State) error { st.Seq = uint64(k + 1); return nil }) {
		if err != nil {
			t.Fatalf("UpdateBatch %s: %v", ids[k], err)
		}
	}
	sts, err := r.Load(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	for k, st := range sts {
		if st == nil || st.Seq != uint64(k+1) {
			t.Fatalf("Load %s: got %+v; want Seq %d", ids[k], st, k+1)
		}
	}
	revs, err := r.Revisions(ctx, ids)
	if err != nil || revs[0] != "1" || revs[199] != "1" {
		t.Fatalf("Revisions: %v %v", revs[:2], err)
	}
	seen := map[string]bool{}
	if err := r.Scan(ctx, func(id string) bool { seen[id] = true; return true }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != len(ids) {
		t.Errorf("Scan found %d of %d entities spread over 3 masters", len(seen), len(ids))
	}
	n := 0
	if err := r.Scan(ctx, func(string) bool { n++; return n < 5 }); err != nil || n != 5 {
		t.Errorf("Scan stopped by fn: %d calls, %v; want 5", n, err)
	}
	// Reseal (embedd keys rotate-features) walks Scan: every plaintext
	// state, on every master, is sealed.
	r.SetKeys(testKeys(t, "k1"))
	if n, err := r.Reseal(ctx); err != nil || n != len(ids) {
		t.Errorf("Reseal: %d states, %v; want %d", n, err, len(ids))
	}
}

// TestClusterFailoverIngest fails a master over (CLUSTER FAILOVER on its
// replica) while four writers ingest events with ids through the service
// on the cluster, and checks that no acknowledged event is lost: every
// event acknowledged (no error) is counted in events_count_1h, and none is
// counted twice. An event that fails during the failover must fail
// ErrUnavailable (never silently, never as a bad request); the writer
// then retries it, as a client does on UNAVAILABLE, and the id makes the
// retry apply at most once.
func TestClusterFailoverIngest(t *testing.T) {
	b := clusterBackend()
	f := newFixture(t, b, "")
	f.clk.Set(t0.Add(time.Hour))
	f.svc.opts.CacheTTL = -1
	c := testassets.RedisCluster(t) // a second client: the failover's
	const entities, writers = 24, 4
	ids := make([]string, entities)
	for i := range ids {
		ids[i] = fmt.Sprintf("fo%d", i)
	}
	st := f.svc.opts.States.(*Redis)
	var (
		acked   [entities]atomic.Int64
		unavail atomic.Int64
		sent    atomic.Int64
		stop    atomic.Bool
		wg      sync.WaitGroup
	)
	for w := range writers {
		wg.Go(func() {
			for seq := 0; !stop.Load(); seq++ {
				var batch []features.Event
				for e := w; e < entities; e += writers {
					ev := ev(ids[e], "view", t0.Add(time.Duration(seq+1)*time.Millisecond), 1)
					ev.ID = fmt.Sprintf("w%d-%d", w, seq)
					batch = append(batch, ev)
				}
				for attempt := 0; len(batch) > 0; attempt++ {
					if attempt == 200 {
						t.Errorf("writer %d: events still failing after 200 tries: %v", w, batch[0].ID)
						return
					}
					sent.Add(int64(len(batch)))
					errs, err := f.svc.Ingest(context.Background(), batch)
					if err != nil {
						t.Errorf("Ingest: %v", err)
						return
					}
					var retry []features.Event
					for i, err := range errs {
						switch {
						case err == nil:
							var k int
							fmt.Sscanf(batch[i].EntityID, "fo%d", &k)
							acked[k].Add(1)
						case errors.Is(err, ErrUnavailable):
							unavail.Add(1)
							retry = append(retry, batch[i])
						default:
							t.Errorf("event %s of %s: %v; want nil or ErrUnavailable", batch[i].ID, batch[i].EntityID, err)
							return
						}
					}
					batch = retry
					if len(retry) > 0 {
						time.Sleep(20 * time.Millisecond)
					}
				}
			}
		})
	}
	// Let the writers run, fail over the master of fo0's state, run on.
	time.Sleep(300 * time.Millisecond)
	before := sent.Load()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	from, to, err := testassets.FailoverMaster(ctx, c, st.Key(ids[0]))
	if err != nil {
		stop.Store(true)
		wg.Wait()
		t.Fatalf("failover %s -> %s: %v", from, to, err)
	}
	during := sent.Load()
	time.Sleep(500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	t.Logf("failover %s -> %s; events sent: %d before, %d by the end of the failover, %d in all; %d UNAVAILABLE (retried)", from, to, before, during, sent.Load(), unavail.Load())
	if before == 0 || sent.Load() == during {
		t.Fatalf("no ingest before (%d) or after (%d) the failover", before, sent.Load()-during)
	}
	res, err := f.svc.Get(context.Background(), GetRequest{Entities: ids, Features: []string{"events_count_1h", "events_in_session"}, AsOf: t0.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for k, r := range res {
		got, sess, want := r.Values[0].Value, r.Values[1].Value, float64(acked[k].Load())
		total += acked[k].Load()
		if got != want || sess != want {
			t.Errorf("%s: events_count_1h %v, events_in_session %v; want %v (every acknowledged event, once)", ids[k], got, sess, want)
		}
	}
	if total == 0 {
		t.Fatal("no event acknowledged")
	}
}

// TestClusterUnavailableIngest: a master that stops executing writes
// (CLIENT PAUSE WRITE, longer than the client's read timeout) makes the
// ingests of its entities fail ErrUnavailable, never succeed silently
// without being applied; the writers retry them (as a gRPC client does on
// UNAVAILABLE) and, once the pause ends, every acknowledged event is
// counted exactly once, including those whose timed-out write Redis
// applied after all (the event id makes the retry a duplicate). A private
// three-master cluster, so that the pause stalls no other test.
func TestClusterUnavailableIngest(t *testing.T) {
	addrs := testassets.RedisClusterServer(t, 3, goredis.Options{})
	c := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs, ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond, MaxRetries: 1})
	t.Cleanup(func() { c.Close() })
	b := backend{"private-cluster", func(t testing.TB, cfg window.Config, _ features.Clock) (StateStore, session.Store) {
		ss, err := session.NewRedis(c, session.DefaultConfig(), session.RedisOptions{Prefix: "t:sess:"})
		if err != nil {
			t.Fatal(err)
		}
		return NewRedis(c, cfg, "t:fst:", 2*time.Hour), ss
	}}
	f := newFixture(t, b, "")
	f.clk.Set(t0.Add(time.Hour))
	f.svc.opts.CacheTTL = -1
	st := f.svc.opts.States.(*Redis)
	const entities = 12
	ids := make([]string, entities)
	for i := range ids {
		ids[i] = fmt.Sprintf("un%d", i)
	}
	// The master of un0's state: paused below.
	var paused string
	slots := c.ClusterSlots(context.Background()).Val()
	for _, s := range slots {
		if k := testassets.KeySlot(st.Key(ids[0])); k >= s.Start && k <= s.End {
			paused = s.Nodes[0].Addr
		}
	}
	var (
		acked   [entities]int
		unavail int
	)
	pauseAt, seq := 20, 0
	for ; seq < 80; seq++ {
		if seq == pauseAt {
			p := goredis.NewClient(&goredis.Options{Addr: paused})
			if err := p.Do(context.Background(), "CLIENT", "PAUSE", 1500, "WRITE").Err(); err != nil {
				t.Fatal(err)
			}
			p.Close()
		}
		batch := make([]features.Event, entities)
		for e := range batch {
			batch[e] = ev(ids[e], "view", t0.Add(time.Duration(seq+1)*time.Millisecond), 1)
			batch[e].ID = fmt.Sprint("s", seq)
		}
		for attempt := 0; len(batch) > 0; attempt++ {
			if attempt == 100 {
				t.Fatalf("seq %d: still failing after 100 tries", seq)
			}
			errs, err := f.svc.Ingest(context.Background(), batch)
			if err != nil {
				t.Fatal(err)
			}
			var retry []features.Event
			for i, err := range errs {
				var k int
				fmt.Sscanf(batch[i].EntityID, "un%d", &k)
				switch {
				case err == nil:
					acked[k]++
				case errors.Is(err, ErrUnavailable):
					unavail++
					retry = append(retry, batch[i])
				default:
					t.Fatalf("event %s of %s: %v; want nil or ErrUnavailable", batch[i].ID, batch[i].EntityID, err)
				}
			}
			batch = retry
			if len(retry) > 0 {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	if unavail == 0 {
		t.Fatalf("no ingest failed while %s paused writes for 1.5s; the test proves nothing", paused)
	}
	res, err := f.svc.Get(context.Background(), GetRequest{Entities: ids, Features: []string{"events_count_1h", "events_in_session"}, AsOf: t0.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	for k, r := range res {
		if got, sess := r.Values[0].Value, r.Values[1].Value; got != float64(acked[k]) || sess != float64(acked[k]) || acked[k] != seq {
			t.Errorf("%s: events_count_1h %v, events_in_session %v, acknowledged %d; want all %d", ids[k], got, sess, acked[k], seq)
		}
	}
	t.Logf("%s paused writes 1.5s: %d event ingests failed UNAVAILABLE and were retried; every entity counts %d events once", paused, unavail, seq)
}
