// Command summarize prints the side-by-side summary of `make bench` from the
// files scripts/bench.sh writes into bench/out (Go benchmark output and the
// JSON of the Python baselines).
//
// Usage: go run ./bench/summarize bench/out
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

func main() {
	serverOnly := flag.Bool("server", false, "print only the server targets")
	flag.Parse()
	dir := "bench/out"
	if flag.NArg() > 0 {
		dir = flag.Arg(0)
	}
	if !*serverOnly {
		if err := tokenizer(dir); err != nil {
			log.Printf("tokenizer summary: %v", err)
		}
		fmt.Println()
	}
	if err := serverTargets(dir); err != nil {
		log.Printf("server summary: %v", err)
	}
	if !*serverOnly {
		fmt.Println()
		if err := storesAndFeatures(dir); err != nil {
			log.Printf("stores/features summary: %v", err)
		}
	}
}

// storesAndFeatures prints the store and feature benchmarks against their
// targets.
func storesAndFeatures(dir string) error {
	fmt.Println("Stores and features (same machine, same run):")
	if ups, err := goMetric(filepath.Join(dir, "stores-upsert.txt"), "vectors/s"); err == nil {
		for _, k := range sortedKeys(ups) {
			fmt.Printf("  upsert pipeline, batch 256 x 384 dims, %-40s %8.0f vectors/s\n", strings.TrimPrefix(k, "BenchmarkUpsertVectors/"), ups[k])
		}
	}
	if p99, err := goMetric(filepath.Join(dir, "stores-redis.txt"), "p99-µs"); err == nil {
		for k, v := range p99 {
			fmt.Printf("  %s: p99 %.2f ms\n", k, v/1000)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "stores-embedded-search.txt")); err == nil {
		p50, _ := goMetric(filepath.Join(dir, "stores-embedded-search.txt"), "p50-µs")
		p99, _ := goMetric(filepath.Join(dir, "stores-embedded-search.txt"), "p99-µs")
		rec, _ := goMetric(filepath.Join(dir, "stores-embedded-search.txt"), "recall@10")
		for k := range p50 {
			fmt.Printf("  embedded HNSW default ef (128), top-10 over 100k: p50 %.2f ms, p99 %.2f ms, recall@10 %.3f\n", p50[k]/1000, p99[k]/1000, rec[k])
		}
		for _, line := range strings.Split(string(b), "\n") {
			if i := strings.Index(line, "ef "); i >= 0 && strings.Contains(line, "recall@10") {
				fmt.Println("  embedded HNSW " + line[i:])
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "stores-milvus.txt")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "milvus ") || strings.HasPrefix(line, "upsert") || strings.HasPrefix(line, "search") {
				fmt.Println("  " + line)
			}
		}
	}
	ev, _ := goMetric(filepath.Join(dir, "features.txt"), "events/s")
	for _, k := range sortedKeys(ev) {
		fmt.Printf("  ingest %-30s %8.0f events/s\n", strings.TrimPrefix(k, "BenchmarkIngest/"), ev[k])
	}
	p99, err := goMetric(filepath.Join(dir, "features.txt"), "p99-ms")
	if err != nil {
		return err
	}
	for _, k := range sortedKeys(p99) {
		// Targets apply to reads that go to Redis (cache off, or the
		// revalidating default path); cache=on is served from memory.
		target := ""
		switch {
		case strings.Contains(k, "cache=on") || !strings.Contains(k, "redis"):
		case strings.Contains(k, "entities=1/"):
			target = fmt.Sprintf("  target <= 2 ms: %s", okMiss(p99[k] <= 2))
		case strings.Contains(k, "entities=100/"):
			target = fmt.Sprintf("  target <= 10 ms: %s", okMiss(p99[k] <= 10))
		}
		name := strings.TrimPrefix(k, "BenchmarkGetFeatures/")
		if rpc, ok := strings.CutPrefix(k, "BenchmarkGetFeaturesRPC/"); ok {
			name = "gRPC " + rpc
		}
		fmt.Printf("  GetFeatures x 50 features %-40s p99 %6.2f ms%s\n", name, p99[k], target)
	}
	return nil
}

func okMiss(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

type loadRun struct {
	Mode        string  `json:"mode"`
	Concurrency int     `json:"concurrency"`
	Rate        float64 `json:"rate"`
	Sentences   float64 `json:"sentences_per_s"`
	Tokens      float64 `json:"tokens_per_s"`
	Latency     struct {
		P50, P95, P99 float64
	} `json:"latency_ms"`
	Batch []struct {
		Mean float64 `json:"mean"`
	} `json:"batch"`
}

type loadReport struct {
	Label   string    `json:"label"`
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

// serverTargets prints the load table and the three targets of the server
// benchmark.
func serverTargets(dir string) error {
	var batched, single, medium loadReport
	var py, pyMedium pyReport
	for path, v := range map[string]any{
		"load/batched/results.json":          &batched,
		"load/max_batch_size=1/results.json": &single,
		"load/batched-medium/results.json":   &medium,
		"load/python-short.json":             &py,
		"load/python-medium.json":            &pyMedium,
	} {
		if err := readJSON(filepath.Join(dir, path), v); err != nil {
			return err
		}
	}
	fmt.Println("gRPC server under load (closed loop: each client sends one text and waits)")
	fmt.Printf("%-26s %8s %10s %9s %9s %9s %11s\n", "run", "sent/s", "tokens/s", "p50 ms", "p95 ms", "p99 ms", "batch mean")
	for _, r := range []loadReport{batched, medium, single} {
		for _, run := range r.Runs {
			name := fmt.Sprintf("%s %s c=%d", r.Label, run.Mode, run.Concurrency)
			if run.Mode != "closed" {
				name = fmt.Sprintf("%s %s %.0f/s", r.Label, run.Mode, run.Rate)
			}
			mean := 0.0
			if len(run.Batch) > 0 {
				mean = run.Batch[0].Mean
			}
			fmt.Printf("%-26s %8.1f %10.0f %9.2f %9.2f %9.2f %11.2f\n", name, run.Sentences, run.Tokens, run.Latency.P50, run.Latency.P95, run.Latency.P99, mean)
		}
	}
	fmt.Println("\nPython onnxruntime + tokenizers in-process (same model, same texts)")
	for _, p := range []struct {
		name string
		r    pyReport
	}{{"short", py}, {"medium", pyMedium}} {
		fmt.Printf("%-8s", p.name)
		for _, res := range p.r.Results {
			fmt.Printf("  b%d %.0f/s", res.BatchSize, res.Sentences)
		}
		fmt.Printf("  (best b%d)\n", p.r.Best.BatchSize)
	}
	b64, ok1 := closed(batched, 64)
	s64, ok2 := closed(single, 64)
	b1, ok3 := closed(batched, 1)
	if !ok1 || !ok2 || !ok3 || len(py.Results) == 0 {
		return fmt.Errorf("missing runs for the targets")
	}
	single1 := py.Results[0].MsPerBatch
	fmt.Println("\nTargets (short texts)")
	fmt.Printf("  server c=64 / Python in-process best batch:  %.1f / %.1f = %.2fx (target >= 1.0x)\n", b64.Sentences, py.Best.Sentences, b64.Sentences/py.Best.Sentences)
	fmt.Printf("  batched c=64 / max_batch_size=1 c=64:         %.1f / %.1f = %.2fx (target >= 4x)\n", b64.Sentences, s64.Sentences, b64.Sentences/s64.Sentences)
	fmt.Printf("  p99 at c=1 / one single-text batch (Python):  %.2f / %.2f ms = %.2fx (target <= 1.5x)\n", b1.Latency.P99, single1, b1.Latency.P99/single1)
	if m64, ok := closed(medium, 64); ok && pyMedium.Best.Sentences > 0 {
		fmt.Printf("  medium texts: server c=64 / Python best:     %.1f / %.1f = %.2fx\n", m64.Sentences, pyMedium.Best.Sentences, m64.Sentences/pyMedium.Best.Sentences)
	}
	return nil
}

// goMetric maps a benchmark name (without the -N suffix) to a metric value.
func goMetric(path, unit string) (map[string]float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	re := regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s`)
	out := map[string]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := re.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		fields := strings.Fields(sc.Text())
		for i := 1; i < len(fields); i++ {
			if fields[i] == unit {
				if v, err := strconv.ParseFloat(fields[i-1], 64); err == nil {
					out[m[1]] = v
				}
			}
		}
	}
	return out, sc.Err()
}

func tokenizer(dir string) error {
	goTok, err := goMetric(filepath.Join(dir, "tokenize-go.txt"), "tokens/s")
	if err != nil {
		return err
	}
	f, err := os.Open(filepath.Join(dir, "tokenize-hf.jsonl"))
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Println("Tokenizer throughput, tokens/s (same corpus and tokenizer.json, this machine, one run)")
	fmt.Printf("%-22s %14s %14s %8s   %14s %14s %8s\n", "corpus", "Go single", "HF encode", "ratio", "Go parallel", "HF batch", "ratio")
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var hf struct {
			Subset    string  `json:"subset"`
			MaxLength int     `json:"max_length"`
			Single    float64 `json:"single_tokens_per_s"`
			Batch     float64 `json:"batch_tokens_per_s"`
		}
		if err := json.Unmarshal(sc.Bytes(), &hf); err != nil {
			continue
		}
		limit := "full"
		if hf.MaxLength > 0 {
			limit = fmt.Sprintf("max%d", hf.MaxLength)
		}
		name := "BenchmarkEncode/" + hf.Subset + "/" + limit
		gs, gp := goTok[name+"/single"], goTok[name+"/parallel"]
		fmt.Printf("%-22s %14.0f %14.0f %7.1fx   %14.0f %14.0f %7.1fx\n", hf.Subset+"/"+limit, gs, hf.Single, gs/hf.Single, gp, hf.Batch, gp/hf.Batch)
	}
	return sc.Err()
}
