package server_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/embedd/embedd/internal/features/registry"
	"github.com/embedd/embedd/internal/features/service"
	"github.com/embedd/embedd/internal/features/session"
	"github.com/embedd/embedd/internal/features/window"
	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// BenchmarkGetFeaturesRPC measures GetFeatures over a real gRPC listener on
// loopback: the 50 features of internal/features/service/testdata
// (bench50), 1 and 100 entities each holding 120 events with two values in
// the last hour, state in the local Redis (EMBEDD_REDIS_ADDR). cache=off
// loads and decodes every state on every call; cache=revalidate is the
// default read path past the cache TTL (one pipelined revision check, and a
// reload only of changed states).
func BenchmarkGetFeaturesRPC(b *testing.B) {
	addr := os.Getenv("EMBEDD_REDIS_ADDR")
	if addr == "" {
		b.Skip("EMBEDD_REDIS_ADDR is unset")
	}
	reg, err := registry.LoadDir("../features/service/testdata")
	if err != nil {
		b.Fatal(err)
	}
	rc := goredis.NewClient(&goredis.Options{Addr: addr})
	defer rc.Close()
	prefix := fmt.Sprintf("embedd-bench:rpc%d:", rand.Uint32())
	defer func() {
		keys, _ := rc.Keys(context.Background(), prefix+"*").Result()
		if len(keys) > 0 {
			rc.Del(context.Background(), keys...)
		}
	}()
	for _, cache := range []struct {
		name string
		ttl  time.Duration
	}{{"off", -1}, {"revalidate", time.Nanosecond}} {
		wcfg, err := service.WindowConfig(reg, window.DefaultConfig(), time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		sess, err := session.NewRedis(rc, session.DefaultConfig(), session.RedisOptions{Prefix: prefix + "sess:"})
		if err != nil {
			b.Fatal(err)
		}
		svc, err := service.New(service.Options{Registry: reg, States: service.NewRedis(rc, wcfg, prefix+"fst:", 2*time.Hour), Sessions: sess, CacheTTL: cache.ttl})
		if err != nil {
			b.Fatal(err)
		}
		conn := serveFeatures(b, svc)
		fc := embeddv1.NewFeatureServiceClient(conn)
		ctx := context.Background()
		now := time.Now()
		r := rand.New(rand.NewPCG(3, 4))
		var evs []*embeddv1.Event
		ids := make([]string, 100)
		for e := range ids {
			ids[e] = fmt.Sprintf("user%03d", e)
			for k := range 120 {
				at := now.Add(-time.Hour + time.Duration(k)*30*time.Second)
				evs = append(evs, &embeddv1.Event{EntityId: ids[e], EventType: "view", Timestamp: timestamppb.New(at),
					Values: map[string]float64{"amount": r.Float64() * 100, "price": r.Float64() * 10}})
			}
		}
		for lo := 0; lo < len(evs) && cache.name == "off"; lo += 4000 { // the state is shared by both runs
			if res, err := fc.IngestEvents(ctx, &embeddv1.IngestEventsRequest{Events: evs[lo:min(lo+4000, len(evs))]}); err != nil || len(res.Errors) > 0 {
				b.Fatalf("ingest: %v; %d errors", err, len(res.GetErrors()))
			}
		}
		for _, n := range []int{1, 100} {
			b.Run(fmt.Sprintf("redis/entities=%d/cache=%s", n, cache.name), func(b *testing.B) {
				req := &embeddv1.GetFeaturesRequest{EntityIds: ids[:n], FeatureSet: "bench50"}
				if _, err := fc.GetFeatures(ctx, req); err != nil {
					b.Fatal(err)
				}
				lat := make([]time.Duration, 0, b.N)
				b.ResetTimer()
				for range b.N {
					t := time.Now()
					res, err := fc.GetFeatures(ctx, req)
					lat = append(lat, time.Since(t))
					if err != nil || len(res.Entities) != n || len(res.Features) != 50 || len(res.Entities[0].Values) != 50 {
						b.Fatalf("get: %v", err)
					}
				}
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			})
		}
	}
}
