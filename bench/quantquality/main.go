// Command quantquality measures what quantization costs on real sentence
// embeddings: it embeds a 10,000-sentence database and a disjoint query set
// with the engine, then reports reconstruction cosines and recall@10 of
// int8, calibrated int8 and binary search (with 4x rescoring) against exact
// float search (internal/quant.Evaluate). It also reports the same for the
// parity corpus.
//
// The sentences are comment sentences from the Go standard library sources
// ($GOROOT/src), a large body of real English prose that every machine with
// a Go toolchain has; the selection is deterministic for a Go version.
//
// Usage: go run ./bench/quantquality [-model NAME] [-n 10000] [-queries 500] [-json out.json]
package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/embedd/embedd/internal/accel"
	"github.com/embedd/embedd/internal/engine"
	"github.com/embedd/embedd/internal/manifest"
	"github.com/embedd/embedd/internal/pull"
	"github.com/embedd/embedd/internal/quant"
	"github.com/embedd/embedd/models"
)

func main() {
	model := flag.String("model", models.Default, "model to embed with")
	n := flag.Int("n", 10000, "database size")
	nq := flag.Int("queries", 500, "number of queries")
	k := flag.Int("k", 10, "recall@k")
	factor := flag.Int("rescore", 4, "binary rescoring factor")
	parity := flag.String("parity", "internal/engine/testdata/parity/texts.jsonl", "parity corpus (JSONL); empty to skip")
	out := flag.String("json", "", "write the reports as JSON to this file")
	flag.Parse()

	cache := os.Getenv("EMBEDD_CACHE_DIR")
	if cache == "" {
		d, _ := os.UserCacheDir()
		cache = filepath.Join(d, "embedd")
	}
	if err := accel.Init(pull.RuntimePath(cache, pull.DefaultRuntime)); err != nil {
		log.Fatal(err)
	}
	cat, err := manifest.LoadFS(models.FS)
	if err != nil {
		log.Fatal(err)
	}
	opts := engine.DefaultOptions()
	opts.CacheDir = cache
	opts.MaxTexts = 1 << 20
	e := engine.New(cat, opts)
	defer e.Close()
	ctx := context.Background()

	sents := goSentences(*n + *nq)
	if len(sents) < *n+*nq {
		log.Fatalf("found %d sentences; need %d", len(sents), *n+*nq)
	}
	start := time.Now()
	res, err := e.Embed(ctx, *model, sents, engine.EmbedOptions{Truncate: true})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("embedded %d sentences with %s in %s (%.0f sentences/s)\n", len(sents), *model, time.Since(start).Round(time.Millisecond), float64(len(sents))/time.Since(start).Seconds())
	reports := map[string]quant.Report{}
	rep, err := quant.Evaluate(res.Vectors[:*n], res.Vectors[*n:], *k, *factor)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("\n== go stdlib sentences (%s)\n%s", *model, rep)
	reports["go-sentences"] = rep

	if *parity != "" {
		texts, err := readJSONL(*parity)
		if err != nil {
			log.Fatal(err)
		}
		pres, err := e.Embed(ctx, *model, texts, engine.EmbedOptions{Truncate: true})
		if err != nil {
			log.Fatal(err)
		}
		// The parity corpus is the database; the stdlib queries search it.
		rep, err := quant.Evaluate(pres.Vectors, res.Vectors[*n:], *k, *factor)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("\n== parity corpus (%d texts) as database\n%s", len(texts), rep)
		reports["parity-corpus"] = rep
	}
	if *out != "" {
		data, _ := json.MarshalIndent(map[string]any{"model": *model, "goversion": runtime.Version(), "reports": reports}, "", " ")
		if err := os.WriteFile(*out, data, 0o644); err != nil {
			log.Fatal(err)
		}
	}
}

func readJSONL(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	var out []string
	for sc.Scan() {
		var row struct{ Text string }
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			return nil, err
		}
		out = append(out, row.Text)
	}
	return out, sc.Err()
}

// goSentences returns up to want distinct prose sentences from comments in
// $GOROOT/src, in a deterministic pseudo-random order.
func goSentences(want int) []string {
	root := filepath.Join(runtime.GOROOT(), "src")
	seen := map[string]bool{}
	var all []string
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() && (d.Name() == "testdata" || d.Name() == "vendor") {
			return fs.SkipDir
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		var para []string
		flush := func() {
			for _, s := range strings.SplitAfter(strings.Join(para, " "), ". ") {
				s = strings.TrimSpace(s)
				if prose(s) && !seen[s] {
					seen[s] = true
					all = append(all, s)
				}
			}
			para = para[:0]
		}
		for _, line := range strings.Split(string(data), "\n") {
			line = strings.TrimSpace(line)
			if c, ok := strings.CutPrefix(line, "// "); ok {
				para = append(para, c)
				continue
			}
			flush()
		}
		flush()
		return nil
	})
	hash := func(s string) uint64 { h := fnv.New64a(); h.Write([]byte(s)); return h.Sum64() }
	slices.SortFunc(all, func(a, b string) int { return cmp.Compare(hash(a), hash(b)) })
	return all[:min(want, len(all))]
}

// prose keeps sentences of 6 to 40 words that are mostly letters.
func prose(s string) bool {
	words := strings.Fields(s)
	if len(words) < 6 || len(words) > 40 || !strings.HasSuffix(s, ".") {
		return false
	}
	letters := 0
	for _, r := range s {
		if unicode.IsLetter(r) || r == ' ' {
			letters++
		}
	}
	return letters*10 >= len(s)*9
}
