package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/engine"
	"github.com/embedd/embedd/internal/testassets"
	"github.com/embedd/embedd/internal/tokenize"
)

var parityModels = []string{"all-minilm-l6-v2", "all-minilm-l6-v2-int8"}

// Parity bounds, the README's "Embedding parity" numbers. The engine pads
// texts into length-sorted batches where the reference runs one text at a
// time, so ONNX Runtime accumulates in another order and components differ
// by float32 rounding: measured max |diff| 1.0e-7 (fp32) and 1.3e-7 (int8) on
// the 2-core development machine (AVX-512), bounded with room for other CPUs'
// kernels; any error in tokenizing, masking or pooling is orders of magnitude
// larger.
const (
	parityMinCosine = 0.99999
	parityMaxAbs    = 5e-7
)

func newEngine(t testing.TB, mutate func(*engine.Options)) *engine.Engine {
	t.Helper()
	testassets.Runtime(t)
	opts := engine.DefaultOptions()
	opts.CacheDir = testassets.CacheDir()
	opts.Accel.IntraOpThreads = 2
	if mutate != nil {
		mutate(&opts)
	}
	e := engine.New(testassets.Catalog(t), opts)
	t.Cleanup(func() { e.Close() })
	return e
}

func loadModel(t testing.TB, e *engine.Engine, name string) *engine.Model {
	t.Helper()
	testassets.Model(t, name)
	m, err := e.Load(context.Background(), name)
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	return m
}

func cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	return dot / math.Sqrt(na*nb)
}

// TestParity compares the engine with the reference pipeline (Python
// tokenizers + onnxruntime on the same ONNX file), golden files made by
// tools/parity/make_golden.py.
func TestParity(t *testing.T) {
	texts := testassets.ReadTexts(t, "testdata/parity/texts.jsonl")
	if len(texts) < 500 {
		t.Fatalf("parity corpus has %d texts; want >= 500", len(texts))
	}
	e := newEngine(t, nil)
	for _, name := range parityModels {
		t.Run(name, func(t *testing.T) {
			m := loadModel(t, e, name)
			var meta struct {
				N, Dims    int
				OnnxSHA256 string `json:"onnx_sha256"`
			}
			raw, err := os.ReadFile(filepath.Join("testdata/parity", name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(raw, &meta); err != nil {
				t.Fatal(err)
			}
			onnx, _ := m.Manifest().File(m.Manifest().ONNX)
			if meta.OnnxSHA256 != onnx.SHA256 {
				t.Fatalf("golden made from onnx %s; manifest pins %s (run make golden)", meta.OnnxSHA256, onnx.SHA256)
			}
			want := testassets.ReadVectors(t, filepath.Join("testdata/parity", name+".f32"), meta.N, meta.Dims)
			res, err := m.Embed(context.Background(), texts, engine.EmbedOptions{Truncate: true})
			if err != nil {
				t.Fatal(err)
			}
			minCos, worst := 1.0, -1
			maxAbs, worstAbs := 0.0, -1
			for i := range texts {
				c := cosine(res.Vectors[i], want[i])
				if c < minCos || math.IsNaN(c) && !math.IsNaN(minCos) {
					minCos, worst = c, i
				}
				for k := range want[i] {
					if d := math.Abs(float64(res.Vectors[i][k] - want[i][k])); d > maxAbs || math.IsNaN(d) && !math.IsNaN(maxAbs) {
						maxAbs, worstAbs = d, i
					}
				}
			}
			t.Logf("%s: %d texts, min cosine %.9f (text %d), max |diff| %.3g", name, len(texts), minCos, worst, maxAbs)
			// Negated so that NaN fails.
			if !(minCos >= parityMinCosine) {
				t.Errorf("min cosine %.9f at text %d (%.60q); want >= %v", minCos, worst, texts[worst], parityMinCosine)
			}
			if !(maxAbs <= parityMaxAbs) {
				t.Errorf("max |diff| %.3g at text %d (%.60q); want <= %.0e", maxAbs, worstAbs, texts[worstAbs], parityMaxAbs)
			}
		})
	}
}

// TestEmbedOptions runs the per-call options on the three kinds of graph:
// token states pooled in Go (int8), pooled and normalized in the graph
// (fp32, with sentence_norm giving back raw vectors) and the same in fp16
// (on the CPU through ONNX Runtime's inserted casts).
func TestEmbedOptions(t *testing.T) {
	e := newEngine(t, nil)
	for _, name := range []string{"all-minilm-l6-v2-int8", "all-minilm-l6-v2", "all-minilm-l6-v2-fp16"} {
		t.Run(name, func(t *testing.T) { testEmbedOptions(t, loadModel(t, e, name)) })
	}
}

func testEmbedOptions(t *testing.T, m *engine.Model) {
	ctx := context.Background()
	texts := []string{"a cat sits on the mat", "the stock market fell today", "a kitten rests on a rug"}
	full, err := m.Embed(ctx, texts, engine.EmbedOptions{Truncate: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range full.Vectors {
		if got := norm(v); math.Abs(got-1) > 1e-5 {
			t.Errorf("vector %d norm %v; want 1", i, got)
		}
	}
	if c02, c01 := cosine(full.Vectors[0], full.Vectors[2]), cosine(full.Vectors[0], full.Vectors[1]); c02 <= c01 {
		t.Errorf("cos(cat, kitten) = %.3f <= cos(cat, market) = %.3f", c02, c01)
	}
	if full.Tokens[0] != 8 { // [CLS] a cat sits on the mat [SEP]
		t.Errorf("tokens[0] = %d; want 8", full.Tokens[0])
	}

	short, err := m.Embed(ctx, texts, engine.EmbedOptions{Truncate: true, Dimensions: 64})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range short.Vectors {
		if len(v) != 64 {
			t.Fatalf("len = %d; want 64", len(v))
		}
		if got := norm(v); math.Abs(got-1) > 1e-5 {
			t.Errorf("truncated vector %d norm %v; want 1", i, got)
		}
		// Matryoshka: the prefix of the full vector, renormalized.
		if c := cosine(v, full.Vectors[i][:64]); c < 0.999999 {
			t.Errorf("truncated vector %d cos to prefix %.7f; want 1", i, c)
		}
	}

	off := false
	raw, err := m.Embed(ctx, texts[:1], engine.EmbedOptions{Truncate: true, Normalize: &off})
	if err != nil {
		t.Fatal(err)
	}
	if n := norm(raw.Vectors[0]); math.Abs(n-1) < 1e-3 {
		t.Errorf("unnormalized norm %v; want != 1", n)
	}
	if c := cosine(raw.Vectors[0], full.Vectors[0]); c < 0.99999 {
		t.Errorf("unnormalized direction differs: cos %v", c)
	}
}

// TestBatchInvariance checks that batching, padding and ordering do not
// change results: a text embedded alone equals the same text in a batch.
func TestBatchInvariance(t *testing.T) {
	e := newEngine(t, func(o *engine.Options) { o.Batch.MaxBatchSize = 4; o.Batch.MaxBatchTokens = 64 })
	m := loadModel(t, e, "all-minilm-l6-v2-int8")
	texts := []string{
		"short",
		strings.Repeat("a much longer text with many words ", 12),
		"medium length sentence about embeddings",
		"", " ", "x",
		strings.Repeat("word ", 300), // truncated
		"another one", "and the last",
	}
	batch, err := m.Embed(context.Background(), texts, engine.EmbedOptions{Truncate: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, text := range texts {
		alone, err := m.Embed(context.Background(), []string{text}, engine.EmbedOptions{Truncate: true})
		if err != nil {
			t.Fatal(err)
		}
		if c := cosine(alone.Vectors[0], batch.Vectors[i]); c < 0.99999 {
			t.Errorf("text %d: cos(alone, batched) = %.7f; want >= 0.99999", i, c)
		}
		if alone.Tokens[0] != batch.Tokens[i] {
			t.Errorf("text %d: tokens alone %d, batched %d", i, alone.Tokens[0], batch.Tokens[i])
		}
	}
	if batch.Tokens[6] != 256 {
		t.Errorf("truncated text has %d tokens; want 256", batch.Tokens[6])
	}
}

func TestEmbedErrors(t *testing.T) {
	e := newEngine(t, func(o *engine.Options) { o.MaxTexts = 3; o.MaxTextBytes = 100 })
	m := loadModel(t, e, "all-minilm-l6-v2-int8")
	ctx := context.Background()
	long := strings.Repeat("word ", 300)
	tests := []struct {
		name  string
		texts []string
		opts  engine.EmbedOptions
		want  []string // substrings of the error
		items []int    // bad indexes reported
	}{
		{"empty list", nil, engine.EmbedOptions{}, []string{"no texts"}, nil},
		{"too many", []string{"a", "b", "c", "d"}, engine.EmbedOptions{}, []string{"4 texts", "limit 3"}, nil},
		{"invalid utf8", []string{"ok", "bad \xff here"}, engine.EmbedOptions{Truncate: true}, []string{"texts[1]", "UTF-8", "byte offset 4"}, []int{1}},
		{"too many bytes", []string{"ok", "fine", strings.Repeat("y ", 60)}, engine.EmbedOptions{Truncate: true}, []string{"texts[2]", "120 bytes", "limit 100"}, []int{2}},
		{"dims too large", []string{"a"}, engine.EmbedOptions{Dimensions: 385}, []string{"385", "[1, 384]"}, nil},
		{"dims negative", []string{"a"}, engine.EmbedOptions{Dimensions: -1}, []string{"-1"}, nil},
		{"two bad", []string{"\xff", "ok", "\xfe"}, engine.EmbedOptions{}, []string{"2 invalid", "texts[0]", "texts[2]"}, []int{0, 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.Embed(ctx, tc.texts, tc.opts)
			if err == nil {
				t.Fatal("got nil error")
			}
			if !errors.Is(err, engine.ErrInvalidInput) {
				t.Errorf("errors.Is(%v, ErrInvalidInput) = false", err)
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			var ie *engine.InputError
			if tc.items != nil {
				if !errors.As(err, &ie) {
					t.Fatalf("error %v is not an *InputError", err)
				}
				var got []int
				for _, it := range ie.Items {
					got = append(got, it.Index)
				}
				if len(got) != len(tc.items) {
					t.Fatalf("bad items %v; want %v", got, tc.items)
				}
			}
		})
	}
	// A text over the token limit without truncation names count and limit.
	e2 := newEngine(t, nil)
	m2 := loadModel(t, e2, "all-minilm-l6-v2-int8")
	if _, err := m2.Embed(ctx, []string{strings.Repeat("tok ", 50)}, engine.EmbedOptions{}); err != nil {
		t.Fatalf("52 tokens should fit: %v", err)
	}
	_, err := m2.Embed(ctx, []string{"ok", long}, engine.EmbedOptions{})
	if !errors.Is(err, tokenize.ErrTooLong) || !strings.Contains(err.Error(), "texts[1]") || !strings.Contains(err.Error(), "302") || !strings.Contains(err.Error(), "256") {
		t.Errorf("got %v; want ErrTooLong naming texts[1], 302 tokens and limit 256", err)
	}

	if _, err := e.Embed(ctx, "no-such-model", []string{"a"}, engine.EmbedOptions{}); !errors.Is(err, engine.ErrUnknownModel) || !strings.Contains(err.Error(), "no-such-model") {
		t.Errorf("got %v; want ErrUnknownModel naming the model", err)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := m.Embed(cctx, []string{"a"}, engine.EmbedOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v; want context.Canceled", err)
	}
}

func norm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

// BenchmarkEmbedMemory runs 10,000 batches and reports the heap and RSS
// growth between the first and the last thousand: flat memory means no leak
// of Go buffers or native ONNX Runtime values.
func BenchmarkEmbedMemory(b *testing.B) {
	e := newEngine(b, nil)
	m := loadModel(b, e, "all-minilm-l6-v2-int8")
	texts := []string{"the quick brown fox", "jumps over the lazy dog", "embeddings at scale", "a fourth text in the batch"}
	ctx := context.Background()
	const batches = 10000
	var first, last runtime.MemStats
	var rssFirst, rssLast int64
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		for i := 0; i < batches; i++ {
			if _, err := m.Embed(ctx, texts, engine.EmbedOptions{Truncate: true}); err != nil {
				b.Fatal(err)
			}
			switch i {
			case 999:
				runtime.GC()
				runtime.ReadMemStats(&first)
				rssFirst = rss()
			case batches - 1:
				runtime.GC()
				runtime.ReadMemStats(&last)
				rssLast = rss()
			}
		}
	}
	b.ReportMetric(float64(int64(last.HeapAlloc)-int64(first.HeapAlloc))/1024, "heap-growth-KiB")
	b.ReportMetric(float64(rssLast-rssFirst)/1024, "rss-growth-KiB")
	b.ReportMetric(float64(rssLast)/(1<<20), "rss-MiB")
	b.ReportMetric(float64(b.N*batches)/b.Elapsed().Seconds(), "batches/s")
}

// rss reads the resident set size of this process from /proc (Linux), in bytes.
func rss() int64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, resident int64
	if _, err := fmt.Sscan(string(data), &size, &resident); err != nil {
		return 0
	}
	return resident * int64(os.Getpagesize())
}

// TestConcurrentCallers checks that texts of many callers batched together
// come back to the right caller with the right vector.
func TestConcurrentCallers(t *testing.T) {
	e := newEngine(t, func(o *engine.Options) { o.Batch.MaxQueueDelay = 5 * time.Millisecond })
	m := loadModel(t, e, "all-minilm-l6-v2-int8")
	ctx := context.Background()
	texts := make([]string, 24)
	for i := range texts {
		texts[i] = fmt.Sprintf("caller %d writes about topic %d %s", i, i*7, strings.Repeat("and more ", i%5))
	}
	want, err := m.Embed(ctx, texts, engine.EmbedOptions{Truncate: true})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(texts))
	for i := range texts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := m.Embed(ctx, []string{texts[i]}, engine.EmbedOptions{Truncate: true})
			if err != nil {
				errs <- err
				return
			}
			if c := cosine(got.Vectors[0], want.Vectors[i]); c < 0.99999 {
				errs <- fmt.Errorf("caller %d: cos %.7f to its own text; want >= 0.99999", i, c)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestShutdownDrains checks that texts accepted before Shutdown are computed
// and later calls fail.
func TestShutdownDrains(t *testing.T) {
	testassets.Runtime(t)
	opts := engine.DefaultOptions()
	opts.CacheDir = testassets.CacheDir()
	opts.Batch.MaxQueueDelay = 20 * time.Millisecond
	e := engine.New(testassets.Catalog(t), opts)
	m := loadModel(t, e, "all-minilm-l6-v2-int8")
	ctx := context.Background()
	var wg sync.WaitGroup
	results := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := m.Embed(ctx, []string{fmt.Sprintf("text number %d", i)}, engine.EmbedOptions{})
			results <- err
		}()
	}
	// Wait until all eight are queued, then shut down.
	deadline := time.Now().Add(5 * time.Second)
	for {
		on, _ := m.QueueLen()
		if on == 8 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := e.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	wg.Wait()
	close(results)
	for err := range results {
		if err != nil {
			t.Errorf("accepted text failed: %v", err)
		}
	}
	if _, err := e.Embed(ctx, "all-minilm-l6-v2-int8", []string{"late"}, engine.EmbedOptions{}); !errors.Is(err, engine.ErrClosed) {
		t.Errorf("after Shutdown: got %v; want ErrClosed", err)
	}
}

// BenchmarkEmbed measures in-process throughput of one model at several
// request sizes (texts per call), the figure to hold against the Python
// in-process baseline in bench/baseline.
func BenchmarkEmbed(b *testing.B) {
	e := newEngine(b, nil)
	m := loadModel(b, e, "all-minilm-l6-v2")
	ctx := context.Background()
	words := strings.Fields("the quick brown fox jumps over a lazy dog while embedd turns text into vectors fast")
	for _, n := range []int{1, 8, 32} {
		texts := make([]string, n)
		for i := range texts {
			texts[i] = strings.Join(words[i%5:i%5+5], " ")
		}
		b.Run(fmt.Sprintf("texts=%d", n), func(b *testing.B) {
			if _, err := m.Embed(ctx, texts, engine.EmbedOptions{}); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, err := m.Embed(ctx, texts, engine.EmbedOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "sentences/s")
		})
	}
}

// TestFP16MatchesFP32 compares the fp16 graph with the fp32 one on the
// parity corpus, both pooled and normalized in the graph. On the CPU ONNX
// Runtime computes the fp16 nodes through inserted casts, rounding to fp16
// between them, so this measures the precision the GPU model keeps; the
// device check (bench/gpu) measures it on CUDA.
func TestFP16MatchesFP32(t *testing.T) {
	texts := testassets.ReadTexts(t, "testdata/parity/texts.jsonl")[:200]
	e := newEngine(t, nil)
	ctx := context.Background()
	opts := engine.EmbedOptions{Truncate: true}
	want, err := loadModel(t, e, "all-minilm-l6-v2").Embed(ctx, texts, opts)
	if err != nil {
		t.Fatal(err)
	}
	got, err := loadModel(t, e, "all-minilm-l6-v2-fp16").Embed(ctx, texts, opts)
	if err != nil {
		t.Fatal(err)
	}
	minCos, sum := 1.0, 0.0
	for i := range texts {
		c := cosine(got.Vectors[i], want.Vectors[i])
		minCos, sum = math.Min(minCos, c), sum+c
	}
	t.Logf("fp16 vs fp32 over %d texts: min cosine %.7f, mean %.7f", len(texts), minCos, sum/float64(len(texts)))
	if minCos < 0.999 {
		t.Errorf("min cosine %.7f; want >= 0.999", minCos)
	}
}
