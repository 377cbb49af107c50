package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// batchMetric is the server's histogram of items per formed batch.
const batchMetric = "embedd_batch_size"

// histogram is one series of a Prometheus histogram.
type histogram struct {
	Labels  map[string]string   // without le
	Buckets map[float64]float64 // upper bound → cumulative count
	Sum     float64
	Count   float64
}

// scrapeHistograms fetches url (Prometheus text exposition format) and
// returns the series of the histogram name, keyed by their labels.
func scrapeHistograms(ctx context.Context, client *http.Client, url, name string) (map[string]*histogram, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	return parseHistograms(resp.Body, name)
}

// parseHistograms reads the Prometheus text exposition format and returns
// the series of the histogram name (its _bucket, _sum and _count samples),
// keyed by their labels other than le. Lines of other metrics are skipped
// unparsed, so an unusual line elsewhere cannot fail a run.
func parseHistograms(r io.Reader, name string) (map[string]*histogram, error) {
	out := map[string]*histogram{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for lineNo := 1; sc.Scan(); lineNo++ {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, name) {
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", lineNo, err)
		}
		suffix, ok := strings.CutPrefix(s.Name, name)
		if !ok || (suffix != "_bucket" && suffix != "_sum" && suffix != "_count") {
			continue
		}
		le, hasLE := s.Labels["le"]
		delete(s.Labels, "le")
		key := labelKey(s.Labels)
		h := out[key]
		if h == nil {
			h = &histogram{Labels: s.Labels, Buckets: map[float64]float64{}}
			out[key] = h
		}
		switch suffix {
		case "_sum":
			h.Sum = s.Value
		case "_count":
			h.Count = s.Value
		case "_bucket":
			if !hasLE {
				return nil, fmt.Errorf("line %d: %s_bucket without le label", lineNo, name)
			}
			bound, err := parseFloat(le)
			if err != nil {
				return nil, fmt.Errorf("line %d: le %q: %w", lineNo, le, err)
			}
			h.Buckets[bound] = s.Value
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// labelKey renders labels sorted by name: `a="x",b="y"`.
func labelKey(labels map[string]string) string {
	names := make([]string, 0, len(labels))
	for n := range labels {
		names = append(names, n)
	}
	slices.Sort(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + "=" + strconv.Quote(labels[n])
	}
	return strings.Join(parts, ",")
}

// promSample is one sample line of the text exposition format.
type promSample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

var errSyntax = errors.New("metrics: malformed sample line")

// parseSample parses `name{label="value",...} value [timestamp]`.
func parseSample(line string) (promSample, error) {
	s := promSample{Labels: map[string]string{}}
	i := 0
	for i < len(line) && isNameChar(line[i], i == 0) {
		i++
	}
	if i == 0 {
		return s, fmt.Errorf("%w: no metric name", errSyntax)
	}
	s.Name, line = line[:i], line[i:]
	if strings.HasPrefix(line, "{") {
		rest, err := parseLabels(line[1:], s.Labels)
		if err != nil {
			return s, err
		}
		line = rest
	}
	fields := strings.Fields(line)
	if len(fields) < 1 || len(fields) > 2 {
		return s, fmt.Errorf("%w: want a value and an optional timestamp after %s", errSyntax, s.Name)
	}
	v, err := parseFloat(fields[0])
	if err != nil {
		return s, fmt.Errorf("%w: value %q", errSyntax, fields[0])
	}
	s.Value = v
	return s, nil
}

// parseLabels parses `a="x",b="y"}` (after the opening brace) into labels
// and returns what follows the closing brace.
func parseLabels(in string, labels map[string]string) (string, error) {
	for {
		in = strings.TrimLeft(in, " \t")
		if strings.HasPrefix(in, "}") {
			return in[1:], nil
		}
		i := 0
		for i < len(in) && isNameChar(in[i], i == 0) && in[i] != ':' {
			i++
		}
		if i == 0 {
			return "", fmt.Errorf("%w: bad label name at %q", errSyntax, in)
		}
		name := in[:i]
		in = strings.TrimLeft(in[i:], " \t")
		if !strings.HasPrefix(in, "=") {
			return "", fmt.Errorf("%w: no = after label %s", errSyntax, name)
		}
		in = strings.TrimLeft(in[1:], " \t")
		if !strings.HasPrefix(in, `"`) {
			return "", fmt.Errorf("%w: label %s value is not quoted", errSyntax, name)
		}
		var value strings.Builder
		j := 1
		for ; j < len(in) && in[j] != '"'; j++ {
			c := in[j]
			if c == '\\' {
				j++
				if j == len(in) {
					break
				}
				switch in[j] {
				case 'n':
					c = '\n'
				case '\\', '"':
					c = in[j]
				default:
					return "", fmt.Errorf("%w: bad escape \\%c in label %s", errSyntax, in[j], name)
				}
			}
			value.WriteByte(c)
		}
		if j >= len(in) {
			return "", fmt.Errorf("%w: unterminated value of label %s", errSyntax, name)
		}
		labels[name] = value.String()
		in = strings.TrimLeft(in[j+1:], " \t")
		if strings.HasPrefix(in, ",") {
			in = in[1:]
		} else if !strings.HasPrefix(in, "}") {
			return "", fmt.Errorf("%w: want , or } after label %s", errSyntax, name)
		}
	}
}

func isNameChar(c byte, first bool) bool {
	return c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || !first && '0' <= c && c <= '9'
}

// parseFloat accepts Go float syntax plus the exposition format's +Inf, -Inf and NaN.
func parseFloat(s string) (float64, error) {
	switch s {
	case "+Inf", "Inf":
		return math.Inf(1), nil
	case "-Inf":
		return math.Inf(-1), nil
	case "NaN":
		return math.NaN(), nil
	}
	return strconv.ParseFloat(s, 64)
}

// batchStats is what the server's batch-size histogram says about one run.
type batchStats struct {
	Series  string        `json:"series"` // the labels, e.g. model="all-minilm-l6-v2"
	Batches float64       `json:"batches"`
	Items   float64       `json:"items"`
	Mean    float64       `json:"mean"`
	Buckets []bucketCount `json:"buckets"`
}

// bucketCount is the number of batches of size in (previous le, le].
type bucketCount struct {
	LE    string  `json:"le"`
	Count float64 `json:"count"`
}

// diffHistograms returns the batches formed between two scrapes, one entry
// per series that formed any, sorted by series. A series missing before
// counts from zero, and so does one whose count went down (the server
// restarted between the scrapes).
func diffHistograms(before, after map[string]*histogram) []batchStats {
	keys := make([]string, 0, len(after))
	for k := range after {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []batchStats
	for _, k := range keys {
		a, b := after[k], before[k]
		if b == nil || b.Count > a.Count {
			b = &histogram{Buckets: map[float64]float64{}}
		}
		st := batchStats{Series: k, Batches: a.Count - b.Count, Items: a.Sum - b.Sum}
		if st.Batches <= 0 {
			continue
		}
		st.Mean = st.Items / st.Batches
		bounds := make([]float64, 0, len(a.Buckets))
		for le := range a.Buckets {
			bounds = append(bounds, le)
		}
		slices.SortFunc(bounds, cmp.Compare)
		prev := 0.0
		for _, le := range bounds {
			cum := a.Buckets[le] - b.Buckets[le]
			st.Buckets = append(st.Buckets, bucketCount{LE: formatBound(le), Count: cum - prev})
			prev = cum
		}
		out = append(out, st)
	}
	return out
}

func formatBound(le float64) string {
	if math.IsInf(le, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(le, 'g', -1, 64)
}

// runMetric is the server's histogram of model run time per batch.
const runMetric = "embedd_batch_duration_seconds"

// runStats is what the server's model-run histogram says about one run:
// how long the model itself took per batch, the latency floor a request
// cannot go below. Quantiles are interpolated linearly within a bucket, as
// Prometheus's histogram_quantile does, so they are as exact as the
// server's buckets are narrow.
type runStats struct {
	Batches float64 `json:"batches"`
	MeanMS  float64 `json:"mean_ms"`
	P50MS   float64 `json:"p50_ms"`
	P99MS   float64 `json:"p99_ms"`
}

// summarizeRuns merges the series of the model-run histogram diff (one
// per model and backend) and summarizes them.
func summarizeRuns(diff []batchStats) (runStats, bool) {
	var st runStats
	merged := map[float64]float64{}
	var sum float64
	for _, s := range diff {
		st.Batches += s.Batches
		sum += s.Items // the histogram's _sum: seconds
		for _, b := range s.Buckets {
			le, err := parseFloat(b.LE)
			if err != nil {
				continue
			}
			merged[le] += b.Count
		}
	}
	if st.Batches == 0 {
		return st, false
	}
	st.MeanMS = 1000 * sum / st.Batches
	st.P50MS = 1000 * bucketQuantile(merged, st.Batches, 0.50)
	st.P99MS = 1000 * bucketQuantile(merged, st.Batches, 0.99)
	return st, true
}

// bucketQuantile returns the q-quantile of observations counted per bucket
// (upper bound → count in (previous bound, bound]), interpolating linearly
// inside the bucket it falls in; the first bucket starts at 0, and a
// quantile in the +Inf bucket is the largest finite bound.
func bucketQuantile(counts map[float64]float64, total, q float64) float64 {
	bounds := slices.Sorted(maps.Keys(counts))
	rank := q * total
	var cum, lower float64
	for _, le := range bounds {
		c := counts[le]
		if math.IsInf(le, 1) {
			return lower
		}
		if cum+c >= rank && c > 0 {
			return lower + (le-lower)*(rank-cum)/c
		}
		cum += c
		lower = le
	}
	return lower
}
