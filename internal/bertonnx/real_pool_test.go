package bertonnx_test

import (
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"math"
	"path/filepath"
	"strings"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/embedd/embedd/internal/bertonnx"
	"github.com/embedd/embedd/internal/manifest"
	"github.com/embedd/embedd/internal/pull"
	"github.com/embedd/embedd/internal/testassets"
	"github.com/embedd/embedd/internal/tokenize"
)

// poolTexts are real texts of many lengths and scripts, run as one padded
// batch so that pooling has to honour the attention mask.
var poolTexts = []string{
	"hello world",
	"a",
	"?",
	"The quick brown fox jumps over the lazy dog.",
	"A man is playing a guitar on the street corner.",
	"Embeddings map text to points in a vector space.",
	"How do I reset my password?",
	"The weather in Lisbon is sunny and warm today.",
	"Quantum computers use qubits instead of bits.",
	"She sells sea shells by the sea shore.",
	"Transformers replaced recurrent networks for most NLP tasks.",
	"Please deliver the package to the back door.",
	"The stock market fell sharply after the announcement.",
	"I love reading books about ancient history.",
	"Can you recommend a good Italian restaurant nearby?",
	"Photosynthesis converts light energy into chemical energy.",
	"The committee will meet again on Thursday at 10am.",
	"Our new phone has a 6.1-inch display and 128 GB of storage.",
	"Das ist ein Satz auf Deutsch.",
	"C'est la vie, mon ami.",
	"¿Dónde está la biblioteca?",
	"東京は日本の首都です。",
	"Москва — столица России.",
	"Emoji test: 🚀🔥 are popular on social media.",
	"E = mc^2 relates mass and energy.",
	"def add(a, b): return a + b",
	"SELECT name FROM users WHERE id = 42;",
	"The mitochondria is the powerhouse of the cell.",
	"https://example.com/path?query=1&other=two",
	"user@example.org wrote: 'see you at 5pm'",
	"1234567890 0987654321 3.14159 2.71828",
	"UPPERCASE TEXT SHOULD BE LOWERCASED BY THE TOKENIZER",
	"naïve café résumé coöperate",
	"   leading and trailing spaces   ",
	"tabs\tand\nnewlines\r\nin text",
	"Supercalifragilisticexpialidocious antidisestablishmentarianism",
	"The cat sat on the mat. The dog sat on the log.",
	"Is this the real life? Is this just fantasy?",
	"Water boils at 100 degrees Celsius at sea level.",
	"The Eiffel Tower is in Paris, France.",
	"Machine learning models need lots of data.",
	"I can't believe it's not butter!",
	"He said, \"Don't go there,\" and left.",
	"North, south, east and west.",
	"The year 2024 was a leap year.",
	"Red, green, blue: the primary colours of light.",
	"Sorting algorithms: quicksort, mergesort, heapsort.",
	"Rain is expected tomorrow afternoon across the region.",
	"The library opens at nine and closes at six on weekdays, and at noon on Saturdays.",
	"A long sentence that keeps going, with many clauses, commas, and subordinate ideas, " +
		"so that it is much longer than the others in the batch and the shorter ones need padding.",
	strings.Repeat("The history of the region is long and complicated. ", 12),
	strings.Repeat("token ", 100),
	"In 1969, Apollo 11 landed on the Moon; Neil Armstrong and Buzz Aldrin walked on its surface " +
		"while Michael Collins orbited above in the command module Columbia.",
	"Vector databases index embeddings for approximate nearest neighbour search with HNSW graphs.",
	"¡Qué día tan bonito! Vamos a la playa.",
	"Ein kurzer Text.",
}

// poolBatch is poolTexts tokenized and padded to the longest, plus one
// final row of padding only (an all-zero mask).
type poolBatch struct {
	rows, seq int
	ids, mask []int64
	types     []int64
}

func newPoolBatch(t *testing.T, tokenizerPath string) poolBatch {
	t.Helper()
	tok, err := tokenize.Load(tokenizerPath)
	if err != nil {
		t.Fatal(err)
	}
	var encs []tokenize.Encoding
	seq := 0
	for _, text := range poolTexts {
		e, err := tok.Encode(text, 256, true)
		if err != nil {
			t.Fatalf("tokenize %q: %v", text, err)
		}
		encs = append(encs, e)
		seq = max(seq, len(e.IDs))
	}
	b := poolBatch{rows: len(encs) + 1, seq: seq}
	n := b.rows * seq
	b.ids, b.mask, b.types = make([]int64, n), make([]int64, n), make([]int64, n)
	for i := range b.ids {
		b.ids[i] = int64(tok.PadID())
	}
	for r, e := range encs {
		for j, id := range e.IDs {
			b.ids[r*seq+j], b.mask[r*seq+j], b.types[r*seq+j] = int64(id), 1, int64(e.TypeIDs[j])
		}
	}
	return b
}

// run runs the model at path on b and returns the named float32 outputs,
// whose shapes are given.
func run(t *testing.T, path string, b poolBatch, outputs []string, shapes []ort.Shape) [][]float32 {
	t.Helper()
	sess, err := ort.NewDynamicAdvancedSession(path,
		[]string{bertonnx.InputIDs, bertonnx.AttentionMask, bertonnx.TokenTypeIDs}, outputs, nil)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	defer sess.Destroy()
	shape := ort.NewShape(int64(b.rows), int64(b.seq))
	var ins, outs []ort.Value
	defer func() {
		for _, v := range append(ins, outs...) {
			v.Destroy()
		}
	}()
	for _, data := range [][]int64{b.ids, b.mask, b.types} {
		v, err := ort.NewTensor(shape, data)
		if err != nil {
			t.Fatal(err)
		}
		ins = append(ins, v)
	}
	var res [][]float32
	for _, s := range shapes {
		v, err := ort.NewEmptyTensor[float32](s)
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, v)
		res = append(res, v.GetData())
	}
	if err := sess.Run(ins, outs); err != nil {
		t.Fatalf("run %s: %v", path, err)
	}
	return res
}

func dot(a, b []float32) float64 {
	s := 0.0
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

func norm(a []float32) float64 { return math.Sqrt(dot(a, a)) }

func cosine(a, b []float32) float64 { return dot(a, b) / (norm(a) * norm(b)) }

// relDiff is ‖a·scale − b‖ / ‖b‖.
func relDiff(a []float32, scale float64, b []float32) float64 {
	d := 0.0
	for i := range a {
		x := float64(a[i])*scale - float64(b[i])
		d += x * x
	}
	return math.Sqrt(d) / norm(b)
}

// TestRealPooledGraphs runs the pooled variants of the real
// all-MiniLM-L6-v2 in ONNX Runtime and checks them against the
// token-output graph's last_hidden_state, pooled and normalized in Go.
func TestRealPooledGraphs(t *testing.T) {
	testassets.Runtime(t)
	m := testassets.Model(t, "all-minilm-l6-v2")
	f, ok := m.File(m.ONNX)
	if !ok || f.Derive == nil {
		t.Fatalf("manifest of %s has no derived onnx file", m.Name)
	}
	dir := manifest.Dir(testassets.CacheDir(), m)
	configPath, weights := filepath.Join(dir, f.Derive.Config), filepath.Join(dir, f.Derive.Weights)
	b := newPoolBatch(t, filepath.Join(dir, m.Tokenizer))
	const H = 384
	real := b.rows - 1 // the last row is padding only

	// The reference: the token-output graph (zero Options), pooled in Go in
	// float64.
	tokenGraph := filepath.Join(t.TempDir(), "model.onnx")
	if err := bertonnx.ExportFile(tokenGraph, configPath, weights); err != nil {
		t.Fatal(err)
	}
	hidden := run(t, tokenGraph, b, []string{bertonnx.Output},
		[]ort.Shape{ort.NewShape(int64(b.rows), int64(b.seq), H)})[0]
	means, cls := make([][]float32, b.rows), make([][]float32, b.rows)
	for r := range b.rows {
		sum, n := make([]float64, H), 0.0
		for j := range b.seq {
			if b.mask[r*b.seq+j] == 0 {
				continue
			}
			n++
			for k := range H {
				sum[k] += float64(hidden[(r*b.seq+j)*H+k])
			}
		}
		means[r], cls[r] = make([]float32, H), hidden[r*b.seq*H:r*b.seq*H+H]
		for k := range H {
			means[r][k] = float32(sum[k] / max(n, 1))
		}
	}
	t.Logf("%d texts padded to %d tokens", real, b.seq)

	tmp := t.TempDir()
	export := func(name string, opts bertonnx.Options) string {
		path := filepath.Join(tmp, name+".onnx")
		if err := bertonnx.ExportFileWith(path, configPath, weights, opts); err != nil {
			t.Fatalf("export %s: %v", name, err)
		}
		return path
	}
	emb := []string{bertonnx.SentenceEmbedding}
	embNorm := []string{bertonnx.SentenceEmbedding, bertonnx.SentenceNorm}
	embShape := []ort.Shape{ort.NewShape(int64(b.rows), H)}
	embNormShape := []ort.Shape{ort.NewShape(int64(b.rows), H), ort.NewShape(int64(b.rows), 1)}

	// checkNormalized compares a normalized output and its norms with the
	// raw vectors ref, row by row.
	checkNormalized := func(t *testing.T, e, n []float32, ref [][]float32) {
		t.Helper()
		minCos, maxRaw, maxNorm := 1.0, 0.0, 0.0
		for r := range real {
			v := e[r*H : (r+1)*H]
			minCos = min(minCos, cosine(v, ref[r]))
			maxRaw = max(maxRaw, relDiff(v, float64(n[r]), ref[r]))
			maxNorm = max(maxNorm, math.Abs(float64(n[r])-norm(ref[r]))/norm(ref[r]))
			if d := math.Abs(norm(v) - 1); d > 1e-5 {
				t.Errorf("row %d: |sentence_embedding| = %g; want 1", r, norm(v))
			}
		}
		t.Logf("min cosine %.10f; sentence_embedding·sentence_norm vs raw: max rel diff %.2g; sentence_norm max rel diff %.2g", minCos, maxRaw, maxNorm)
		if minCos < 0.99999 {
			t.Errorf("min cosine %.8f; want >= 0.99999", minCos)
		}
		if maxRaw > 1e-5 || maxNorm > 1e-5 {
			t.Errorf("raw vector max rel diff %.2g, norm %.2g; want <= 1e-5", maxRaw, maxNorm)
		}
	}
	// checkEmptyRow: a row without tokens pools to zeros, and its norm is 0.
	checkEmptyRow := func(t *testing.T, e []float32, n []float32) {
		t.Helper()
		for _, x := range e[real*H:] {
			if x != 0 {
				t.Errorf("padding-only row: sentence_embedding has %g; want all 0", x)
				break
			}
		}
		if n != nil && n[real] != 0 {
			t.Errorf("padding-only row: sentence_norm = %g; want 0", n[real])
		}
	}

	var fp32 []float32 // the fp32 mean+normalize output, for the fp16 comparison
	t.Run("fp32 mean normalize", func(t *testing.T) {
		out := run(t, export("fp32-mean-norm", bertonnx.Options{Pooling: bertonnx.PoolMean, Normalize: true}), b, embNorm, embNormShape)
		checkNormalized(t, out[0], out[1], means)
		checkEmptyRow(t, out[0], out[1])
		fp32 = out[0]
	})
	t.Run("fp32 mean raw", func(t *testing.T) {
		e := run(t, export("fp32-mean", bertonnx.Options{Pooling: bertonnx.PoolMean}), b, emb, embShape)[0]
		worst := 0.0
		for r := range real {
			worst = max(worst, relDiff(e[r*H:(r+1)*H], 1, means[r]))
		}
		t.Logf("raw mean: max rel diff %.2g", worst)
		if worst > 1e-5 {
			t.Errorf("raw mean max rel diff %.2g; want <= 1e-5", worst)
		}
		checkEmptyRow(t, e, nil)
	})
	t.Run("fp32 cls normalize", func(t *testing.T) {
		out := run(t, export("fp32-cls-norm", bertonnx.Options{Pooling: bertonnx.PoolCLS, Normalize: true}), b, embNorm, embNormShape)
		checkNormalized(t, out[0], out[1], cls[:real])
	})
	t.Run("fp16 mean normalize", func(t *testing.T) {
		if fp32 == nil {
			t.Fatal("needs the fp32 variant's vectors, and that subtest failed")
		}
		out := run(t, export("fp16-mean-norm", bertonnx.Options{Precision: bertonnx.FP16, Pooling: bertonnx.PoolMean, Normalize: true}), b, embNorm, embNormShape)
		minCos, sum, maxNorm := 1.0, 0.0, 0.0
		for r := range real {
			c := cosine(out[0][r*H:(r+1)*H], fp32[r*H:(r+1)*H])
			minCos, sum = min(minCos, c), sum+c
			maxNorm = max(maxNorm, math.Abs(float64(out[1][r])-norm(means[r]))/norm(means[r]))
		}
		t.Logf("fp16 vs fp32 (CPU): cosine mean %.10f min %.10f; sentence_norm max rel diff %.2g", sum/float64(real), minCos, maxNorm)
		if minCos < 0.999 {
			t.Errorf("min cosine %.6f; want >= 0.999", minCos)
		}
		checkEmptyRow(t, out[0], out[1])
	})
	t.Run("q8 mean normalize", func(t *testing.T) {
		if fp32 == nil {
			t.Fatal("needs the fp32 variant's vectors, and that subtest failed")
		}
		// Activations are quantized per token, so a batch's rows are
		// independent: the padding-only row still pools to zeros, and
		// every row matches the fp32 graph to int8 precision.
		out := run(t, export("q8-mean-norm", bertonnx.Options{Precision: bertonnx.Q8, Pooling: bertonnx.PoolMean, Normalize: true}), b, embNorm, embNormShape)
		minCos, sum := 1.0, 0.0
		for r := range real {
			c := cosine(out[0][r*H:(r+1)*H], fp32[r*H:(r+1)*H])
			minCos, sum = min(minCos, c), sum+c
		}
		t.Logf("q8 vs fp32: cosine mean %.6f min %.6f", sum/float64(real), minCos)
		if mean := sum / float64(real); mean < 0.99 || minCos < 0.97 {
			t.Errorf("cosine mean %.6f min %.6f; want >= 0.99 and >= 0.97", mean, minCos)
		}
		checkEmptyRow(t, out[0], out[1])
	})
	t.Run("fp16 last_hidden_state", func(t *testing.T) {
		// The output is float32: a float16 one would not fill this tensor.
		h := run(t, export("fp16", bertonnx.Options{Precision: bertonnx.FP16}), b, []string{bertonnx.Output},
			[]ort.Shape{ort.NewShape(int64(b.rows), int64(b.seq), H)})[0]
		minCos := 1.0
		for i := range b.rows * b.seq {
			if b.mask[i] == 1 {
				minCos = min(minCos, cosine(h[i*H:(i+1)*H], hidden[i*H:(i+1)*H]))
			}
		}
		t.Logf("fp16 vs fp32 last_hidden_state, every real token: min cosine %.6f", minCos)
		if minCos < 0.999 {
			t.Errorf("min token cosine %.6f; want >= 0.999", minCos)
		}
	})
}

// TestRealExportsMatchManifests exports every built-in model whose ONNX is
// derived from the all-MiniLM-L6-v2 checkpoint, with its manifest's graph
// options, and checks the pinned sha256 and size. The checkpoint comes from
// the base model's cache directory (its files are the same, by sha256), so
// the variants need not be pulled.
func TestRealExportsMatchManifests(t *testing.T) {
	base := testassets.Model(t, "all-minilm-l6-v2")
	dir := manifest.Dir(testassets.CacheDir(), base)
	cat := testassets.Catalog(t)
	for _, name := range []string{"all-minilm-l6-v2", "all-minilm-l6-v2-fp16", "all-minilm-l6-v2-q8"} {
		t.Run(name, func(t *testing.T) {
			m, err := cat.Get(name)
			if err != nil {
				t.Fatal(err)
			}
			f, ok := m.File(m.ONNX)
			if !ok || f.Derive == nil {
				t.Fatalf("manifest of %s has no derived onnx file", m.Name)
			}
			for _, dep := range []string{f.Derive.Config, f.Derive.Weights} {
				mine, _ := m.File(dep)
				theirs, ok := base.File(dep)
				if !ok || mine.SHA256 != theirs.SHA256 {
					t.Fatalf("%s of %s is not the one of %s", dep, m.Name, base.Name)
				}
			}
			cfg, err := bertonnx.ReadConfig(filepath.Join(dir, f.Derive.Config))
			if err != nil {
				t.Fatal(err)
			}
			opts := pull.ExportOptions(f.Derive)
			h := &sizedHash{Hash: sha256.New()}
			if err := bertonnx.ExportWith(h, cfg, filepath.Join(dir, f.Derive.Weights), opts); err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(h.Sum(nil)); got != f.SHA256 || h.n != f.Size {
				t.Errorf("export (%+v): sha256 %s, %d bytes; manifest pins %s, %d bytes", opts, got, h.n, f.SHA256, f.Size)
			}
		})
	}
}

// sizedHash is a hash that counts the bytes written to it.
type sizedHash struct {
	hash.Hash
	n int64
}

func (h *sizedHash) Write(p []byte) (int, error) {
	h.n += int64(len(p))
	return h.Hash.Write(p)
}
