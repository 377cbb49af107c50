package packed_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/accel"
	"github.com/embedd/embedd/internal/accel/packed"
	"github.com/embedd/embedd/internal/manifest"
	"github.com/embedd/embedd/internal/quant"
	"github.com/embedd/embedd/internal/testassets"
	"github.com/embedd/embedd/internal/tokenize"
)

// parityModel is the model the twin is checked on: the default model, whose
// ONNX graph (made by bertonnx from the same safetensors) pools and
// normalizes.
const parityModel = "all-minilm-l6-v2"

// parityDir holds the parity corpus and the reference vectors of the
// engine's parity test (tools/parity/make_golden.py).
const parityDir = "../../engine/testdata/parity"

// minParityCosine is the least cosine between the twin's vector of a text
// and the reference's.
const minParityCosine = 0.99999

// realModel is the parity model loaded for the twin and, through ONNX
// Runtime, for the CPU provider.
type realModel struct {
	man *manifest.Model
	w   *packed.Weights
	tok *tokenize.Tokenizer
	ort accel.Encoder
}

// loadRealWeights loads the parity model's weights and tokenizer for the
// twin, or skips (fails with EMBEDD_REQUIRE_ASSETS=1) if it is not pulled.
func loadRealWeights(t testing.TB) *realModel {
	t.Helper()
	man := testassets.Model(t, parityModel)
	dir := manifest.Dir(testassets.CacheDir(), man)
	w, err := packed.LoadWeights(filepath.Join(dir, "config.json"), filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenize.Load(filepath.Join(dir, man.Tokenizer))
	if err != nil {
		t.Fatal(err)
	}
	return &realModel{man: man, w: w, tok: tok}
}

// loadRealModel is loadRealWeights plus an ONNX Runtime CPU encoder of the
// model's own graph.
func loadRealModel(t *testing.T) *realModel {
	t.Helper()
	testassets.Runtime(t)
	m := loadRealWeights(t)
	man, dir := m.man, manifest.Dir(testassets.CacheDir(), m.man)
	spec := accel.ModelSpec{
		Path:          filepath.Join(dir, man.ONNX),
		InputIDs:      man.Inputs.InputIDs,
		AttentionMask: man.Inputs.AttentionMask,
		TokenTypeIDs:  man.Inputs.TokenTypeIDs,
		Output:        man.Output,
		Pooled:        man.Pooled,
		NormOutput:    man.NormOutput,
		Pooling:       accel.Pooling(man.Pooling),
		Hidden:        man.Dims,
	}
	enc, err := accel.NewEncoder(spec, accel.Options{Provider: accel.ProviderCPU, IntraOpThreads: 2, NoSpin: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { enc.Close() })
	if m.w.Hidden() != man.Dims || accel.Pooling(man.Pooling) != accel.PoolMean {
		t.Fatalf("model %s: hidden %d, pooling %q; the test expects %d and mean", parityModel, m.w.Hidden(), man.Pooling, man.Dims)
	}
	m.ort = enc
	return m
}

// tokenizeAll tokenizes texts as the engine does: truncated to the model's
// max_seq_len.
func (m *realModel) tokenizeAll(t testing.TB, texts []string) []text {
	t.Helper()
	out := make([]text, len(texts))
	for i, s := range texts {
		e, err := m.tok.Encode(s, m.man.MaxSeqLen, true)
		if err != nil {
			t.Fatalf("text %d: %v", i, err)
		}
		out[i] = text{make([]int64, len(e.IDs)), make([]int64, len(e.IDs))}
		for j := range e.IDs {
			out[i].ids[j], out[i].types[j] = int64(e.IDs[j]), int64(e.TypeIDs[j])
		}
	}
	return out
}

// readGolden reads the reference vectors of the parity corpus, after
// checking they were made from the ONNX file the manifest pins.
func readGolden(t *testing.T, man *manifest.Model, n int) [][]float32 {
	t.Helper()
	var meta struct {
		N, Dims    int
		OnnxSHA256 string `json:"onnx_sha256"`
	}
	raw, err := os.ReadFile(filepath.Join(parityDir, parityModel+".json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &meta); err != nil {
		t.Fatal(err)
	}
	if onnx, _ := man.File(man.ONNX); meta.OnnxSHA256 != onnx.SHA256 {
		t.Fatalf("golden made from onnx %s; manifest pins %s", meta.OnnxSHA256, onnx.SHA256)
	}
	if meta.N != n || meta.Dims != man.Dims {
		t.Fatalf("golden holds %d vectors of %d; want %d of %d", meta.N, meta.Dims, n, man.Dims)
	}
	return testassets.ReadVectors(t, filepath.Join(parityDir, parityModel+".f32"), n, meta.Dims)
}

// parityBatches groups the corpus, in its order, into batches of 4 to 24
// texts (so each batch mixes lengths and pads its short texts).
func parityBatches(n int) [][2]int {
	var out [][2]int
	sizes := []int{16, 7, 24, 1, 11, 4}
	for i, s := 0, 0; s < n; i++ {
		e := min(s+sizes[i%len(sizes)], n)
		out = append(out, [2]int{s, e})
		s = e
	}
	return out
}

func f32to64(v []float32) []float64 { return f64(v) }

// TestParityWithONNXRuntime runs the parity corpus (594 texts: empty,
// unusual Unicode, truncated to 256 tokens) through the twin and through
// ONNX Runtime's CPU provider on the model's own pooled graph, in the same
// mixed-length batches, and requires a cosine of at least 0.99999 for every
// text; it also compares the twin with the reference vectors of the
// engine's parity test (Python tokenizers and onnxruntime, one text per
// run). Under the race detector it runs a fifth of the batches.
func TestParityWithONNXRuntime(t *testing.T) {
	m := loadRealModel(t)
	strs := testassets.ReadTexts(t, filepath.Join(parityDir, "texts.jsonl"))
	if len(strs) < 500 {
		t.Fatalf("parity corpus has %d texts; want >= 500", len(strs))
	}
	texts := m.tokenizeAll(t, strs)
	golden := readGolden(t, m.man, len(texts))
	hid := m.w.Hidden()
	enc := packed.NewEncoder(m.w, packed.ModeMean)
	ctx := context.Background()

	twin, twinNorms := make([]float32, len(texts)*hid), make([]float32, len(texts))
	ref, refNorms := make([]float32, len(texts)*hid), make([]float32, len(texts))
	var twinTime, ortTime time.Duration
	tokens := 0
	batches := parityBatches(len(texts))
	if raceEnabled {
		// Under the race detector, every fifth batch (5 and the 6 batch
		// sizes are coprime, so all sizes are in); the race checks need no
		// more, and the plain run checks every text.
		var fifth [][2]int
		for i, be := range batches {
			if i%5 == 0 {
				fifth = append(fifth, be)
			}
		}
		batches = fifth
	}
	checked := make([]int, 0, len(texts)) // indexes of the texts run
	for _, be := range batches {
		s, e := be[0], be[1]
		for i := s; i < e; i++ {
			checked = append(checked, i)
		}
		b := padded(texts[s:e])
		for _, tx := range texts[s:e] {
			tokens += len(tx.ids)
		}
		start := time.Now()
		if err := enc.Encode(ctx, b, twin[s*hid:e*hid], twinNorms[s:e]); err != nil {
			t.Fatalf("texts %d..%d: %v", s, e-1, err)
		}
		twinTime += time.Since(start)
		start = time.Now()
		if err := m.ort.Encode(ctx, b, ref[s*hid:e*hid], refNorms[s:e]); err != nil {
			t.Fatalf("texts %d..%d: onnx runtime: %v", s, e-1, err)
		}
		ortTime += time.Since(start)
	}
	t.Logf("%d of %d texts, %d tokens: twin %v, onnx runtime %v", len(checked), len(texts), tokens, twinTime.Round(time.Millisecond), ortTime.Round(time.Millisecond))

	type stats struct {
		minCos, maxAbs, maxNormRel float64
		worst                      int
	}
	compare := func(want func(i int) []float32, wantNorm func(i int) float32) stats {
		st := stats{minCos: 1, worst: -1}
		for _, i := range checked {
			got, w := twin[i*hid:(i+1)*hid], want(i)
			c := cosine(got, f32to64(w))
			if c < st.minCos || math.IsNaN(c) {
				st.minCos, st.worst = c, i
			}
			st.maxAbs = math.Max(st.maxAbs, maxDiff(got, f32to64(w)))
			if wantNorm != nil {
				st.maxNormRel = math.Max(st.maxNormRel, math.Abs(float64(twinNorms[i]-wantNorm(i)))/float64(wantNorm(i)))
			}
		}
		return st
	}
	ortStats := compare(func(i int) []float32 { return ref[i*hid : (i+1)*hid] }, func(i int) float32 { return refNorms[i] })
	t.Logf("twin vs onnx runtime (cpu): min cosine %.9f (1 - %.3g; text %d, %d tokens), max |diff| %.3g, max norm rel diff %.3g",
		ortStats.minCos, 1-ortStats.minCos, ortStats.worst, len(texts[ortStats.worst].ids), ortStats.maxAbs, ortStats.maxNormRel)
	if ortStats.minCos < minParityCosine || math.IsNaN(ortStats.minCos) {
		t.Errorf("twin vs onnx runtime: min cosine %.9f at text %d (%.60q); want >= %g",
			ortStats.minCos, ortStats.worst, strs[ortStats.worst], minParityCosine)
	}
	if ortStats.maxNormRel > 1e-4 {
		t.Errorf("twin vs onnx runtime: norms differ by up to %.3g (relative); want <= 1e-4", ortStats.maxNormRel)
	}
	goldStats := compare(func(i int) []float32 { return golden[i] }, nil)
	t.Logf("twin vs golden (python tokenizers + onnxruntime, one text per run): min cosine %.9f (1 - %.3g; text %d), max |diff| %.3g",
		goldStats.minCos, 1-goldStats.minCos, goldStats.worst, goldStats.maxAbs)
	if goldStats.minCos < minParityCosine || math.IsNaN(goldStats.minCos) {
		t.Errorf("twin vs golden: min cosine %.9f at text %d (%.60q); want >= %g",
			goldStats.minCos, goldStats.worst, strs[goldStats.worst], minParityCosine)
	}
}

// TestRealEncodeQuantized checks the truncated and int8 outputs on the real
// model: the truncated vector is the renormalized prefix of the full one,
// and the codes are exactly quant.QuantizeInt8 of it.
func TestRealEncodeQuantized(t *testing.T) {
	m := loadRealWeights(t)
	texts := m.tokenizeAll(t, []string{
		"a cat sits on the mat", "", "the stock market fell today",
		"naïve café résumé coöperate 東京は日本の首都です。 🚀🔥",
	})
	b := padded(texts)
	enc := packed.NewEncoder(m.w, packed.ModeMean)
	hid := m.w.Hidden()
	full, fullNorms := make([]float32, b.Size*hid), make([]float32, b.Size)
	if err := enc.Encode(context.Background(), b, full, fullNorms); err != nil {
		t.Fatal(err)
	}
	for _, dims := range []int{hid, 256, 64} {
		out, norms := make([]float32, b.Size*dims), make([]float32, b.Size)
		codes, scales := make([]int8, b.Size*dims), make([]float32, b.Size)
		if err := enc.EncodeQuantized(context.Background(), b, dims, out, norms, codes, scales); err != nil {
			t.Fatal(err)
		}
		for r := range b.Size {
			got := out[r*dims : (r+1)*dims]
			prefix := f32to64(full[r*hid : r*hid+dims])
			if c := cosine(got, prefix); c < 0.999999 {
				t.Errorf("dims %d text %d: cosine with the full vector's prefix %.9f", dims, r, c)
			}
			var ss float64
			for _, v := range prefix {
				ss += v * v
			}
			if want := math.Sqrt(ss) * float64(fullNorms[r]); math.Abs(float64(norms[r])-want) > 1e-5*want {
				t.Errorf("dims %d text %d: norm %g; want %g (the full norm times the prefix's length)", dims, r, norms[r], want)
			}
			q, err := quant.QuantizeInt8(got)
			if err != nil {
				t.Fatal(err)
			}
			if math.Float32bits(q.Scale) != math.Float32bits(scales[r]) || !slices.Equal(q.Codes, codes[r*dims:(r+1)*dims]) {
				t.Errorf("dims %d text %d: int8 output differs from quant.QuantizeInt8 of the float output", dims, r)
			}
		}
	}
}

// BenchmarkEncode encodes 32 short texts (about a dozen tokens each) with
// the parity model.
func BenchmarkEncode(b *testing.B) {
	m := loadRealWeights(b)
	strs := make([]string, 32)
	for i := range strs {
		strs[i] = fmt.Sprintf("Sentence number %d of the benchmark, about a cat on a mat.", i)
	}
	batch := padded(m.tokenizeAll(b, strs))
	enc := packed.NewEncoder(m.w, packed.ModeMean)
	vecs, norms := make([]float32, batch.Size*m.w.Hidden()), make([]float32, batch.Size)
	for b.Loop() {
		if err := enc.Encode(context.Background(), batch, vecs, norms); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Seconds())/float64(b.N*batch.Size)*1e3, "ms/text")
}
