package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// report is the content of results.json.
type report struct {
	Label        string    `json:"label"`
	Started      time.Time `json:"started"`
	Addr         string    `json:"addr"`
	Model        string    `json:"model"`
	ModelVersion string    `json:"model_version,omitempty"`
	Dims         uint32    `json:"dims,omitempty"`
	Backend      string    `json:"backend,omitempty"`
	OutputType   string    `json:"output_type"`
	Truncate     bool      `json:"truncate"`
	TextSet      string    `json:"text_set"`
	TargetTokens int       `json:"target_tokens"`
	Texts        textStats `json:"texts"`
	Seed         uint64    `json:"seed"`
	Conns        int       `json:"conns"`
	WarmupS      float64   `json:"warmup_s"`
	DurationS    float64   `json:"duration_s"`
	Client       struct {
		Go   string `json:"go"`
		OS   string `json:"os"`
		Arch string `json:"arch"`
		CPUs int    `json:"cpus"`
	} `json:"client"`
	Runs []runResult `json:"runs"`
}

func itoa(n int) string                { return strconv.Itoa(n) }
func formatRate(r float64) string      { return strconv.FormatFloat(r, 'g', -1, 64) }
func fmtFloat(v float64, p int) string { return strconv.FormatFloat(v, 'f', p, 64) }

// printHeader prints what a table's numbers are about.
func printHeader(w io.Writer, r *report) {
	fmt.Fprintf(w, "label %s: model %s (%s) at %s, texts %s (%d texts, %.1f words mean), output %s, %d conn(s), %gs per run after %gs warmup\n",
		r.Label, r.Model, r.Backend, r.Addr, r.TextSet, r.Texts.Count, r.Texts.MeanWords, r.OutputType, r.Conns, r.DurationS, r.WarmupS)
}

// printRuns prints one line per run, then the batch-size distributions.
func printRuns(w io.Writer, runs []runResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\tsent/s\ttok/s\ttok/text\tp50 ms\tp95 ms\tp99 ms\tmax ms\tok\terrors\tbatch mean\t")
	for _, r := range runs {
		batch := "-"
		if len(r.Batch) > 0 {
			batch = fmtFloat(meanBatch(r.Batch), 2)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t\n",
			r.name(), fmtFloat(r.SentencesPerS, 1), fmtFloat(r.TokensPerS, 0), fmtFloat(r.MeanTokens, 1),
			fmtFloat(r.LatencyMS.P50, 2), fmtFloat(r.LatencyMS.P95, 2), fmtFloat(r.LatencyMS.P99, 2), fmtFloat(r.LatencyMS.Max, 2),
			r.OK, formatErrors(r.Errors), batch)
	}
	tw.Flush()
	for _, r := range runs {
		for _, b := range r.Batch {
			fmt.Fprintf(w, "  %s %s: %.0f batches, mean %.2f items; sizes %s\n", r.name(), b.Series, b.Batches, b.Mean, formatBuckets(b))
		}
		if r.BatchError != "" {
			fmt.Fprintf(w, "  %s: no batch sizes: %s\n", r.name(), r.BatchError)
		}
		if m := r.ModelRun; m != nil {
			fmt.Fprintf(w, "  %s model run per batch (server histogram): mean %.2f ms, p50 %.2f ms, p99 %.2f ms\n", r.name(), m.MeanMS, m.P50MS, m.P99MS)
		}
		if r.MaxSendLagMS > 10 {
			fmt.Fprintf(w, "  %s: the generator sent up to %.0f ms late; latencies include it\n", r.name(), r.MaxSendLagMS)
		}
	}
}

// meanBatch is the mean batch size over all series (models).
func meanBatch(bs []batchStats) float64 {
	var items, batches float64
	for _, b := range bs {
		items += b.Items
		batches += b.Batches
	}
	if batches == 0 {
		return 0
	}
	return items / batches
}

func formatErrors(errs map[string]int) string {
	if len(errs) == 0 {
		return "0"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(errs)) {
		parts = append(parts, fmt.Sprintf("%s:%d", k, errs[k]))
	}
	return strings.Join(parts, ",")
}

// formatBuckets renders the non-empty buckets as "≤le:percent".
func formatBuckets(b batchStats) string {
	var parts []string
	for _, bc := range b.Buckets {
		if bc.Count > 0 {
			parts = append(parts, fmt.Sprintf("≤%s:%.0f%%", bc.LE, 100*bc.Count/b.Batches))
		}
	}
	if len(parts) == 0 {
		return "(no buckets)"
	}
	return strings.Join(parts, " ")
}

func writeReport(dir string, r *report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "results.json"), append(data, '\n'), 0o644)
}

func readReport(path string) (*report, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = filepath.Join(path, "results.json")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// series is one line of a chart.
type series struct {
	Name string
	X, Y []float64
}

// writeCharts draws throughput and latency against concurrency for the
// closed-loop runs and latency against the offered rate for the open-loop
// runs, as PNG files in dir. It returns the files written.
func writeCharts(dir string, r *report) ([]string, error) {
	var closed, open []runResult
	for _, run := range r.Runs {
		if run.Mode == modeOpen {
			open = append(open, run)
		} else {
			closed = append(closed, run)
		}
	}
	title := fmt.Sprintf("%s: %s, %s texts", r.Label, r.Model, r.TextSet)
	// The closed-loop charts have a log x axis, which needs two distinct
	// values (gonum/plot panics on a single one).
	var charts []chart
	if len(closed) > 1 {
		conc := func(run runResult) float64 { return float64(run.Concurrency) }
		charts = append(charts,
			chart{
				File: "throughput.png", Title: title, XLabel: "concurrent clients", YLabel: "sentences/s", LogX: true,
				Series: []series{collect("sentences/s", closed, conc, func(run runResult) float64 { return run.SentencesPerS })},
			},
			chart{
				File: "latency.png", Title: title, XLabel: "concurrent clients", YLabel: "latency (ms)", LogX: true, LogY: true,
				Series: latencySeries(closed, conc),
			})
	}
	if len(open) > 0 {
		rate := func(run runResult) float64 { return run.Rate }
		charts = append(charts, chart{
			File: "open_latency.png", Title: title + ", open loop", XLabel: "offered requests/s", YLabel: "latency (ms)", LogY: true,
			Series: latencySeries(open, rate),
		})
	}
	var files []string
	for _, c := range charts {
		path := filepath.Join(dir, c.File)
		if err := c.save(path); err != nil {
			return files, fmt.Errorf("chart %s: %w", c.File, err)
		}
		files = append(files, path)
	}
	return files, nil
}

func collect(name string, runs []runResult, x, y func(runResult) float64) series {
	s := series{Name: name}
	for _, r := range runs {
		s.X = append(s.X, x(r))
		s.Y = append(s.Y, y(r))
	}
	return s
}

func latencySeries(runs []runResult, x func(runResult) float64) []series {
	return []series{
		collect("p50", runs, x, func(r runResult) float64 { return r.LatencyMS.P50 }),
		collect("p95", runs, x, func(r runResult) float64 { return r.LatencyMS.P95 }),
		collect("p99", runs, x, func(r runResult) float64 { return r.LatencyMS.P99 }),
	}
}

// chart is a line chart with points, one line per series.
type chart struct {
	File, Title, XLabel, YLabel string
	// LogX and LogY select logarithmic axes; points that are not positive
	// cannot be drawn on them and are left out.
	LogX, LogY bool
	Series     []series
}

func (c chart) save(path string) error {
	p := plot.New()
	p.Title.Text = c.Title
	p.X.Label.Text = c.XLabel
	p.Y.Label.Text = c.YLabel
	// Both throughput and latency rise to the right: the top left is free.
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.XOffs, p.Legend.YOffs = vg.Points(8), -vg.Points(4)
	p.Add(plotter.NewGrid())
	var xticks []float64
	for i, s := range c.Series {
		var pts plotter.XYs
		for j := range s.X {
			if c.LogX && s.X[j] <= 0 || c.LogY && s.Y[j] <= 0 {
				continue
			}
			pts = append(pts, plotter.XY{X: s.X[j], Y: s.Y[j]})
			xticks = append(xticks, s.X[j])
		}
		if len(pts) == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(pts)
		if err != nil {
			return err
		}
		line.Color = plotutil.Color(i)
		points.Color = plotutil.Color(i)
		points.Shape = plotutil.Shape(i)
		p.Add(line, points)
		p.Legend.Add(s.Name, line, points)
	}
	if c.LogX {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = valueTicks(xticks)
	}
	if c.LogY {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	if c.LogY {
		p.Y.Min, p.Y.Max = logRange(c.Series, c.LogX)
	} else {
		p.Y.Min = 0 // throughput from zero, so ratios read true
		p.Y.Max *= 1.15
	}
	return p.Save(7*vg.Inch, 4.5*vg.Inch, path)
}

// valueTicks labels exactly the x values that occur (1, 16, 64, 256).
func valueTicks(xs []float64) plot.ConstantTicks {
	slices.Sort(xs)
	xs = slices.Compact(xs)
	ticks := make(plot.ConstantTicks, len(xs))
	for i, x := range xs {
		ticks[i] = plot.Tick{Value: x, Label: strconv.FormatFloat(x, 'g', -1, 64)}
	}
	return ticks
}

// logRange returns a y range for a log axis that covers the positive values
// with some margin.
func logRange(ss []series, logX bool) (lo, hi float64) {
	lo, hi = 0, 0
	for _, s := range ss {
		for j, y := range s.Y {
			if y <= 0 || logX && s.X[j] <= 0 {
				continue
			}
			if lo == 0 || y < lo {
				lo = y
			}
			hi = max(hi, y)
		}
	}
	if lo == 0 {
		return 0.1, 1
	}
	return lo / 1.5, hi * 1.5
}
