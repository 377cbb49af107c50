package packed_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/embedd/embedd/internal/accel"
	"github.com/embedd/embedd/internal/accel/packed"
	"github.com/embedd/embedd/internal/bertonnx"
)

func encodeAll(t *testing.T, enc *packed.Encoder, b accel.Batch) ([]float32, []float32) {
	t.Helper()
	vecs, norms := make([]float32, b.Size*enc.Hidden()), make([]float32, b.Size)
	if err := enc.Encode(context.Background(), b, vecs, norms); err != nil {
		t.Fatal(err)
	}
	return vecs, norms
}

func sameBits(a, b []float32) bool {
	return slices.EqualFunc(a, b, func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) })
}

// TestEncodeBatchInvariance encodes texts alone and together: packing
// leaves nothing of one text in another's result, to the bit.
func TestEncodeBatchInvariance(t *testing.T) {
	c := tinyConfig()
	enc := packed.NewEncoder(randWeights(c, 20), packed.ModeMean)
	texts := randTexts(c, 21, 5, 70, 1, 33, 32, 2)
	vecs, norms := encodeAll(t, enc, padded(texts))
	h := c.HiddenSize
	for i := range texts {
		alone, n := encodeAll(t, enc, padded(texts[i:i+1]))
		if !sameBits(alone, vecs[i*h:(i+1)*h]) || math.Float32bits(n[0]) != math.Float32bits(norms[i]) {
			t.Errorf("text %d (%d tokens): alone %v (norm %g); in the batch %v (norm %g)",
				i, len(texts[i].ids), alone, n[0], vecs[i*h:(i+1)*h], norms[i])
		}
	}
	// Encode is Forward on the packed batch, with nil types meaning 0.
	b := padded(texts)
	clear(b.TypeIDs)
	withZeros, _ := encodeAll(t, enc, b)
	b.TypeIDs = nil
	withNil, _ := encodeAll(t, enc, b)
	pb := mustPack(t, b, c.MaxPositionEmbeddings)
	fwd, fwdNorms := make([]float32, len(texts)*h), make([]float32, len(texts))
	if err := enc.Forward(pb, h, fwd, fwdNorms, nil, nil); err != nil {
		t.Fatal(err)
	}
	if !sameBits(withZeros, withNil) || !sameBits(withNil, fwd) {
		t.Error("Encode with nil types, with zero types and Forward differ")
	}
	if sameBits(withNil, vecs) {
		t.Error("token types make no difference")
	}
}

// TestEncodeConcurrent runs Encode from many goroutines at once (run it
// with -race) and checks each result against a sequential run.
func TestEncodeConcurrent(t *testing.T) {
	c := tinyConfig()
	enc := packed.NewEncoder(randWeights(c, 30), packed.ModeCLS)
	var batches []accel.Batch
	var want [][]float32
	for i := range 8 {
		b := padded(randTexts(c, uint64(40+i), 1+i*9, 3, 60-i*5))
		batches = append(batches, b)
		v, _ := encodeAll(t, enc, b)
		want = append(want, v)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(batches)*3)
	for i := range errs {
		wg.Go(func() {
			b := batches[i%len(batches)]
			vecs, norms := make([]float32, b.Size*c.HiddenSize), make([]float32, b.Size)
			if err := enc.Encode(context.Background(), b, vecs, norms); err != nil {
				errs[i] = err
			} else if !sameBits(vecs, want[i%len(batches)]) {
				errs[i] = fmt.Errorf("call %d: batch %d differs from its sequential run", i, i%len(batches))
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Error(err)
	}
}

// countdownCtx is a context whose Err reports Canceled from its nth call
// on, to cancel a run between layers.
type countdownCtx struct {
	context.Context
	n atomic.Int32
}

func (c *countdownCtx) Err() error {
	if c.n.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

func TestEncodeErrors(t *testing.T) {
	c := tinyConfig()
	w := randWeights(c, 50)
	enc := packed.NewEncoder(w, packed.ModeMean)
	b := padded(randTexts(c, 51, 4, 2))
	h := c.HiddenSize
	run := func(ctx context.Context, enc *packed.Encoder, b accel.Batch, dims, nOut, nNorms, nCodes, nScales int) error {
		var codes []int8
		if nCodes >= 0 {
			codes = make([]int8, nCodes)
		}
		return enc.EncodeQuantized(ctx, b, dims, make([]float32, nOut), make([]float32, nNorms), codes, make([]float32, nScales))
	}
	bg := context.Background()
	badID := padded(randTexts(c, 51, 4, 2))
	badID.IDs[b.SeqLen+1] = int64(c.VocabSize)
	badType := padded(randTexts(c, 51, 4, 2))
	badType.TypeIDs[2] = 2
	long := padded(randTexts(c, 52, c.MaxPositionEmbeddings+1))
	canceled, cancel := context.WithCancel(bg)
	cancel()
	badW := randWeights(c, 50)
	badW.Layers[1].FF2Bias = badW.Layers[1].FF2Bias[:3]
	badW.PosEmb = nil
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"ok", run(bg, enc, b, h, 2*h, 2, -1, 0), ""},
		{"ok truncated with codes", run(bg, enc, b, 3, 6, 2, 6, 2), ""},
		{"id", run(bg, enc, badID, h, 2*h, 2, -1, 0), "row 1 position 1: token id 50; want 0..49"},
		{"type", run(bg, enc, badType, h, 2*h, 2, -1, 0), "row 0 position 2: type id 2"},
		{"too long", run(bg, enc, long, h, h, 1, -1, 0), "row 0: 129 tokens; the model has 128 positions"},
		{"dims 0", run(bg, enc, b, 0, 2*h, 2, -1, 0), "dims 0; want 1..8"},
		{"dims too large", run(bg, enc, b, h+1, 2*h+2, 2, -1, 0), "dims 9; want 1..8"},
		{"short vectors", run(bg, enc, b, h, 2*h-1, 2, -1, 0), "need 16 values and 2 norms; have 15 and 2"},
		{"short norms", run(bg, enc, b, h, 2*h, 1, -1, 0), "have 16 and 1"},
		{"short codes", run(bg, enc, b, 4, 8, 2, 7, 2), "need 8 codes and 2 scales; have 7 and 2"},
		{"short scales", run(bg, enc, b, 4, 8, 2, 8, 1), "have 8 and 1"},
		{"canceled", run(canceled, enc, b, h, 2*h, 2, -1, 0), context.Canceled.Error()},
		{"canceled between layers", func() error {
			ctx := &countdownCtx{Context: bg}
			ctx.n.Store(2) // the check on entry and before layer 0 pass
			return run(ctx, enc, b, h, 2*h, 2, -1, 0)
		}(), context.Canceled.Error()},
		{"mode", run(bg, packed.NewEncoder(w, packed.Mode(5)), b, h, 2*h, 2, -1, 0), "unknown pooling mode: Mode(5)"},
		{"weights", run(bg, packed.NewEncoder(badW, packed.ModeMean), b, h, 2*h, 2, -1, 0), "Layers[1].FF2Bias has 3 values; want [8] = 8"},
		{"weights, all named", run(bg, packed.NewEncoder(badW, packed.ModeMean), b, h, 2*h, 2, -1, 0), "PosEmb has 0 values"},
	} {
		switch {
		case tc.want == "" && tc.err != nil:
			t.Errorf("%s: %v", tc.name, tc.err)
		case tc.want != "" && (tc.err == nil || !strings.Contains(tc.err.Error(), tc.want)):
			t.Errorf("%s: got %v; want an error saying %q", tc.name, tc.err, tc.want)
		}
	}
	if err := run(bg, enc, badID, h, 2*h, 2, -1, 0); !errors.Is(err, packed.ErrBadBatch) || !errors.Is(err, accel.ErrBadBatch) {
		t.Errorf("bad id: %v; want packed.ErrBadBatch and accel.ErrBadBatch", err)
	}
	if err := run(bg, enc, b, 0, 2*h, 2, -1, 0); !errors.Is(err, packed.ErrBadOutput) {
		t.Errorf("dims 0: %v; want ErrBadOutput", err)
	}
	if err := enc.Encode(bg, b, make([]float32, h), make([]float32, 2)); !errors.Is(err, packed.ErrBadOutput) || !errors.Is(err, accel.ErrBadBatch) {
		t.Errorf("Encode into a short buffer: %v; want ErrBadOutput and accel.ErrBadBatch", err)
	}
	if err := enc.Encode(bg, accel.Batch{}, nil, nil); !errors.Is(err, accel.ErrBadBatch) {
		t.Errorf("Encode of an empty batch: %v; want accel.ErrBadBatch", err)
	}
	if err := run(bg, packed.NewEncoder(badW, packed.ModeMean), b, h, 2*h, 2, -1, 0); !errors.Is(err, packed.ErrBadWeights) {
		t.Errorf("bad weights: %v; want ErrBadWeights", err)
	}

	if d := enc.Device(); d.Provider != accel.ProviderCPU || d.GPU() || d.Fallback != "" {
		t.Errorf("Device() = %+v; want the CPU", d)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := run(bg, enc, b, h, 2*h, 2, -1, 0); !errors.Is(err, packed.ErrClosed) {
		t.Errorf("Encode after Close: %v; want ErrClosed", err)
	}
	if err := enc.Forward(mustPack(t, b, 128), h, make([]float32, 2*h), make([]float32, 2), nil, nil); !errors.Is(err, packed.ErrClosed) {
		t.Errorf("Forward after Close: %v; want ErrClosed", err)
	}
}

// TestEncodeNonFinite: weights that overflow give an error naming the row,
// not NaN vectors.
func TestEncodeNonFinite(t *testing.T) {
	c := tinyConfig()
	w := randWeights(c, 60)
	for k := range c.HiddenSize {
		w.Layers[1].LN2Beta[k] = float32(math.Inf(1))
	}
	err := packed.NewEncoder(w, packed.ModeMean).Encode(context.Background(), padded(randTexts(c, 61, 3)), make([]float32, c.HiddenSize), make([]float32, 1))
	if !errors.Is(err, packed.ErrNonFinite) || !strings.Contains(err.Error(), "row 0") {
		t.Errorf("Encode with infinite weights = %v; want ErrNonFinite naming row 0", err)
	}
}

// safetensors writes tensors (F32, or BF16 when bf16 says so for the name)
// to a file in dir and returns its path.
func writeSafetensors(t *testing.T, dir string, tensors map[string][]float32, shapes map[string][]int64, bf16 func(string) bool) string {
	t.Helper()
	type entry struct {
		Dtype       string  `json:"dtype"`
		Shape       []int64 `json:"shape"`
		DataOffsets []int64 `json:"data_offsets"`
	}
	hdr := map[string]any{}
	var data []byte
	for _, name := range slices.Sorted(maps.Keys(tensors)) {
		begin := len(data)
		dtype := "F32"
		for _, v := range tensors[name] {
			if bf16(name) {
				dtype = "BF16"
				data = binary.LittleEndian.AppendUint16(data, uint16(math.Float32bits(v)>>16))
			} else {
				data = binary.LittleEndian.AppendUint32(data, math.Float32bits(v))
			}
		}
		hdr[name] = entry{dtype, shapes[name], []int64{int64(begin), int64(len(data))}}
	}
	h, err := json.Marshal(hdr)
	if err != nil {
		t.Fatal(err)
	}
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
	out = append(append(out, h...), data...)
	path := filepath.Join(dir, "model.safetensors")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkpoint returns w as named checkpoint tensors (with prefix), splitting
// the fused QKV back into query, key and value.
func checkpoint(w *packed.Weights, prefix string) (map[string][]float32, map[string][]int64) {
	c := w.Config
	h, in := int64(c.HiddenSize), int64(c.IntermediateSize)
	tensors, shapes := map[string][]float32{}, map[string][]int64{}
	add := func(name string, v []float32, shape ...int64) {
		tensors[prefix+name], shapes[prefix+name] = v, shape
	}
	add("embeddings.word_embeddings.weight", w.Word, int64(c.VocabSize), h)
	add("embeddings.position_embeddings.weight", w.PosEmb, int64(c.MaxPositionEmbeddings), h)
	add("embeddings.token_type_embeddings.weight", w.TypeEmb, int64(c.TypeVocabSize), h)
	add("embeddings.LayerNorm.weight", w.EmbLNGamma, h)
	add("embeddings.LayerNorm.bias", w.EmbLNBeta, h)
	for i, l := range w.Layers {
		p := fmt.Sprintf("encoder.layer.%d.", i)
		for j, n := range []string{"query", "key", "value"} {
			add(p+"attention.self."+n+".weight", l.QKV[int64(j)*h*h:int64(j+1)*h*h], h, h)
			add(p+"attention.self."+n+".bias", l.QKVBias[int64(j)*h:int64(j+1)*h], h)
		}
		add(p+"attention.output.dense.weight", l.Out, h, h)
		add(p+"attention.output.dense.bias", l.OutBias, h)
		add(p+"attention.output.LayerNorm.weight", l.LN1Gamma, h)
		add(p+"attention.output.LayerNorm.bias", l.LN1Beta, h)
		add(p+"intermediate.dense.weight", l.FF1, in, h)
		add(p+"intermediate.dense.bias", l.FF1Bias, in)
		add(p+"output.dense.weight", l.FF2, h, in)
		add(p+"output.dense.bias", l.FF2Bias, h)
		add(p+"output.LayerNorm.weight", l.LN2Gamma, h)
		add(p+"output.LayerNorm.bias", l.LN2Beta, h)
	}
	return tensors, shapes
}

func writeConfig(t *testing.T, dir string, c packed.Config) string {
	t.Helper()
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "config.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestLoadWeights writes a checkpoint with the "bert." prefix, some tensors
// in BF16, and reads it back: values widened exactly, Q, K and V stacked
// in that order.
func TestLoadWeights(t *testing.T) {
	c := tinyConfig()
	want := randWeights(c, 70)
	isBF16 := func(name string) bool { return strings.Contains(name, "key") || strings.Contains(name, "word") }
	// Round the BF16 tensors' values, so that the file holds them exactly.
	tensors, shapes := checkpoint(want, "bert.")
	for name, v := range tensors {
		if isBF16(name) {
			for i := range v {
				v[i] = math.Float32frombits(math.Float32bits(v[i]) &^ 0xffff)
			}
		}
	}
	dir := t.TempDir()
	got, err := packed.LoadWeights(writeConfig(t, dir, c), writeSafetensors(t, dir, tensors, shapes, isBF16))
	if err != nil {
		t.Fatal(err)
	}
	if err := got.Validate(); err != nil {
		t.Fatal(err)
	}
	if got.Config != c {
		t.Errorf("Config = %+v; want %+v", got.Config, c)
	}
	if !sameBits(got.Word, want.Word) || !sameBits(got.PosEmb, want.PosEmb) || !sameBits(got.EmbLNBeta, want.EmbLNBeta) {
		t.Error("embedding tables differ from the checkpoint's")
	}
	for i := range want.Layers {
		g, w := got.Layers[i], want.Layers[i]
		if !sameBits(g.QKV, w.QKV) || !sameBits(g.QKVBias, w.QKVBias) || !sameBits(g.FF2, w.FF2) || !sameBits(g.LN2Gamma, w.LN2Gamma) {
			t.Errorf("layer %d differs from the checkpoint's", i)
		}
	}
	h := c.HiddenSize
	if q := tensors["bert.encoder.layer.1.attention.self.value.weight"]; !sameBits(got.Layers[1].QKV[2*h*h:], q) {
		t.Error("QKV rows 2H..3H are not the value weight")
	}
	if got.Hidden() != 8 || got.Heads() != 2 || got.HeadDim() != 4 || got.Eps() != float32(1e-5) {
		t.Errorf("Hidden, Heads, HeadDim, Eps = %d, %d, %d, %g; want 8, 2, 4, 1e-5", got.Hidden(), got.Heads(), got.HeadDim(), got.Eps())
	}

	// Every bad tensor is reported, by name.
	delete(tensors, "bert.encoder.layer.0.attention.self.key.bias")
	shapes["bert.encoder.layer.1.intermediate.dense.weight"] = []int64{int64(h), int64(c.IntermediateSize)}
	_, err = packed.LoadWeights(writeConfig(t, dir, c), writeSafetensors(t, dir, tensors, shapes, isBF16))
	for _, want := range []string{"bert.encoder.layer.0.attention.self.key.bias", "bert.encoder.layer.1.intermediate.dense.weight: got F32 [8 16]; want F32 [16 8]"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("LoadWeights of a bad checkpoint = %v; want it to name %q", err, want)
		}
	}
	if !errors.Is(err, bertonnx.ErrMissingTensor) || !errors.Is(err, bertonnx.ErrTensorMismatch) {
		t.Errorf("LoadWeights of a bad checkpoint = %v; want ErrMissingTensor and ErrTensorMismatch", err)
	}

	bad := c
	bad.HiddenAct = "relu"
	if _, err := packed.LoadWeights(writeConfig(t, dir, bad), filepath.Join(dir, "model.safetensors")); !errors.Is(err, bertonnx.ErrUnsupported) {
		t.Errorf("LoadWeights with a relu config = %v; want ErrUnsupported", err)
	}
}

func TestWeightsValidateLimits(t *testing.T) {
	c := tinyConfig()
	c.HiddenSize, c.NumAttentionHeads = 256, 1
	w := &packed.Weights{Config: c, Layers: make([]packed.Layer, c.NumHiddenLayers)}
	if err := w.Validate(); !errors.Is(err, packed.ErrBadWeights) || !strings.Contains(err.Error(), "head dim 256") {
		t.Errorf("Validate with head dim 256 = %v; want ErrBadWeights naming the head dim", err)
	}
}
