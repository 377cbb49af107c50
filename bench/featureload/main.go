// Command featureload measures GetFeatures on an embedd server over gRPC:
// requests/s and latency at closed-loop concurrency levels, and the CPU
// each process spent per request (the server's, read from its Prometheus
// process_cpu_seconds_total; Redis's, read from /proc/<pid>/stat of the
// pids given; its own, from getrusage), so that the capacity of one core
// of each can be told apart when they share a machine.
//
// Before measuring it ingests -events events per entity (two values, the
// last hour) through IngestEvents, so every feature has data. Each level
// warms up for -warmup (not measured), then measures for -duration; every
// request asks for -features of one entity, entities in turn.
//
// Usage:
//
//	go run ./bench/featureload [-addr 127.0.0.1:50051] [-metrics http://127.0.0.1:9090/metrics]
//	    [-entities 1] [-concurrency 1,32] [-duration 10s] [-redis-pids PID,...] [-label single]
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	embeddv1 "github.com/embedd/embedd/proto/embedd/v1"
)

// defaultFeatures: seven features of the built-in registry, windows and
// session (the "1 entity x 7 features").
const defaultFeatures = "events_count_5m,amount_count_1h,amount_avg_5m,amount_zscore_5m,amount_sum_1h,session_duration,events_in_session"

func main() {
	addr := flag.String("addr", "127.0.0.1:50051", "server gRPC address")
	metrics := flag.String("metrics", "http://127.0.0.1:9090/metrics", "server Prometheus endpoint (process_cpu_seconds_total); empty skips server CPU")
	entities := flag.Int("entities", 1, "distinct entities, requested in turn")
	events := flag.Int("events", 120, "events ingested per entity before measuring")
	feats := flag.String("features", defaultFeatures, "comma-separated feature refs of each request")
	levels := flag.String("concurrency", "1,32", "closed-loop concurrency levels, comma-separated")
	conns := flag.Int("conns", 2, "gRPC connections, used round-robin")
	duration := flag.Duration("duration", 10*time.Second, "measured time per level")
	warmup := flag.Duration("warmup", 2*time.Second, "unmeasured warmup per level")
	redisPids := flag.String("redis-pids", "", "comma-separated pids of redis-server processes whose CPU to report")
	label := flag.String("label", "default", "name of this configuration in the output")
	flag.Parse()

	var clients []embeddv1.FeatureServiceClient
	for range *conns {
		cc, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			log.Fatal(err)
		}
		defer cc.Close()
		clients = append(clients, embeddv1.NewFeatureServiceClient(cc))
	}
	ids := make([]string, *entities)
	for i := range ids {
		ids[i] = fmt.Sprintf("load-%d-%d", os.Getpid(), i)
	}
	if err := seed(clients[0], ids, *events); err != nil {
		log.Fatal(err)
	}
	featList := strings.Split(*feats, ",")
	var pids []int
	for _, p := range strings.Split(*redisPids, ",") {
		if p = strings.TrimSpace(p); p != "" {
			n, err := strconv.Atoi(p)
			if err != nil {
				log.Fatalf("-redis-pids %q: %v", p, err)
			}
			pids = append(pids, n)
		}
	}
	fmt.Printf("%s: %d entities x %d features, %d conns\n", *label, len(ids), len(featList), *conns)
	fmt.Printf("%-6s %10s %8s %8s %8s %10s %10s %10s %14s\n", "conc", "req/s", "p50 ms", "p99 ms", "errors", "server cpu", "redis cpu", "load cpu", "req/s/srv-core")
	for _, l := range strings.Split(*levels, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(l))
		if err != nil || c < 1 {
			log.Fatalf("-concurrency %q: want positive integers", l)
		}
		runLevel(clients, ids, featList, c, *warmup) // warmup
		s0, r0, g0 := serverCPU(*metrics), redisCPU(pids), selfCPU()
		t0 := time.Now()
		lat, errs := runLevel(clients, ids, featList, c, *duration)
		wall := time.Since(t0).Seconds()
		s1, r1, g1 := serverCPU(*metrics), redisCPU(pids), selfCPU()
		slices.Sort(lat)
		rps := float64(len(lat)) / wall
		srv := (s1 - s0) / wall
		perCore := 0.0
		if srv > 0 {
			perCore = rps / srv
		}
		fmt.Printf("%-6d %10.0f %8.2f %8.2f %8d %10.2f %10.2f %10.2f %14.0f\n", c, rps, pct(lat, 0.50), pct(lat, 0.99), errs, srv, (r1-r0)/wall, (g1-g0)/wall, perCore)
	}
}

// seed ingests n events per entity in the last hour.
func seed(fc embeddv1.FeatureServiceClient, ids []string, n int) error {
	now := time.Now()
	r := rand.New(rand.NewPCG(1, 2))
	var evs []*embeddv1.Event
	flush := func() error {
		if len(evs) == 0 {
			return nil
		}
		res, err := fc.IngestEvents(context.Background(), &embeddv1.IngestEventsRequest{Events: evs})
		if err != nil {
			return fmt.Errorf("ingest: %w", err)
		}
		if len(res.Errors) > 0 {
			return fmt.Errorf("ingest: %d errors, first %v", len(res.Errors), res.Errors[0])
		}
		evs = evs[:0]
		return nil
	}
	for _, id := range ids {
		for k := range n {
			at := now.Add(-time.Hour + time.Duration(k+1)*time.Hour/time.Duration(n+1))
			evs = append(evs, &embeddv1.Event{EntityId: id, EventType: "view", Timestamp: timestamppb.New(at),
				Values: map[string]float64{"amount": r.Float64() * 100, "price": r.Float64() * 10}})
			if len(evs) == 1000 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
}

// runLevel runs c closed-loop clients for d and returns the latencies (ms)
// of the requests that succeeded and the count of those that failed.
func runLevel(clients []embeddv1.FeatureServiceClient, ids, feats []string, c int, d time.Duration) ([]float64, int64) {
	var mu sync.Mutex
	var all []float64
	var errs atomic.Int64
	var next atomic.Int64
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range c {
		wg.Go(func() {
			fc := clients[w%len(clients)]
			var lat []float64
			for time.Now().Before(end) {
				id := ids[int(next.Add(1))%len(ids)]
				t := time.Now()
				_, err := fc.GetFeatures(context.Background(), &embeddv1.GetFeaturesRequest{EntityIds: []string{id}, Features: feats})
				if err != nil {
					errs.Add(1)
					continue
				}
				lat = append(lat, float64(time.Since(t).Microseconds())/1000)
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return all, errs.Load()
}

func pct(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

// serverCPU reads process_cpu_seconds_total from the server's metrics; 0
// when unavailable.
func serverCPU(url string) float64 {
	if url == "" {
		return 0
	}
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "process_cpu_seconds_total "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// redisCPU sums utime+stime (seconds) of pids from /proc.
func redisCPU(pids []int) float64 {
	var s float64
	for _, p := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		u, _ := strconv.ParseFloat(f[11], 64)
		k, _ := strconv.ParseFloat(f[12], 64)
		s += (u + k) / 100 // USER_HZ
	}
	return s
}

func selfCPU() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
