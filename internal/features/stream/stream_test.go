package stream

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/embedd/embedd/internal/features"
	"github.com/embedd/embedd/internal/features/service"
)

func client(t *testing.T) *goredis.Client {
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

// recorder is a real Ingester stand-in that records what it applied and can
// fail transiently; the service itself is tested in package service, and
// end to end in cmd/embedd.
type recorder struct {
	mu      sync.Mutex
	applied map[string]int // entity → times applied
	byWho   map[string]int
	who     string
	down    bool
}

func (r *recorder) Ingest(_ context.Context, evs []features.Event) ([]error, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	errs := make([]error, len(evs))
	for i, e := range evs {
		switch {
		case r.down:
			errs[i] = fmt.Errorf("%w: redis: connection refused", service.ErrUnavailable)
		case e.Values["amount"] < 0:
			errs[i] = fmt.Errorf("%w: negative amount", service.ErrInvalid)
		default:
			r.applied[e.EntityID]++
			r.byWho[r.who]++
		}
	}
	return errs, nil
}

func add(t *testing.T, c *goredis.Client, stream string, i int, amount string) {
	t.Helper()
	err := c.XAdd(context.Background(), &goredis.XAddArgs{Stream: stream, Values: map[string]any{
		"entity_id": fmt.Sprintf("e%d", i), "event_type": "view", "ts": fmt.Sprint(1764151200000 + i),
		"values": `{"amount":` + amount + `}`, "context": `{"tier":"premium"}`,
	}}).Err()
	if err != nil {
		t.Fatal(err)
	}
}

func names(t *testing.T) (stream string) {
	stream = fmt.Sprintf("embedd-test:events:%d", rand.Uint32())
	return stream
}

func run(t *testing.T, c *goredis.Client, in Ingester, stream, consumer string) (stop func()) {
	cons, err := New(c, in, Options{Stream: stream, Consumer: consumer, Block: 50 * time.Millisecond, Backoff: 20 * time.Millisecond, ClaimIdle: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cons.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func pending(t *testing.T, c *goredis.Client, stream string) int64 {
	p, err := c.XPending(context.Background(), stream, "embedd").Result()
	if err != nil {
		t.Fatal(err)
	}
	return p.Count
}

func TestConsumeAckDeadLetterResume(t *testing.T) {
	c := client(t)
	ctx := context.Background()
	stream := names(t)
	t.Cleanup(func() { c.Del(ctx, stream, stream+":dead") })
	for i := range 10 {
		add(t, c, stream, i, "1")
	}
	add(t, c, stream, 10, "-1") // rejected by the ingester: dead letter
	c.XAdd(ctx, &goredis.XAddArgs{Stream: stream, Values: map[string]any{"entity_id": "x", "ts": "yesterday"}})
	rec := &recorder{applied: map[string]int{}, byWho: map[string]int{}, who: "a"}
	stop := run(t, c, rec, stream, "a")
	waitFor(t, "10 events applied and 2 dead-lettered", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.applied) == 10 && c.XLen(ctx, stream+":dead").Val() == 2
	})
	waitFor(t, "everything acked", func() bool { return pending(t, c, stream) == 0 })
	dead, _ := c.XRange(ctx, stream+":dead", "-", "+").Result()
	if !strings.Contains(fmt.Sprint(dead[0].Values["error"]), "negative amount") || !strings.Contains(fmt.Sprint(dead[1].Values["error"]), `ts "yesterday"`) {
		t.Errorf("dead letters: %v", dead)
	}
	// Store down: messages stay pending, are retried, and applied once it
	// is back.
	rec.mu.Lock()
	rec.down = true
	rec.mu.Unlock()
	for i := 20; i < 25; i++ {
		add(t, c, stream, i, "1")
	}
	// The consumer keeps retrying what it read and reads nothing new.
	waitFor(t, "events pending", func() bool { return pending(t, c, stream) >= 1 })
	time.Sleep(100 * time.Millisecond)
	stop() // and a restart while they are pending
	rec.mu.Lock()
	rec.down = false
	rec.mu.Unlock()
	stop = run(t, c, rec, stream, "a")
	defer stop()
	waitFor(t, "the pending events applied after restart", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.applied) == 15
	})
	waitFor(t, "everything acked", func() bool { return pending(t, c, stream) == 0 })
	for e, n := range rec.applied {
		if n != 1 {
			t.Errorf("%s applied %d times", e, n)
		}
	}
}

// TestReplicasShareAndClaim: two consumers split the stream; when one dies
// with messages pending, the other claims them.
func TestReplicasShareAndClaim(t *testing.T) {
	c := client(t)
	ctx := context.Background()
	stream := names(t)
	t.Cleanup(func() { c.Del(ctx, stream, stream+":dead") })
	rec := &recorder{applied: map[string]int{}, byWho: map[string]int{}}
	recA := &whoIngester{rec, "a"}
	recB := &whoIngester{rec, "b"}
	stopA := run(t, c, recA, stream, "a")
	stopB := run(t, c, recB, stream, "b")
	for i := range 400 {
		add(t, c, stream, i, "1")
		if i%50 == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor(t, "400 applied", func() bool { rec.mu.Lock(); defer rec.mu.Unlock(); return len(rec.applied) == 400 })
	stopA()
	stopB()
	rec.mu.Lock()
	if rec.byWho["a"] == 0 || rec.byWho["b"] == 0 {
		t.Errorf("work not shared: %v", rec.byWho)
	}
	rec.mu.Unlock()
	// A consumer that read messages and died before acking: "dead" reads
	// two messages with XREADGROUP and never acks; "b" claims them.
	add(t, c, stream, 1000, "1")
	add(t, c, stream, 1001, "1")
	if _, err := c.XReadGroup(ctx, &goredis.XReadGroupArgs{Group: "embedd", Consumer: "dead", Streams: []string{stream, ">"}, Count: 10, Block: -1}).Result(); err != nil {
		t.Fatal(err)
	}
	stopB = run(t, c, recB, stream, "b")
	defer stopB()
	waitFor(t, "claimed messages applied", func() bool { rec.mu.Lock(); defer rec.mu.Unlock(); return len(rec.applied) == 402 })
}

type whoIngester struct {
	r   *recorder
	who string
}

func (w *whoIngester) Ingest(ctx context.Context, evs []features.Event) ([]error, error) {
	w.r.mu.Lock()
	w.r.who = w.who
	w.r.mu.Unlock()
	// Ingest takes the lock itself; who is read under it.
	return w.r.ingestAs(w.who, evs)
}

func (r *recorder) ingestAs(who string, evs []features.Event) ([]error, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	errs := make([]error, len(evs))
	for _, e := range evs {
		r.applied[e.EntityID]++
		r.byWho[who]++
	}
	return errs, nil
}

func TestDecode(t *testing.T) {
	ev, err := Decode("1-0", map[string]any{"entity_id": "u", "ts": "2026-11-26T10:00:00.5Z", "values": `{"a":1.5}`, "context": `{"k":"v"}`})
	if err != nil || !ev.Timestamp.Equal(time.Date(2026, 11, 26, 10, 0, 0, 5e8, time.UTC)) || ev.Values["a"] != 1.5 || ev.Context["k"] != "v" || ev.ID != "1-0" {
		t.Fatalf("%+v %v", ev, err)
	}
	if ev, err := Decode("1-0", map[string]any{"entity_id": "u", "ts": "1", "event_id": "order-7"}); err != nil || ev.ID != "order-7" {
		t.Fatalf("event_id field: got %q, %v; want order-7", ev.ID, err)
	}
	for _, bad := range []map[string]any{{"ts": "1"}, {"entity_id": "u"}, {"entity_id": "u", "ts": "1", "values": `[1]`}, {"entity_id": "u", "ts": "1", "context": `{"k":1}`}} {
		if _, err := Decode("1-0", bad); err == nil {
			t.Errorf("%v decoded", bad)
		}
	}
}

// limited is an Ingester that tells its limit on events per call.
type limited struct{ recorder }

func (*limited) Limits() service.Limits { return service.Limits{Events: 10} }

// TestBatchWithinIngestLimit: a read batch never exceeds what one Ingest
// call of the ingester takes, so a call is never refused whole.
func TestBatchWithinIngestLimit(t *testing.T) {
	for _, c := range []struct {
		in    Ingester
		batch int
		want  int
	}{
		{&recorder{}, 0, 256},
		{&recorder{}, service.MaxEvents + 1, service.MaxEvents},
		{&limited{}, 0, 10},
		{&limited{}, 5, 5},
	} {
		cons, err := New(nil, c.in, Options{Consumer: "c", Batch: c.batch})
		if err != nil {
			t.Fatal(err)
		}
		if cons.opts.Batch != c.want {
			t.Errorf("%T, Batch %d: got %d; want %d", c.in, c.batch, cons.opts.Batch, c.want)
		}
	}
}
