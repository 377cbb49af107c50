package index_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/index"
	"github.com/embedd/embedd/internal/store"
	"github.com/embedd/embedd/internal/store/embedded"
	"github.com/embedd/embedd/internal/store/redis"
	"github.com/embedd/embedd/internal/store/wal"
	"github.com/embedd/embedd/internal/testassets"
)

// unreachable is an address nothing listens on.
func unreachable(t *testing.T) string {
	return fmt.Sprintf("127.0.0.1:%d", testassets.FreePort(t))
}

func TestUnavailableNamesStore(t *testing.T) {
	s, err := embedded.Open(embedded.DefaultOptions(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ro := redis.DefaultOptions()
	ro.Addr = unreachable(t)
	ro.DialTimeout = 200 * time.Millisecond
	rd := redis.New(ro)
	defer rd.Close()
	x, err := index.New(context.Background(), theEngine(t), index.Options{
		Collections: []index.CollectionConfig{{Name: "docs", Model: model}},
		Vectors:     s, Online: rd, VectorsName: "embedded", OnlineName: "redis", Logger: quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = x.Upsert(context.Background(), index.UpsertRequest{Items: []index.Item{{ID: "a", Text: "hello"}}})
	if !errors.Is(err, store.ErrUnavailable) || !strings.HasPrefix(err.Error(), "redis: ") {
		t.Fatalf("err %v; want unavailable naming redis", err)
	}
}

// TestDurableModeOutage stops a real Redis, writes through the WAL, restarts
// Redis and checks every acknowledged write arrives, in order, and that a
// restart of the index before Redis returns loses nothing.
func TestDurableModeOutage(t *testing.T) {
	ctx := context.Background()
	port := testassets.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	rdir := t.TempDir()
	stop := testassets.RedisServer(t, port, rdir)
	s, err := embedded.Open(embedded.DefaultOptions(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ro := redis.DefaultOptions()
	ro.Addr = addr
	ro.DialTimeout = 200 * time.Millisecond
	rd := redis.New(ro)
	defer rd.Close()
	walDir := t.TempDir()
	openIndex := func() (*index.Index, *wal.Log) {
		l, err := wal.Open(wal.Options{Dir: walDir, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		x, err := index.New(ctx, theEngine(t), index.Options{
			Collections: []index.CollectionConfig{{Name: "docs", Model: model}},
			Vectors:     s, Online: rd, VectorsName: "embedded", OnlineName: "redis", WAL: l, Logger: quiet(),
		})
		if err != nil {
			t.Fatal(err)
		}
		return x, l
	}
	x, l := openIndex()
	// Store up: applied directly.
	if r, err := x.Upsert(ctx, index.UpsertRequest{Items: []index.Item{{ID: "a", Text: "first", Features: map[string]float64{"v": 1}}}}); err != nil || r.Queued {
		t.Fatalf("upsert with redis up: %+v %v", r, err)
	}
	stop()
	// Redis down: queued, and later writes of the same id queue behind.
	for v := 2; v <= 4; v++ {
		r, err := x.Upsert(ctx, index.UpsertRequest{Items: []index.Item{{ID: "a", Text: "again", Features: map[string]float64{"v": float64(v)}}}})
		if err != nil || !r.Queued {
			t.Fatalf("upsert v=%d with redis down: %+v %v", v, r, err)
		}
	}
	if d, err := x.Delete(ctx, "", []string{"gone"}); err != nil || !d.Queued {
		t.Fatalf("delete: %+v %v", d, err)
	}
	if x.Pending() != 4 {
		t.Fatalf("pending %d; want 4", x.Pending())
	}
	// The process restarts before Redis is back: nothing is lost.
	l.Close()
	x, l = openIndex()
	defer l.Close()
	if x.Pending() != 4 {
		t.Fatalf("pending after restart %d; want 4", x.Pending())
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- x.Run(rctx) }()
	time.Sleep(100 * time.Millisecond) // a few failed retries
	testassets.RedisServer(t, port, rdir)
	deadline := time.Now().Add(15 * time.Second)
	for x.Pending() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("WAL not drained: %d pending", x.Pending())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	items, _, err := x.Get(ctx, "", []string{"a"}, false)
	if err != nil || len(items) != 1 || items[0].Features["v"] != 4 {
		t.Fatalf("after replay: %+v %v; want v=4", items, err)
	}
	// Back to direct writes.
	if r, err := x.Upsert(ctx, index.UpsertRequest{Items: []index.Item{{ID: "b", Text: "direct"}}}); err != nil || r.Queued {
		t.Fatalf("upsert after recovery: %+v %v", r, err)
	}

}
