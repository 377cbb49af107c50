package window

import (
	"testing"
	"time"
)

// series1k returns a series of 1000 points 3.6s apart, so that with the
// default windows 1m covers 17 points, 5m 84 and 1h 1000.
func series1k(b *testing.B) (*Series, int64) {
	s := mustSeries(b, DefaultConfig())
	const step = int64(3600 * time.Millisecond)
	for i := range 1000 {
		mustInsert(b, s, Point{TS: t0 + int64(i)*step, Seq: uint64(i + 1), V: float64(i%37) * 1.5})
	}
	return s, t0 + 999*step
}

// BenchmarkInsert measures Insert on a series in steady state (full, so
// every insert also trims). One op is one Insert.
func BenchmarkInsert(b *testing.B) {
	b.Run("in-order/horizon-trim", func(b *testing.B) {
		// 1 event/s: the 1h5m horizon holds 3900 points.
		benchInsert(b, DefaultConfig(), int64(time.Second), 0)
	})
	b.Run("in-order/maxpoints-trim", func(b *testing.B) {
		// 10 events/s: MaxPoints (10_000) binds before the horizon.
		benchInsert(b, DefaultConfig(), int64(100*time.Millisecond), 0)
	})
	b.Run("late-1s", func(b *testing.B) {
		// Every point 1s behind the watermark: a binary search and a
		// short move of the newest second's points.
		benchInsert(b, DefaultConfig(), int64(100*time.Millisecond), int64(time.Second))
	})
}

func benchInsert(b *testing.B, cfg Config, step, late int64) {
	s := mustSeries(b, cfg)
	ts, seq := t0, uint64(0)
	next := func() Point {
		ts += step
		seq++
		p := Point{TS: ts, Seq: seq, V: float64(seq % 101)}
		if late > 0 && seq%2 == 0 {
			p.TS -= late
		}
		return p
	}
	for range 2 * cfg.MaxPoints { // reach steady state
		mustInsert(b, s, next())
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := s.Insert(next()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAggregate reads the three default windows of a 1000-point
// series at its newest point. One op is three Aggregate calls.
func BenchmarkAggregate(b *testing.B) {
	s, asOf := series1k(b)
	ws := DefaultConfig().Windows
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for _, w := range ws {
			if _, err := s.Aggregate(asOf, w); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkAggregateParallel is BenchmarkAggregate from GOMAXPROCS
// goroutines reading one series at once, as concurrent requests for a hot
// entity do.
func BenchmarkAggregateParallel(b *testing.B) {
	s, asOf := series1k(b)
	ws := DefaultConfig().Windows
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			for _, w := range ws {
				if _, err := s.Aggregate(asOf, w); err != nil {
					b.Error(err)
					return
				}
			}
		}
	})
}

// BenchmarkMarshalBinary encodes 1000 points, into a fresh slice and
// appended to a reused buffer.
func BenchmarkMarshalBinary(b *testing.B) {
	s, _ := series1k(b)
	b.Run("fresh", func(b *testing.B) {
		b.SetBytes(int64(s.EncodedSize()))
		b.ReportAllocs()
		for range b.N {
			if _, err := s.MarshalBinary(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("append", func(b *testing.B) {
		buf := make([]byte, 0, s.EncodedSize())
		b.SetBytes(int64(s.EncodedSize()))
		b.ReportAllocs()
		for range b.N {
			buf, _ = s.AppendBinary(buf[:0])
		}
	})
}

// BenchmarkUnmarshalBinary decodes 1000 points into a fresh series and into
// a reused one (whose buffer is reused).
func BenchmarkUnmarshalBinary(b *testing.B) {
	src, _ := series1k(b)
	data, _ := src.MarshalBinary()
	b.Run("fresh", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for range b.N {
			var s Series
			if err := s.UnmarshalBinary(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reused", func(b *testing.B) {
		var s Series
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for range b.N {
			if err := s.UnmarshalBinary(data); err != nil {
				b.Fatal(err)
			}
		}
	})
}
