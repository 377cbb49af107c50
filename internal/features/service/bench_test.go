package service

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/features"
	"github.com/embedd/embedd/internal/features/registry"
	"github.com/embedd/embedd/internal/features/window"
)

// benchRegistry loads testdata/bench50.yaml: 50 features, the count of
// events and 7 aggregations of two values over 1m, 5m and 1h (45), and the
// 5 session features; set "bench50" lists them.
func benchRegistry(b *testing.B) (*registry.Registry, []string) {
	reg, err := registry.LoadDir("testdata")
	if err != nil {
		b.Fatal(err)
	}
	defs, err := reg.Set("bench50")
	if err != nil {
		b.Fatal(err)
	}
	names := make([]string, len(defs))
	for i, d := range defs {
		names[i] = d.Name
	}
	return reg, names
}

func benchService(b *testing.B, be backend, cacheTTL time.Duration) (*Service, []string, *clock) {
	reg, names := benchRegistry(b)
	clk := &clock{t: t0.Add(time.Hour)}
	cfg, err := WindowConfig(reg, window.DefaultConfig(), time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	st, ss := be.open(b, cfg, clk)
	svc, err := New(Options{Registry: reg, States: st, Sessions: ss, Clock: clk, CacheTTL: cacheTTL})
	if err != nil {
		b.Fatal(err)
	}
	return svc, names, clk
}

// events returns n events per entity spread over the hour before t0+1h.
func benchEvents(entities, perEntity int, seed uint64) []features.Event {
	r := rand.New(rand.NewPCG(seed, 1))
	var evs []features.Event
	for k := range perEntity {
		for e := range entities {
			at := t0.Add(time.Duration(k) * time.Hour / time.Duration(perEntity)).Add(time.Duration(r.IntN(1000)) * time.Millisecond)
			evs = append(evs, features.Event{EntityID: fmt.Sprintf("user%05d", e), Type: "view", Timestamp: at,
				Values: map[string]float64{"amount": r.Float64() * 100, "price": r.Float64() * 10}})
		}
	}
	return evs
}

// BenchmarkIngest reports events/s through Ingest in batches of 256 over
// 1,000 entities (sessions, windows of two values, one atomic state update
// per entity and batch), with events without ids and with a unique id each
// (what exactly-once costs: the ids recorded in the state and checked).
func BenchmarkIngest(b *testing.B) {
	for _, be := range []backend{memoryBackend(), redisBackend()} {
		for _, ids := range []string{"none", "unique"} {
			b.Run(be.name+"/ids="+ids, func(b *testing.B) { benchIngest(b, be, ids == "unique") })
		}
	}
}

func benchIngest(b *testing.B, be backend, withIDs bool) {
	svc, _, _ := benchService(b, be, time.Second)
	evs := benchEvents(1000, 60, 1)
	ctx := context.Background()
	n := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		lo := (i * 256) % len(evs)
		if withIDs && lo < 256 { // a new pass: new ids, so none is a duplicate
			b.StopTimer()
			for j := range evs {
				evs[j].ID = fmt.Sprintf("p%d-%d", i, j)
			}
			b.StartTimer()
		}
		batch := evs[lo:min(lo+256, len(evs))]
		errs, err := svc.Ingest(ctx, batch)
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range errs {
			if e != nil && !errorsIsTooLate(e) {
				b.Fatal(e)
			}
		}
		n += len(batch)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
}

func errorsIsTooLate(err error) bool { return strings.Contains(err.Error(), "too late") }

// BenchmarkGetFeatures reports p50/p99 of Get for 1 and 100 entities x 50
// features, each entity holding 120 events (two values) in the last hour,
// with the cache off (every read loads and decodes from the state store),
// revalidating (every read asks Redis for the revisions, 1ns TTL) and on
// (1 minute TTL).
func BenchmarkGetFeatures(b *testing.B) {
	for _, be := range []backend{memoryBackend(), redisBackend()} {
		for _, cache := range []time.Duration{-1, time.Nanosecond, time.Minute} {
			mode := map[time.Duration]string{-1: "off", time.Nanosecond: "revalidate", time.Minute: "on"}[cache]
			if mode == "revalidate" && be.name != "redis" {
				continue
			}
			for _, ents := range []int{1, 100} {
				name := fmt.Sprintf("%s/entities=%d/cache=%s", be.name, ents, mode)
				b.Run(name, func(b *testing.B) {
					svc, names, _ := benchService(b, be, cache)
					ctx := context.Background()
					evs := benchEvents(ents, 120, 2)
					for lo := 0; lo < len(evs); lo += 1024 {
						if _, err := svc.Ingest(ctx, evs[lo:min(lo+1024, len(evs))]); err != nil {
							b.Fatal(err)
						}
					}
					ids := make([]string, ents)
					for i := range ids {
						ids[i] = fmt.Sprintf("user%05d", i)
					}
					req := GetRequest{Entities: ids, Features: names}
					if _, err := svc.Get(ctx, req); err != nil { // warm
						b.Fatal(err)
					}
					lat := make([]time.Duration, 0, b.N)
					b.ResetTimer()
					for range b.N {
						t := time.Now()
						res, err := svc.Get(ctx, req)
						lat = append(lat, time.Since(t))
						if err != nil || len(res) != ents || len(res[0].Values) != 50 {
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
}

// BenchmarkIngestHotEntity reports events/s for one entity receiving 10
// events per second of event time in batches of 16, with and without ids:
// with ids its record stays full (Options.DedupeIDs, 1,024 ids within the
// 5m lateness), the worst case of the ids' cost per update.
func BenchmarkIngestHotEntity(b *testing.B) {
	for _, be := range []backend{memoryBackend(), redisBackend()} {
		for _, ids := range []string{"none", "unique"} {
			b.Run(be.name+"/ids="+ids, func(b *testing.B) {
				svc, _, clk := benchService(b, be, time.Second)
				ctx := context.Background()
				evs := make([]features.Event, 16)
				next := 0
				fill := func() {
					for j := range evs {
						at := t0.Add(time.Duration(next) * 100 * time.Millisecond)
						evs[j] = features.Event{EntityID: "hot", Type: "view", Timestamp: at, Values: map[string]float64{"amount": float64(next % 100)}}
						if ids == "unique" {
							evs[j].ID = strconv.Itoa(next)
						}
						next++
					}
					clk.Set(evs[len(evs)-1].Timestamp)
				}
				for range 3000 / len(evs) { // warm: a full record
					fill()
					if _, err := svc.Ingest(ctx, evs); err != nil {
						b.Fatal(err)
					}
				}
				b.ResetTimer()
				for range b.N {
					b.StopTimer()
					fill()
					b.StartTimer()
					errs, err := svc.Ingest(ctx, evs)
					if err != nil || errs[0] != nil {
						b.Fatal(err, errs[0])
					}
				}
				b.ReportMetric(float64(b.N*len(evs))/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}
