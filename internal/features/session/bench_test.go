package session

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/features"
)

// benchBatch fills evs with events over 10 entities, at times after those
// of batch number k, so that every batch extends the sessions; with ids,
// each event has a unique id (the record of each session stays full).
func benchBatch(evs []features.Event, names []string, k int64, ids bool) {
	types := [...]string{"view", "click", "purchase"}
	for i := range evs {
		evs[i] = features.Event{
			EntityID:  names[i%len(names)],
			Type:      types[i%3],
			Timestamp: t0.Add(time.Duration(k*100+int64(i)) * time.Millisecond),
		}
		if ids {
			evs[i].ID = strconv.FormatInt(k*100+int64(i), 10)
		}
	}
}

func entityNames(worker int64) []string {
	names := make([]string, 10)
	for i := range names {
		names[i] = fmt.Sprintf("w%d-e%d", worker, i)
	}
	return names
}

func benchStore(b *testing.B, s Store) {
	// Times and entity names keep growing across the runs of the
	// sub-benchmarks, so every event extends a session or starts one.
	var k int64
	var workers atomic.Int64
	for _, ids := range []bool{false, true} {
		b.Run(fmt.Sprintf("ids=%v", ids), func(b *testing.B) { benchStoreIDs(b, s, ids, &k, &workers) })
	}
}

func benchStoreIDs(b *testing.B, s Store, ids bool, kp *int64, workers *atomic.Int64) {
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		evs, names := make([]features.Event, 100), entityNames(0)
		k := *kp
		defer func() { *kp = k }()
		benchBatch(evs, names, k, ids)
		k++
		s.ProcessBatch(ctx, evs) // warm up: connections, script cache
		b.ReportAllocs()
		b.ResetTimer()
		for ; b.Loop(); k++ {
			benchBatch(evs, names, k, ids)
			if _, errs := s.ProcessBatch(ctx, evs); errs[0] != nil {
				b.Fatal(errs[0])
			}
		}
		b.ReportMetric(float64(b.N*len(evs))/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("parallel", func(b *testing.B) {
		k0 := *kp
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			evs, names := make([]features.Event, 100), entityNames(workers.Add(1))
			for k := k0; pb.Next(); k++ {
				benchBatch(evs, names, k, ids)
				if _, errs := s.ProcessBatch(ctx, evs); errs[0] != nil {
					b.Error(errs[0])
					return
				}
			}
		})
		b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "events/s")
	})
}

func BenchmarkProcessBatch100(b *testing.B) {
	b.Run("memory", func(b *testing.B) {
		m, err := NewMemory(Config{}, MemoryOptions{})
		if err != nil {
			b.Fatal(err)
		}
		defer m.Close()
		benchStore(b, m)
	})
	b.Run("redis", func(b *testing.B) {
		c := redisClient(b)
		benchStore(b, openRedis(b, c, Config{}, testPrefix(b, c)))
	})
}
