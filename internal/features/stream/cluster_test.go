package stream

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/embedd/embedd/internal/features/service"
	"github.com/embedd/embedd/internal/testassets"
)

// TestClusterConsumersFailover: two consumers (two replicas) read one
// stream on a three-master Redis Cluster into features services whose
// state and session stores are on the same cluster; the master holding
// the stream is failed over (CLUSTER FAILOVER on its replica) while
// events are added and consumed. Every event added is then counted
// exactly once in its entity's events_count_1h (the stream message id is
// the event id), and nothing stays pending. Every command is checked by a
// SlotLog: no script or multi-key command across hash slots.
func TestClusterConsumersFailover(t *testing.T) {
	c := testassets.RedisCluster(t)
	log := testassets.NewSlotLog()
	c.AddHook(log)
	ctx := context.Background()
	run := rand.Uint32()
	stream := fmt.Sprintf("embedd-test:clevents:%d", run)
	prefix := fmt.Sprintf("embedd-test:clst%d:", run)
	t.Cleanup(func() {
		c.Del(ctx, stream)
		c.Del(ctx, stream+":dead")
		testassets.DeleteKeys(ctx, c, prefix+"*")
		if v := log.Violations(); len(v) > 0 {
			t.Errorf("commands across hash slots: %q", v)
		}
	})
	var svcs []*service.Service
	var stops []func()
	for _, name := range []string{"a", "b"} {
		svc, err := eoOpen(c, prefix)
		if err != nil {
			t.Fatal(err)
		}
		svcs = append(svcs, svc)
		cons, err := New(c, svc, Options{Stream: stream, Consumer: name, Block: 50 * time.Millisecond, Backoff: 20 * time.Millisecond, ClaimIdle: 500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- cons.Run(rctx) }()
		stops = append(stops, func() {
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("consumer %s: Run: %v", name, err)
			}
		})
	}
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	const entities, total = 12, 1200
	now := time.Now()
	want := map[string]int{}
	add := func(i int) {
		e := fmt.Sprintf("ce%d", i%entities)
		ts := now.Add(time.Duration(i-total) * time.Millisecond).UnixMilli()
		for attempt := 0; ; attempt++ {
			err := c.XAdd(ctx, &goredis.XAddArgs{Stream: stream, Values: map[string]any{
				"entity_id": e, "event_type": "view", "ts": strconv.FormatInt(ts, 10), "values": `{"amount":1}`}}).Err()
			if err == nil {
				want[e]++
				return
			}
			// An XADD refused during the failover was not added; a producer
			// retries it.
			if attempt == 100 {
				t.Fatalf("XADD %d: %v", i, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for i := range total / 2 {
		add(i)
	}
	fctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	from, to, err := testassets.FailoverMaster(fctx, c, stream)
	if err != nil {
		t.Fatalf("failover %s -> %s: %v", from, to, err)
	}
	for i := total / 2; i < total; i++ {
		add(i)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		p, err := c.XPending(ctx, stream, "embedd").Result()
		last := c.XInfoStream(ctx, stream).Val().LastGeneratedID
		delivered := ""
		if groups, gerr := c.XInfoGroups(ctx, stream).Result(); gerr == nil && len(groups) == 1 {
			delivered = groups[0].LastDeliveredID
		}
		if err == nil && p.Count == 0 && last != "" && delivered == last {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: pending %v (%v), last delivered %s, last added %s", p, err, delivered, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := c.XLen(ctx, stream+":dead").Val(); n != 0 {
		t.Errorf("dead letters: %d; want 0", n)
	}
	ids := make([]string, entities)
	for i := range ids {
		ids[i] = fmt.Sprintf("ce%d", i)
	}
	res, err := svcs[1].Get(ctx, service.GetRequest{Entities: ids, Features: []string{"events_count_1h"}})
	if err != nil {
		t.Fatal(err)
	}
	for k, r := range res {
		if got := r.Values[0].Value; got != float64(want[ids[k]]) {
			t.Errorf("%s: events_count_1h %v; want %d (each event once)", ids[k], got, want[ids[k]])
		}
	}
	dup := svcs[0].Stats().Duplicate + svcs[1].Stats().Duplicate
	t.Logf("failover %s -> %s; %d events, %d duplicates skipped, scripts %d", from, to, total, dup, len(log.Scripts()))
}
