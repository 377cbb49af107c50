package packed

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// Mode is how pool turns a text's token states into one vector; its value
// is the `mode` argument of the pool kernel.
type Mode int

const (
	// ModeMean averages the states of the text's tokens.
	ModeMean Mode = 0
	// ModeCLS takes the state of the text's first token.
	ModeCLS Mode = 1
)

// String returns "mean", "cls" or "Mode(n)".
func (m Mode) String() string {
	switch m {
	case ModeMean:
		return "mean"
	case ModeCLS:
		return "cls"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

func (m Mode) valid() bool { return m == ModeMean || m == ModeCLS }

// minNorm is the norm below which pool leaves a vector as it is: the floor
// torch.nn.functional.normalize divides by, and what the ONNX graphs use.
const minNorm = 1e-12

// AttentionTile is the number of keys the attention kernel holds in shared
// memory at a time, and so the granularity of its online softmax.
const AttentionTile = 32

// The kernel twins below do no validation beyond Go's bounds checks: their
// callers (Forward, and the GPU encoder before it launches the kernels)
// check the batch and the buffers. Each computes in float32 except where it
// says double, in the order its doc gives, so that a CUDA kernel written
// from it computes the same values up to the order of parallel sums.

// EmbedLN writes, for each token t, LN(word[ids[t]] + typeEmb[types[t]] +
// posEmb[pos[t]]) into out[t*H : (t+1)*H], H = w.Hidden(): the word and type
// embeddings are added first, then the position embedding, as BertEmbeddings
// does, and the sum is normalized with w's embedding LayerNorm.
func EmbedLN(ids, types, pos []int32, w *Weights, out []float32) {
	h, eps := w.Hidden(), w.Eps()
	for t, id := range ids {
		row := out[t*h : (t+1)*h : (t+1)*h]
		word := w.Word[int(id)*h : int(id+1)*h]
		typ := w.TypeEmb[int(types[t])*h : int(types[t]+1)*h]
		p := w.PosEmb[int(pos[t])*h : int(pos[t]+1)*h]
		for k := range row {
			row[k] = word[k] + typ[k] + p[k]
		}
		layerNorm(row, w.EmbLNGamma, w.EmbLNBeta, eps)
	}
}

// layerNorm normalizes x in place: two passes in float32, mean then the
// biased variance, y = (x - mean) / sqrt(var + eps) * gamma + beta.
func layerNorm(x, gamma, beta []float32, eps float32) {
	gamma, beta = gamma[:len(x)], beta[:len(x)]
	var sum float32
	for _, v := range x {
		sum += v
	}
	mean := sum / float32(len(x))
	var ss float32
	for _, v := range x {
		d := v - mean
		ss += d * d
	}
	sd := float32(math.Sqrt(float64(ss/float32(len(x)) + eps)))
	for k, v := range x {
		x[k] = (v-mean)/sd*gamma[k] + beta[k]
	}
}

// BiasGELU computes x = gelu(x + bias[col]) in place for the rows×cols
// matrix x, with the exact GELU gelu(v) = 0.5·v·(1 + erf(v / √2)).
func BiasGELU(x, bias []float32, rows, cols int) {
	bias = bias[:cols]
	for r := range rows {
		row := x[r*cols : (r+1)*cols : (r+1)*cols]
		for c, v := range row {
			v += bias[c]
			row[c] = 0.5 * v * (1 + erf32(v/math.Sqrt2))
		}
	}
}

// BiasResidualLN computes x[t] = LN(y[t] + bias + x[t]) in place for every
// H-wide row t of x (the bias is added to y first), with gamma, beta and eps.
func BiasResidualLN(y, bias, x, gamma, beta []float32, eps float32, H int) {
	bias = bias[:H]
	for t := range len(x) / H {
		xr := x[t*H : (t+1)*H : (t+1)*H]
		yr := y[t*H : (t+1)*H : (t+1)*H]
		for k := range xr {
			xr[k] = yr[k] + bias[k] + xr[k]
		}
		layerNorm(xr, gamma, beta, eps)
	}
}

// Attention computes multi-head self-attention on the packed QKV
// projections qkv ([T, 3H], H = heads·headDim, without bias) within each
// text of start, writing the context into ctx ([T, H]). For text b
// (s = start[b], n = its length), head h and query i:
//
//	q   = (qkv[s+i, h·D : (h+1)·D] + bias[h·D : (h+1)·D]) · scale
//	k_j = qkv[s+j, H + h·D ...] + bias[H + h·D ...]
//	v_j = qkv[s+j, 2H + h·D ...] + bias[2H + h·D ...],  j < n
//	ctx[s+i, h·D : (h+1)·D] = Σ_j softmax_j(q·k_j) v_j
//
// The keys are taken in tiles of AttentionTile with an online softmax, as
// the GPU kernel does: per tile the scores s_j = q·k_j, the tile maximum,
// m' = max(m, tile max), c = exp(m - m') (0 for the first tile),
// l = l·c + Σ_j exp(s_j - m'), acc = acc·c + Σ_j exp(s_j - m')·v_j in key
// order, m = m'; finally ctx = acc / l.
func Attention(qkv, bias []float32, start []int32, heads, headDim int, scale float32, ctx []float32) {
	attention(qkv, bias, start, heads, headDim, scale, ctx, nil, 0, heads*(len(start)-1))
}

// attention is Attention for the (text, head) pairs lo..hi-1, numbered
// text·heads + head, with buf as scratch; it returns buf, grown if needed.
// The dot products of a tile and the update of the context go through
// blas32.Gemv: Gemv(NoTrans) gives the tile's scores, Gemv(Trans) with
// beta = c computes acc·c + Σ_j p_j v_j.
func attention(qkv, bias []float32, start []int32, heads, d int, scale float32, ctx, buf []float32, lo, hi int) []float32 {
	h := heads * d
	stride := 3 * h
	maxLen := 0
	for b := lo / heads; b <= (hi-1)/heads && b < len(start)-1; b++ {
		maxLen = max(maxLen, int(start[b+1]-start[b]))
	}
	buf = grow(buf, 2*maxLen*d+2*d+AttentionTile)
	keys, vals := buf[:maxLen*d], buf[maxLen*d:2*maxLen*d]
	q, acc := buf[2*maxLen*d:2*maxLen*d+d], buf[2*maxLen*d+d:2*maxLen*d+2*d]
	scores := buf[2*maxLen*d+2*d:]
	qv, accv := blas32.Vector{N: d, Inc: 1, Data: q}, blas32.Vector{N: d, Inc: 1, Data: acc}
	for job := lo; job < hi; job++ {
		b, hd := job/heads, job%heads
		s, n := int(start[b]), int(start[b+1]-start[b])
		qo, ko, vo := hd*d, h+hd*d, 2*h+hd*d
		qb, kb, vb := bias[qo:qo+d], bias[ko:ko+d], bias[vo:vo+d]
		for j := range n {
			row := qkv[(s+j)*stride : (s+j+1)*stride]
			kr, vr := row[ko:ko+d], row[vo:vo+d]
			kj, vj := keys[j*d:(j+1)*d], vals[j*d:(j+1)*d]
			for c := range kj {
				kj[c] = kr[c] + kb[c]
				vj[c] = vr[c] + vb[c]
			}
		}
		for i := range n {
			qr := qkv[(s+i)*stride+qo : (s+i)*stride+qo+d]
			for c := range q {
				q[c] = (qr[c] + qb[c]) * scale
			}
			m, l := float32(math.Inf(-1)), float32(0)
			for j0 := 0; j0 < n; j0 += AttentionTile {
				tile := scores[:min(AttentionTile, n-j0)]
				tv := blas32.Vector{N: len(tile), Inc: 1, Data: tile}
				kt := blas32.General{Rows: len(tile), Cols: d, Stride: d, Data: keys[j0*d : (j0+len(tile))*d]}
				vt := blas32.General{Rows: len(tile), Cols: d, Stride: d, Data: vals[j0*d : (j0+len(tile))*d]}
				blas32.Gemv(blas.NoTrans, 1, kt, qv, 0, tv) // s_j = q·k_j
				tmax := float32(math.Inf(-1))
				for _, sc := range tile {
					tmax = max(tmax, sc)
				}
				mNew := max(m, tmax)
				corr := exp32(m - mNew) // 0 for the first tile
				var sum float32
				for jj, sc := range tile {
					p := exp32(sc - mNew)
					tile[jj] = p
					sum += p
				}
				l = l*corr + sum
				blas32.Gemv(blas.Trans, 1, vt, tv, corr, accv) // acc = acc·c + Σ_j p_j v_j
				m = mNew
			}
			out := ctx[(s+i)*h+qo : (s+i)*h+qo+d]
			for c, a := range acc {
				out[c] = a / l
			}
		}
	}
	return buf
}

// Pool pools each text of start from the token states x ([T, H]) and writes
// its first dims values, L2-normalized, into out[b·dims : (b+1)·dims] and
// the norm into norms[b]:
//
//   - p is, for ModeMean, the float32 sum of the text's token states in
//     token order divided by float32(its length) (an empty text, which Pack
//     never makes, pools to zeros); for ModeCLS the state of its first
//     token; truncated to its first dims values;
//   - norm = sqrt(Σ p²) summed in double; norms[b] = float32(norm);
//   - out = p if norm < 1e-12, else p · float32(1/norm).
//
// When codes is not nil, each text's output is also quantized to int8 with
// one scale exactly as quant.QuantizeInt8 does: m = max|out|; m == 0 gives
// zero codes and scales[b] = 0; otherwise r = 127/double(m),
// codes[b·dims+k] = round(double(out[k])·r) (halves away from zero) and
// scales[b] = float32(double(m)/127). It panics on a Mode other than
// ModeMean and ModeCLS.
func Pool(x []float32, start []int32, H int, mode Mode, dims int, out, norms []float32, codes []int8, scales []float32) {
	if !mode.valid() {
		panic(fmt.Sprintf("packed: pool: %v", mode))
	}
	for b := range len(start) - 1 {
		p := out[b*dims : (b+1)*dims : (b+1)*dims]
		s, e := int(start[b]), int(start[b+1])
		if mode == ModeCLS {
			copy(p, x[s*H:s*H+dims])
		} else {
			clear(p)
			for t := s; t < e; t++ {
				row := x[t*H : t*H+dims]
				for k, v := range row {
					p[k] += v
				}
			}
			n := float32(max(e-s, 1))
			for k := range p {
				p[k] /= n
			}
		}
		var ss float64
		for _, v := range p {
			ss += float64(v) * float64(v)
		}
		norm := math.Sqrt(ss)
		norms[b] = float32(norm)
		if norm >= minNorm {
			inv := float32(1 / norm)
			for k := range p {
				p[k] *= inv
			}
		}
		if codes != nil {
			scales[b] = quantize(codes[b*dims:(b+1)*dims], p)
		}
	}
}

// quantize is quant.QuantizeInt8Into for finite x.
func quantize(codes []int8, x []float32) float32 {
	var m float32
	for _, v := range x {
		m = max(m, float32(math.Abs(float64(v))))
	}
	if m == 0 {
		clear(codes)
		return 0
	}
	r := 127 / float64(m)
	for k, v := range x {
		codes[k] = int8(math.Round(float64(v) * r))
	}
	return float32(float64(m) / 127)
}

// Linear computes y = x·wᵀ for the rows×in matrix x and the out×in matrix
// w (a PyTorch Linear weight), writing the rows×out matrix y, with gonum's
// blas32.Gemm(NoTrans, Trans, 1, x, w, 0, y) on blocks of at most
// linearBlock rows of x and of w, run on up to GOMAXPROCS goroutines. Blocks
// that small make gonum compute each element as one dot product over the
// full length in (its parallel path would split it in pieces of 64), so y
// does not depend on rows or on the number of goroutines.
func Linear(x []float32, rows int, w []float32, out, in int, y []float32) {
	rb, cb := (rows+linearBlock-1)/linearBlock, (out+linearBlock-1)/linearBlock
	blocks := rb * cb
	block := func(i int) {
		r0, c0 := i/cb*linearBlock, i%cb*linearBlock
		r1, c1 := min(r0+linearBlock, rows), min(c0+linearBlock, out)
		blas32.Gemm(blas.NoTrans, blas.Trans, 1,
			blas32.General{Rows: r1 - r0, Cols: in, Stride: in, Data: x[r0*in : r1*in]},
			blas32.General{Rows: c1 - c0, Cols: in, Stride: in, Data: w[c0*in : c1*in]},
			0, blas32.General{Rows: r1 - r0, Cols: c1 - c0, Stride: out, Data: y[r0*out+c0 : (r1-1)*out+c1]})
	}
	workers := min(runtime.GOMAXPROCS(0), blocks)
	if rows*out*in < minParallelWork {
		workers = 1
	}
	if workers <= 1 {
		for i := range blocks {
			block(i)
		}
		return
	}
	var next atomic.Int64
	run := func() {
		for i := int(next.Add(1)) - 1; i < blocks; i = int(next.Add(1)) - 1 {
			block(i)
		}
	}
	var wg sync.WaitGroup
	for range workers - 1 {
		wg.Go(run)
	}
	run()
	wg.Wait()
}

// linearBlock is the side of the blocks Linear hands to gonum: below
// gonum's threshold for splitting a product (4 blocks of 64×64).
const linearBlock = 64

// minParallelWork is the least number of multiply-adds worth splitting
// between goroutines.
const minParallelWork = 1 << 18

func exp32(x float32) float32 { return float32(math.Exp(float64(x))) }
func erf32(x float32) float32 { return float32(math.Erf(float64(x))) }
