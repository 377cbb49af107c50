//go:build cuda

package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"gorgonia.org/cu"

	"github.com/embedd/embedd/internal/accel/packed"
	"github.com/embedd/embedd/internal/bertonnx"
	"github.com/embedd/embedd/internal/quant"
)

// Each kernel test runs one kernel on the GPU, for both storage types, on
// small random inputs, and compares it with the CPU twin of the same name
// in package packed run on the same inputs (rounded to fp16 for the _f16
// entries). float32 outputs may differ from the twin only by the order of
// parallel sums; fp16 outputs also by the final rounding to fp16 (at most
// one fp16 ulp, 2^-10 relative, when the exact value lies near a rounding
// boundary).
var (
	tolLN32   = tol{abs: 2e-5, rel: 2e-5}
	tolGELU32 = tol{abs: 1e-6, rel: 1e-5}
	tolAttn32 = tol{abs: 1e-5, rel: 1e-4}
	tolPool32 = tol{abs: 1e-7, rel: 1e-6}
	tolF16    = tol{abs: 1e-4, rel: 2e-3}
)

func TestKernelEmbedLN(t *testing.T) {
	g := gpu(t)
	for _, fp16 := range []bool{false, true} {
		for _, h := range []int{64, 384, 1000} {
			t.Run(fmt.Sprintf("%s/H=%d", precName(fp16), h), func(t *testing.T) {
				c := bertonnx.DefaultConfig()
				c.HiddenSize, c.NumAttentionHeads = h, 1
				c.VocabSize, c.MaxPositionEmbeddings, c.TypeVocabSize = 50, 512, 2
				rng := rand.New(rand.NewPCG(uint64(h), 11))
				w := &packed.Weights{
					Config:     c,
					Word:       rounded(randSlice(rng, c.VocabSize*h, 0, 0.5), fp16),
					PosEmb:     rounded(randSlice(rng, c.MaxPositionEmbeddings*h, 0, 0.2), fp16),
					TypeEmb:    rounded(randSlice(rng, c.TypeVocabSize*h, 0, 0.2), fp16),
					EmbLNGamma: rounded(randSlice(rng, h, 1, 0.1), fp16),
					EmbLNBeta:  rounded(randSlice(rng, h, 0, 0.1), fp16),
				}
				const T = 300
				ids, types, pos := make([]int32, T), make([]int32, T), make([]int32, T)
				for i := range T {
					ids[i] = int32(rng.IntN(c.VocabSize))
					types[i] = int32(rng.IntN(c.TypeVocabSize))
					pos[i] = int32(rng.IntN(c.MaxPositionEmbeddings))
				}
				ids[0], ids[1] = 0, int32(c.VocabSize-1) // the tables' first and last rows
				pos[0], pos[1] = 0, int32(c.MaxPositionEmbeddings-1)
				want := make([]float32, T*h)
				packed.EmbedLN(ids, types, pos, w, want)
				var got []float32
				g.onGPU(t, func(d *devAlloc) {
					out := d.alloc(int64(T*h) * elemSize(fp16))
					err := g.wk.embedLN(g.kernels(fp16), T, upload(d, ids), upload(d, types), upload(d, pos),
						store(d, w.Word, fp16), store(d, w.PosEmb, fp16), store(d, w.TypeEmb, fp16),
						store(d, w.EmbLNGamma, fp16), store(d, w.EmbLNBeta, fp16), w.Eps(), h, out)
					if err != nil {
						t.Fatal(err)
					}
					got = load(d, out, T*h, fp16)
				})
				compare(t, "embed_ln_"+precName(fp16), got, want, h, pick(fp16, tolLN32))
			})
		}
	}
}

func TestKernelBiasGELU(t *testing.T) {
	g := gpu(t)
	for _, fp16 := range []bool{false, true} {
		sizes := [][2]int{{300, 1536}, {7, 100}, {1, 1}, {2000, 1000}}
		if !fp16 {
			// More elements than the capped grid has threads: the
			// grid-stride loop, and its column stepping, run.
			sizes = append(sizes, [2]int{8193, 8200})
		}
		for _, sz := range sizes {
			rows, cols := sz[0], sz[1]
			t.Run(fmt.Sprintf("%s/%dx%d", precName(fp16), rows, cols), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(uint64(rows), uint64(cols)))
				x := rounded(randSlice(rng, rows*cols, 0, 2), fp16)
				bias := rounded(randSlice(rng, cols, 0, 0.5), fp16)
				want := append([]float32(nil), x...)
				packed.BiasGELU(want, bias, rows, cols)
				var got []float32
				g.onGPU(t, func(d *devAlloc) {
					px := store(d, x, fp16)
					if err := g.wk.biasGELU(g.kernels(fp16), px, store(d, bias, fp16), rows, cols); err != nil {
						t.Fatal(err)
					}
					got = load(d, px, rows*cols, fp16)
				})
				compare(t, "bias_gelu_"+precName(fp16), got, want, cols, pick(fp16, tolGELU32))
			})
		}
	}
}

func TestKernelBiasResidualLN(t *testing.T) {
	g := gpu(t)
	for _, fp16 := range []bool{false, true} {
		for _, h := range []int{64, 384, 1000, 4096} {
			t.Run(fmt.Sprintf("%s/H=%d", precName(fp16), h), func(t *testing.T) {
				const T = 300
				rng := rand.New(rand.NewPCG(uint64(h), 13))
				y := rounded(randSlice(rng, T*h, 0, 1), fp16)
				x := rounded(randSlice(rng, T*h, 0.3, 1), fp16)
				bias := rounded(randSlice(rng, h, 0, 0.2), fp16)
				gamma := rounded(randSlice(rng, h, 1, 0.1), fp16)
				beta := rounded(randSlice(rng, h, 0, 0.1), fp16)
				const eps = float32(1e-12)
				want := append([]float32(nil), x...)
				packed.BiasResidualLN(y, bias, want, gamma, beta, eps, h)
				var got []float32
				g.onGPU(t, func(d *devAlloc) {
					px := store(d, x, fp16)
					err := g.wk.biasResidualLN(g.kernels(fp16), T, store(d, y, fp16), store(d, bias, fp16), px,
						store(d, gamma, fp16), store(d, beta, fp16), eps, h)
					if err != nil {
						t.Fatal(err)
					}
					got = load(d, px, T*h, fp16)
				})
				compare(t, "bias_residual_ln_"+precName(fp16), got, want, h, pick(fp16, tolLN32))
			})
		}
	}
}

// attentionLengths cross the 32-key tiles and the 8-query blocks.
var attentionLengths = []int{1, 31, 32, 33, 70, 300}

func TestKernelAttention(t *testing.T) {
	g := gpu(t)
	for _, fp16 := range []bool{false, true} {
		for _, hd := range [][2]int{{2, 32}, {12, 64}, {2, 128}, {3, 20}, {1, 1}} {
			heads, dim := hd[0], hd[1]
			t.Run(fmt.Sprintf("%s/heads=%d,D=%d", precName(fp16), heads, dim), func(t *testing.T) {
				h := heads * dim
				start := startOf(attentionLengths...)
				T := int(start[len(start)-1])
				maxLen := 0
				for _, n := range attentionLengths {
					maxLen = max(maxLen, n)
				}
				rng := rand.New(rand.NewPCG(uint64(heads), uint64(dim)))
				qkv := rounded(randSlice(rng, T*3*h, 0, 1), fp16)
				bias := rounded(randSlice(rng, 3*h, 0, 0.5), fp16)
				scale := float32(1 / math.Sqrt(float64(dim)))
				want := make([]float32, T*h)
				packed.Attention(qkv, bias, start, heads, dim, scale, want)
				var got []float32
				g.onGPU(t, func(d *devAlloc) {
					ctx := d.alloc(int64(T*h) * elemSize(fp16))
					err := g.wk.attention(g.kernels(fp16), len(attentionLengths), maxLen, store(d, qkv, fp16),
						store(d, bias, fp16), upload(d, start), heads, dim, scale, ctx)
					if err != nil {
						t.Fatal(err)
					}
					got = load(d, ctx, T*h, fp16)
				})
				compare(t, fmt.Sprintf("attention_%s (lengths %v)", precName(fp16), attentionLengths),
					got, want, h, pick(fp16, tolAttn32))
			})
		}
	}
}

func TestKernelPool(t *testing.T) {
	g := gpu(t)
	const h = 384
	// Text 3 is all zeros: its vector stays zero, norm 0, codes 0, scale 0.
	lengths := []int{1, 31, 300, 5, 64}
	const zeroText = 3
	start := startOf(lengths...)
	T := int(start[len(start)-1])
	b := len(lengths)
	for _, fp16 := range []bool{false, true} {
		rng := rand.New(rand.NewPCG(3, 5))
		x := rounded(randSlice(rng, T*h, 0.05, 1), fp16)
		for i := int(start[zeroText]) * h; i < int(start[zeroText+1])*h; i++ {
			x[i] = 0
		}
		for _, mode := range []packed.Mode{packed.ModeMean, packed.ModeCLS} {
			for _, dims := range []int{h, 128, 7, 1} {
				for _, q := range []bool{false, true} {
					name := fmt.Sprintf("%s/%v/dims=%d/int8=%v", precName(fp16), mode, dims, q)
					t.Run(name, func(t *testing.T) {
						kernel := "pool_" + precName(fp16)
						want, wantNorms := make([]float32, b*dims), make([]float32, b)
						packed.Pool(x, start, h, mode, dims, want, wantNorms, nil, nil)
						var got, norms, scales []float32
						var codes []int8
						g.onGPU(t, func(d *devAlloc) {
							out, pn := d.alloc(int64(4*b*dims)), d.alloc(int64(4*b))
							var pc, ps cu.DevicePtr // null: no int8
							if q {
								pc, ps = d.alloc(int64(b*dims)), d.alloc(int64(4*b))
							}
							err := g.wk.pool(g.kernels(fp16), b, store(d, x, fp16), upload(d, start), h, mode, dims, out, pn, pc, ps)
							if err != nil {
								t.Fatal(err)
							}
							got, norms = download[float32](d, out, b*dims), download[float32](d, pn, b)
							if q {
								codes, scales = download[int8](d, pc, b*dims), download[float32](d, ps, b)
							}
						})
						compare(t, kernel+" out", got, want, dims, tolPool32)
						compare(t, kernel+" norms", norms, wantNorms, 1, tolPool32)
						for k := range dims {
							if v := got[zeroText*dims+k]; v != 0 {
								t.Fatalf("%s: zero text %d: out[%d] = %v; want 0", kernel, zeroText, k, v)
							}
						}
						if norms[zeroText] != 0 {
							t.Errorf("%s: zero text %d: norm %v; want 0", kernel, zeroText, norms[zeroText])
						}
						if !q {
							return
						}
						// int8: bit-identical to quant.QuantizeInt8Into of the
						// GPU's own float output.
						wantCodes := make([]int8, dims)
						for r := range b {
							scale, err := quant.QuantizeInt8Into(wantCodes, got[r*dims:(r+1)*dims])
							if err != nil {
								t.Fatalf("%s: text %d: quantize the GPU output: %v", kernel, r, err)
							}
							if math.Float32bits(scales[r]) != math.Float32bits(scale) {
								t.Errorf("%s: text %d: scale %v (%#08x); quant.QuantizeInt8Into gives %v (%#08x)",
									kernel, r, scales[r], math.Float32bits(scales[r]), scale, math.Float32bits(scale))
							}
							for k := range dims {
								if c := codes[r*dims+k]; c != wantCodes[k] {
									t.Errorf("%s: text %d: code[%d] = %d (out %v); quant.QuantizeInt8Into gives %d",
										kernel, r, k, c, got[r*dims+k], wantCodes[k])
									break
								}
							}
						}
					})
				}
			}
		}
	}
}

func elemSize(fp16 bool) int64 {
	if fp16 {
		return 2
	}
	return 4
}

// pick returns the float32 tolerance, or the fp16 one.
func pick(fp16 bool, f32 tol) tol {
	if fp16 {
		return tolF16
	}
	return f32
}
