//go:build cuda

package cuda

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/accel"
	"github.com/embedd/embedd/internal/accel/packed"
	"github.com/embedd/embedd/internal/quant"
	"github.com/embedd/embedd/internal/testassets"
	"github.com/embedd/embedd/internal/tokenize"
)

// The whole-model tests run the default model, all-minilm-l6-v2, from the
// cache ($EMBEDD_CACHE_DIR/models/all-minilm-l6-v2: config.json,
// model.safetensors, tokenizer.json; `make setup` pulls it). A missing file
// fails them: they exist to be run on a GPU machine that has the model.
const (
	realModelName = "all-minilm-l6-v2"
	realMaxLen    = 256 // the model's max_seq_len, as the parity corpus was made
	// parityDir holds the engine's parity corpus and its reference vectors
	// (Python tokenizers + ONNX Runtime on the exported graph).
	parityDir = "../../engine/testdata/parity"
)

// Least cosine with the CPU twin, and largest relative norm difference,
// per text.
const (
	minCosFP32  = 0.99999
	minCosFP16  = 0.999
	normTolFP32 = 1e-4
	normTolFP16 = 1e-2
	// minCosRef is the least cosine with the reference vectors of the
	// parity corpus (ONNX Runtime, float32) for either precision.
	minCosRefFP32 = 0.9999
)

type realModel struct {
	dir string
	w   *packed.Weights
	tok *tokenize.Tokenizer
}

var (
	realOnce sync.Once
	realM    *realModel
	realErr  error
)

func loadReal(t testing.TB) *realModel {
	t.Helper()
	realOnce.Do(func() {
		dir := filepath.Join(testassets.CacheDir(), "models", realModelName)
		for _, f := range []string{"config.json", "model.safetensors", "tokenizer.json"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				realErr = fmt.Errorf("model %s not in the cache (set EMBEDD_CACHE_DIR or run `make setup`): %w", realModelName, err)
				return
			}
		}
		w, err := packed.LoadWeights(filepath.Join(dir, "config.json"), filepath.Join(dir, "model.safetensors"))
		if err != nil {
			realErr = err
			return
		}
		tok, err := tokenize.Load(filepath.Join(dir, "tokenizer.json"))
		if err != nil {
			realErr = err
			return
		}
		realM = &realModel{dir: dir, w: w, tok: tok}
	})
	if realErr != nil {
		t.Fatal(realErr)
	}
	return realM
}

// corpus returns the parity corpus (594 texts: empty, unusual Unicode,
// long ones truncated to 256 tokens), tokenized.
func (m *realModel) corpus(t testing.TB) [][]int32 {
	t.Helper()
	var rows [][]int32
	for i, text := range testassets.ReadTexts(t, filepath.Join(parityDir, "texts.jsonl")) {
		enc, err := m.tok.Encode(text, realMaxLen, true)
		if err != nil {
			t.Fatalf("text %d: %v", i, err)
		}
		rows = append(rows, enc.IDs)
	}
	if len(rows) < 500 {
		t.Fatalf("parity corpus has %d texts; want >= 500", len(rows))
	}
	return rows
}

// golden returns the corpus's reference vectors, n of dims.
func golden(t testing.TB, n, dims int) []float32 {
	t.Helper()
	v := make([]float32, 0, n*dims)
	for _, row := range testassets.ReadVectors(t, filepath.Join(parityDir, realModelName+".f32"), n, dims) {
		v = append(v, row...)
	}
	return v
}

// batches groups n texts, in order, into batches of 1 to 24 texts (mixed
// lengths, padded).
func batches(n int) [][2]int {
	var out [][2]int
	sizes := []int{16, 7, 24, 1, 11, 4}
	for i, s := 0, 0; s < n; i++ {
		e := min(s+sizes[i%len(sizes)], n)
		out = append(out, [2]int{s, e})
		s = e
	}
	return out
}

// encodeAll runs enc over rows in the batches of batches(len(rows)).
func encodeAll(t testing.TB, enc accel.Encoder, rows [][]int32) (vecs, norms []float32) {
	t.Helper()
	h := enc.Hidden()
	vecs, norms = make([]float32, len(rows)*h), make([]float32, len(rows))
	for _, be := range batches(len(rows)) {
		s, e := be[0], be[1]
		if err := enc.Encode(context.Background(), padded(rows[s:e]), vecs[s*h:e*h], norms[s:e]); err != nil {
			t.Fatalf("%s: texts %d..%d: %v", enc.Device(), s, e-1, err)
		}
	}
	return vecs, norms
}

var (
	twinOnce            sync.Once
	twinVecs, twinNorms []float32
)

// twinCorpus is the CPU twin's output for the corpus (computed once).
func twinCorpus(t testing.TB, m *realModel, rows [][]int32) ([]float32, []float32) {
	twinOnce.Do(func() {
		twinVecs, twinNorms = encodeAll(t, packed.NewEncoder(m.w, packed.ModeMean), rows)
	})
	return twinVecs, twinNorms
}

// agree fails the test unless every text's vector has a cosine of at least
// minCos with want's and, when wantNorms is not nil, a norm within normTol
// (relative); it names the worst text.
func agree(t *testing.T, what string, rows [][]int32, h int, got, want, gotNorms, wantNorms []float32, minCos, normTol float64) {
	t.Helper()
	worst, worstCos := -1, 2.0
	for i := range rows {
		c := cosine(got[i*h:(i+1)*h], want[i*h:(i+1)*h])
		if !(c >= worstCos) {
			worst, worstCos = i, c
		}
		if wantNorms != nil {
			g, w := float64(gotNorms[i]), float64(wantNorms[i])
			if !(math.Abs(g-w) <= normTol*math.Abs(w)+1e-6) {
				t.Errorf("%s: text %d (%d tokens): norm %v; want %v (relative tolerance %g)", what, i, len(rows[i]), g, w, normTol)
			}
		}
	}
	if worstCos < minCos || math.IsNaN(worstCos) {
		t.Errorf("%s: text %d (%d tokens): cosine %.7f; want >= %g", what, worst, len(rows[worst]), worstCos, minCos)
	} else {
		t.Logf("%s: least cosine %.7f (text %d, %d tokens)", what, worstCos, worst, len(rows[worst]))
	}
}

// TestModelParity runs the parity corpus on the GPU in fp32 and fp16 (New
// with the self-check on) and compares every text with the CPU twin and
// with the reference vectors.
func TestModelParity(t *testing.T) {
	m := loadReal(t)
	rows := m.corpus(t)
	h := m.w.Hidden()
	want, wantNorms := twinCorpus(t, m, rows)
	ref := golden(t, len(rows), h)
	for _, fp16 := range []bool{false, true} {
		t.Run(precName(fp16), func(t *testing.T) {
			e, err := New(m.w, Options{FP16: fp16, SelfCheck: true})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer e.Close()
			t.Logf("cuBLAS: %s", e.CUBLAS())
			got, gotNorms := encodeAll(t, e, rows)
			minCos, normTol := minCosFP32, normTolFP32
			if fp16 {
				minCos, normTol = minCosFP16, normTolFP16
			}
			agree(t, "GPU vs CPU twin ("+precName(fp16)+")", rows, h, got, want, gotNorms, wantNorms, minCos, normTol)
			refCos := minCosRefFP32
			if fp16 {
				refCos = minCosFP16
			}
			agree(t, "GPU ("+precName(fp16)+") vs reference vectors", rows, h, got, ref, nil, nil, refCos, 0)
		})
	}
}

// TestModelEncodeQuantized: truncated outputs agree with the twin's, and
// the GPU's int8 codes and scales are exactly quant.QuantizeInt8 of the
// GPU's float output.
func TestModelEncodeQuantized(t *testing.T) {
	m := loadReal(t)
	all := m.corpus(t)
	h := m.w.Hidden()
	fullVecs, fullNorms := twinCorpus(t, m, all)
	const n = 120
	rows := all[:n]
	b := padded(rows)
	// The twin's truncated output, from its full one: the pooled vector is
	// vec·norm; truncated to dims and normalized again (as Pool does).
	twinTrunc := func(dims int) (out, norms []float32) {
		out, norms = make([]float32, n*dims), make([]float32, n)
		for r := range n {
			var ss float64
			for k := range dims {
				p := float64(fullVecs[r*h+k]) * float64(fullNorms[r])
				ss += p * p
			}
			nr := math.Sqrt(ss)
			norms[r] = float32(nr)
			for k := range dims {
				p := float64(fullVecs[r*h+k]) * float64(fullNorms[r])
				if nr >= 1e-12 {
					p /= nr
				}
				out[r*dims+k] = float32(p)
			}
		}
		return out, norms
	}
	for _, fp16 := range []bool{false, true} {
		// One worker: Encode and EncodeQuantized then run on the same
		// cuBLAS handle, and their floats must be bit-identical.
		e, err := New(m.w, Options{FP16: fp16, Workers: 1})
		if err != nil {
			t.Fatalf("New(%s): %v", precName(fp16), err)
		}
		for _, dims := range []int{384, 128, 64, 1} {
			t.Run(fmt.Sprintf("%s/dims=%d", precName(fp16), dims), func(t *testing.T) {
				out, norms, codes, scales := make([]float32, n*dims), make([]float32, n), make([]int8, n*dims), make([]float32, n)
				if err := e.EncodeQuantized(context.Background(), b, dims, out, norms, codes, scales); err != nil {
					t.Fatal(err)
				}
				want, wantNorms := twinTrunc(dims)
				minCos, normTol := minCosFP32, normTolFP32
				if fp16 {
					minCos, normTol = minCosFP16, normTolFP16
				}
				if dims > 1 { // one dim: the cosine is ±1 and says nothing
					agree(t, fmt.Sprintf("EncodeQuantized %s dims %d vs twin", precName(fp16), dims), rows, dims, out, want, norms, wantNorms, minCos, normTol)
				}
				wc := make([]int8, dims)
				for r := range n {
					scale, err := quant.QuantizeInt8Into(wc, out[r*dims:(r+1)*dims])
					if err != nil {
						t.Fatalf("text %d: %v", r, err)
					}
					if math.Float32bits(scale) != math.Float32bits(scales[r]) {
						t.Fatalf("text %d: GPU scale %v; quant.QuantizeInt8Into of the GPU output gives %v", r, scales[r], scale)
					}
					for k := range dims {
						if wc[k] != codes[r*dims+k] {
							t.Fatalf("text %d: GPU code[%d] = %d (value %v); quant.QuantizeInt8Into gives %d", r, k, codes[r*dims+k], out[r*dims+k], wc[k])
						}
					}
				}
				// Encode's floats are EncodeQuantized's at full width.
				if dims == e.Hidden() {
					vecs, vn := make([]float32, n*dims), make([]float32, n)
					if err := e.Encode(context.Background(), b, vecs, vn); err != nil {
						t.Fatal(err)
					}
					for i := range vecs {
						if math.Float32bits(vecs[i]) != math.Float32bits(out[i]) {
							t.Fatalf("Encode and EncodeQuantized(dims %d) differ at index %d: %v vs %v", dims, i, vecs[i], out[i])
						}
					}
				}
			})
		}
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
}

// TestModelChunks: a batch larger than MaxTokens (and one of more texts
// than a grid's z dimension holds) runs in chunks and gives what whole
// runs give.
func TestModelChunks(t *testing.T) {
	m := loadReal(t)
	rows := m.corpus(t)
	h := m.w.Hidden()
	want, wantNorms := twinCorpus(t, m, rows)
	t.Run("tokens", func(t *testing.T) {
		e, err := New(m.w, Options{MaxTokens: 512, Workers: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		got, gotNorms := make([]float32, len(rows)*h), make([]float32, len(rows))
		if err := e.Encode(context.Background(), padded(rows), got, gotNorms); err != nil {
			t.Fatal(err)
		}
		agree(t, "one batch in chunks of 512 tokens vs twin", rows, h, got, want, gotNorms, wantNorms, minCosFP32, normTolFP32)
	})
	t.Run("texts", func(t *testing.T) {
		// 66535 texts of 2 to 6 tokens, about 244k tokens: MaxTokens holds
		// them all, so only the 65535 texts of a grid's z dimension split
		// the batch.
		const n = maxGridYZ + 1000
		short := [][]int32{{101, 102}, {101, 1037, 102}, {101, 7592, 1010, 2088, 999, 102}}
		e, err := New(m.w, Options{MaxTokens: 4 * n, Workers: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		many := make([][]int32, n)
		for i := range many {
			many[i] = short[i%3]
		}
		one, oneNorms := make([]float32, 3*h), make([]float32, 3)
		if err := e.Encode(context.Background(), padded(short), one, oneNorms); err != nil {
			t.Fatal(err)
		}
		got, gotNorms := make([]float32, n*h), make([]float32, n)
		if err := e.Encode(context.Background(), padded(many), got, gotNorms); err != nil {
			t.Fatal(err)
		}
		for _, i := range []int{0, 1, 2, maxGridYZ - 1, maxGridYZ, maxGridYZ + 1, n - 1} {
			c := cosine(got[i*h:(i+1)*h], one[(i%3)*h:(i%3+1)*h])
			if !(c >= 0.99999) {
				t.Errorf("text %d of %d (chunk %d): cosine %.7f with the same text run alone", i, n, i/maxGridYZ, c)
			}
		}
	})
}

// TestModelConcurrent: Encode calls from many goroutines (more than the
// workers) give the serial results.
func TestModelConcurrent(t *testing.T) {
	m := loadReal(t)
	rows := m.corpus(t)
	h := m.w.Hidden()
	e, err := New(m.w, Options{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	want, _ := encodeAll(t, e, rows)
	bs := batches(len(rows))
	got := make([]float32, len(rows)*h)
	norms := make([]float32, len(rows))
	var wg sync.WaitGroup
	errs := make(chan error, len(bs))
	for _, be := range bs {
		wg.Go(func() {
			s, end := be[0], be[1]
			if err := e.Encode(context.Background(), padded(rows[s:end]), got[s*h:end*h], norms[s:end]); err != nil {
				errs <- fmt.Errorf("texts %d..%d: %w", s, end-1, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	identical := true
	for i := range got {
		if got[i] != want[i] {
			identical = false
			break
		}
	}
	if !identical {
		agree(t, "concurrent vs serial", rows, h, got, want, nil, nil, 0.999999, 0)
		t.Logf("concurrent results are not bit-identical to the serial ones (within tolerance)")
	}
}

// flipCtx is a context whose Err turns to Canceled after `after` calls, to
// cancel a run between two layers.
type flipCtx struct {
	context.Context
	calls, after atomic.Int32
}

func (c *flipCtx) Err() error {
	if c.calls.Add(1) > c.after.Load() {
		return context.Canceled
	}
	return nil
}

// TestModelCancel: a cancelled context ends Encode with its error, before
// or between layers, and the worker still gives right results afterwards.
func TestModelCancel(t *testing.T) {
	m := loadReal(t)
	rows := m.corpus(t)[:40]
	h := m.w.Hidden()
	e, err := New(m.w, Options{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	b := padded(rows)
	want, wantNorms := make([]float32, len(rows)*h), make([]float32, len(rows))
	if err := e.Encode(context.Background(), b, want, wantNorms); err != nil {
		t.Fatal(err)
	}
	vecs, norms := make([]float32, len(rows)*h), make([]float32, len(rows))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.Encode(ctx, b, vecs, norms); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled before the call: got %v; want context.Canceled", err)
	}
	for after := int32(1); after <= 7; after += 2 {
		fc := &flipCtx{Context: context.Background()}
		fc.after.Store(after)
		if err := e.Encode(fc, b, vecs, norms); !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled after %d checks: got %v; want context.Canceled", after, err)
		}
	}
	if err := e.Encode(context.Background(), b, vecs, norms); err != nil {
		t.Fatalf("after cancellations: %v", err)
	}
	agree(t, "after cancellations vs before", rows, h, vecs, want, norms, wantNorms, 0.999999, 1e-6)
}

// TestErrors: malformed batches and outputs, a closed encoder, a device
// that does not exist, a self-check that must fail.
func TestErrors(t *testing.T) {
	m := loadReal(t)
	ctx := context.Background()
	if _, err := New(m.w, Options{Device: 99}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("device 99: got %v; want ErrUnavailable", err)
	}
	e, err := New(m.w, Options{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	h := e.Hidden()
	good := padded([][]int32{{101, 7592, 102}, {101, 102}})
	vecs, norms := make([]float32, 2*h), make([]float32, 2)

	badID := padded([][]int32{{101, int32(m.w.Config.VocabSize), 102}})
	if err := e.Encode(ctx, badID, vecs, norms); !errors.Is(err, accel.ErrBadBatch) {
		t.Errorf("token id = vocab size: got %v; want accel.ErrBadBatch", err)
	}
	long := make([]int32, m.w.Config.MaxPositionEmbeddings+1)
	if err := e.Encode(ctx, padded([][]int32{long}), vecs, norms); !errors.Is(err, accel.ErrBadBatch) {
		t.Errorf("text longer than the positions: got %v; want accel.ErrBadBatch", err)
	}
	if err := e.Encode(ctx, good, vecs[:h], norms); !errors.Is(err, packed.ErrBadOutput) {
		t.Errorf("short vecs: got %v; want packed.ErrBadOutput", err)
	}
	if err := e.EncodeQuantized(ctx, good, h+1, vecs, norms, nil, nil); !errors.Is(err, packed.ErrBadOutput) {
		t.Errorf("dims > hidden: got %v; want packed.ErrBadOutput", err)
	}
	if err := e.EncodeQuantized(ctx, good, 8, vecs, norms, make([]int8, 8), make([]float32, 2)); !errors.Is(err, packed.ErrBadOutput) {
		t.Errorf("short codes: got %v; want packed.ErrBadOutput", err)
	}
	if err := e.Encode(ctx, good, vecs, norms); err != nil {
		t.Fatalf("good batch after bad ones: %v", err)
	}

	// The self-check against a twin of other weights fails.
	other := *m.w
	other.Layers = append([]packed.Layer(nil), m.w.Layers...)
	ff2 := append([]float32(nil), other.Layers[0].FF2...)
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range ff2 {
		ff2[i] += float32(rng.NormFloat64()) * 0.05
	}
	other.Layers[0].FF2 = ff2
	if err := e.selfCheck(&other); !errors.Is(err, ErrSelfCheck) {
		t.Errorf("self-check against other weights: got %v; want ErrSelfCheck", err)
	}
	if err := e.selfCheck(m.w); err != nil {
		t.Errorf("self-check: %v", err)
	}

	if err := e.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := e.Encode(ctx, good, vecs, norms); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: got %v; want ErrClosed", err)
	}
}

// TestOutOfMemory: workers the device cannot hold fail New with an error
// matching accel.ErrOutOfMemory, and New gives back what it took.
func TestOutOfMemory(t *testing.T) {
	m := loadReal(t)
	free0, total, err := MemInfo(0)
	if err != nil {
		t.Fatal(err)
	}
	// About 10 GB of activations per worker for 2^20 tokens of MiniLM.
	workers := int(total/(9<<30)) + 4
	_, err = New(m.w, Options{Workers: workers, MaxTokens: 1 << 20})
	if !errors.Is(err, accel.ErrOutOfMemory) {
		t.Fatalf("%d workers of 2^20 tokens on %d GB: got %v; want accel.ErrOutOfMemory", workers, total>>30, err)
	}
	t.Logf("%d workers: %v", workers, err)
	free1, _, err := MemInfo(0)
	if err != nil {
		t.Fatal(err)
	}
	if free1 < free0-(512<<20) {
		t.Errorf("free memory %d MB before the failed New, %d MB after: it leaked", free0>>20, free1>>20)
	}
}

func TestDevicesAndMemInfo(t *testing.T) {
	gpus, err := Devices()
	if err != nil {
		t.Fatal(err)
	}
	if len(gpus) == 0 || gpus[0].Name == "" || gpus[0].MemoryBytes <= 0 {
		t.Fatalf("Devices() = %+v", gpus)
	}
	free, total, err := MemInfo(0)
	if err != nil {
		t.Fatal(err)
	}
	if total > gpus[0].MemoryBytes || total < gpus[0].MemoryBytes/10*9 || free <= 0 || free > total {
		t.Errorf("MemInfo(0) = %d free, %d total; device 0 has %d bytes", free, total, gpus[0].MemoryBytes)
	}
	if _, _, err := MemInfo(len(gpus)); err == nil {
		t.Errorf("MemInfo(%d) of %d devices: no error", len(gpus), len(gpus))
	}
	t.Logf("%+v; %d MB free", gpus, free>>20)
}

func TestNewFromSpec(t *testing.T) {
	m := loadReal(t)
	rows := m.corpus(t)[:24]
	spec := accel.ModelSpec{
		ConfigPath:  filepath.Join(m.dir, "config.json"),
		WeightsPath: filepath.Join(m.dir, "model.safetensors"),
		Precision:   accel.PrecisionFP16,
		Pooling:     accel.PoolMean,
		Hidden:      384,
	}
	enc, err := NewFromSpec(spec, accel.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	if d := enc.Device(); d.Provider != accel.ProviderCUDANative || d.Ordinal != 0 || !d.GPU() {
		t.Errorf("Device() = %+v", d)
	}
	twin := packed.NewEncoder(m.w, packed.ModeMean)
	got, gotNorms := encodeAll(t, enc, rows)
	want, wantNorms := encodeAll(t, twin, rows)
	agree(t, "NewFromSpec fp16 vs twin", rows, enc.Hidden(), got, want, gotNorms, wantNorms, minCosFP16, normTolFP16)

	for _, bad := range []accel.ModelSpec{
		{ConfigPath: spec.ConfigPath}, // no weights
	} {
		if _, err := NewFromSpec(bad, accel.Options{}); !errors.Is(err, ErrUnavailable) {
			t.Errorf("spec %+v: got %v; want ErrUnavailable", bad, err)
		}
	}
	badPrec := spec
	badPrec.Precision = "int4"
	if _, err := NewFromSpec(badPrec, accel.Options{}); err == nil {
		t.Errorf("precision int4: no error")
	}
}

// BenchmarkEncode runs batches of 64 texts of 128 tokens.
func BenchmarkEncode(b *testing.B) {
	m := loadReal(b)
	const texts, tokens = 64, 128
	rng := rand.New(rand.NewPCG(9, 9))
	rows := make([][]int32, texts)
	for i := range rows {
		rows[i] = make([]int32, tokens)
		rows[i][0], rows[i][tokens-1] = 101, 102
		for j := 1; j < tokens-1; j++ {
			rows[i][j] = int32(1000 + rng.IntN(m.w.Config.VocabSize-1000))
		}
	}
	batch := padded(rows)
	for _, fp16 := range []bool{false, true} {
		b.Run(precName(fp16), func(b *testing.B) {
			e, err := New(m.w, Options{FP16: fp16, Workers: 1})
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			h := e.Hidden()
			vecs, norms := make([]float32, texts*h), make([]float32, texts)
			if err := e.Encode(context.Background(), batch, vecs, norms); err != nil { // warm up
				b.Fatal(err)
			}
			iters := 0
			start := time.Now()
			for b.Loop() {
				if err := e.Encode(context.Background(), batch, vecs, norms); err != nil {
					b.Fatal(err)
				}
				iters++
			}
			sec := time.Since(start).Seconds()
			b.ReportMetric(float64(iters*texts*tokens)/sec, "tokens/s")
			b.ReportMetric(float64(iters*texts)/sec, "texts/s")
		})
	}
}
