package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/embedd/embedd/internal/engine"
	"github.com/embedd/embedd/internal/manifest"
)

// fileResult is what -onnx reports for one model.onnx file.
type fileResult struct {
	Label string `json:"label"`
	Path  string `json:"path"`
	// SentencesPerSec is the engine's rate over the sentence set, a rough
	// speed (the benchmark of speed is bench/quantquality/q8variants.sh).
	SentencesPerSec float64                    `json:"sentences_per_s"`
	Comparisons     map[string]modelComparison `json:"comparisons"`
}

// compareFiles embeds the sentences (database sents[:n], queries sents[n:])
// and the parity corpus with reference, then with each model.onnx file of
// list in place of model's, and compares each with the reference.
func compareFiles(ctx context.Context, e *engine.Engine, cat *manifest.Catalog, opts engine.Options, model, reference, list string, sents []string, n, k int, parity, out string) {
	man, err := cat.Get(model)
	if err != nil {
		log.Fatal(err)
	}
	var texts []string
	if parity != "" {
		if texts, err = readJSONL(parity); err != nil {
			log.Fatal(err)
		}
	}
	embed := func(e *engine.Engine, name string, texts []string) [][]float32 {
		res, err := e.Embed(ctx, name, texts, engine.EmbedOptions{Truncate: true})
		if err != nil {
			log.Fatal(err)
		}
		return res.Vectors
	}
	ref := embed(e, reference, sents)
	var refParity [][]float32
	if len(texts) > 0 {
		refParity = embed(e, reference, texts)
	}

	var results []fileResult
	for _, item := range strings.Split(list, ",") {
		label, path, ok := strings.Cut(item, "=")
		if !ok {
			path, label = label, filepath.Base(filepath.Dir(label))
		}
		abs, err := filepath.Abs(path)
		if err != nil {
			log.Fatal(err)
		}
		// A cache directory of its own, whose model directory links to
		// the pinned model's files but for model.onnx.
		cache, err := os.MkdirTemp("", "quantquality-")
		if err != nil {
			log.Fatal(err)
		}
		dir := manifest.Dir(cache, man)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			log.Fatal(err)
		}
		for _, f := range man.Files {
			target := filepath.Join(manifest.Dir(opts.CacheDir, man), f.Name)
			if f.Name == man.ONNX {
				target = abs
			}
			if err := os.Symlink(target, filepath.Join(dir, f.Name)); err != nil {
				log.Fatal(err)
			}
		}
		o := opts
		o.CacheDir, o.SkipVerify = cache, true
		fe := engine.New(cat, o)
		start := time.Now()
		vecs := embed(fe, model, sents)
		r := fileResult{Label: label, Path: abs, SentencesPerSec: float64(len(sents)) / time.Since(start).Seconds(),
			Comparisons: map[string]modelComparison{}}
		r.Comparisons["go-sentences"] = compareModels(vecs[:n], vecs[n:], ref[:n], ref[n:], k)
		if len(texts) > 0 {
			r.Comparisons["parity-corpus"] = compareModels(embed(fe, model, texts), vecs[n:], refParity, ref[n:], k)
		}
		fe.Close()
		os.RemoveAll(cache)
		fmt.Printf("%s (%s): %.0f sentences/s\n  go-sentences:  %s\n  parity-corpus: %s\n", label, abs, r.SentencesPerSec,
			r.Comparisons["go-sentences"], r.Comparisons["parity-corpus"])
		results = append(results, r)
	}

	fmt.Printf("\n%d go sentences (%d queries) and %d parity texts, against %s, recall@%d\n", n, len(sents)-n, len(texts), reference, k)
	fmt.Printf("%-24s %10s %10s %9s %10s %10s %9s\n", "variant", "sent cos", "sent min", "sent R", "par cos", "par min", "par R")
	for _, r := range results {
		s, p := r.Comparisons["go-sentences"], r.Comparisons["parity-corpus"]
		fmt.Printf("%-24s %10.5f %10.5f %9.4f %10.5f %10.5f %9.4f\n", r.Label, s.CosineMean, s.CosineMin, s.Recall, p.CosineMean, p.CosineMin, p.Recall)
	}
	if out != "" {
		doc := map[string]any{"model": model, "reference": reference, "goversion": runtime.Version(), "files": results}
		data, _ := json.MarshalIndent(doc, "", " ")
		if err := os.WriteFile(out, data, 0o644); err != nil {
			log.Fatal(err)
		}
	}
}
