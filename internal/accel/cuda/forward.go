//go:build cuda

package cuda

import (
	"context"
	"errors"
	"fmt"
	"math"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/embedd/embedd/internal/accel/cudakernels"
	"github.com/embedd/embedd/internal/accel/packed"
)

// maxArgs is the most parameters a kernel takes (embed_ln: 11).
const maxArgs = 12

// worker is what one Encode call runs with: a stream, a cuBLAS handle bound
// to it, events to wait on, device buffers for MaxTokens tokens and pinned
// host staging buffers.
//
// The events are blocking-sync: a host thread waiting on one sleeps instead
// of spinning on a core the tokenizer could use. events[0] and events[1]
// mark the ends of alternate layers (the host waits for layer l-1 after
// enqueuing layer l), events[2] the end of a chunk's copy back.
//
// Activations (storage type, row-major):
//
//	x [T, H]          the hidden state
//	s [T, max(3H, I)] QKVbuf [T, 3H], then Y [T, H] (attention output
//	                  projection), then F [T, I]
//	c [T, H]          Ctx [T, H], then Y [T, H] (feed-forward output)
//
// Each buffer is reused only once its last reader has run (stream order),
// and no GEMM writes a buffer it reads, so three buffers do the work of the
// doc's five (X, QKVbuf, Ctx, Y, F).
//
// A chunk's inputs, int32 and contiguous so that one copy moves them:
// ids [T], types [T], pos [T], start [B+1] (in, hIn). Its results,
// contiguous for one copy back: out [B, dims] float32, norms [B] float32,
// scales [B] float32, codes [B, dims] int8 (res, hRes).
type worker struct {
	stream    cu.Stream
	hasStream bool
	blas      uintptr // cublasHandle_t
	events    [3]cu.Event
	nEvents   int

	dev     arena
	x, s, c cu.DevicePtr
	in, res cu.DevicePtr

	host pinned
	hIn  []int32        // layoutInputs(MaxTokens, maxTexts).len
	hRes unsafe.Pointer // resultBytes(maxTexts, H), in host (pinned, C) memory

	batch packed.Batch

	args [maxArgs]uint64         // kernel parameter values, each in a 64-bit slot
	argp [maxArgs]unsafe.Pointer // &args[i]
}

// initWorker creates wk's stream, cuBLAS handle (unless it has one),
// events and buffers. On error the caller releases wk.
func (e *Encoder) initWorker(wk *worker) error {
	var err error
	if wk.stream, err = cu.MakeStream(cu.NonBlocking); err != nil {
		return cuErr("cuStreamCreate", err)
	}
	wk.hasStream = true
	if wk.blas == 0 {
		if wk.blas, err = e.blas.create(); err != nil {
			return err
		}
	}
	if err := e.blas.setStream(wk.blas, rawStream(&wk.stream)); err != nil {
		return err
	}
	if err := e.blas.setMathMode(wk.blas, e.mathMode); err != nil {
		return err
	}
	for i := range wk.events {
		if wk.events[i], err = cu.MakeEvent(cu.BlockingSyncEvent | cu.DisableTiming); err != nil {
			return cuErr("cuEventCreate", err)
		}
		wk.nEvents++
	}

	t, n, h := int64(e.o.MaxTokens), e.maxTexts, int64(e.hidden)
	wide := int64(max(3*e.hidden, e.inter))
	offX := wk.dev.plan(t * h * e.elem)
	offS := wk.dev.plan(t * wide * e.elem)
	offC := wk.dev.plan(t * h * e.elem)
	inLen := layoutInputs(e.o.MaxTokens, n).len
	offIn := wk.dev.plan(int64(inLen) * 4)
	rb := resultBytes(n, e.hidden)
	offRes := wk.dev.plan(rb)
	if err := wk.dev.alloc(fmt.Sprintf("activations and I/O for %d tokens", t)); err != nil {
		return err
	}
	wk.x, wk.s, wk.c = wk.dev.at(offX), wk.dev.at(offS), wk.dev.at(offC)
	wk.in, wk.res = wk.dev.at(offIn), wk.dev.at(offRes)

	inBytes := alignUp(int64(inLen)*4, arenaAlign)
	if wk.host, err = allocPinned(int(inBytes + rb)); err != nil {
		return err
	}
	wk.hIn = pinnedSlice[int32](&wk.host, 0, inLen)
	wk.hRes = wk.host.ptr(int(inBytes))
	for i := range wk.argp {
		wk.argp[i] = unsafe.Pointer(&wk.args[i])
	}
	return nil
}

// release frees what initWorker made; the context must be current.
func (wk *worker) release(l *cublasLib) error {
	var errs []error
	if wk.hasStream {
		errs = append(errs, cuErr("cuStreamSynchronize", wk.stream.Synchronize()))
	}
	if wk.blas != 0 {
		errs = append(errs, l.destroy(wk.blas))
		wk.blas = 0
	}
	for i := range wk.nEvents {
		errs = append(errs, cuErr("cuEventDestroy", cu.DestroyEvent(&wk.events[i])))
	}
	wk.nEvents = 0
	if wk.hasStream {
		errs = append(errs, cuErr("cuStreamDestroy", wk.stream.Destroy()))
		wk.hasStream = false
	}
	errs = append(errs, wk.dev.free("worker buffers"), wk.host.free())
	wk.hIn, wk.hRes = nil, nil
	return errors.Join(errs...)
}

// Kernel parameters, each in a 64-bit slot: the driver reads as many bytes
// of a slot as the parameter has (8 for a pointer, 4 for an int or float,
// the low half on this little-endian host).
func ptrArg(p cu.DevicePtr) uint64 { return uint64(p) }
func intArg(v int) uint64          { return uint64(uint32(int32(v))) }
func floatArg(f float32) uint64    { return uint64(math.Float32bits(f)) }

// launch enqueues fn on wk's stream with blocks of cudakernels.BlockSize
// threads. gorgonia.org/cu copies the parameter values into C memory before
// cuLaunchKernel, so wk.args may be reused at once.
func (wk *worker) launch(ks *kernelSet, kernel string, fn cu.Function, gx, gy, gz int, args ...uint64) error {
	n := copy(wk.args[:], args)
	if err := fn.Launch(gx, gy, gz, cudakernels.BlockSize, 1, 1, 0, wk.stream, wk.argp[:n]); err != nil {
		return cuErr(fmt.Sprintf("launch %s, grid (%d, %d, %d)", cudakernels.Name(kernel, ks.fp16), gx, gy, gz), err)
	}
	return nil
}

// embedLN: out[t] = LN(word[ids[t]] + posEmb[pos[t]] + typeEmb[types[t]]),
// grid (tokens).
func (wk *worker) embedLN(ks *kernelSet, tokens int, ids, types, pos, word, posEmb, typeEmb, gamma, beta cu.DevicePtr, eps float32, hidden int, out cu.DevicePtr) error {
	return wk.launch(ks, cudakernels.EmbedLN, ks.embedLN, tokens, 1, 1,
		ptrArg(ids), ptrArg(types), ptrArg(pos), ptrArg(word), ptrArg(posEmb), ptrArg(typeEmb),
		ptrArg(gamma), ptrArg(beta), floatArg(eps), intArg(hidden), ptrArg(out))
}

// biasGELU: x = gelu(x + bias[col]) in place, grid
// (min(ceil(rows*cols/256), 65535*4)).
func (wk *worker) biasGELU(ks *kernelSet, x, bias cu.DevicePtr, rows, cols int) error {
	return wk.launch(ks, cudakernels.BiasGELU, ks.biasGELU, cudakernels.GELUBlocks(rows, cols), 1, 1,
		ptrArg(x), ptrArg(bias), intArg(rows), intArg(cols))
}

// biasResidualLN: x[t] = LN(y[t] + bias + x[t]) in place, grid (tokens).
func (wk *worker) biasResidualLN(ks *kernelSet, tokens int, y, bias, x, gamma, beta cu.DevicePtr, eps float32, hidden int) error {
	return wk.launch(ks, cudakernels.BiasResidualLN, ks.biasResidualLN, tokens, 1, 1,
		ptrArg(y), ptrArg(bias), ptrArg(x), ptrArg(gamma), ptrArg(beta), floatArg(eps), intArg(hidden))
}

// attention: ctx = softmax(q·kᵀ)·v per text and head, grid
// (ceil(maxLen/32), heads, texts).
func (wk *worker) attention(ks *kernelSet, texts, maxLen int, qkv, bias, start cu.DevicePtr, heads, headDim int, scale float32, ctx cu.DevicePtr) error {
	return wk.launch(ks, cudakernels.Attention, ks.attention, cudakernels.AttentionBlocks(maxLen), heads, texts,
		ptrArg(qkv), ptrArg(bias), ptrArg(start), intArg(heads), intArg(headDim), floatArg(scale), ptrArg(ctx))
}

// pool: pooled, truncated, normalized (and int8 when codes is not 0)
// outputs, grid (texts).
func (wk *worker) pool(ks *kernelSet, texts int, x, start cu.DevicePtr, hidden int, mode packed.Mode, dims int, out, norms, codes, scales cu.DevicePtr) error {
	return wk.launch(ks, cudakernels.Pool, ks.pool, texts, 1, 1,
		ptrArg(x), ptrArg(start), intArg(hidden), intArg(int(mode)), intArg(dims),
		ptrArg(out), ptrArg(norms), ptrArg(codes), ptrArg(scales))
}

// linear enqueues y = x·wᵀ for the rows×in matrix x and the out×in weight
// w (row-major): in cuBLAS's column-major terms C[out, rows] =
// op_T(A = w, lda in)[out, in] · op_N(B = x, ldb in)[in, rows], ldc out.
func (e *Encoder) linear(wk *worker, x cu.DevicePtr, rows int, w cu.DevicePtr, out, in int, y cu.DevicePtr) error {
	return e.blas.gemm(wk.blas, cublasOpT, cublasOpN, out, rows, in,
		uintptr(w), in, uintptr(x), in, uintptr(y), out, e.dtype)
}

// layer enqueues encoder layer l on tokens tokens of texts texts (start
// their offsets on the device, maxLen the longest).
func (e *Encoder) layer(wk *worker, l, tokens, texts, maxLen int, start cu.DevicePtr) error {
	lw := &e.layers[l]
	ks := e.ks()
	h, in := e.hidden, e.inter
	// QKVbuf = X · QKVᵀ, into s as [T, 3H]
	if err := e.linear(wk, wk.x, tokens, lw.qkv, 3*h, h, wk.s); err != nil {
		return err
	}
	// Ctx = attention(QKVbuf, QKVBias, start), into c
	if err := wk.attention(ks, texts, maxLen, wk.s, lw.qkvBias, start, e.heads, e.headDim, e.scale, wk.c); err != nil {
		return err
	}
	// Y = Ctx · Outᵀ, into s as [T, H] (QKVbuf is consumed)
	if err := e.linear(wk, wk.c, tokens, lw.out, h, h, wk.s); err != nil {
		return err
	}
	// X = LN(Y + OutBias + X)
	if err := wk.biasResidualLN(ks, tokens, wk.s, lw.outBias, wk.x, lw.ln1Gamma, lw.ln1Beta, e.eps, h); err != nil {
		return err
	}
	// F = X · FF1ᵀ, into s as [T, I] (Y is consumed)
	if err := e.linear(wk, wk.x, tokens, lw.ff1, in, h, wk.s); err != nil {
		return err
	}
	// F = gelu(F + FF1Bias)
	if err := wk.biasGELU(ks, wk.s, lw.ff1Bias, tokens, in); err != nil {
		return err
	}
	// Y = F · FF2ᵀ, into c as [T, H] (Ctx is consumed)
	if err := e.linear(wk, wk.s, tokens, lw.ff2, h, in, wk.c); err != nil {
		return err
	}
	// X = LN(Y + FF2Bias + X)
	return wk.biasResidualLN(ks, tokens, wk.c, lw.ff2Bias, wk.x, lw.ln2Gamma, lw.ln2Beta, e.eps, h)
}

// settle waits for wk's stream to drain after a failed or cancelled chunk,
// so that the worker's pinned buffers are free for the next call, and
// returns err (with the wait's own error, if any).
func (wk *worker) settle(err error) error {
	if serr := wk.stream.Synchronize(); serr != nil {
		return errors.Join(err, cuErr("cuStreamSynchronize", serr))
	}
	return err
}

// runChunk runs texts r0..r1-1 of wk.batch (at most MaxTokens tokens and
// maxTexts texts) and writes their results into rows r0..r1-1 of the
// outputs. The host stays at most one layer ahead of the device: after
// enqueuing layer l it waits for layer l-1, and checks ctx before each
// layer, so a cancelled call returns within about a layer's time.
func (e *Encoder) runChunk(ctx context.Context, wk *worker, r0, r1, dims int, out, norms []float32, codes []int8, scales []float32) error {
	pb := &wk.batch
	s0, s1 := int(pb.Start[r0]), int(pb.Start[r1])
	t, b := s1-s0, r1-r0
	il := layoutInputs(t, b)
	in := wk.hIn[:il.len]
	copy(in[:t], pb.IDs[s0:s1])
	copy(in[il.types:il.types+t], pb.Types[s0:s1])
	copy(in[il.pos:il.pos+t], pb.Pos[s0:s1])
	start := in[il.start:]
	maxLen := 0
	for i := range start {
		start[i] = pb.Start[r0+i] - int32(s0)
		if i > 0 {
			maxLen = max(maxLen, int(start[i]-start[i-1]))
		}
	}
	dIDs := wk.in
	dTypes := wk.in + cu.DevicePtr(4*il.types)
	dPos := wk.in + cu.DevicePtr(4*il.pos)
	dStart := wk.in + cu.DevicePtr(4*il.start)
	if err := cu.MemcpyHtoDAsync(wk.in, unsafe.Pointer(&in[0]), int64(len(in))*4, wk.stream); err != nil {
		return wk.settle(cuErr("copy inputs to the device", err))
	}

	ks := e.ks()
	h := e.hidden
	if err := wk.embedLN(ks, t, dIDs, dTypes, dPos, e.word, e.posEmb, e.typeEmb, e.embGamma, e.embBeta, e.eps, h, wk.x); err != nil {
		return wk.settle(err)
	}
	for l := range e.layers {
		if err := ctx.Err(); err != nil {
			return wk.settle(err)
		}
		if err := e.layer(wk, l, t, b, maxLen, dStart); err != nil {
			return wk.settle(fmt.Errorf("layer %d: %w", l, err))
		}
		if err := wk.events[l%2].Record(wk.stream); err != nil {
			return wk.settle(cuErr("cuEventRecord", err))
		}
		if l > 0 {
			if err := wk.events[(l-1)%2].Synchronize(); err != nil {
				return wk.settle(cuErr(fmt.Sprintf("run layer %d", l-1), err))
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return wk.settle(err)
	}

	nOut := b * dims
	rl := layoutResults(b, dims, codes != nil)
	var pc, ps cu.DevicePtr // null: no int8
	if codes != nil {
		pc, ps = wk.res+cu.DevicePtr(rl.codes), wk.res+cu.DevicePtr(rl.scales)
	}
	if err := wk.pool(ks, b, wk.x, dStart, h, e.o.Mode, dims, wk.res, wk.res+cu.DevicePtr(rl.norms), pc, ps); err != nil {
		return wk.settle(err)
	}
	if err := cu.MemcpyDtoHAsync(wk.hRes, wk.res, int64(rl.bytes), wk.stream); err != nil {
		return wk.settle(cuErr("copy results to the host", err))
	}
	if err := wk.events[2].Record(wk.stream); err != nil {
		return wk.settle(cuErr("cuEventRecord", err))
	}
	if err := wk.events[2].Synchronize(); err != nil {
		return wk.settle(cuErr(fmt.Sprintf("run %d texts of %d tokens", b, t), err))
	}

	hOut := unsafe.Slice((*float32)(wk.hRes), nOut)
	hNorms := unsafe.Slice((*float32)(unsafe.Add(wk.hRes, rl.norms)), b)
	for i, v := range hNorms {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("cuda: %w: row %d: pooled vector has norm %g", packed.ErrNonFinite, r0+i, v)
		}
	}
	copy(out[r0*dims:r1*dims], hOut)
	copy(norms[r0:r1], hNorms)
	if codes != nil {
		copy(scales[r0:r1], unsafe.Slice((*float32)(unsafe.Add(wk.hRes, rl.scales)), b))
		copy(codes[r0*dims:r1*dims], unsafe.Slice((*int8)(unsafe.Add(wk.hRes, rl.codes)), nOut))
	}
	return nil
}
