package packed_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/embedd/embedd/internal/accel/packed"
	"github.com/embedd/embedd/internal/quant"
)

// attentionLengths straddle the kernel's key tile of 32.
var attentionLengths = []int{1, 31, 32, 33, 70}

func TestEmbedLN(t *testing.T) {
	c := tinyConfig()
	w := randWeights(c, 1)
	b := mustPack(t, padded(randTexts(c, 2, 3, 1, 5)), c.MaxPositionEmbeddings)
	h := c.HiddenSize
	out := make([]float32, b.Tokens()*h)
	packed.EmbedLN(b.IDs, b.Types, b.Pos, w, out)
	for tok := range b.Tokens() {
		id, typ, pos := int(b.IDs[tok]), int(b.Types[tok]), int(b.Pos[tok])
		e := make([]float64, h)
		for k := range e {
			e[k] = float64(w.Word[id*h+k]) + float64(w.TypeEmb[typ*h+k]) + float64(w.PosEmb[pos*h+k])
		}
		want := refLN(e, w.EmbLNGamma, w.EmbLNBeta, float64(w.Eps()))
		if d := maxDiff(out[tok*h:(tok+1)*h], want); d > 1e-5 {
			t.Errorf("token %d (id %d, type %d, pos %d): max |diff| %g", tok, id, typ, pos, d)
		}
	}
}

func TestBiasGELU(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	rows, cols := 5, 7
	x := randSlice(rng, rows*cols, 0, 3)
	bias := randSlice(rng, cols, 0, 1)
	orig := append([]float32(nil), x...)
	packed.BiasGELU(x, bias, rows, cols)
	for i, v := range orig {
		want := refGELU(float64(v) + float64(bias[i%cols]))
		if d := math.Abs(float64(x[i]) - want); d > 1e-6*math.Max(1, math.Abs(want)) {
			t.Errorf("element %d: gelu(%g + %g) = %g; want %g", i, v, bias[i%cols], x[i], want)
		}
	}
}

func TestBiasResidualLN(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	rows, h := 6, 8
	y, x := randSlice(rng, rows*h, 0, 2), randSlice(rng, rows*h, 1, 2)
	bias, gamma, beta := randSlice(rng, h, 0, 1), randSlice(rng, h, 1, 0.2), randSlice(rng, h, 0, 0.2)
	orig := append([]float32(nil), x...)
	packed.BiasResidualLN(y, bias, x, gamma, beta, 1e-12, h)
	for r := range rows {
		s := make([]float64, h)
		for k := range s {
			s[k] = float64(y[r*h+k]) + float64(bias[k]) + float64(orig[r*h+k])
		}
		want := refLN(s, gamma, beta, 1e-12)
		if d := maxDiff(x[r*h:(r+1)*h], want); d > 1e-5 {
			t.Errorf("row %d: max |diff| %g", r, d)
		}
	}
}

func TestLinear(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	// 300 rows: large enough for gonum's parallel, k-blocked path.
	for _, sz := range []struct{ rows, out, in int }{{1, 3, 2}, {7, 24, 8}, {300, 96, 130}} {
		x, w := randSlice(rng, sz.rows*sz.in, 0, 1), randSlice(rng, sz.out*sz.in, 0, 1)
		y := make([]float32, sz.rows*sz.out)
		packed.Linear(x, sz.rows, w, sz.out, sz.in, y)
		rows := make([][]float64, sz.rows)
		for r := range rows {
			rows[r] = f64(x[r*sz.in : (r+1)*sz.in])
		}
		want := refLinear(rows, w, make([]float32, sz.out), sz.out)
		for r := range want {
			if d := maxDiff(y[r*sz.out:(r+1)*sz.out], want[r]); d > 1e-4 {
				t.Errorf("%d×%d·(%d×%d)ᵀ row %d: max |diff| %g", sz.rows, sz.in, sz.out, sz.in, r, d)
				break
			}
		}
	}
}

// attentionCase runs Attention on random projections of texts of the given
// lengths and compares each text with the float64 reference.
func attentionCase(t *testing.T, heads, d int, qScale float64, lengths ...int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(len(lengths)), uint64(d)))
	h := heads * d
	start := []int32{0}
	for _, n := range lengths {
		start = append(start, start[len(start)-1]+int32(n))
	}
	tokens := int(start[len(start)-1])
	qkv := randSlice(rng, tokens*3*h, 0, 1)
	for tok := range tokens { // scale the queries: large scores test the running max
		for k := range h {
			qkv[tok*3*h+k] *= float32(qScale)
		}
	}
	bias := randSlice(rng, 3*h, 0, 0.5)
	ctx := make([]float32, tokens*h)
	scale := float32(1 / math.Sqrt(float64(d)))
	packed.Attention(qkv, bias, start, heads, d, scale, ctx)
	for b, n := range lengths {
		s := int(start[b])
		q, k, v := make([][]float64, n), make([][]float64, n), make([][]float64, n)
		mask := make([]bool, n)
		for j := range n {
			row := qkv[(s+j)*3*h : (s+j+1)*3*h]
			q[j], k[j], v[j] = make([]float64, h), make([]float64, h), make([]float64, h)
			for c := range h {
				q[j][c] = float64(row[c]) + float64(bias[c])
				k[j][c] = float64(row[h+c]) + float64(bias[h+c])
				v[j][c] = float64(row[2*h+c]) + float64(bias[2*h+c])
			}
			mask[j] = true
		}
		want := refAttention(q, k, v, mask, heads)
		for i := range n {
			got := ctx[(s+i)*h : (s+i+1)*h]
			if d := maxDiff(got, want[i]); d > 2e-5*math.Max(1, qScale) || math.IsNaN(d) {
				t.Fatalf("text %d (%d tokens) query %d: max |diff| %g\ngot  %v\nwant %v", b, n, i, d, got, want[i])
			}
		}
	}
}

func TestAttention(t *testing.T) {
	t.Run("lengths", func(t *testing.T) { attentionCase(t, 2, 4, 1, attentionLengths...) })
	t.Run("reversed", func(t *testing.T) { attentionCase(t, 3, 8, 1, 70, 33, 1, 32, 31) })
	for _, n := range attentionLengths {
		t.Run("alone", func(t *testing.T) { attentionCase(t, 2, 4, 1, n) })
	}
	// Scores of several hundred: exp without the running max overflows
	// float32, and a wrong rescaling of earlier tiles shows.
	t.Run("large scores", func(t *testing.T) { attentionCase(t, 2, 16, 40, 70, 33, 5) })
	t.Run("head dim 128", func(t *testing.T) { attentionCase(t, 1, 128, 1, 40, 2) })
}

// TestAttentionIncreasingScores puts the largest score in the last tile, so
// every tile raises the running maximum and earlier tiles must be rescaled.
func TestAttentionIncreasingScores(t *testing.T) {
	const n, d = 100, 2
	h := d
	qkv := make([]float32, n*3*h)
	for j := range n {
		row := qkv[j*3*h:]
		row[0], row[1] = 1, 0 // q
		row[h], row[h+1] = float32(j)*0.5, 0
		row[2*h], row[2*h+1] = float32(j), 1
	}
	ctx := make([]float32, n*h)
	packed.Attention(qkv, make([]float32, 3*h), []int32{0, n}, 1, d, 1, ctx)
	// softmax over s_j = j/2: p_j ∝ exp(j/2); E[j] and Σp = 1.
	var z, ej float64
	for j := range n {
		p := math.Exp(float64(j)/2 - float64(n-1)/2)
		z += p
		ej += p * float64(j)
	}
	ej /= z
	for i := range n {
		if got := ctx[i*h]; math.Abs(float64(got)-ej) > 1e-4 {
			t.Fatalf("query %d: context %g; want %g", i, got, ej)
		}
		if got := ctx[i*h+1]; math.Abs(float64(got)-1) > 1e-6 {
			t.Fatalf("query %d: weights sum to %g; want 1", i, got)
		}
	}
}

func TestPool(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 6))
	const h = 8
	start := []int32{0, 3, 4, 9, 11}
	x := randSlice(rng, 11*h, 0.1, 1)
	// Text 3 is all zeros: norm 0, codes 0, scale 0.
	clear(x[9*h : 11*h])
	// Text 1 is tiny: below the 1e-12 floor it is left as it is.
	for k := range h {
		x[3*h+k] = float32(k+1) * 1e-14
	}
	for _, mode := range []packed.Mode{packed.ModeMean, packed.ModeCLS} {
		for _, dims := range []int{h, 5, 1} {
			n := len(start) - 1
			out, norms := make([]float32, n*dims), make([]float32, n)
			codes, scales := make([]int8, n*dims), make([]float32, n)
			packed.Pool(x, start, h, mode, dims, out, norms, codes, scales)
			plain, plainNorms := make([]float32, n*dims), make([]float32, n)
			packed.Pool(x, start, h, mode, dims, plain, plainNorms, nil, nil)
			for b := range n {
				s, e := int(start[b]), int(start[b+1])
				p := make([]float64, dims)
				for tok := s; tok < e; tok++ {
					if mode == packed.ModeCLS && tok > s {
						break
					}
					for k := range p {
						p[k] += float64(x[tok*h+k])
					}
				}
				if mode == packed.ModeMean {
					for k := range p {
						p[k] /= float64(e - s)
					}
				}
				var ss float64
				for _, v := range p {
					ss += v * v
				}
				norm := math.Sqrt(ss)
				got := out[b*dims : (b+1)*dims]
				if math.Abs(float64(norms[b])-norm) > 1e-6*norm {
					t.Errorf("%v dims %d text %d: norm %g; want %g", mode, dims, b, norms[b], norm)
				}
				if norm >= 1e-12 {
					for k := range p {
						p[k] /= norm
					}
				}
				tol := 1e-6
				if norm < 1e-12 {
					tol = 1e-20
				}
				if d := maxDiff(got, p); d > tol {
					t.Errorf("%v dims %d text %d: max |diff| %g\ngot  %v\nwant %v", mode, dims, b, d, got, p)
				}
				if b == 3 && (norms[b] != 0 || scales[b] != 0 || anyNonZero(got) || anyNonZero(codes[b*dims:(b+1)*dims])) {
					t.Errorf("%v dims %d: zero text gives out %v, norm %g, codes %v, scale %g; want zeros",
						mode, dims, got, norms[b], codes[b*dims:(b+1)*dims], scales[b])
				}
				// The codes are exactly quant's of the float output.
				want := make([]int8, dims)
				scale, err := quant.QuantizeInt8Into(want, got)
				if err != nil {
					t.Fatal(err)
				}
				if math.Float32bits(scale) != math.Float32bits(scales[b]) || string(int8Bytes(want)) != string(int8Bytes(codes[b*dims:(b+1)*dims])) {
					t.Errorf("%v dims %d text %d: codes %v scale %g; quant gives %v %g",
						mode, dims, b, codes[b*dims:(b+1)*dims], scales[b], want, scale)
				}
				for k := range got {
					if math.Float32bits(got[k]) != math.Float32bits(plain[b*dims+k]) {
						t.Fatalf("%v dims %d text %d: output with codes differs from without", mode, dims, b)
					}
				}
			}
		}
	}
}

func anyNonZero[T int8 | float32](v []T) bool {
	for _, x := range v {
		if x != 0 {
			return true
		}
	}
	return false
}

func int8Bytes(v []int8) []byte {
	b := make([]byte, len(v))
	for i, x := range v {
		b[i] = byte(x)
	}
	return b
}

func TestPoolBadModePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Pool with Mode(2) did not panic")
		}
	}()
	packed.Pool(make([]float32, 8), []int32{0, 1}, 8, packed.Mode(2), 8, make([]float32, 8), make([]float32, 1), nil, nil)
}

// TestForward runs the whole pass on a tiny random model against the
// float64 padded reference: texts around the attention tile, both pooling
// modes, full and truncated outputs, with and without int8 codes.
func TestForward(t *testing.T) {
	c := tinyConfig()
	w := randWeights(c, 10)
	for _, tc := range []struct {
		name    string
		lengths []int
	}{
		{"tile edges", attentionLengths},
		{"one long, many short", []int{2, 100, 1, 3, 2}},
		{"batch of 1", []int{17}},
		{"single token", []int{1}},
		{"all positions", []int{c.MaxPositionEmbeddings, 4}},
	} {
		b := padded(randTexts(c, uint64(len(tc.lengths)), tc.lengths...))
		states := refStates(w, b)
		pb := mustPack(t, b, c.MaxPositionEmbeddings)
		for _, mode := range []packed.Mode{packed.ModeMean, packed.ModeCLS} {
			enc := packed.NewEncoder(w, mode)
			for _, dims := range []int{c.HiddenSize, 3} {
				want, wantNorms := refPool(states, b, mode, dims)
				out, norms := make([]float32, b.Size*dims), make([]float32, b.Size)
				codes, scales := make([]int8, b.Size*dims), make([]float32, b.Size)
				if err := enc.Forward(pb, dims, out, norms, codes, scales); err != nil {
					t.Fatal(err)
				}
				for r := range b.Size {
					got := out[r*dims : (r+1)*dims]
					if d := maxDiff(got, want[r]); d > 1e-4 {
						t.Errorf("%s %v dims %d row %d (%d tokens): max |diff| %g", tc.name, mode, dims, r, tc.lengths[r], d)
					}
					if rel := math.Abs(float64(norms[r])-wantNorms[r]) / wantNorms[r]; rel > 1e-4 {
						t.Errorf("%s %v dims %d row %d: norm %g; want %g", tc.name, mode, dims, r, norms[r], wantNorms[r])
					}
					q, err := quant.QuantizeInt8(got)
					if err != nil {
						t.Fatal(err)
					}
					if q.Scale != scales[r] || string(int8Bytes(q.Codes)) != string(int8Bytes(codes[r*dims:(r+1)*dims])) {
						t.Errorf("%s %v dims %d row %d: int8 differs from quant.QuantizeInt8 of the output", tc.name, mode, dims, r)
					}
				}
			}
		}
	}
}
