package session

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/features"
)

// benchBatch fills evs with events over 10 entities, at times after those
// of batch number k, so that every batch extends the sessions.
func benchBatch(evs []features.Event, names []string, k int64) {
	types := [...]string{"view", "click", "purchase"}
	for i := range evs {
		evs[i] = features.Event{
			EntityID:  names[i%len(names)],
			Type:      types[i%3],
			Timestamp: t0.Add(time.Duration(k*100+int64(i)) * time.Millisecond),
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
	ctx := context.Background()
	// Times and entity names keep growing across the runs of a
	// sub-benchmark, so every event extends a session or starts one.
	var k int64
	var workers atomic.Int64
	b.Run("serial", func(b *testing.B) {
		evs, names := make([]features.Event, 100), entityNames(0)
		benchBatch(evs, names, k)
		k++
		s.ProcessBatch(ctx, evs) // warm up: connections, script cache
		b.ReportAllocs()
		b.ResetTimer()
		for ; b.Loop(); k++ {
			benchBatch(evs, names, k)
			if _, errs := s.ProcessBatch(ctx, evs); errs[0] != nil {
				b.Fatal(errs[0])
			}
		}
		b.ReportMetric(float64(b.N*len(evs))/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			evs, names := make([]features.Event, 100), entityNames(workers.Add(1))
			for k := int64(1); pb.Next(); k++ {
				benchBatch(evs, names, k)
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
