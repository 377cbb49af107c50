package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// The server section of `make bench` (scripts/bench-server.sh): the load
// table and the targets of the CPU-speed issue, each measured in the same
// run on the same texts:
//   - fp32 through the server at c=64 >= 1.0x Python fp32 best batch;
//   - the int8 model through the server at c=64 >= 1.5x Python fp32 best;
//   - dynamic batching at c=64 >= 0.9x of (the model's own batch gain,
//     Python best batch / Python batch 1) x max_batch_size=1 at c=64, and
//     batched >= max_batch_size=1 at every concurrency;
//   - p99 at c=1 <= the model run's p99 (the server's histogram) + 1 ms;
//   - Zipf(1.1) over 100k texts: cache on >= 2x cache off;
//   - achieved GFLOP/s per model against ONNX Runtime's GEMM peak here.

type loadRun struct {
	Mode        string  `json:"mode"`
	Concurrency int     `json:"concurrency"`
	Rate        float64 `json:"rate"`
	Sentences   float64 `json:"sentences_per_s"`
	Tokens      float64 `json:"tokens_per_s"`
	MeanTokens  float64 `json:"mean_tokens"`
	Latency     struct {
		P50, P95, P99 float64
	} `json:"latency_ms"`
	Batch []struct {
		Mean float64 `json:"mean"`
	} `json:"batch"`
	ModelRun *struct {
		MeanMS float64 `json:"mean_ms"`
		P99MS  float64 `json:"p99_ms"`
	} `json:"model_run"`
}

type loadReport struct {
	Label   string    `json:"label"`
	Model   string    `json:"model"`
	TextSet string    `json:"text_set"`
	Runs    []loadRun `json:"runs"`
}

type pyReport struct {
	Results []struct {
		BatchSize  int     `json:"batch_size"`
		Sentences  float64 `json:"sentences_per_s"`
		MsPerBatch float64 `json:"ms_per_batch"`
	} `json:"results"`
	Best struct {
		BatchSize int     `json:"batch_size"`
		Sentences float64 `json:"sentences_per_s"`
	} `json:"best"`
}

// bertConfig is the part of a model's config.json that sets its FLOPs.
type bertConfig struct {
	Hidden       int `json:"hidden_size"`
	Intermediate int `json:"intermediate_size"`
	Layers       int `json:"num_hidden_layers"`
}

// flopsPerText is the encoder's multiply-add work for a text of t tokens,
// counting a multiply-add as 2: per layer, the four attention projections
// (4·t·h²), the feed-forward pair (2·t·h·i), and scores plus context
// (2·t²·h), all times 2. Embedding lookups, layer norms, softmax and
// pooling are left out (under 1% here).
func (c bertConfig) flopsPerText(t float64) float64 {
	h, i := float64(c.Hidden), float64(c.Intermediate)
	return float64(c.Layers) * 2 * (4*t*h*h + 2*t*h*i + 2*t*t*h)
}

type gemmPeak struct {
	CPU  string  `json:"cpu"`
	FP32 float64 `json:"fp32_peak_gops"`
	Int8 float64 `json:"int8_peak_gops"`
}

// target is one row of the targets table; targets.json holds them for
// tools/bench/results.py.
type target struct {
	What     string  `json:"what"`
	Measured string  `json:"measured"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	Target   string  `json:"target"`
	Met      *bool   `json:"met,omitempty"`
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

func closed(r loadReport, c int) (loadRun, bool) {
	for _, run := range r.Runs {
		if run.Mode == "closed" && run.Concurrency == c {
			return run, true
		}
	}
	return loadRun{}, false
}

// serverInputs are the files bench-server.sh writes.
type serverInputs struct {
	batched, medium, single, q8, zipfOff, zipfOn loadReport
	py, pyMedium, pyQ8                           pyReport
	cfg, cfgQ8                                   bertConfig
	peak                                         gemmPeak
}

func readServerInputs(dir string) (*serverInputs, error) {
	var in serverInputs
	for path, v := range map[string]any{
		"load/batched/results.json":          &in.batched,
		"load/batched-medium/results.json":   &in.medium,
		"load/max_batch_size=1/results.json": &in.single,
		"load/q8/results.json":               &in.q8,
		"load/zipf-cache-off/results.json":   &in.zipfOff,
		"load/zipf-cache-on/results.json":    &in.zipfOn,
		"load/python-short.json":             &in.py,
		"load/python-medium.json":            &in.pyMedium,
		"load/python-q8-short.json":          &in.pyQ8,
		"load/config-fp32.json":              &in.cfg,
		"load/config-q8.json":                &in.cfgQ8,
		"load/gemm-peak.json":                &in.peak,
	} {
		if err := readJSON(filepath.Join(dir, path), v); err != nil {
			return nil, err
		}
	}
	if len(in.py.Results) == 0 || in.py.Best.Sentences == 0 || in.peak.FP32 == 0 {
		return nil, fmt.Errorf("the Python baseline or the GEMM peak is empty")
	}
	return &in, nil
}

// serverTargets prints the load table and the targets, and writes them to
// dir/load/targets.json.
func serverTargets(dir string) error {
	in, err := readServerInputs(dir)
	if err != nil {
		return err
	}
	printLoadTable(in)
	ts, err := computeTargets(in)
	if err != nil {
		return err
	}
	fmt.Println("\nTargets (short texts; same machine, same run; ratios are measured / reference)")
	fmt.Printf("  %-58s %-44s %9s  %-10s %s\n", "what", "measured", "value", "target", "")
	for _, t := range ts {
		res := ""
		if t.Met != nil {
			res = okMiss(*t.Met)
		}
		fmt.Printf("  %-58s %-44s %9s  %-10s %s\n", t.What, t.Measured, fmt.Sprintf("%.3g%s", t.Value, t.Unit), t.Target, res)
	}
	data, err := json.MarshalIndent(ts, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "load", "targets.json"), append(data, '\n'), 0o644)
}

func printLoadTable(in *serverInputs) {
	fmt.Println("gRPC server under load (closed loop: each client sends one text and waits)")
	fmt.Printf("%-30s %8s %10s %9s %9s %9s %11s %12s\n", "run", "sent/s", "tokens/s", "p50 ms", "p95 ms", "p99 ms", "batch mean", "run p99 ms")
	for _, r := range []loadReport{in.batched, in.medium, in.single, in.q8, in.zipfOff, in.zipfOn} {
		for _, run := range r.Runs {
			name := fmt.Sprintf("%s %s c=%d", r.Label, run.Mode, run.Concurrency)
			if run.Mode != "closed" {
				name = fmt.Sprintf("%s %s %.0f/s", r.Label, run.Mode, run.Rate)
			}
			mean, runP99 := 0.0, math.NaN()
			if len(run.Batch) > 0 {
				mean = run.Batch[0].Mean
			}
			if run.ModelRun != nil {
				runP99 = run.ModelRun.P99MS
			}
			fmt.Printf("%-30s %8.1f %10.0f %9.2f %9.2f %9.2f %11.2f %12.2f\n", name, run.Sentences, run.Tokens, run.Latency.P50, run.Latency.P95, run.Latency.P99, mean, runP99)
		}
	}
	fmt.Println("\nPython onnxruntime + tokenizers in-process (same models, same texts)")
	for _, p := range []struct {
		name string
		r    pyReport
	}{{"fp32 short", in.py}, {"fp32 medium", in.pyMedium}, {"int8 short", in.pyQ8}} {
		fmt.Printf("%-12s", p.name)
		for _, res := range p.r.Results {
			fmt.Printf("  b%d %.0f/s", res.BatchSize, res.Sentences)
		}
		fmt.Printf("  (best b%d)\n", p.r.Best.BatchSize)
	}
	fmt.Printf("ONNX Runtime GEMM peak on %s: fp32 %.0f GFLOP/s, int8 %.0f GOP/s\n", in.peak.CPU, in.peak.FP32, in.peak.Int8)
}

func ratioTarget(what string, a, b float64, unitA, unitB string, min float64) target {
	met := a/b >= min
	return target{What: what, Measured: fmt.Sprintf("%.1f / %.1f %s", a, b, unitA+unitB), Value: a / b, Unit: "x", Target: fmt.Sprintf(">= %gx", min), Met: &met}
}

func computeTargets(in *serverInputs) ([]target, error) {
	need := func(r loadReport, c int) (loadRun, error) {
		run, ok := closed(r, c)
		if !ok {
			return run, fmt.Errorf("%s has no closed-loop run at c=%d", r.Label, c)
		}
		return run, nil
	}
	b64, err := need(in.batched, 64)
	if err != nil {
		return nil, err
	}
	s64, err := need(in.single, 64)
	if err != nil {
		return nil, err
	}
	q64, err := need(in.q8, 64)
	if err != nil {
		return nil, err
	}
	pyBest, py1 := in.py.Best.Sentences, in.py.Results[0].Sentences
	ts := []target{
		ratioTarget("fp32 server c=64 / Python fp32 best batch", b64.Sentences, pyBest, "texts/s", "", 1.0),
		ratioTarget("int8 (q8) server c=64 / Python fp32 best batch", q64.Sentences, pyBest, "texts/s", "", 1.5),
	}
	if in.pyQ8.Best.Sentences > 0 {
		ts = append(ts, target{What: "  (q8 server c=64 / Python q8 best batch)", Measured: fmt.Sprintf("%.1f / %.1f texts/s", q64.Sentences, in.pyQ8.Best.Sentences), Value: q64.Sentences / in.pyQ8.Best.Sentences, Unit: "x"})
	}
	gain := pyBest / py1
	ts = append(ts, ratioTarget(fmt.Sprintf("batched c=64 / (batch gain %.2fx x max_batch_size=1 c=64)", gain), b64.Sentences, gain*s64.Sentences, "texts/s", "", 0.9))
	ts = append(ts, batchedVsSingle(in)...)
	if t, err := p99Target(in); err == nil {
		ts = append(ts, t)
	} else {
		return nil, err
	}
	zOff, err := need(in.zipfOff, 64)
	if err != nil {
		return nil, err
	}
	zOn, err := need(in.zipfOn, 64)
	if err != nil {
		return nil, err
	}
	ts = append(ts, ratioTarget("Zipf(1.1) over 100k texts c=64: cache on / off", zOn.Sentences, zOff.Sentences, "texts/s", "", 2.0))
	ts = append(ts, gflops("fp32", in.cfg, b64, in.peak.FP32, "fp32 GEMM"), gflops("q8", in.cfgQ8, q64, in.peak.Int8, "int8 GEMM"))
	return ts, nil
}

// batchedVsSingle is the lowest ratio of batched to max_batch_size=1 over
// the concurrencies both ran.
func batchedVsSingle(in *serverInputs) []target {
	worst, at, levels := math.Inf(1), 0, []string{}
	for _, s := range in.single.Runs {
		b, ok := closed(in.batched, s.Concurrency)
		if s.Mode != "closed" || !ok || s.Sentences == 0 {
			continue
		}
		levels = append(levels, fmt.Sprintf("c=%d %.2fx", s.Concurrency, b.Sentences/s.Sentences))
		if r := b.Sentences / s.Sentences; r < worst {
			worst, at = r, s.Concurrency
		}
	}
	if at == 0 {
		return nil
	}
	met := worst >= 1
	return []target{{What: "batched / max_batch_size=1, lowest over concurrencies", Measured: fmt.Sprintf("at c=%d (%s)", at, strings.Join(levels, ", ")), Value: worst, Unit: "x", Target: ">= 1x", Met: &met}}
}

// p99Target compares the server's p99 at c=1 with the model run's own p99
// from the server's histogram in the same window.
func p99Target(in *serverInputs) (target, error) {
	b1, ok := closed(in.batched, 1)
	if !ok || b1.ModelRun == nil {
		return target{}, fmt.Errorf("batched c=1 run has no model-run histogram")
	}
	d := b1.Latency.P99 - b1.ModelRun.P99MS
	met := d <= 1
	return target{What: "p99 c=1 - model run p99 (server histogram)", Measured: fmt.Sprintf("%.2f - %.2f ms", b1.Latency.P99, b1.ModelRun.P99MS), Value: d, Unit: " ms", Target: "<= +1 ms", Met: &met}, nil
}

// gflops is the model's achieved rate at c=64 on the run's mean text
// length, against the GEMM peak of its arithmetic.
func gflops(name string, cfg bertConfig, run loadRun, peak float64, peakName string) target {
	g := run.Sentences * cfg.flopsPerText(run.MeanTokens) / 1e9
	return target{What: fmt.Sprintf("%s achieved GFLOP/s at c=64 (%.1f tokens/text)", name, run.MeanTokens), Measured: fmt.Sprintf("%.1f of %.0f (%s peak)", g, peak, peakName), Value: 100 * g / peak, Unit: "% of peak"}
}
