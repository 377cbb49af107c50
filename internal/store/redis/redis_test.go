package redis

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/store"
	"github.com/embedd/embedd/internal/store/storetest"
)

// addr returns EMBEDD_REDIS_ADDR, skipping (or failing under
// EMBEDD_REQUIRE_STORES=1) when it is unset.
func addr(tb testing.TB) string {
	a := os.Getenv("EMBEDD_REDIS_ADDR")
	if a == "" {
		if os.Getenv("EMBEDD_REQUIRE_STORES") == "1" {
			tb.Fatal("EMBEDD_REDIS_ADDR is unset and EMBEDD_REQUIRE_STORES=1")
		}
		tb.Skip("EMBEDD_REDIS_ADDR is unset; run scripts/redis.sh and export EMBEDD_REDIS_ADDR=127.0.0.1:6390")
	}
	return a
}

func open(tb testing.TB) *Online {
	o := New(Options{Addr: addr(tb), Prefix: "embedd-test:ent:"})
	if err := o.Ping(context.Background()); err != nil {
		tb.Fatalf("Ping: %v", err)
	}
	tb.Cleanup(func() { o.Close() })
	return o
}

func TestOnlineConformance(t *testing.T) {
	storetest.TestOnline(t, func(t *testing.T) store.Online { return open(t) })
}

func TestKeyLayout(t *testing.T) {
	o := open(t)
	ctx := context.Background()
	e := store.Entity{ID: "layout", Embedding: []int8{-1, 5}, Scale: 0.25, ModelVersion: "v3", UpdatedAt: time.UnixMilli(1234), Features: map[string]float64{"ctr": 0.5}}
	if err := o.SetEntities(ctx, []store.Entity{e}, time.Minute); err != nil {
		t.Fatal(err)
	}
	m, err := o.c.HGetAll(ctx, "embedd-test:ent:{layout}").Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"emb": "\xff\x05", "scale": "0.25", "mv": "v3", "ts": "1234", "f:ctr": "0.5"}
	if fmt.Sprint(m) != fmt.Sprint(want) {
		t.Errorf("hash: got %q; want %q", m, want)
	}
	if ttl := o.c.PTTL(ctx, "embedd-test:ent:{layout}").Val(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("pttl: got %v; want (0, 1m]", ttl)
	}
}

func TestUnavailable(t *testing.T) {
	o := New(Options{Addr: "127.0.0.1:1", DialTimeout: 200 * time.Millisecond})
	defer o.Close()
	ctx := context.Background()
	_, err := o.GetEntities(ctx, []string{"a"})
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "redis") {
		t.Errorf("GetEntities: got %v; want ErrUnavailable naming redis", err)
	}
	err = o.SetEntities(ctx, []store.Entity{{ID: "a"}}, 0)
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("SetEntities: got %v; want ErrUnavailable", err)
	}
}
