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
