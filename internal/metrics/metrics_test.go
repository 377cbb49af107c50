package metrics

import (
	"context"
	"errors"
	"fmt"
	"strings"
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

func TestGPUMemory(t *testing.T) {
	// A CPU build registers no reader: no GPU series at all.
	reg := prometheus.NewRegistry()
	New(reg)
	if err := RegisterGPUMemory(reg, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "embedd_gpu_memory_free_bytes", "embedd_gpu_memory_total_bytes"); err != nil || n != 0 {
		t.Errorf("CPU build: %d GPU memory series (%v); want none", n, err)
	}

	// A reader is called at each scrape.
	reg = prometheus.NewRegistry()
	free, fail := int64(3<<30), false
	err := RegisterGPUMemory(reg, func() ([]GPUMemory, error) {
		if fail {
			return nil, errors.New("cuMemGetInfo: context lost")
		}
		return []GPUMemory{{Device: "cuda:0", Free: free, Total: 8 << 30}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `
# HELP embedd_gpu_memory_free_bytes Free GPU memory, read at scrape time.
# TYPE embedd_gpu_memory_free_bytes gauge
embedd_gpu_memory_free_bytes{device="cuda:0"} %d
# HELP embedd_gpu_memory_total_bytes Total GPU memory.
# TYPE embedd_gpu_memory_total_bytes gauge
embedd_gpu_memory_total_bytes{device="cuda:0"} 8.589934592e+09
`
	for _, f := range []int64{3 << 30, 1 << 30} {
		free = f
		if err := testutil.GatherAndCompare(reg, strings.NewReader(fmt.Sprintf(want, f))); err != nil {
			t.Error(err)
		}
	}
	// A failed read drops the series from that scrape, not the scrape.
	fail = true
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
		t.Errorf("failed read: %d series, %v; want 0 and no error", n, err)
	}
}
