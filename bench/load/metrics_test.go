package main

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

// exposition is what a Prometheus client library serves, with the
// histogram between unrelated metrics.
const exposition = `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 12
# HELP embedd_batch_size Items per batch the batcher formed.
# TYPE embedd_batch_size histogram
embedd_batch_size_bucket{model="minilm",le="1"} 10
embedd_batch_size_bucket{model="minilm",le="2"} 15
embedd_batch_size_bucket{model="minilm",le="4"} 20
embedd_batch_size_bucket{model="minilm",le="+Inf"} 22
embedd_batch_size_sum{model="minilm"} 71
embedd_batch_size_count{model="minilm"} 22
embedd_batch_size_bucket{le="1", model="odd \"name\"\\x"} 1 1700000000000
embedd_batch_size_bucket{le="+Inf",model="odd \"name\"\\x",} 1 1700000000000
embedd_batch_size_sum{model="odd \"name\"\\x"} 1
embedd_batch_size_count{model="odd \"name\"\\x"} 1
embedd_batch_size_seconds_bucket{le="1"} 3
embedd_requests_total{code="OK"} 5
`

func TestParseHistograms(t *testing.T) {
	got, err := parseHistograms(strings.NewReader(exposition), batchMetric)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]*histogram{
		`model="minilm"`: {
			Labels:  map[string]string{"model": "minilm"},
			Buckets: map[float64]float64{1: 10, 2: 15, 4: 20, math.Inf(1): 22},
			Sum:     71, Count: 22,
		},
		`model="odd \"name\"\\x"`: {
			Labels:  map[string]string{"model": `odd "name"\x`},
			Buckets: map[float64]float64{1: 1, math.Inf(1): 1},
			Sum:     1, Count: 1,
		},
	}
	if !reflect.DeepEqual(got, want) {
		for k, h := range got {
			t.Logf("%s: %+v", k, *h)
		}
		t.Errorf("got %d series; want %v", len(got), want)
	}
	if got, err := parseHistograms(strings.NewReader("up 1\n"), batchMetric); err != nil || len(got) != 0 {
		t.Errorf("without the metric: got %v, %v; want no series, no error", got, err)
	}
}

func TestParseHistogramsErrors(t *testing.T) {
	for _, line := range []string{
		`embedd_batch_size_bucket{model="m"} 1`,    // no le
		`embedd_batch_size_bucket{le="x"} 1`,       // bad le
		`embedd_batch_size_sum{model="m} 1`,        // unterminated
		`embedd_batch_size_sum{model=m} 1`,         // unquoted
		`embedd_batch_size_sum{model="m" x="y"} 1`, // no comma
		`embedd_batch_size_sum{model="\q"} 1`,      // bad escape
		`embedd_batch_size_sum 1 2 3`,              // too many fields
		`embedd_batch_size_sum abc`,                // bad value
		`embedd_batch_size_sum{="m"} 1`,            // no label name
		`embedd_batch_size_count{model="m"}`,       // no value
	} {
		if _, err := parseHistograms(strings.NewReader(line+"\n"), batchMetric); err == nil {
			t.Errorf("%s: got no error", line)
		}
	}
}

func TestDiffHistograms(t *testing.T) {
	inf := math.Inf(1)
	h := func(sum, count float64, buckets map[float64]float64) *histogram {
		return &histogram{Buckets: buckets, Sum: sum, Count: count}
	}
	before := map[string]*histogram{
		"a": h(10, 5, map[float64]float64{1: 3, 8: 5, inf: 5}),
		"c": h(100, 50, map[float64]float64{1: 50, 8: 50, inf: 50}),
	}
	after := map[string]*histogram{
		"a": h(50, 10, map[float64]float64{1: 4, 8: 8, inf: 10}), // 5 batches, 40 items
		"b": h(6, 2, map[float64]float64{1: 0, 8: 2, inf: 2}),    // new series
		"c": h(3, 3, map[float64]float64{1: 3, 8: 3, inf: 3}),    // reset: counts from zero
		"d": h(7, 1, map[float64]float64{1: 0, 8: 0, inf: 1}),    // unchanged below
	}
	before["d"] = after["d"]
	got := diffHistograms(before, after)
	want := []batchStats{
		{Series: "a", Batches: 5, Items: 40, Mean: 8, Buckets: []bucketCount{{"1", 1}, {"8", 2}, {"+Inf", 2}}},
		{Series: "b", Batches: 2, Items: 6, Mean: 3, Buckets: []bucketCount{{"1", 0}, {"8", 2}, {"+Inf", 0}}},
		{Series: "c", Batches: 3, Items: 3, Mean: 1, Buckets: []bucketCount{{"1", 3}, {"8", 0}, {"+Inf", 0}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v;\nwant %+v", got, want)
	}
	if m := meanBatch(got); m != 49.0/10 {
		t.Errorf("meanBatch = %g; want %g", m, 49.0/10)
	}
}

func TestScrapeHistograms(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(exposition))
	}))
	defer srv.Close()
	got, err := scrapeHistograms(context.Background(), srv.Client(), srv.URL+"/metrics", batchMetric)
	if err != nil {
		t.Fatal(err)
	}
	if h := got[`model="minilm"`]; h == nil || h.Count != 22 {
		t.Errorf("got %v; want the minilm series with count 22", got)
	}
	if _, err := scrapeHistograms(context.Background(), srv.Client(), srv.URL+"/nope", batchMetric); err == nil {
		t.Error("scrape of a 404: got no error")
	}
}

func FuzzParseHistograms(f *testing.F) {
	f.Add(exposition)
	f.Add(`embedd_batch_size_bucket{le="1",model="a\\b\n"} 1e3 12`)
	f.Add(`embedd_batch_size_sum{ a = "b" , } NaN`)
	f.Fuzz(func(t *testing.T, in string) {
		hs, err := parseHistograms(strings.NewReader(in), batchMetric)
		if err != nil {
			return
		}
		for k, h := range hs {
			if h.Buckets == nil || h.Labels == nil {
				t.Fatalf("series %s has nil maps", k)
			}
			if _, ok := h.Labels["le"]; ok {
				t.Fatalf("series %s keeps the le label", k)
			}
		}
		_ = diffHistograms(hs, hs)
	})
}

func TestBucketQuantile(t *testing.T) {
	// 100 observations: 50 in (0, 1], 40 in (1, 2], 10 in (2, 4].
	counts := map[float64]float64{1: 50, 2: 40, 4: 10, math.Inf(1): 0}
	for _, tc := range []struct{ q, want float64 }{
		{0.25, 0.5}, {0.5, 1}, {0.7, 1.5}, {0.9, 2}, {0.95, 3}, {0.99, 3.8},
	} {
		if got := bucketQuantile(counts, 100, tc.q); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("q=%g: got %g, want %g", tc.q, got, tc.want)
		}
	}
	// A quantile in the +Inf bucket is the largest finite bound.
	if got := bucketQuantile(map[float64]float64{1: 1, math.Inf(1): 9}, 10, 0.99); got != 1 {
		t.Errorf("+Inf bucket: got %g, want 1", got)
	}
	st, ok := summarizeRuns([]batchStats{
		{Batches: 60, Items: 0.06, Buckets: []bucketCount{{"0.001", 60}, {"+Inf", 0}}},
		{Batches: 40, Items: 0.08, Buckets: []bucketCount{{"0.001", 0}, {"0.003", 40}, {"+Inf", 0}}},
	})
	if !ok || st.Batches != 100 || math.Abs(st.MeanMS-1.4) > 1e-9 || math.Abs(st.P99MS-2.95) > 1e-9 {
		t.Errorf("summarizeRuns = %+v, %v; want 100 batches, mean 1.4 ms, p99 2.95 ms", st, ok)
	}
}
