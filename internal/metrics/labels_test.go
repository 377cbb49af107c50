package metrics

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestRequestLabelsBounded: requests naming thousands of unknown models,
// collections and feature sets add no series beyond one "other" per
// method and code; configured names keep their own series.
func TestRequestLabelsBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	m.Allow(Model, "minilm", "minilm-int8")
	m.Allow(Collection, "docs")
	m.Allow(FeatureSet, "default")

	const unknown = 5000
	var wg sync.WaitGroup
	for w := range 4 { // concurrent, as RPCs are
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < unknown; i += 4 {
				name := fmt.Sprintf("client-name-%d", i)
				m.Request("Embed", Model, name, "NotFound", time.Millisecond)
				m.Request("Search", Collection, name, "NotFound", time.Millisecond)
				m.Request("GetFeatures", FeatureSet, name, "NotFound", time.Millisecond)
			}
		}()
	}
	wg.Wait()
	// A name configured for one kind is not a valid label of another.
	m.Request("Embed", Model, "docs", "NotFound", time.Millisecond)
	m.Request("Search", Collection, "minilm", "NotFound", time.Millisecond)
	// Configured names, the empty name and a nameless RPC.
	m.Request("Embed", Model, "minilm", "OK", time.Millisecond)
	m.Request("Embed", Model, "minilm-int8", "OK", time.Millisecond)
	m.Request("Search", Collection, "docs", "OK", time.Millisecond)
	m.Request("Search", Collection, "", "OK", time.Millisecond)
	m.Request("GetFeatures", FeatureSet, "default", "OK", time.Millisecond)
	m.Request("IngestEvents", NoName, "ignored", "OK", time.Millisecond)
	m.Request("Embed", Kind(99), "minilm", "OK", time.Millisecond) // out of range: other

	// 3 "other"/NotFound + Embed{minilm, minilm-int8, other/OK} + Search{docs, ""}
	// + GetFeatures{default} + IngestEvents{""}.
	const wantSeries = 3 + 3 + 2 + 1 + 1
	if n := testutil.CollectAndCount(m.Requests, "embedd_requests_total"); n != wantSeries {
		t.Errorf("requests_total: %d series after %d unknown names per kind; want %d", n, unknown, wantSeries)
	}
	if n := testutil.CollectAndCount(m.RequestDuration, "embedd_request_duration_seconds"); n != 3+3+2+1 {
		t.Errorf("request_duration_seconds: %d series; want %d", n, 3+3+2+1)
	}
	for _, tc := range []struct {
		method, label, code string
		want                float64
	}{
		{"Embed", Other, "NotFound", unknown + 1},
		{"Search", Other, "NotFound", unknown + 1},
		{"GetFeatures", Other, "NotFound", unknown},
		{"Embed", "minilm", "OK", 1},
		{"Embed", Other, "OK", 1},
		{"Search", "docs", "OK", 1},
		{"Search", "", "OK", 1},
		{"GetFeatures", "default", "OK", 1},
		{"IngestEvents", "", "OK", 1},
	} {
		if got := testutil.ToFloat64(m.Requests.WithLabelValues(tc.method, tc.label, tc.code)); got != tc.want {
			t.Errorf("requests_total{method=%q,model=%q,code=%q} = %v; want %v", tc.method, tc.label, tc.code, got, tc.want)
		}
	}
}

func TestLabel(t *testing.T) {
	m := New(prometheus.NewRegistry())
	m.Allow(Collection, "docs")
	m.Allow(NoName, "x") // ignored
	for _, tc := range []struct {
		kind       Kind
		name, want string
	}{
		{Collection, "docs", "docs"},
		{Collection, "", ""},
		{Collection, "nope", Other},
		{Model, "docs", Other},
		{NoName, "docs", ""},
		{Kind(-1), "docs", Other},
	} {
		if got := m.Label(tc.kind, tc.name); got != tc.want {
			t.Errorf("Label(%d, %q) = %q; want %q", tc.kind, tc.name, got, tc.want)
		}
	}
}
