//go:build cuda

package cuda

import (
	"fmt"
	"runtime"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/embedd/embedd/internal/accel/packed"
)

// upload copies w's tensors into one device allocation (each piece 256-byte
// aligned), as float32 or rounded to fp16, and points the encoder's
// weight pointers at them. The context must be current.
func (e *Encoder) upload(w *packed.Weights) error {
	type tensor struct {
		name string
		data []float32
		dst  *cu.DevicePtr
		off  int64
	}
	ts := []tensor{
		{name: "Word", data: w.Word, dst: &e.word},
		{name: "PosEmb", data: w.PosEmb, dst: &e.posEmb},
		{name: "TypeEmb", data: w.TypeEmb, dst: &e.typeEmb},
		{name: "EmbLNGamma", data: w.EmbLNGamma, dst: &e.embGamma},
		{name: "EmbLNBeta", data: w.EmbLNBeta, dst: &e.embBeta},
	}
	e.layers = make([]devLayer, len(w.Layers))
	for i := range w.Layers {
		l, d := &w.Layers[i], &e.layers[i]
		p := fmt.Sprintf("Layers[%d].", i)
		ts = append(ts,
			tensor{name: p + "QKV", data: l.QKV, dst: &d.qkv},
			tensor{name: p + "QKVBias", data: l.QKVBias, dst: &d.qkvBias},
			tensor{name: p + "Out", data: l.Out, dst: &d.out},
			tensor{name: p + "OutBias", data: l.OutBias, dst: &d.outBias},
			tensor{name: p + "LN1Gamma", data: l.LN1Gamma, dst: &d.ln1Gamma},
			tensor{name: p + "LN1Beta", data: l.LN1Beta, dst: &d.ln1Beta},
			tensor{name: p + "FF1", data: l.FF1, dst: &d.ff1},
			tensor{name: p + "FF1Bias", data: l.FF1Bias, dst: &d.ff1Bias},
			tensor{name: p + "FF2", data: l.FF2, dst: &d.ff2},
			tensor{name: p + "FF2Bias", data: l.FF2Bias, dst: &d.ff2Bias},
			tensor{name: p + "LN2Gamma", data: l.LN2Gamma, dst: &d.ln2Gamma},
			tensor{name: p + "LN2Beta", data: l.LN2Beta, dst: &d.ln2Beta},
		)
	}
	for i := range ts {
		ts[i].off = e.weights.plan(int64(len(ts[i].data)) * e.elem)
	}
	// fp16: every tensor is converted, and checked finite, before any
	// device memory is taken.
	var half [][]uint16
	if e.o.FP16 {
		half = make([][]uint16, len(ts))
		for i, t := range ts {
			half[i] = make([]uint16, len(t.data))
			if err := toF16(t.name, half[i], t.data); err != nil {
				return err
			}
		}
	}
	if err := e.weights.alloc(fmt.Sprintf("weights, %d tensors", len(ts))); err != nil {
		return err
	}
	for i, t := range ts {
		*t.dst = e.weights.at(t.off)
		if len(t.data) == 0 {
			continue
		}
		src := unsafe.Pointer(&t.data[0])
		if e.o.FP16 {
			src = unsafe.Pointer(&half[i][0])
		}
		// Synchronous from pageable memory: the source may be reused once
		// it returns.
		if err := cu.MemcpyHtoD(*t.dst, src, int64(len(t.data))*e.elem); err != nil {
			return cuErr("upload "+t.name, err)
		}
	}
	runtime.KeepAlive(half)
	// A copy from pageable memory may return before its DMA is done, and
	// the workers' non-blocking streams are not ordered after the legacy
	// stream it runs on: wait for it here.
	return cuErr("cuCtxSynchronize after the weights upload", cu.Synchronize())
}
