// Command summarize prints the side-by-side summary of `make bench` from the
// files scripts/bench.sh writes into bench/out (Go benchmark output and the
// JSON of the Python baselines).
//
// Usage: go run ./bench/summarize bench/out
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

func main() {
	dir := "bench/out"
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	if err := tokenizer(dir); err != nil {
		log.Printf("tokenizer summary: %v", err)
	}
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
