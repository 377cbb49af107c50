// kernels.cu: the CUDA kernels of embedd's native BERT encoder; the design,
// the forward pass and the kernel contracts are in docs/native-cuda.md
// ("Kernels"). Each kernel is a line-by-line translation of its CPU twin in
// internal/accel/packed and computes in float32 whatever the storage type.
//
// Compiled to PTX by scripts/ptx.sh (`make ptx`) with NVRTC 12.9 for
// compute_80, IEEE division and square root, no flush to zero, no fast math;
// the PTX is embedded by kernels.go and JIT-compiled by the driver. No
// includes, so NVRTC needs no headers.
//
// Every kernel has two extern "C" entries: <name>_f32 (storage float) and
// <name>_f16 (storage IEEE half held as unsigned short, converted with the
// PTX cvt instructions). All pointers are device pointers; int is 32-bit;
// element offsets that can pass 2^31 are computed in 64 bits.
//
// Limits, checked here (a violation traps, which fails the launch; the host
// validates them before it launches anything): H <= kMaxHidden for the two
// LayerNorm kernels, 1 <= headDim <= kMaxHeadDim for attention. Every block
// is at most kBlock threads (__launch_bounds__; a larger block fails to
// launch); attention needs exactly kBlock.

namespace {

// Enumerators, not constexpr variables: under -default-device a
// namespace-scope variable becomes a __device__ global.
enum : int {
  kBlock = 256,                      // threads per block, every kernel
  kWarps = kBlock / 32,              // warps per block
  kMaxHidden = 4096,                 // H bound of the LayerNorm row cache
  kMaxHeadDim = 128,                 // head dim bound of attention
  kDimChunks = kMaxHeadDim / 32,     // head dims per lane
  kTile = 32,                        // keys per shared-memory tile
  kQW = 4,                           // attention: query slots per warp
  kQueries = kWarps * kQW,           // attention: queries per block
};
enum : unsigned { kFullMask = 0xffffffffu };

// ---- storage <-> float32 ------------------------------------------------

__device__ __forceinline__ float to_f32(float v) { return v; }

// EMBEDD_KERNEL_EMU is defined only by the CPU emulator of this source
// (testdata/emu, emu_test.go), which has no PTX: there the two conversions
// are the same IEEE ones done by the host compiler. NVRTC never sees it.
__device__ __forceinline__ float to_f32(unsigned short h) {
#ifdef EMBEDD_KERNEL_EMU
  return embedd_emu_f16_to_f32(h);
#else
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
#endif
}

template <typename T> __device__ __forceinline__ T from_f32(float v);

template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }

// Round to nearest even, as the CPU's float32 -> fp16 conversion.
template <> __device__ __forceinline__ unsigned short from_f32<unsigned short>(float v) {
#ifdef EMBEDD_KERNEL_EMU
  return embedd_emu_f32_to_f16(v);
#else
  unsigned short h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
  return h;
#endif
}

// F4: four floats read from shared memory in one 16-byte load (the arrays
// are 16-byte aligned and every offset read through it is a multiple of 4).
struct alignas(16) F4 {
  float x, y, z, w;
};

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }

// ---- reductions -----------------------------------------------------------

// Butterfly reductions: every lane ends with the same, bit-identical result
// (each step adds the same two partial values, and IEEE + is commutative).
template <typename V> __device__ __forceinline__ V warp_sum(V v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

// block_sum returns the sum of v over the block to every thread.
// blockDim.x must be a multiple of 32 and at most kBlock; scratch holds
// kWarps values. Every thread of the block must call it. It ends with a
// barrier, so scratch may be reused at once.
template <typename V> __device__ __forceinline__ V block_sum(V v, V* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < (int)(blockDim.x >> 5) ? scratch[lane] : V(0);
  v = warp_sum(v);
  __syncthreads();
  return v;
}

// block_max is block_sum with max, for values >= 0.
__device__ __forceinline__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_max(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < (int)(blockDim.x >> 5) ? scratch[lane] : 0.0f;
  v = warp_max(v);
  __syncthreads();
  return v;
}

// ---- LayerNorm --------------------------------------------------------------

// layer_norm_store finishes a LayerNorm of the row whose H float32 values
// this block has put in row[] (thread tid holds elements tid, tid+blockDim.x,
// ...; each thread reads back only its own elements, so no barrier is needed
// before the call) and whose per-thread partial sums are `sum`. Two passes in
// float32, biased variance: out = (v - mean) / sqrt(var + eps) * gamma + beta,
// with IEEE sqrtf and division (not rsqrtf), as the CPU twin.
template <typename T>
__device__ __forceinline__ void layer_norm_store(const float* row, float sum,
                                                 const T* __restrict__ gamma,
                                                 const T* __restrict__ beta, float eps, int H,
                                                 T* __restrict__ out) {
  __shared__ float red[kWarps];
  const float mean = block_sum(sum, red) / (float)H;
  float sq = 0.0f;
  for (int i = threadIdx.x; i < H; i += blockDim.x) {
    const float d = row[i] - mean;
    sq += d * d;
  }
  const float var = block_sum(sq, red) / (float)H;
  const float sd = sqrtf(var + eps);
  for (int i = threadIdx.x; i < H; i += blockDim.x) {
    out[i] = from_f32<T>((row[i] - mean) / sd * to_f32(gamma[i]) + to_f32(beta[i]));
  }
}

// Grid (T), block 256: one block per token t.
// out[t] = LN((word[ids[t]] + typeEmb[types[t]]) + posEmb[pos[t]]), added in
// that order as transformers' BertEmbeddings does, like the CPU twin.
// The host validates ids < V, pos < P and types < TV.
template <typename T>
__device__ __forceinline__ void embed_ln(const int* __restrict__ ids, const int* __restrict__ types,
                                         const int* __restrict__ pos, const T* __restrict__ word,
                                         const T* __restrict__ posEmb, const T* __restrict__ typeEmb,
                                         const T* __restrict__ gamma, const T* __restrict__ beta,
                                         float eps, int H, T* __restrict__ out) {
  __shared__ float row[kMaxHidden];
  if (H > kMaxHidden) __trap();
  const int t = blockIdx.x;
  const T* w = word + (long long)ids[t] * H;
  const T* p = posEmb + (long long)pos[t] * H;
  const T* y = typeEmb + (long long)types[t] * H;
  float sum = 0.0f;
  for (int i = threadIdx.x; i < H; i += blockDim.x) {
    const float v = (to_f32(w[i]) + to_f32(y[i])) + to_f32(p[i]);
    row[i] = v;
    sum += v;
  }
  layer_norm_store(row, sum, gamma, beta, eps, H, out + (long long)t * H);
}

// Grid (T), block 256: one block per token t.
// x[t] = LN(y[t] + bias + x[t]), in place.
template <typename T>
__device__ __forceinline__ void bias_residual_ln(const T* __restrict__ y, const T* __restrict__ bias,
                                                 T* __restrict__ x, const T* __restrict__ gamma,
                                                 const T* __restrict__ beta, float eps, int H) {
  __shared__ float row[kMaxHidden];
  if (H > kMaxHidden) __trap();
  const long long off = (long long)blockIdx.x * H;
  const T* yr = y + off;
  T* xr = x + off;
  float sum = 0.0f;
  for (int i = threadIdx.x; i < H; i += blockDim.x) {
    const float v = to_f32(yr[i]) + to_f32(bias[i]) + to_f32(xr[i]);
    row[i] = v;
    sum += v;
  }
  layer_norm_store(row, sum, gamma, beta, eps, H, xr);
}

// ---- bias + GELU ------------------------------------------------------------

// Exact GELU: 0.5 v (1 + erf(v / sqrt 2)), float32 division by float32(sqrt 2)
// as the CPU twin.
__device__ __forceinline__ float gelu(float v) {
  return 0.5f * v * (1.0f + erff(v / 1.41421356237309505f));
}

// Grid (min(ceil(rows*cols/256), 65535*4)), block 256, grid-stride loop over
// the rows*cols elements. x[r, c] = gelu(x[r, c] + bias[c]), in place.
template <typename T>
__device__ __forceinline__ void bias_gelu(T* __restrict__ x, const T* __restrict__ bias, int rows,
                                          int cols) {
  const long long n = (long long)rows * cols;
  const long long stride = (long long)gridDim.x * blockDim.x;
  long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;  // also covers rows or cols <= 0
  // The column advances by stride % cols per step: one division per thread
  // instead of one per element, in 32 bits unless n needs more (a 64-bit
  // division is a long software sequence on the GPU, and most threads do
  // a single element).
  int c, step;
  if (n <= 0x7fffffffLL) {
    c = (int)((unsigned)i % (unsigned)cols);
    step = (int)((unsigned)stride % (unsigned)cols);
  } else {
    c = (int)(i % cols);
    step = (int)(stride % cols);
  }
  for (; i < n; i += stride) {
    x[i] = from_f32<T>(gelu(to_f32(x[i]) + to_f32(bias[c])));
    c += step;
    if (c >= cols) c -= cols;
  }
}

// ---- attention --------------------------------------------------------------

// Grid (ceil(maxLen/kQueries), heads, B), block 256 (exactly): 8 warps of
// kQW query slots each. Block (qb, h, b) handles queries q0 .. q0+31 of text
// b, head h (q0 = 32 qb); slot r of warp w is query i = q0 + w + 8 r, so the
// queries of a short text spread over all warps. s = start[b], len =
// start[b+1] - s; H = heads * headDim; qkv rows are [Q | K | V], 3H wide.
// With D = headDim:
//   q   = (qkv[s+i, h*D + d] + bias[h*D + d]) * scale
//   k_j = qkv[s+j, H + h*D + d] + bias[H + h*D + d]
//   v_j = qkv[s+j, 2H + h*D + d] + bias[2H + h*D + d],  j < len
//   ctx[s+i, h*D + d] = sum_j softmax_j(q . k_j) v_j
// The block's 32 queries are staged once in shared memory (qs, rows of D4 =
// D rounded up to 4, zero-padded, so dot products read 4 dims at a time and
// broadcast). Keys come 32 at a time: per tile, the K tile is loaded into kv
// (bias added on load, rows of stride S: an odd number of float4s, so the
// lanes of a quarter-warp hit distinct banks), each lane computes the score
// of key `lane` for each of its warp's queries (dims in order), the online
// softmax updates the running max m and rescales the accumulator per query,
// the numerators p go to ps; then the V tile replaces the K tile in kv and
// acc += p_j v_j for keys j in order, p read back 4 at a time (broadcast).
// Lane owns dims d = lane + 32 c of each accumulator. The softmax
// denominator is kept per lane (its own keys' numerators, rescaled with the
// accumulator) and summed over the warp at the end. Every thread of the
// block loads and meets every barrier; a warp computes only its slots below
// len (a count uniform over the warp, so shuffles see every lane); a block
// whose first query is past the text's end returns before the first barrier
// (the whole block does). Rows of kv past the tile's keys are never read.
template <typename T>
__device__ __forceinline__ void attention(const T* __restrict__ qkv, const T* __restrict__ bias,
                                          const int* __restrict__ start, int heads, int headDim,
                                          float scale, T* __restrict__ ctx) {
  alignas(16) __shared__ float qs[kQueries * kMaxHeadDim];    // 16 KiB
  alignas(16) __shared__ float kv[kTile * (kMaxHeadDim + 4)];  // 16.5 KiB
  alignas(16) __shared__ float ps[kWarps * kQW * kTile];       // 4 KiB
  const int D = headDim;
  if (D < 1 || D > kMaxHeadDim) __trap();
  const int b = blockIdx.z, h = blockIdx.y;
  const int s = start[b];
  const int len = start[b + 1] - s;
  const int q0 = blockIdx.x * kQueries;
  if (q0 >= len) return;  // uniform over the block, before any barrier

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int D4 = (D + 3) & ~3;                  // qs row stride; dims D..D4-1 are 0
  const int S = ((D4 >> 2) & 1) ? D4 : D4 + 4;  // kv row stride, S/4 odd
  // Active slots of this warp: r < nq <=> q0 + warp + 8 r < len.
  const int nq = min(kQW, max(0, (len - q0 - warp + kWarps - 1) / kWarps));
  const int H = heads * D;
  const long long ld = 3LL * H;                     // qkv row stride
  const T* rows = qkv + (long long)s * ld + h * D;  // Q part of token s, head h
  const T* qb = bias + h * D;
  const T* kb = qb + H;
  const T* vb = qb + 2 * H;

  // The block's queries, scaled (rows past the text are zeros, never used);
  // read only after the first barrier below.
  for (int e = threadIdx.x; e < kQueries * D4; e += kBlock) {
    const int qi = e / D4, d = e - qi * D4;
    float v = 0.0f;
    if (d < D && q0 + qi < len) v = (to_f32(rows[(long long)(q0 + qi) * ld + d]) + to_f32(qb[d])) * scale;
    qs[e] = v;
  }

  float m[kQW], l[kQW], acc[kQW][kDimChunks];
#pragma unroll
  for (int r = 0; r < kQW; ++r) {
    m[r] = neg_inf();
    l[r] = 0.0f;
#pragma unroll
    for (int c = 0; c < kDimChunks; ++c) acc[r][c] = 0.0f;
  }

  for (int kt = 0; kt < len; kt += kTile) {
    const int nk = min(kTile, len - kt);  // keys in this tile, >= 1
    __syncthreads();                       // the previous tile's V and p are consumed
    for (int e = threadIdx.x; e < nk * D4; e += kBlock) {
      const int j = e / D4, d = e - j * D4;
      kv[j * S + d] = d < D ? to_f32(rows[(long long)(kt + j) * ld + H + d]) + to_f32(kb[d]) : 0.0f;
    }
    __syncthreads();
    float sc[kQW];
#pragma unroll
    for (int r = 0; r < kQW; ++r) sc[r] = 0.0f;
    if (lane < nk) {
      const float* kr = kv + lane * S;
      for (int d = 0; d < D4; d += 4) {
        const F4 k4 = *reinterpret_cast<const F4*>(kr + d);
#pragma unroll
        for (int r = 0; r < kQW; ++r) {
          if (r < nq) {
            const F4 q4 = *reinterpret_cast<const F4*>(qs + (warp + kWarps * r) * D4 + d);
            sc[r] += q4.x * k4.x;
            sc[r] += q4.y * k4.y;
            sc[r] += q4.z * k4.z;
            sc[r] += q4.w * k4.w;
          }
        }
      }
    }
#pragma unroll
    for (int r = 0; r < kQW; ++r) {
      if (r < nq) {
        const float x = lane < nk ? sc[r] : neg_inf();
        const float mn = fmaxf(m[r], warp_max(x));  // finite: key kt is in the text
        const float alpha = expf(m[r] - mn);        // 0 on the first tile
        const float p = expf(x - mn);               // 0 past the text's end
        l[r] = l[r] * alpha + p;
#pragma unroll
        for (int c = 0; c < kDimChunks; ++c) acc[r][c] *= alpha;
        m[r] = mn;
        ps[(warp * kQW + r) * kTile + lane] = p;
      }
    }
    __syncthreads();  // the K tile is consumed and p written
    for (int e = threadIdx.x; e < nk * D; e += kBlock) {
      const int j = e / D, d = e - j * D;
      kv[j * S + d] = to_f32(rows[(long long)(kt + j) * ld + 2 * H + d]) + to_f32(vb[d]);
    }
    __syncthreads();
    const float* pw = ps + warp * kQW * kTile;
    int j = 0;
    for (; j + 4 <= nk; j += 4) {
      F4 p4[kQW];
#pragma unroll
      for (int r = 0; r < kQW; ++r)
        if (r < nq) p4[r] = *reinterpret_cast<const F4*>(pw + r * kTile + j);
#pragma unroll
      for (int c = 0; c < kDimChunks; ++c) {
        const int d = lane + 32 * c;
        if (d < D) {
          const float v0 = kv[j * S + d], v1 = kv[(j + 1) * S + d];
          const float v2 = kv[(j + 2) * S + d], v3 = kv[(j + 3) * S + d];
#pragma unroll
          for (int r = 0; r < kQW; ++r) {
            if (r < nq) {
              acc[r][c] += p4[r].x * v0;
              acc[r][c] += p4[r].y * v1;
              acc[r][c] += p4[r].z * v2;
              acc[r][c] += p4[r].w * v3;
            }
          }
        }
      }
    }
    for (; j < nk; ++j) {
#pragma unroll
      for (int c = 0; c < kDimChunks; ++c) {
        const int d = lane + 32 * c;
        if (d < D) {
          const float v = kv[j * S + d];
#pragma unroll
          for (int r = 0; r < kQW; ++r)
            if (r < nq) acc[r][c] += pw[r * kTile + j] * v;
        }
      }
    }
  }

#pragma unroll
  for (int r = 0; r < kQW; ++r) {
    if (r < nq) {
      const float sum = warp_sum(l[r]);
      T* out = ctx + (long long)(s + q0 + warp + kWarps * r) * H + h * D;
#pragma unroll
      for (int c = 0; c < kDimChunks; ++c) {
        const int d = lane + 32 * c;
        if (d < D) out[d] = from_f32<T>(acc[r][c] / sum);
      }
    }
  }
}

// ---- pooling, normalization, int8 ------------------------------------------

// Grid (B), block 256: one block per text b, s = start[b], n = start[b+1] - s
// (>= 1, the host rejects empty texts). Only the first `dims` columns are
// pooled: p[k] = mode == 1 ? x[s, k] : (sum_t x[s+t, k]) / n (float32 sums in
// token order), k < dims <= H. norm = sqrt(sum p^2), summed in double;
// norms[b] = (float)norm (not finite when x was not: the host's NaN check);
// out[b, k] = norm < 1e-12 ? p[k] : p[k] * (float)(1/norm).
// codes != null: int8 exactly as quant.QuantizeInt8 of out[b]: m = max|out[b]|,
// m == 0 gives zero codes and scales[b] = 0, otherwise
// codes[b, k] = round((double)out[b, k] * (127.0 / m)), half away from zero,
// scales[b] = (float)(m / 127.0). out[b] is the scratch for p: each thread
// reads back only the columns it wrote.
template <typename T>
__device__ __forceinline__ void pool(const T* __restrict__ x, const int* __restrict__ start, int H,
                                     int mode, int dims, float* __restrict__ out,
                                     float* __restrict__ norms, signed char* __restrict__ codes,
                                     float* __restrict__ scales) {
  __shared__ double dred[kWarps];
  __shared__ float fred[kWarps];
  const int b = blockIdx.x;
  const int s = start[b];
  const int n = start[b + 1] - s;
  const T* xs = x + (long long)s * H;
  float* o = out + (long long)b * dims;

  double sq = 0.0;
  for (int k = threadIdx.x; k < dims; k += blockDim.x) {
    float p;
    if (mode == 1) {
      p = to_f32(xs[k]);
    } else {
      float a = 0.0f;
      const T* c = xs + k;
      for (int t = 0; t < n; ++t) a += to_f32(c[(long long)t * H]);
      p = a / (float)max(n, 1);  // an empty text (the host rejects it) pools to 0
    }
    o[k] = p;
    sq += (double)p * (double)p;
  }
  const double norm = sqrt(block_sum(sq, dred));
  if (threadIdx.x == 0) norms[b] = (float)norm;
  const float inv = norm < 1e-12 ? 1.0f : (float)(1.0 / norm);

  float mx = 0.0f;
  for (int k = threadIdx.x; k < dims; k += blockDim.x) {
    const float v = o[k] * inv;
    o[k] = v;
    mx = fmaxf(mx, fabsf(v));
  }
  if (codes == nullptr) return;  // uniform over the block

  mx = block_max(mx, fred);
  signed char* c = codes + (long long)b * dims;
  if (mx == 0.0f) {
    for (int k = threadIdx.x; k < dims; k += blockDim.x) c[k] = 0;
    if (threadIdx.x == 0) scales[b] = 0.0f;
    return;
  }
  const double r = 127.0 / (double)mx;
  for (int k = threadIdx.x; k < dims; k += blockDim.x) {
    // |out * r| <= 127 (1 + 2^-52), which rounds to at most 127.
    c[k] = (signed char)round((double)o[k] * r);
  }
  if (threadIdx.x == 0) scales[b] = (float)((double)mx / 127.0);
}

}  // namespace

// ---- entries ------------------------------------------------------------------
// One per kernel and storage type: _f32 float, _f16 fp16 bits in unsigned
// short. Names, parameter order and launch geometry are the contract of
// docs/native-cuda.md and kernels.go.

#define EMBEDD_ENTRIES(SFX, T)                                                               \
  extern "C" __global__ void __launch_bounds__(kBlock)                                        \
      embed_ln_##SFX(const int* __restrict__ ids, const int* __restrict__ types,              \
                     const int* __restrict__ pos, const T* __restrict__ word,                  \
                     const T* __restrict__ posEmb, const T* __restrict__ typeEmb,              \
                     const T* __restrict__ gamma, const T* __restrict__ beta, float eps,       \
                     int H, T* __restrict__ out) {                                             \
    embed_ln<T>(ids, types, pos, word, posEmb, typeEmb, gamma, beta, eps, H, out);            \
  }                                                                                           \
  extern "C" __global__ void __launch_bounds__(kBlock)                                        \
      bias_gelu_##SFX(T* __restrict__ x, const T* __restrict__ bias, int rows, int cols) {    \
    bias_gelu<T>(x, bias, rows, cols);                                                        \
  }                                                                                           \
  extern "C" __global__ void __launch_bounds__(kBlock)                                        \
      bias_residual_ln_##SFX(const T* __restrict__ y, const T* __restrict__ bias,             \
                             T* __restrict__ x, const T* __restrict__ gamma,                   \
                             const T* __restrict__ beta, float eps, int H) {                   \
    bias_residual_ln<T>(y, bias, x, gamma, beta, eps, H);                                     \
  }                                                                                           \
  extern "C" __global__ void __launch_bounds__(kBlock)                                        \
      attention_##SFX(const T* __restrict__ qkv, const T* __restrict__ bias,                  \
                      const int* __restrict__ start, int heads, int headDim, float scale,      \
                      T* __restrict__ ctx) {                                                   \
    attention<T>(qkv, bias, start, heads, headDim, scale, ctx);                               \
  }                                                                                           \
  extern "C" __global__ void __launch_bounds__(kBlock)                                        \
      pool_##SFX(const T* __restrict__ x, const int* __restrict__ start, int H, int mode,     \
                 int dims, float* __restrict__ out, float* __restrict__ norms,                 \
                 signed char* __restrict__ codes, float* __restrict__ scales) {                \
    pool<T>(x, start, H, mode, dims, out, norms, codes, scales);                              \
  }

EMBEDD_ENTRIES(f32, float)
EMBEDD_ENTRIES(f16, unsigned short)
