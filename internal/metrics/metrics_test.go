package metrics

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestBatchObserver(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	o := m.ForModel("m", "onnxruntime/cpu")
	o.BatchRun(4, 30, 40, 2*time.Millisecond, 10*time.Millisecond, nil)
	o.BatchRun(2, 10, 12, time.Millisecond, 5*time.Millisecond, nil)
	o.BatchRun(3, 9, 9, 0, time.Millisecond, errors.New("boom"))
	o.QueueDepth(5, 7)
	o.Dropped(context.DeadlineExceeded)
	o.Dropped(context.Canceled)
	o.Dropped(context.Canceled)

	for _, tc := range []struct {
		name      string
		got, want float64
	}{
		{"texts (failed batch excluded)", testutil.ToFloat64(m.Texts.WithLabelValues("m", "onnxruntime/cpu")), 6},
		{"tokens", testutil.ToFloat64(m.Tokens.WithLabelValues("m", "onnxruntime/cpu")), 40},
		{"batch errors", testutil.ToFloat64(m.BatchErrors.WithLabelValues("m", "onnxruntime/cpu")), 1},
		{"online depth", testutil.ToFloat64(m.QueueDepth.WithLabelValues("m", "online")), 5},
		{"bulk depth", testutil.ToFloat64(m.QueueDepth.WithLabelValues("m", "bulk")), 7},
		{"deadline drops", testutil.ToFloat64(m.Dropped.WithLabelValues("m", "deadline_exceeded")), 1},
		{"cancel drops", testutil.ToFloat64(m.Dropped.WithLabelValues("m", "canceled")), 2},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %v; want %v", tc.name, tc.got, tc.want)
		}
	}
	if n := testutil.CollectAndCount(m.BatchSize, "embedd_batch_size"); n != 1 {
		t.Errorf("batch size series: got %d; want 1", n)
	}
	// Two registries never collide: no package globals.
	New(prometheus.NewRegistry())
}
