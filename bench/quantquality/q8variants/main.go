// Command q8variants exports variants of the q8 graph of a BERT model
// (internal/bertonnx, precision q8, mean pooling, L2 normalization, as
// models/all-minilm-l6-v2-q8 pins it) that keep chosen linears or the word
// embeddings in float32 (Options.FP32Linears, FP32WordEmbeddings), each to
// a model directory <out>/<name>/ holding model.onnx and links to the
// source model's tokenizer.json and config.json, ready for
// bench/baseline/ort_inprocess.py and for bench/quantquality -onnx. It
// prints one line per variant, "name<TAB>sha256<TAB>size<TAB>spec", and
// writes the same as JSON to <out>/variants.json.
//
// A variant is NAME=SPEC, SPEC a comma-separated list of FP32Linears
// entries ("query", "key", "value", "attention_output", "intermediate",
// "output", "layer.N", "layer.N.KIND") and "words" for the word
// embeddings; an empty SPEC is the plain q8 graph. -variants replaces the
// built-in list (printed by -list), -add appends to it.
//
// Usage: go run ./bench/quantquality/q8variants -out DIR [-src DIR] [-variants 'a=...;b=...'] [-add 'c=...']
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/embedd/embedd/internal/bertonnx"
)

// builtin are the variants measured for bench/results/q8-variants.md, from
// the plain q8 graph to ones with more and more of it in float32.
const builtin = "q8=" +
	";words=words" +
	";words+out=words,output" +
	";words+out+attnout=words,output,attention_output" +
	";inter=intermediate" +
	";qkv=query,key,value" +
	";out=output" +
	";attnout=attention_output" +
	";first=layer.0" +
	";last=layer.5" +
	";first+last=layer.0,layer.5" +
	";L1=layer.1;L2=layer.2;L3=layer.3;L4=layer.4" +
	";ffn=intermediate,output" +
	";linears=query,key,value,attention_output,intermediate,output"

type variant struct {
	Name   string   `json:"name"`
	Spec   string   `json:"spec"`
	Words  bool     `json:"fp32_word_embeddings"`
	Linear []string `json:"fp32_linears"`
	SHA256 string   `json:"sha256"`
	Size   int64    `json:"size"`
	Dir    string   `json:"dir"`
}

func parseVariants(s string) ([]variant, error) {
	var out []variant
	for _, item := range strings.Split(s, ";") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, spec, ok := strings.Cut(item, "=")
		if !ok || name == "" || strings.ContainsAny(name, `/\ `) {
			return nil, fmt.Errorf("variant %q: want NAME=SPEC", item)
		}
		v := variant{Name: name, Spec: spec}
		for _, e := range strings.Split(spec, ",") {
			switch e = strings.TrimSpace(e); e {
			case "":
			case "words":
				v.Words = true
			default:
				v.Linear = append(v.Linear, e)
			}
		}
		out = append(out, v)
	}
	return out, nil
}

func main() {
	home, _ := os.UserCacheDir()
	cache := os.Getenv("EMBEDD_CACHE_DIR")
	if cache == "" {
		cache = filepath.Join(home, "embedd")
	}
	src := flag.String("src", filepath.Join(cache, "models", "all-minilm-l6-v2-q8"), "model directory with config.json, model.safetensors and tokenizer.json")
	out := flag.String("out", "", "directory to write <name>/model.onnx into (required)")
	list := flag.String("variants", builtin, "variants, NAME=SPEC separated by ';'")
	add := flag.String("add", "", "more variants, appended to -variants")
	only := flag.Bool("list", false, "print the variants and exit")
	flag.Parse()

	vs, err := parseVariants(*list + ";" + *add)
	if err != nil {
		log.Fatal(err)
	}
	if *only {
		for _, v := range vs {
			fmt.Printf("%s\t%s\n", v.Name, v.Spec)
		}
		return
	}
	if *out == "" {
		log.Fatal("-out is required")
	}
	for i := range vs {
		v := &vs[i]
		v.Dir = filepath.Join(*out, v.Name)
		if err := os.MkdirAll(v.Dir, 0o755); err != nil {
			log.Fatal(err)
		}
		for _, f := range []string{"tokenizer.json", "config.json"} {
			dst := filepath.Join(v.Dir, f)
			os.Remove(dst)
			if err := os.Symlink(filepath.Join(*src, f), dst); err != nil {
				log.Fatal(err)
			}
		}
		opts := bertonnx.Options{Precision: bertonnx.Q8, Pooling: bertonnx.PoolMean, Normalize: true,
			FP32Linears: v.Linear, FP32WordEmbeddings: v.Words}
		dst := filepath.Join(v.Dir, "model.onnx")
		if err := bertonnx.ExportFileWith(dst, filepath.Join(*src, "config.json"), filepath.Join(*src, "model.safetensors"), opts); err != nil {
			log.Fatalf("%s: %v", v.Name, err)
		}
		if v.SHA256, v.Size, err = hashFile(dst); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s\t%s\t%d\t%s\n", v.Name, v.SHA256, v.Size, v.Spec)
	}
	data, _ := json.MarshalIndent(vs, "", " ")
	if err := os.WriteFile(filepath.Join(*out, "variants.json"), data, 0o644); err != nil {
		log.Fatal(err)
	}
}

func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil)), n, err
}
