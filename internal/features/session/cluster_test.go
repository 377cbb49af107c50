package session

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/embedd/embedd/internal/features"
	"github.com/embedd/embedd/internal/testassets"
)

// clusterStore opens a Redis store on the test Redis Cluster under a
// prefix of its own; every command its client sends is checked by a
// SlotLog (a script call across hash slots fails the test), and the
// prefix's keys are deleted at the end.
func clusterStore(t *testing.T, cfg Config) (*Redis, *goredis.ClusterClient) {
	c := testassets.RedisCluster(t)
	log := testassets.NewSlotLog()
	c.AddHook(log)
	p := fmt.Sprintf("embedd-test:sesscl:%d:%d:", os.Getpid(), prefixSeq.Add(1))
	r, err := NewRedis(c, cfg, RedisOptions{Prefix: p})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Close()
		testassets.DeleteKeys(context.Background(), c, p+"*")
		if v := log.Violations(); len(v) > 0 {
			t.Errorf("commands across hash slots: %q", v)
		}
	})
	return r, c
}

// TestRedisConformanceCluster runs the Store conformance suite on a
// three-master Redis Cluster.
func TestRedisConformanceCluster(t *testing.T) {
	testassets.RedisClusterAddrs(t) // skip (or fail) once, not per subtest
	testStore(t, func(t *testing.T, cfg Config) Store {
		r, _ := clusterStore(t, cfg)
		return r
	})
}

// TestRedisClusterBatchAcrossMasters: one ProcessBatch whose entities
// live on every master applies each event once, in order per entity, and
// two stores (two replicas) racing on the same entities lose no event.
func TestRedisClusterBatchAcrossMasters(t *testing.T) {
	a, c := clusterStore(t, Config{})
	b, err := NewRedis(c, Config{}, RedisOptions{Prefix: a.prefix})
	if err != nil {
		t.Fatal(err)
	}
	const entities, rounds = 30, 20
	thirds := map[int]bool{}
	for e := range entities {
		thirds[testassets.KeySlot(a.Key(fmt.Sprint("e", e)))*3/16384] = true
	}
	if len(thirds) != 3 {
		t.Fatalf("entities on %d of 3 slot thirds", len(thirds))
	}
	ctx := context.Background()
	var ooo [entities]atomic.Int64 // events before their session's start: not counted
	var wg sync.WaitGroup
	for w, s := range []*Redis{a, b} {
		wg.Go(func() {
			for r := range rounds {
				evs := make([]features.Event, entities)
				for e := range evs {
					evs[e] = ev(fmt.Sprint("e", e), "view", t0.Add(time.Duration(1+2*r+w)*time.Millisecond))
					evs[e].ID = fmt.Sprintf("w%d-r%d", w, r)
				}
				_, errs := s.ProcessBatch(ctx, evs)
				for i, err := range errs {
					switch {
					case errors.Is(err, ErrOutOfOrder):
						ooo[i].Add(1)
					case err != nil:
						t.Errorf("event %d: %v", i, err)
					}
				}
			}
		})
	}
	wg.Wait()
	for e := range entities {
		key := a.Key(fmt.Sprint("e", e))
		n, err := c.HGet(ctx, key, "count").Int()
		if want := 2*rounds - int(ooo[e].Load()); err != nil || n != want {
			t.Errorf("%s count: got %d, %v; want %d (%d events before the session start)", key, n, err, want, ooo[e].Load())
		}
	}
}
