// Command quantquality measures what quantization costs on real sentence
// embeddings: it embeds a 10,000-sentence database and a disjoint query set
// with the engine, then reports reconstruction cosines and recall@10 of
// int8, calibrated int8 and binary search (with 4x rescoring) against exact
// float search (internal/quant.Evaluate). It also reports the same for the
// parity corpus.
//
// With -reference, it also measures what a quantized model costs against
// the model it was made from: each text's cosine between the two models'
// vectors, and recall@k of exact search with -model's vectors (database and
// queries) against exact search with -reference's, on both sets.
//
// The sentences are comment sentences from the Go standard library sources
// ($GOROOT/src), a large body of real English prose that every machine with
// a Go toolchain has; the selection is deterministic for a Go version.
//
// With -onnx, it measures model.onnx files in place of -model's pinned one
// (e.g. variants of the q8 graph written by ./bench/quantquality/q8variants),
// each against -reference, which is embedded once: -model's manifest gives
// the tokenizer, inputs and outputs, and the files are not checked against
// its sha256. It prints the comparisons of every file as a table (and
// writes them with -json) instead of -model's quantization reports.
//
// Usage: go run ./bench/quantquality [-model NAME] [-reference NAME] [-n 10000] [-queries 500] [-json out.json]
//
//	go run ./bench/quantquality -model all-minilm-l6-v2-q8 -reference all-minilm-l6-v2 -onnx a=DIR/a/model.onnx,b=DIR/b/model.onnx
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

// newEngine starts the engine on the cache's runtime and the built-in
// catalog, sized to embed a whole set in one call.
func newEngine() (*engine.Engine, *manifest.Catalog, engine.Options) {
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
	opts.Batch.QueueSize = 1 << 20 // one call embeds the whole set
	return engine.New(cat, opts), cat, opts
}

func main() {
	model := flag.String("model", models.Default, "model to embed with")
	n := flag.Int("n", 10000, "database size")
	nq := flag.Int("queries", 500, "number of queries")
	k := flag.Int("k", 10, "recall@k")
	factor := flag.Int("rescore", 4, "binary rescoring factor")
	parity := flag.String("parity", "internal/engine/testdata/parity/texts.jsonl", "parity corpus (JSONL); empty to skip")
	out := flag.String("json", "", "write the reports as JSON to this file")
	reference := flag.String("reference", "", "also compare -model's vectors with this model's (cosine per text, recall@k of exact search)")
	onnxList := flag.String("onnx", "", "comma-separated LABEL=PATH (or PATH) of model.onnx files to compare with -reference in place of -model's pinned one")
	flag.Parse()

	e, cat, opts := newEngine()
	defer e.Close()
	ctx := context.Background()

	sents := goSentences(*n + *nq)
	if len(sents) < *n+*nq {
		log.Fatalf("found %d sentences; need %d", len(sents), *n+*nq)
	}
	if *onnxList != "" {
		if *reference == "" {
			log.Fatal("-onnx needs -reference")
		}
		compareFiles(ctx, e, cat, opts, *model, *reference, *onnxList, sents, *n, *k, *parity, *out)
		return
	}
	start := time.Now()
	res, err := e.Embed(ctx, *model, sents, engine.EmbedOptions{Truncate: true})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("embedded %d sentences with %s in %s (%.0f sentences/s)\n", len(sents), *model, time.Since(start).Round(time.Millisecond), float64(len(sents))/time.Since(start).Seconds())
	var ref *engine.Result
	if *reference != "" {
		if ref, err = e.Embed(ctx, *reference, sents, engine.EmbedOptions{Truncate: true}); err != nil {
			log.Fatal(err)
		}
	}
	reports := map[string]quant.Report{}
	comparisons := map[string]modelComparison{}
	rep, err := quant.Evaluate(res.Vectors[:*n], res.Vectors[*n:], *k, *factor)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("\n== go stdlib sentences (%s)\n%s", *model, rep)
	reports["go-sentences"] = rep
	if ref != nil {
		c := compareModels(res.Vectors[:*n], res.Vectors[*n:], ref.Vectors[:*n], ref.Vectors[*n:], *k)
		fmt.Printf("%s vs %s: %s\n", *model, *reference, c)
		comparisons["go-sentences"] = c
	}

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
		if ref != nil {
			rp, err := e.Embed(ctx, *reference, texts, engine.EmbedOptions{Truncate: true})
			if err != nil {
				log.Fatal(err)
			}
			c := compareModels(pres.Vectors, res.Vectors[*n:], rp.Vectors, ref.Vectors[*n:], *k)
			fmt.Printf("%s vs %s: %s\n", *model, *reference, c)
			comparisons["parity-corpus"] = c
		}
	}
	if *out != "" {
		doc := map[string]any{"model": *model, "goversion": runtime.Version(), "reports": reports}
		if ref != nil {
			doc["reference"], doc["comparisons"] = *reference, comparisons
		}
		data, _ := json.MarshalIndent(doc, "", " ")
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

// modelComparison is how a model's vectors compare with a reference model's
// for the same texts: cosines over the database texts, recall over the
// queries.
type modelComparison struct {
	Texts      int     `json:"texts"`
	CosineMean float64 `json:"cosine_mean"`
	CosineMin  float64 `json:"cosine_min"`
	Queries    int     `json:"queries"`
	K          int     `json:"k"`
	// Recall is the fraction of the reference's exact top-K (its database
	// searched with its queries) that the model's exact top-K (its own
	// database and queries) also returns, averaged over queries.
	Recall float64 `json:"recall"`
}

func (c modelComparison) String() string {
	return fmt.Sprintf("cosine over the %d database texts mean %.5f min %.5f; recall@%d %.4f over %d queries", c.Texts, c.CosineMean, c.CosineMin, c.K, c.Recall, c.Queries)
}

// compareModels compares the database db and queries q embedded by a model
// with the same texts embedded by a reference model (refDB, refQ).
func compareModels(db, q, refDB, refQ [][]float32, k int) modelComparison {
	c := modelComparison{Texts: len(db), CosineMin: 1, Queries: len(q), K: k}
	for i, v := range db {
		cos := float64(quant.Cosine(v, refDB[i]))
		c.CosineMean += cos
		c.CosineMin = min(c.CosineMin, cos)
	}
	c.CosineMean /= float64(c.Texts)
	hits := 0
	for i := range q {
		want, err := quant.SearchFloat(refDB, refQ[i], k)
		if err != nil {
			log.Fatal(err)
		}
		got, err := quant.SearchFloat(db, q[i], k)
		if err != nil {
			log.Fatal(err)
		}
		truth := map[int64]bool{}
		for _, r := range want {
			truth[r.ID] = true
		}
		for _, r := range got {
			if truth[r.ID] {
				hits++
			}
		}
	}
	c.Recall = float64(hits) / float64(len(q)*k)
	return c
}
