package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func testReport(label string, scale float64) *report {
	r := &report{Label: label, Model: "m", TextSet: "short", OutputType: "float32"}
	for _, c := range []int{1, 16, 64} {
		r.Runs = append(r.Runs, runResult{
			Mode: modeClosed, Concurrency: c, OK: 10 * c, SentencesPerS: scale * float64(c),
			LatencyMS: latencySummary{P50: 1, P95: 2, P99: 3 * scale, Max: 4},
		})
	}
	r.Runs = append(r.Runs, runResult{Mode: modeOpen, Rate: 50, OK: 100, SentencesPerS: 50, LatencyMS: latencySummary{P50: 1, P95: 2, P99: 0, Max: 4},
		Batch: []batchStats{{Series: `model="m"`, Batches: 10, Items: 40, Mean: 4, Buckets: []bucketCount{{"4", 10}}}}})
	return r
}

func TestReportRoundTripAndCharts(t *testing.T) {
	dir := t.TempDir()
	r := testReport("batched", 2)
	if err := writeReport(dir, r); err != nil {
		t.Fatal(err)
	}
	back, err := readReport(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Runs) != 4 || back.Runs[3].Batch[0].Mean != 4 {
		t.Errorf("read back %+v; want the 4 runs written", back.Runs)
	}
	files, err := writeCharts(dir, r)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"throughput.png", "latency.png", "open_latency.png"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v (wrote %v)", name, err, files)
			continue
		}
		if !bytes.HasPrefix(data, []byte("\x89PNG")) {
			t.Errorf("%s is not a PNG", name)
		}
	}
	var out bytes.Buffer
	printRuns(&out, r.Runs)
	for _, want := range []string{"closed c=16", "open 50/s", "≤4:100%"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

func TestCompare(t *testing.T) {
	var out bytes.Buffer
	compareReports(&out, []*report{testReport("batched", 2), testReport("unbatched", 1)})
	got := out.String()
	// unbatched has half the throughput and half the p99 of batched.
	for _, want := range []string{"batched sent/s", "unbatched sent/s", "0.50x"} {
		if !strings.Contains(got, want) {
			t.Errorf("comparison lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "warning") {
		t.Errorf("unexpected warning:\n%s", got)
	}
	dir := t.TempDir()
	if _, err := writeCompareCharts(dir, []*report{testReport("a", 2), testReport("b", 1)}); err != nil {
		t.Fatal(err)
	}
}

func TestParseFlags(t *testing.T) {
	c, _, err := parseFlags([]string{"-concurrency", "1, 8", "-rate", "50,100.5"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.concurrency) != 2 || c.concurrency[1] != 8 || len(c.rates) != 2 || c.rates[1] != 100.5 {
		t.Errorf("got concurrency %v, rates %v; want [1 8], [50 100.5]", c.concurrency, c.rates)
	}
	for _, args := range [][]string{
		{"-concurrency", "0"}, {"-rate", "-1"}, {"-arrivals", "bursty"}, {"-conns", "0"}, {"-duration", "0s"}, {"-concurrency", "x"},
	} {
		if _, _, err := parseFlags(args, &bytes.Buffer{}); err == nil {
			t.Errorf("parseFlags(%q): got no error", args)
		}
	}
	if got := safeName("max_batch_size=1 / cpu"); got != "max_batch_size=1___cpu" {
		t.Errorf("safeName = %q; want max_batch_size=1___cpu", got)
	}
}

// A run at a single concurrency level has nothing to chart; it must not
// panic (a log axis over one value has no range).
func TestChartsSingleRun(t *testing.T) {
	r := testReport("one", 2)
	r.Runs = r.Runs[:1]
	files, err := writeCharts(t.TempDir(), r)
	if err != nil || len(files) != 0 {
		t.Errorf("got %v, %v; want no charts and no error", files, err)
	}
}
