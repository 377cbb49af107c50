package main

import (
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
)

// compareReports prints the runs of several reports side by side: for each
// run (matched by mode and concurrency or rate) each label's throughput,
// p50 and p99 latency and mean batch size, and for every label after the
// first its throughput and p99 as ratios to the first's.
func compareReports(w io.Writer, reports []*report) {
	base := reports[0]
	for _, r := range reports[1:] {
		for _, d := range []struct{ what, a, b string }{
			{"model", base.Model, r.Model},
			{"text set", base.TextSet, r.TextSet},
			{"texts", base.Texts.SHA256, r.Texts.SHA256},
			{"output type", base.OutputType, r.OutputType},
		} {
			if d.a != d.b {
				fmt.Fprintf(w, "warning: %s differs: %s has %q, %s has %q\n", d.what, base.Label, d.a, r.Label, d.b)
			}
		}
	}
	fmt.Fprintf(w, "model %s, texts %s; ratios are to %s\n", base.Model, base.TextSet, base.Label)

	var names []string
	seen := map[string]bool{}
	byName := make([]map[string]runResult, len(reports))
	for i, r := range reports {
		byName[i] = map[string]runResult{}
		for _, run := range r.Runs {
			byName[i][run.name()] = run
			if !seen[run.name()] {
				seen[run.name()] = true
				names = append(names, run.name())
			}
		}
	}

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "run\t")
	for i, r := range reports {
		fmt.Fprintf(tw, "%s sent/s\t", r.Label)
		if i > 0 {
			fmt.Fprint(tw, "x\t")
		}
		fmt.Fprint(tw, "p50 ms\tp99 ms\t")
		if i > 0 {
			fmt.Fprint(tw, "x\t")
		}
		fmt.Fprint(tw, "batch\t")
	}
	fmt.Fprintln(tw)
	for _, name := range names {
		fmt.Fprintf(tw, "%s\t", name)
		b, hasBase := byName[0][name]
		for i := range reports {
			run, ok := byName[i][name]
			if !ok {
				fmt.Fprint(tw, "-\t")
				if i > 0 {
					fmt.Fprint(tw, "-\t")
				}
				fmt.Fprint(tw, "-\t-\t")
				if i > 0 {
					fmt.Fprint(tw, "-\t")
				}
				fmt.Fprint(tw, "-\t")
				continue
			}
			fmt.Fprintf(tw, "%s\t", fmtFloat(run.SentencesPerS, 1))
			if i > 0 {
				fmt.Fprintf(tw, "%s\t", ratio(run.SentencesPerS, b.SentencesPerS, hasBase))
			}
			fmt.Fprintf(tw, "%s\t%s\t", fmtFloat(run.LatencyMS.P50, 2), fmtFloat(run.LatencyMS.P99, 2))
			if i > 0 {
				fmt.Fprintf(tw, "%s\t", ratio(run.LatencyMS.P99, b.LatencyMS.P99, hasBase))
			}
			batch := "-"
			if len(run.Batch) > 0 {
				batch = fmtFloat(meanBatch(run.Batch), 2)
			}
			fmt.Fprintf(tw, "%s\t", batch)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

func ratio(v, base float64, ok bool) string {
	if !ok || base == 0 {
		return "-"
	}
	return fmtFloat(v/base, 2) + "x"
}

// writeCompareCharts draws every label's closed-loop throughput and p99
// latency against concurrency.
func writeCompareCharts(dir string, reports []*report) ([]string, error) {
	conc := func(run runResult) float64 { return float64(run.Concurrency) }
	thr := chart{File: "compare_throughput.png", Title: "throughput, " + reports[0].TextSet + " texts",
		XLabel: "concurrent clients", YLabel: "sentences/s", LogX: true}
	p99 := chart{File: "compare_p99.png", Title: "p99 latency, " + reports[0].TextSet + " texts",
		XLabel: "concurrent clients", YLabel: "p99 latency (ms)", LogX: true, LogY: true}
	for _, r := range reports {
		var closed []runResult
		for _, run := range r.Runs {
			if run.Mode == modeClosed {
				closed = append(closed, run)
			}
		}
		thr.Series = append(thr.Series, collect(r.Label, closed, conc, func(run runResult) float64 { return run.SentencesPerS }))
		p99.Series = append(p99.Series, collect(r.Label, closed, conc, func(run runResult) float64 { return run.LatencyMS.P99 }))
	}
	var files []string
	for _, c := range []chart{thr, p99} {
		path := filepath.Join(dir, c.File)
		if err := c.save(path); err != nil {
			return files, fmt.Errorf("chart %s: %w", c.File, err)
		}
		files = append(files, path)
	}
	return files, nil
}
