package cudakernels_test

// The kernels of kernels.cu run under a CPU emulator of their source
// (testdata/emu: emu.h emulates the CUDA subset they use, harness.cpp runs
// one entry on buffers it reads from stdin), compared with their pure-Go
// twins in internal/accel/packed: every entry, _f32 and _f16, launched with
// the grid the GPU encoder computes (the helpers of this package).
//
// This tests the kernel source: indexing, tiling, the online softmax,
// reductions, barrier placement (the emulator runs every launch in two
// thread orders and requires identical results, and reports a barrier or
// shuffle not every thread reaches), out-of-bounds writes (guard zones),
// writes into input buffers, the traps on the host-validated limits, and the
// arithmetic against the twins. It does not test the PTX, the driver's
// JIT, the GPU's warp scheduling or memory model, FMA contraction, or CUDA's
// own expf/erff/sqrtf: that needs a GPU (bench/gpu/check.sh). See
// docs/native-cuda.md, "Emulator test".
//
// It needs a C++20 compiler with _Float16 (g++ 12 or newer; $CXX if set) and
// fails, not skips, without one.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/accel/cuda"
	"github.com/embedd/embedd/internal/accel/cudakernels"
	"github.com/embedd/embedd/internal/accel/packed"
	"github.com/embedd/embedd/internal/bertonnx"
	"github.com/embedd/embedd/internal/quant"
)

// ---- the emulator ------------------------------------------------------------

type emulator struct {
	bin string

	mu    sync.Mutex
	worst map[string]*errStats // by entry name: the largest errors seen
}

// buildEmulator compiles testdata/emu/harness.cpp (which includes
// kernels.cu) into dir. $EMBEDD_EMU_CXXFLAGS adds compiler flags, before the
// include paths: -DEMBEDD_EMU_UCONTEXT (portable fiber switches), or
// -I<dir> to run a modified kernels.cu in <dir> without touching the
// committed one.
func buildEmulator(t *testing.T, dir string) *emulator {
	t.Helper()
	cxx := os.Getenv("CXX")
	if cxx == "" {
		cxx = "g++"
	}
	if _, err := exec.LookPath(cxx); err != nil {
		t.Fatalf("the kernel emulator needs a C++20 compiler with _Float16 (g++ 12 or newer, or $CXX): %v", err)
	}
	bin := filepath.Join(dir, "harness")
	args := []string{
		"-std=c++20", "-O1",
		"-ffp-contract=off",                        // no FMA contraction: the same results on every host
		"-Wall", "-Wextra", "-Wno-unknown-pragmas", // #pragma unroll
	}
	args = append(args, strings.Fields(os.Getenv("EMBEDD_EMU_CXXFLAGS"))...)
	args = append(args, "-I", filepath.Join("testdata", "emu"), "-I", ".",
		"-o", bin, filepath.Join("testdata", "emu", "harness.cpp"))
	start := time.Now()
	out, err := exec.Command(cxx, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("building the kernel emulator: %s %s: %v\n%s", cxx, strings.Join(args, " "), err, out)
	}
	if len(out) > 0 {
		t.Logf("compiler output:\n%s", out)
	}
	t.Logf("built the emulator in %v: %s %s", time.Since(start).Round(time.Millisecond), cxx, strings.Join(args, " "))
	return &emulator{bin: bin, worst: map[string]*errStats{}}
}

// null is a null pointer argument.
type null struct{}

// written lists, per kernel, the parameters it writes (docs/native-cuda.md);
// run checks that every other buffer comes back unchanged.
var written = map[string][]int{
	cudakernels.EmbedLN:        {10},         // out
	cudakernels.BiasGELU:       {0},          // x
	cudakernels.BiasResidualLN: {2},          // x
	cudakernels.Attention:      {6},          // ctx
	cudakernels.Pool:           {5, 6, 7, 8}, // out, norms, codes, scales
}

// run launches entry with grid (grid[0], grid[1], grid[2]) and blocks of
// cudakernels.BlockSize threads on args: buffers ([]float32, []uint16 for
// fp16, []int32, []int8), int and float32 parameters, null; in the entry's
// parameter order. Every buffer is copied back in place after the launch, as
// the GPU encoder's results are; a buffer the kernel does not own (see
// written) must come back unchanged.
func (e *emulator) run(entry string, grid [3]int, args ...any) error {
	kernel := entry[:strings.LastIndexByte(entry, '_')]
	if _, ok := written[kernel]; !ok {
		return fmt.Errorf("unknown entry %s", entry)
	}
	var req bytes.Buffer
	w := func(v any) { _ = binary.Write(&req, binary.LittleEndian, v) } // a bytes.Buffer does not fail
	req.WriteString("EMUL")
	w(uint16(len(entry)))
	req.WriteString(entry)
	for _, g := range grid {
		w(uint32(g))
	}
	w(uint32(cudakernels.BlockSize))
	w(uint32(len(args)))
	type buffer struct {
		param int
		v     any
		sent  []byte
	}
	var bufs []buffer
	for k, a := range args {
		switch v := a.(type) {
		case []float32, []uint16, []int32, []int8:
			var b bytes.Buffer
			_ = binary.Write(&b, binary.LittleEndian, v)
			req.WriteByte('p')
			w(uint64(b.Len()))
			req.Write(b.Bytes())
			bufs = append(bufs, buffer{k, v, b.Bytes()})
		case null:
			req.WriteByte('0')
		case int:
			if v != int(int32(v)) {
				return fmt.Errorf("%s: parameter %d = %d does not fit an int", entry, k, v)
			}
			req.WriteByte('i')
			w(int32(v))
		case float32:
			req.WriteByte('f')
			w(v)
		default:
			return fmt.Errorf("%s: parameter %d has unsupported type %T", entry, k, a)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.bin)
	cmd.Stdin = &req
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("emulated %s, grid %v: %v: %s", entry, grid, err, strings.TrimSpace(stderr.String()))
	}
	r := bytes.NewReader(stdout.Bytes())
	var magic [4]byte
	var n uint32
	if err := errors.Join(binary.Read(r, binary.LittleEndian, &magic), binary.Read(r, binary.LittleEndian, &n)); err != nil || string(magic[:]) != "EMUL" || int(n) != len(bufs) {
		return fmt.Errorf("emulated %s: bad response (%d bytes, %d buffers, want %d): %v", entry, stdout.Len(), n, len(bufs), err)
	}
	for _, b := range bufs {
		var size uint64
		if err := binary.Read(r, binary.LittleEndian, &size); err != nil || size != uint64(len(b.sent)) || size > uint64(r.Len()) {
			return fmt.Errorf("emulated %s: parameter %d: %d bytes back, sent %d (%v)", entry, b.param, size, len(b.sent), err)
		}
		got := make([]byte, size)
		_, _ = r.Read(got)
		if !slices.Contains(written[kernel], b.param) && !bytes.Equal(got, b.sent) {
			return fmt.Errorf("emulated %s, grid %v: parameter %d is an input, and the kernel wrote it", entry, grid, b.param)
		}
		if err := binary.Read(bytes.NewReader(got), binary.LittleEndian, b.v); err != nil {
			return fmt.Errorf("emulated %s: parameter %d: %v", entry, b.param, err)
		}
	}
	if r.Len() != 0 {
		return fmt.Errorf("emulated %s: %d trailing bytes in the response", entry, r.Len())
	}
	return nil
}

func (e *emulator) launch(t *testing.T, entry string, grid [3]int, args ...any) {
	t.Helper()
	if err := e.run(entry, grid, args...); err != nil {
		t.Fatal(err)
	}
}

// ---- storage types -----------------------------------------------------------

// storage is an entry's storage type: fp16 or float32.
type storage bool

func (s storage) String() string {
	if s {
		return "f16"
	}
	return "f32"
}

func (s storage) entry(kernel string) string { return cudakernels.Name(kernel, bool(s)) }

// dev returns the device buffer of v in storage s ([]float32 or []uint16)
// and v as the kernel reads it: v itself for float32, rounded to fp16 (to
// nearest even, as the GPU encoder uploads weights) for fp16.
func (s storage) dev(v []float32) (any, []float32) {
	if !s {
		return slices.Clone(v), v
	}
	h := make([]uint16, len(v))
	r := make([]float32, len(v))
	for i, x := range v {
		h[i] = cuda.F32ToF16(x)
		r[i] = cuda.F16ToF32(h[i])
	}
	return h, r
}

// host returns a device buffer's values as float32.
func host(dev any) []float32 {
	switch d := dev.(type) {
	case []float32:
		return d
	case []uint16:
		r := make([]float32, len(d))
		for i, h := range d {
			r[i] = cuda.F16ToF32(h)
		}
		return r
	}
	panic(fmt.Sprintf("host: %T", dev))
}

// ulp16 is the spacing of fp16 values at |v|.
func ulp16(v float32) float64 {
	a := math.Abs(float64(v))
	if a < 0x1p-14 {
		return 0x1p-24
	}
	_, e := math.Frexp(a) // a = f · 2^e, f in [0.5, 1)
	return math.Ldexp(1, e-11)
}

// ---- comparison --------------------------------------------------------------

// tol bounds |got - want| by abs + rel·|want| (+ at[i], when at is set) for
// float32 outputs; an fp16 output (the kernel's float32 result rounded to
// nearest) may be off by half an fp16 ulp of want more.
type tol struct {
	abs, rel float64
	at       []float64 // per element, when the error scales with the element's inputs
}

// eps32 is float32's unit roundoff.
const eps32 = 0x1p-24

type errStats struct {
	n        int
	abs, rel float64 // largest |got - want| and |got - want| / |want| (want != 0)
	ulp16    float64 // fp16 outputs: largest |got - want| in fp16 ulps of want
	used     float64 // largest |got - want| / bound: the share of the tolerance used
	bitExact int     // elements bit-identical to want (fp32) or to fp16(want)
	whereAbs string
}

func (s *errStats) String() string {
	str := fmt.Sprintf("max abs %.3g, max rel %.3g, %.2f of the tolerance, %d/%d exact", s.abs, s.rel, s.used, s.bitExact, s.n)
	if s.ulp16 > 0 {
		str += fmt.Sprintf(", max %.3g fp16 ulp", s.ulp16)
	}
	return str
}

func (s *errStats) merge(o *errStats) {
	s.n += o.n
	s.bitExact += o.bitExact
	if o.abs > s.abs {
		s.abs, s.whereAbs = o.abs, o.whereAbs
	}
	s.rel = max(s.rel, o.rel)
	s.ulp16 = max(s.ulp16, o.ulp16)
	s.used = max(s.used, o.used)
}

// compare checks got (the emulated kernel's output, as float32) against want
// (the twin's) element by element; cols lays the index out as [row, col] in
// messages. It fails t, naming the case, the first elements off and their
// values, and records the largest errors under entry.
func (e *emulator) compare(t *testing.T, entry, what string, fp16 bool, got, want []float32, cols int, tl tol) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s %s: %d values, want %d", entry, what, len(got), len(want))
	}
	st := &errStats{n: len(got)}
	bad := 0
	for i, w := range want {
		g := got[i]
		d := math.Abs(float64(g) - float64(w))
		bound := tl.abs + tl.rel*math.Abs(float64(w))
		if tl.at != nil {
			bound += tl.at[i]
		}
		if fp16 {
			u := ulp16(w)
			bound += u / 2
			st.ulp16 = max(st.ulp16, d/u)
			if cuda.F32ToF16(w) == cuda.F32ToF16(g) {
				st.bitExact++
			}
		} else if math.Float32bits(g) == math.Float32bits(w) {
			st.bitExact++
		}
		if d > st.abs {
			st.abs, st.whereAbs = d, fmt.Sprintf("%s [%d, %d]", what, i/cols, i%cols)
		}
		if w != 0 {
			st.rel = max(st.rel, d/math.Abs(float64(w)))
		}
		// The share of the tolerance used; for fp16, of its float32 part
		// (rounding alone may take the half ulp).
		part, e := bound, d
		if fp16 {
			part, e = bound-ulp16(w)/2, max(0, d-ulp16(w)/2)
		}
		if part > 0 {
			st.used = max(st.used, e/part)
		} else if e > 0 {
			st.used = math.Inf(1)
		}
		if !(d <= bound) { // NaN fails
			if bad < 8 {
				t.Errorf("%s %s [%d, %d]: got %.9g, want %.9g (|diff| %.3g > %.3g)", entry, what, i/cols, i%cols, g, w, d, bound)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s %s: %d of %d values off", entry, what, bad, len(got))
	}
	t.Logf("%s %s: %v", entry, what, st)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.worst[entry] == nil {
		e.worst[entry] = &errStats{}
	}
	e.worst[entry].merge(st)
}

// ---- inputs --------------------------------------------------------------------

func randn(rng *rand.Rand, n int, mean, sd float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(mean + sd*rng.NormFloat64())
	}
	return v
}

// texts returns the start offsets of packed texts of the given lengths and
// the longest length.
func texts(lens ...int) (start []int32, maxLen int) {
	start = make([]int32, len(lens)+1)
	for i, n := range lens {
		start[i+1] = start[i] + int32(n)
		maxLen = max(maxLen, n)
	}
	return start, maxLen
}

func fill[T any](n int, v T) []T {
	s := make([]T, n)
	for i := range s {
		s[i] = v
	}
	return s
}

// sentinel is what output buffers hold before a launch: an element the
// kernel does not write shows up as a mismatch.
const sentinel = float32(-12345)

// ---- the test ------------------------------------------------------------------

func TestEmulator(t *testing.T) {
	start := time.Now()
	emu := buildEmulator(t, t.TempDir())
	t.Cleanup(func() {
		var names []string
		for name := range emu.worst {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			st := emu.worst[name]
			if st.abs > 0 {
				t.Logf("%-22s %v (largest difference at %s)", name, st, st.whereAbs)
			} else {
				t.Logf("%-22s %v", name, st)
			}
		}
		t.Logf("emulator test: %v", time.Since(start).Round(time.Millisecond))
	})
	t.Run("convert", func(t *testing.T) { t.Parallel(); testConvert(t, emu) })
	for _, s := range []storage{false, true} {
		t.Run(s.String(), func(t *testing.T) {
			t.Parallel()
			t.Run("embed_ln", func(t *testing.T) { t.Parallel(); testEmbedLN(t, emu, s) })
			t.Run("bias_gelu", func(t *testing.T) { t.Parallel(); testBiasGELU(t, emu, s) })
			t.Run("bias_residual_ln", func(t *testing.T) { t.Parallel(); testBiasResidualLN(t, emu, s) })
			t.Run("attention", func(t *testing.T) { t.Parallel(); testAttention(t, emu, s) })
			t.Run("pool", func(t *testing.T) { t.Parallel(); testPool(t, emu, s) })
			t.Run("model", func(t *testing.T) { t.Parallel(); testModel(t, emu, s) })
		})
	}
	t.Run("limits", func(t *testing.T) { t.Parallel(); testLimits(t, emu) })
}

// testConvert: kernels.cu's fp16 conversions as emulated (to_f32 and
// from_f32<unsigned short>, the host compiler's _Float16) agree with the
// host encoder's converter, which rounds to nearest even like
// cvt.rn.f16.f32: every half widened, and rounding ties, subnormals,
// overflow and random float32 values narrowed.
func testConvert(t *testing.T, emu *emulator) {
	vals := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 65504, 65519.996, 65520, -65520, 1e10,
		float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()),
		1 + 0x1p-11, 1 + 3*0x1p-11, 1 + 0x1p-11 + 0x1p-23, 2049, 2051, // ties to even, just above a tie
		0x1p-14, 0x1p-14 - 0x1p-25, 0x1p-24, 0x1p-25, 3 * 0x1p-25, 0x1p-25 + 0x1p-40, 0x1p-26, 1e-30,
		0x1.ffcp-15, 0x1.ffep-15, // the largest subnormal and the tie to the smallest normal
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		// Exponents around fp16's range: normals, subnormals, overflow.
		b := rng.Uint32()&0x807fffff | uint32(100+rng.IntN(50))<<23
		vals = append(vals, math.Float32frombits(b))
	}
	var req bytes.Buffer
	_ = binary.Write(&req, binary.LittleEndian, uint32(len(vals)))
	_ = binary.Write(&req, binary.LittleEndian, vals)
	cmd := exec.Command(emu.bin, "convert")
	cmd.Stdin = &req
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("harness convert: %v: %s", err, stderr.String())
	}
	narrow := make([]uint16, len(vals))
	widen := make([]float32, 65536)
	r := bytes.NewReader(out)
	if err := errors.Join(binary.Read(r, binary.LittleEndian, narrow), binary.Read(r, binary.LittleEndian, widen)); err != nil || r.Len() != 0 {
		t.Fatalf("harness convert: %d bytes back: %v", len(out), err)
	}
	isNaN16 := func(h uint16) bool { return h&0x7c00 == 0x7c00 && h&0x3ff != 0 }
	bad := 0
	for i, v := range vals {
		got, want := narrow[i], cuda.F32ToF16(v)
		if got != want && !(isNaN16(got) && isNaN16(want)) { // NaN payloads may differ
			if bad++; bad <= 8 {
				t.Errorf("from_f32<unsigned short>(%g = %#08x) = %#04x, host converter %#04x", v, math.Float32bits(v), got, want)
			}
		}
	}
	for h := range 65536 {
		got, want := widen[h], cuda.F16ToF32(uint16(h))
		if math.Float32bits(got) != math.Float32bits(want) && !(got != got && want != want) {
			if bad++; bad <= 16 {
				t.Errorf("to_f32(%#04x) = %g (%#08x), host converter %g", h, got, math.Float32bits(got), want)
			}
		}
	}
}

// embedWeights returns random embedding tables for a model of hidden size h
// (word, position and type values about N(0, sd), N(0, sd/2), N(0, sd/2)).
func embedWeights(rng *rand.Rand, h, vocab, positions, types int, eps, sd float64) *packed.Weights {
	c := bertonnx.DefaultConfig()
	c.HiddenSize, c.VocabSize, c.MaxPositionEmbeddings, c.TypeVocabSize, c.LayerNormEps = h, vocab, positions, types, eps
	return &packed.Weights{
		Config:     c,
		Word:       randn(rng, vocab*h, 0, sd),
		PosEmb:     randn(rng, positions*h, 0, sd/2),
		TypeEmb:    randn(rng, types*h, 0, sd/2),
		EmbLNGamma: randn(rng, h, 1, 0.1),
		EmbLNBeta:  randn(rng, h, 0, 0.1),
	}
}

// lnTol: LayerNorm outputs (about N(beta, gamma)) differ from the twin's by
// the order of the float32 sums of the mean and the variance over H values
// (the block's tree against the twin's loop): about eps32·√H (observed:
// up to 0.3 eps32·√H).
func lnTol(h int) tol {
	c := 1.5 * eps32 * math.Sqrt(float64(h))
	return tol{abs: c, rel: c}
}

func testEmbedLN(t *testing.T, emu *emulator, s storage) {
	for _, c := range []struct {
		h       int
		eps, sd float64
	}{
		{1, 1e-12, 1}, {32, 1e-12, 1}, {257, 1e-5, 1}, {384, 1e-12, 1}, {1000, 1e-12, 1},
		{64, 1e-5, 0.003}, // variance about eps: eps matters
	} {
		h := c.h
		rng := rand.New(rand.NewPCG(uint64(h), 3))
		const vocab, positions, types, tokens = 11, 9, 2, 6
		w := embedWeights(rng, h, vocab, positions, types, c.eps, c.sd)
		ids, typ, pos := make([]int32, tokens), make([]int32, tokens), make([]int32, tokens)
		for i := range tokens {
			ids[i], typ[i], pos[i] = int32(rng.IntN(vocab)), int32(rng.IntN(types)), int32(rng.IntN(positions))
		}
		word, wordR := s.dev(w.Word)
		posEmb, posR := s.dev(w.PosEmb)
		typeEmb, typeR := s.dev(w.TypeEmb)
		gamma, gammaR := s.dev(w.EmbLNGamma)
		beta, betaR := s.dev(w.EmbLNBeta)
		out, _ := s.dev(fill(tokens*h, sentinel))
		entry := s.entry(cudakernels.EmbedLN)
		emu.launch(t, entry, [3]int{tokens, 1, 1}, slices.Clone(ids), slices.Clone(typ), slices.Clone(pos),
			word, posEmb, typeEmb, gamma, beta, w.Eps(), h, out)

		wr := *w
		wr.Word, wr.PosEmb, wr.TypeEmb, wr.EmbLNGamma, wr.EmbLNBeta = wordR, posR, typeR, gammaR, betaR
		want := make([]float32, tokens*h)
		packed.EmbedLN(ids, typ, pos, &wr, want)
		emu.compare(t, entry, fmt.Sprintf("H=%d eps %g sd %g", h, c.eps, c.sd), bool(s), host(out), want, h, lnTol(h))
	}
}

// geluTol: erff of the host's libm against Go's float64 erf rounded, and
// float32 rounding (a few ulps); for large negative inputs, where 1 + erf
// cancels, a few ulps of 1.
var geluTol = tol{abs: 4 * eps32, rel: 4 * eps32}

func testBiasGELU(t *testing.T, emu *emulator, s storage) {
	for _, c := range []struct {
		rows, cols int
		grid       int // 0: cudakernels.GELUBlocks(rows, cols); else a smaller grid, to loop
	}{
		{1, 1, 0}, {3, 7, 0}, {9, 1536, 0}, {2, 1000, 0},
		// Grids smaller than ceil(rows·cols/256), as GELUBlocks gives past
		// MaxGELUBlocks (too many blocks to emulate): each thread loops, its
		// column advancing by stride % cols per step.
		{7, 300, 1},   // stride 256 < cols
		{5, 1000, 3},  // stride 768 < cols
		{64, 3, 2},    // stride 512 > cols, 512 % 3 = 2
		{4, 128, 1},   // stride % cols = 0
		{37, 1536, 5}, // stride 1280
		{300, 37, 7},  // stride 1792 % 37 = 16
	} {
		rng := rand.New(rand.NewPCG(uint64(c.rows*10000+c.cols), 5))
		grid := c.grid
		if grid == 0 {
			grid = cudakernels.GELUBlocks(c.rows, c.cols)
		}
		x, xr := s.dev(randn(rng, c.rows*c.cols, 0, 2))
		bias, biasR := s.dev(randn(rng, c.cols, 0, 0.5))
		entry := s.entry(cudakernels.BiasGELU)
		emu.launch(t, entry, [3]int{grid, 1, 1}, x, bias, c.rows, c.cols)
		want := slices.Clone(xr)
		packed.BiasGELU(want, biasR, c.rows, c.cols)
		emu.compare(t, entry, fmt.Sprintf("%dx%d grid %d", c.rows, c.cols, grid), bool(s), host(x), want, c.cols, geluTol)
	}
}

func testBiasResidualLN(t *testing.T, emu *emulator, s storage) {
	for _, c := range []struct {
		h      int
		eps    float32
		tokens int
		sd     float64
	}{
		{1, 1e-5, 2, 1}, {384, 1e-12, 4, 1}, {1000, 1e-5, 3, 1}, {4096, 1e-12, 3, 1},
		{384, 1e-5, 2, 0.003}, // variance about eps: eps matters
	} {
		rng := rand.New(rand.NewPCG(uint64(c.h), 7))
		y, yR := s.dev(randn(rng, c.tokens*c.h, 0, 2*c.sd))
		x, xR := s.dev(randn(rng, c.tokens*c.h, 0.3*c.sd, c.sd))
		bias, biasR := s.dev(randn(rng, c.h, 0, 0.5*c.sd))
		gamma, gammaR := s.dev(randn(rng, c.h, 1, 0.1))
		beta, betaR := s.dev(randn(rng, c.h, 0, 0.1))
		entry := s.entry(cudakernels.BiasResidualLN)
		emu.launch(t, entry, [3]int{c.tokens, 1, 1}, y, bias, x, gamma, beta, c.eps, c.h)
		want := slices.Clone(xR)
		packed.BiasResidualLN(yR, biasR, want, gammaR, betaR, c.eps, c.h)
		emu.compare(t, entry, fmt.Sprintf("H=%d eps %g sd %g", c.h, c.eps, c.sd), bool(s), host(x), want, c.h, lnTol(c.h))
	}
}

// attnBound returns, per element of ctx, how far two float32 computations
// of attention that differ in the order of their sums (the kernel's: per
// lane, tree reductions; the twin's: through gonum) can be expected to
// disagree, to first order: with w_j the softmax weights, A_j = Σ_d |q_d
// k_jd| (a score's rounding, which exp carries into the weights) and
// |v|_w = Σ_j w_j |v_jd| (cancellation in the weighted sum),
//
//	attnC · eps32 · (Σ_j w_j |v_jd| A_j · √D + |v|_w · √len)
//
// (random rounding errors grow like the square root of a sum's length).
// Computed in float64 from the inputs as the kernel reads them.
func attnBound(qkv, bias []float32, start []int32, heads, d int, scale float32) []float64 {
	const attnC = 2
	h := heads * d
	stride := 3 * h
	out := make([]float64, int(start[len(start)-1])*h)
	q := make([]float64, d)
	for b := range len(start) - 1 {
		s, n := int(start[b]), int(start[b+1]-start[b])
		score, absScore := make([]float64, n), make([]float64, n)
		for hd := range heads {
			key := func(j, c int) float64 { return float64(qkv[(s+j)*stride+h+hd*d+c] + bias[h+hd*d+c]) }
			val := func(j, c int) float64 { return float64(qkv[(s+j)*stride+2*h+hd*d+c] + bias[2*h+hd*d+c]) }
			for i := range n {
				for c := range d {
					q[c] = float64((qkv[(s+i)*stride+hd*d+c] + bias[hd*d+c]) * scale)
				}
				m := math.Inf(-1)
				for j := range n {
					score[j], absScore[j] = 0, 0
					for c := range d {
						score[j] += q[c] * key(j, c)
						absScore[j] += math.Abs(q[c] * key(j, c))
					}
					m = max(m, score[j])
				}
				var l float64
				for j := range n {
					score[j] = math.Exp(score[j] - m) // now the weight, unnormalized
					l += score[j]
				}
				for c := range d {
					var absV, absVS float64
					for j := range n {
						a := score[j] / l * math.Abs(val(j, c))
						absV += a
						absVS += a * absScore[j]
					}
					out[(s+i)*h+hd*d+c] = attnC * eps32 * (absVS*math.Sqrt(float64(d)) + absV*math.Sqrt(float64(n)))
				}
			}
		}
	}
	return out
}

func testAttention(t *testing.T, emu *emulator, s storage) {
	for _, c := range []struct {
		lens      []int
		heads, hd int
		sd        float64 // of the projections: larger makes the running max move between tiles
	}{
		{[]int{1, 31, 32, 33, 70}, 12, 32, 1},
		{[]int{1, 31, 32, 33, 70}, 4, 64, 1.5},
		{[]int{1, 31, 32, 33, 70}, 2, 128, 1},
		{[]int{9, 40, 2}, 3, 40, 2}, // head dim not a multiple of 32
		{[]int{65, 3}, 1, 1, 4},
	} {
		rng := rand.New(rand.NewPCG(uint64(c.heads*1000+c.hd), 9))
		start, maxLen := texts(c.lens...)
		tokens, h := int(start[len(start)-1]), c.heads*c.hd
		qkv, qkvR := s.dev(randn(rng, tokens*3*h, 0, c.sd))
		bias, biasR := s.dev(randn(rng, 3*h, 0, 0.5))
		ctx, _ := s.dev(fill(tokens*h, sentinel))
		scale := float32(1 / math.Sqrt(float64(c.hd))) // as the GPU encoder
		entry := s.entry(cudakernels.Attention)
		grid := [3]int{cudakernels.AttentionBlocks(maxLen), c.heads, len(c.lens)}
		emu.launch(t, entry, grid, qkv, bias, slices.Clone(start), c.heads, c.hd, scale, ctx)
		want := make([]float32, tokens*h)
		packed.Attention(qkvR, biasR, start, c.heads, c.hd, scale, want)
		emu.compare(t, entry, fmt.Sprintf("lens %v heads %d D %d", c.lens, c.heads, c.hd), bool(s), host(ctx), want, h,
			tol{at: attnBound(qkvR, biasR, start, c.heads, c.hd, scale)})
	}
}

// poolTol: the pooled sums run in token order as in the twin, the norm's
// double sum in another order, which can move float32(1/norm) by an ulp.
var poolTol = tol{abs: 0, rel: 2.5e-7}

// tieVector has norm 128 (127² + 2·0.5² + 2·2.5² + 2·11² = 128²), so its
// pooled, normalized output is tieVector/128 exactly, max|out| = 127/128
// and 127/max = 128: its codes are round(tieVector) with exact halves,
// which quant.QuantizeInt8 (and so the kernel) rounds away from zero.
var (
	tieVector = []float32{127, 0.5, -0.5, 2.5, -2.5, 11, -11}
	tieCodes  = []int8{127, 1, -1, 3, -3, 11, -11}
)

func testPool(t *testing.T, emu *emulator, s storage) {
	type poolCase struct {
		lens     []int
		h, dims  int
		sd       float64
		zeroText int  // index of a text of zero states, or -1
		ties     bool // every token starts with tieVector, dims = len(tieVector)
	}
	cases := []poolCase{
		{[]int{1, 5, 12}, 384, 384, 1, -1, false},
		{[]int{3, 2, 7}, 384, 100, 1, -1, false},
		{[]int{2, 4}, 4096, 1000, 1, -1, false},
		{[]int{2, 3, 1}, 40, 40, 1, 1, false}, // norm 0: out 0, codes 0, scale 0
		{[]int{1}, 1, 1, 1, -1, false},
		{[]int{1, 2}, 16, len(tieVector), 1, -1, true}, // codes at exact halves
	}
	if !s { // below fp16's range
		cases = append(cases, poolCase{[]int{2, 3}, 40, 33, 1e-20, -1, false}) // norm < 1e-12: out = p, not normalized
	}
	for _, c := range cases {
		for _, mode := range []packed.Mode{packed.ModeMean, packed.ModeCLS} {
			for _, quantize := range []bool{false, true} {
				name := fmt.Sprintf("lens %v H %d dims %d sd %g %v int8 %v", c.lens, c.h, c.dims, c.sd, mode, quantize)
				rng := rand.New(rand.NewPCG(uint64(c.h*100+c.dims), 11))
				start, _ := texts(c.lens...)
				b, tokens := len(c.lens), int(start[len(start)-1])
				xv := randn(rng, tokens*c.h, 0.1*c.sd, c.sd)
				if c.zeroText >= 0 {
					clear(xv[int(start[c.zeroText])*c.h : int(start[c.zeroText+1])*c.h])
				}
				if c.ties {
					for tok := range tokens {
						copy(xv[tok*c.h:], tieVector)
					}
				}
				x, xR := s.dev(xv)
				out, norms := fill(b*c.dims, sentinel), fill(b, sentinel)
				var codes []int8
				var scales []float32
				codesArg, scalesArg := any(null{}), any(null{})
				if quantize {
					codes, scales = fill(b*c.dims, int8(99)), fill(b, sentinel)
					codesArg, scalesArg = codes, scales
				}
				entry := s.entry(cudakernels.Pool)
				emu.launch(t, entry, [3]int{b, 1, 1}, x, slices.Clone(start), c.h, int(mode), c.dims, out, norms, codesArg, scalesArg)

				wantOut, wantNorms := make([]float32, b*c.dims), make([]float32, b)
				var wantCodes []int8
				var wantScales []float32
				if quantize {
					wantCodes, wantScales = make([]int8, b*c.dims), make([]float32, b)
				}
				packed.Pool(xR, start, c.h, mode, c.dims, wantOut, wantNorms, wantCodes, wantScales)
				emu.compare(t, entry, name+" out", false, out, wantOut, c.dims, poolTol)
				emu.compare(t, entry, name+" norms", false, norms, wantNorms, 1, poolTol)
				if !quantize {
					continue
				}
				for i := range b {
					row, rowCodes := out[i*c.dims:(i+1)*c.dims], codes[i*c.dims:(i+1)*c.dims]
					// Exactly quant.QuantizeInt8 of the kernel's own float output.
					q := make([]int8, c.dims)
					scale, err := quant.QuantizeInt8Into(q, row)
					if err != nil {
						t.Fatalf("%s %s text %d: %v", entry, name, i, err)
					}
					if !slices.Equal(rowCodes, q) || math.Float32bits(scales[i]) != math.Float32bits(scale) {
						t.Errorf("%s %s text %d: codes/scale differ from quant.QuantizeInt8Into of the kernel's output (scale %g, want %g)", entry, name, i, scales[i], scale)
					}
					// And the twin's, when the float outputs agree bit for bit
					// (they differ only if float32(1/norm) does).
					if slices.Equal(row, wantOut[i*c.dims:(i+1)*c.dims]) &&
						(!slices.Equal(rowCodes, wantCodes[i*c.dims:(i+1)*c.dims]) || math.Float32bits(scales[i]) != math.Float32bits(wantScales[i])) {
						t.Errorf("%s %s text %d: the same floats as the twin, other codes or scale (%g, twin %g)", entry, name, i, scales[i], wantScales[i])
					}
					if c.ties && !slices.Equal(rowCodes, tieCodes) {
						t.Errorf("%s %s text %d: codes %v, want %v (halves away from zero)", entry, name, i, rowCodes, tieCodes)
					}
					if i == c.zeroText && (scales[i] != 0 || slices.ContainsFunc(rowCodes, func(v int8) bool { return v != 0 })) {
						t.Errorf("%s %s: the zero text has scale %g or nonzero codes", entry, name, scales[i])
					}
				}
			}
		}
	}
}

// testLimits: the kernels trap on the limits the host validates before a
// launch (docs/native-cuda.md), as the GPU's launch would fail.
func testLimits(t *testing.T, emu *emulator) {
	wantTrap := func(what string, err error) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), "emu: trap") {
			t.Errorf("%s: %v, want a trap", what, err)
		}
	}
	h := cudakernels.MaxHidden + 1
	z := make([]float32, h)
	wantTrap(fmt.Sprintf("embed_ln_f32 with H = %d", h), emu.run(cudakernels.EmbedLNF32, [3]int{1, 1, 1},
		[]int32{0}, []int32{0}, []int32{0}, z, z, z, z, z, float32(1e-5), h, make([]float32, h)))
	wantTrap(fmt.Sprintf("bias_residual_ln_f16 with H = %d", h), emu.run(cudakernels.BiasResidualLNF16, [3]int{1, 1, 1},
		make([]uint16, h), make([]uint16, h), make([]uint16, h), make([]uint16, h), make([]uint16, h), float32(1e-5), h))
	for _, d := range []int{0, cudakernels.MaxHeadDim + 1} {
		qkv := make([]float32, 3*max(d, 1))
		wantTrap(fmt.Sprintf("attention_f32 with head dim %d", d), emu.run(cudakernels.AttentionF32, [3]int{1, 1, 1},
			qkv, qkv, []int32{0, 1}, 1, d, float32(1), make([]float32, max(d, 1))))
	}
}

// testModel runs the whole forward pass of docs/native-cuda.md with the
// emulated kernels and the twin's Linear for the GEMMs (for fp16: inputs and
// output rounded to fp16 around a float32 product, as cuBLAS with
// COMPUTE_32F) on a tiny random model, against packed.Encoder.Forward: for
// float32 storage the outputs agree closely, for fp16 each text's cosine
// with the twin is at least 0.9999 (the GPU encoder's self-check asks
// 0.999 of cuBLAS).
func testModel(t *testing.T, emu *emulator, s storage) {
	rng := rand.New(rand.NewPCG(42, 43))
	const h, heads, inter, layers, vocab, dims = 64, 2, 128, 2, 50, 48
	w := embedWeights(rng, h, vocab, 128, 2, 1e-12, 1)
	w.Config.NumAttentionHeads, w.Config.IntermediateSize, w.Config.NumHiddenLayers = heads, inter, layers
	ws := 1 / math.Sqrt(h)
	for range layers {
		w.Layers = append(w.Layers, packed.Layer{
			QKV: randn(rng, 3*h*h, 0, 2*ws), QKVBias: randn(rng, 3*h, 0, 0.1),
			Out: randn(rng, h*h, 0, ws), OutBias: randn(rng, h, 0, 0.1),
			LN1Gamma: randn(rng, h, 1, 0.1), LN1Beta: randn(rng, h, 0, 0.1),
			FF1: randn(rng, inter*h, 0, ws), FF1Bias: randn(rng, inter, 0, 0.1),
			FF2: randn(rng, h*inter, 0, 1/math.Sqrt(inter)), FF2Bias: randn(rng, h, 0, 0.1),
			LN2Gamma: randn(rng, h, 1, 0.1), LN2Beta: randn(rng, h, 0, 0.1),
		})
	}
	if err := w.Validate(); err != nil {
		t.Fatal(err)
	}
	lens := []int{1, 9, 33}
	start, maxLen := texts(lens...)
	tokens := int(start[len(start)-1])
	batch := &packed.Batch{Start: start, MaxLen: maxLen}
	for i := range lens {
		for j := range lens[i] {
			batch.IDs = append(batch.IDs, int32(rng.IntN(vocab)))
			batch.Types = append(batch.Types, int32(rng.IntN(2)))
			batch.Pos = append(batch.Pos, int32(j))
		}
	}
	if err := batch.Validate(w.Config); err != nil {
		t.Fatal(err)
	}
	hd := h / heads
	scale := float32(1 / math.Sqrt(float64(hd)))
	eps := w.Eps()
	dev := func(v []float32) any { d, _ := s.dev(v); return d }
	// gemm: y = x·wᵀ on device buffers, float32 accumulation.
	gemm := func(x any, rows int, wt []float32, out, in int) any {
		y := make([]float32, rows*out)
		_, wr := s.dev(wt)
		packed.Linear(host(x), rows, wr, out, in, y)
		return dev(y)
	}
	x := dev(fill(tokens*h, sentinel))
	emu.launch(t, s.entry(cudakernels.EmbedLN), [3]int{tokens, 1, 1}, slices.Clone(batch.IDs), slices.Clone(batch.Types), slices.Clone(batch.Pos),
		dev(w.Word), dev(w.PosEmb), dev(w.TypeEmb), dev(w.EmbLNGamma), dev(w.EmbLNBeta), eps, h, x)
	for _, l := range w.Layers {
		qkv := gemm(x, tokens, l.QKV, 3*h, h)
		ctx := dev(fill(tokens*h, sentinel))
		emu.launch(t, s.entry(cudakernels.Attention), [3]int{cudakernels.AttentionBlocks(maxLen), heads, len(lens)},
			qkv, dev(l.QKVBias), slices.Clone(start), heads, hd, scale, ctx)
		y := gemm(ctx, tokens, l.Out, h, h)
		emu.launch(t, s.entry(cudakernels.BiasResidualLN), [3]int{tokens, 1, 1}, y, dev(l.OutBias), x, dev(l.LN1Gamma), dev(l.LN1Beta), eps, h)
		f := gemm(x, tokens, l.FF1, inter, h)
		emu.launch(t, s.entry(cudakernels.BiasGELU), [3]int{cudakernels.GELUBlocks(tokens, inter), 1, 1}, f, dev(l.FF1Bias), tokens, inter)
		y = gemm(f, tokens, l.FF2, h, inter)
		emu.launch(t, s.entry(cudakernels.BiasResidualLN), [3]int{tokens, 1, 1}, y, dev(l.FF2Bias), x, dev(l.LN2Gamma), dev(l.LN2Beta), eps, h)
	}
	b := len(lens)
	out, norms, codes, scales := fill(b*dims, sentinel), fill(b, sentinel), make([]int8, b*dims), make([]float32, b)
	emu.launch(t, s.entry(cudakernels.Pool), [3]int{b, 1, 1}, x, slices.Clone(start), h, int(packed.ModeMean), dims, out, norms, codes, scales)

	wantOut, wantNorms, wantCodes, wantScales := make([]float32, b*dims), make([]float32, b), make([]int8, b*dims), make([]float32, b)
	if err := packed.NewEncoder(w, packed.ModeMean).Forward(batch, dims, wantOut, wantNorms, wantCodes, wantScales); err != nil {
		t.Fatal(err)
	}
	entry := "model_" + s.String()
	if !s {
		emu.compare(t, entry, "out", false, out, wantOut, dims, tol{abs: 2e-6})
		emu.compare(t, entry, "norms", false, norms, wantNorms, 1, tol{rel: 2e-6})
	}
	for i := range b {
		var dot float64
		for k := range dims {
			dot += float64(out[i*dims+k]) * float64(wantOut[i*dims+k])
		}
		cos := dot // both unit vectors
		if limit := map[storage]float64{false: 0.99999, true: 0.9999}[s]; !(cos >= limit) {
			t.Errorf("%s text %d: cosine %.6f with the twin, want >= %g", entry, i, cos, limit)
		}
		t.Logf("%s text %d (%d tokens): cosine %.7f with the twin", entry, i, lens[i], cos)
		q := make([]int8, dims)
		scale, err := quant.QuantizeInt8Into(q, out[i*dims:(i+1)*dims])
		if err != nil || !slices.Equal(q, codes[i*dims:(i+1)*dims]) || scale != scales[i] {
			t.Errorf("%s text %d: codes/scale are not quant.QuantizeInt8Into of the output (%v)", entry, i, err)
		}
	}
}
