package window_test

import (
	"fmt"
	"time"

	"github.com/embedd/embedd/internal/features/window"
)

func Example() {
	s, err := window.NewSeries(window.DefaultConfig())
	if err != nil {
		panic(err)
	}
	t := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC).UnixNano()
	sec := int64(time.Second)
	for i, ev := range []struct {
		ts int64
		v  float64
	}{{t - 90*sec, 10}, {t - 30*sec, 20}, {t, 30}, {t - 20*sec, 40}} { // the last one is late
		if err := s.Insert(window.Point{TS: ev.ts, Seq: uint64(i + 1), V: ev.v}); err != nil {
			panic(err)
		}
	}
	a, err := s.Aggregate(t, time.Minute)
	if err != nil {
		panic(err)
	}
	vals, err := window.Values("amount", 1, a)
	if err != nil {
		panic(err)
	}
	for _, v := range vals {
		fmt.Printf("%s null=%v %.4f\n", v.Name, v.Null, v.Value)
	}
	// Output:
	// amount_count_1m null=false 3.0000
	// amount_sum_1m null=false 90.0000
	// amount_avg_1m null=false 30.0000
	// amount_min_1m null=false 20.0000
	// amount_max_1m null=false 40.0000
	// amount_stddev_1m null=false 10.0000
	// amount_zscore_1m null=false 0.0000
}
