package bertonnx

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/embedd/embedd/internal/bertonnx/onnxpb"
)

// f32ToF16 converts float32 bits to float16 bits, rounding to nearest with
// ties to even, exactly as numpy's astype(np.float16) does (its portable
// npy_floatbits_to_halfbits):
//
//   - magnitudes from 65520 (halfway between 65504, the largest finite
//     float16, and 2^16) up become ±inf;
//   - magnitudes below 2^-24 become float16 subnormals or, at or below
//     2^-25, a signed zero;
//   - ±inf stays ±inf; a NaN keeps its sign and the top ten bits of its
//     payload, and becomes 0x7c01 (with the sign) if those bits are all zero,
//     so that it stays a NaN.
func f32ToF16(f uint32) uint16 {
	sign := uint16(f>>16) & 0x8000
	exp := f & 0x7f800000
	sig := f & 0x007fffff
	switch {
	case exp == 0x7f800000: // inf or NaN
		if sig == 0 {
			return sign | 0x7c00
		}
		h := uint16(0x7c00 + sig>>13)
		if h == 0x7c00 {
			h++
		}
		return sign | h
	case exp >= 0x47800000: // |f| >= 2^16: overflow
		return sign | 0x7c00
	case exp <= 0x38000000: // |f| < 2^-14: subnormal half or zero
		if exp < 0x33000000 { // |f| < 2^-25
			return sign
		}
		e := exp >> 23
		full := 0x00800000 + sig // with the implicit bit
		shift := 113 - e         // 1..11: the extra shift of a subnormal result
		s := full >> shift
		// Round half to even. The bits shifted out by shift are not in s, so
		// a tie needs them zero too (f&0x7ff covers every bit that can go).
		if s&0x3fff != 0x1000 || f&0x7ff != 0 {
			s += 0x1000
		}
		// A carry into bit 23 gives the smallest normal, 0x0400: correct.
		return sign | uint16(s>>13)
	default:
		h := uint16((exp - 0x38000000) >> 13)
		if sig&0x3fff != 0x1000 {
			sig += 0x1000
		}
		// A carry out of the significand bumps the exponent, up to inf: correct.
		return sign | (h + uint16(sig>>13))
	}
}

// f16ToF32 converts float16 bits to float32 bits exactly (every float16 is a
// float32; NaN payloads are kept).
func f16ToF32(h uint16) uint32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	sig := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f: // inf or NaN
		return sign | 0x7f800000 | sig<<13
	case exp != 0: // normal
		return sign | (exp+112)<<23 | sig<<13
	case sig == 0: // ±0
		return sign
	default: // subnormal: normalize
		e := uint32(113)
		for sig&0x400 == 0 {
			sig <<= 1
			e--
		}
		return sign | e<<23 | (sig&0x3ff)<<13
	}
}

// bf16ToF32 converts bfloat16 bits to float32 bits exactly.
func bf16ToF32(b uint16) uint32 { return uint32(b) << 16 }

// storage says how a checkpoint tensor is stored in the graph.
type storage int

const (
	// storeF32: float32; F16 and BF16 are widened exactly.
	storeF32 storage = iota
	// storeF16: float16; F32 and BF16 are rounded with f32ToF16.
	storeF16
	// storeF32ViaF16: float32 holding the float16 value of each element, so
	// that the result is the same whether the checkpoint held the value in
	// F32 or already rounded to F16.
	storeF32ViaF16
)

func (s storage) dataType() onnxpb.TensorProto_DataType {
	if s == storeF16 {
		return dataTypeFloat16
	}
	return dataTypeFloat
}

func (s storage) elemSize() int64 {
	if s == storeF16 {
		return 2
	}
	return 4
}

// maxF16 is the largest finite float16.
const maxF16 = 65504

// convert returns the elements of src, a little-endian tensor of safetensors
// dtype (F32, F16 or BF16), as little-endian elements of storage s. Storage
// through float16 (storeF16, storeF32ViaF16) rejects an element that is not
// finite there, naming the tensor, the element and its value: a weight out
// of float16 range would make every output inf or NaN.
func convert(name, dtype string, src []byte, s storage) ([]byte, error) {
	in := int64(dtypeSizes[dtype])
	n := int64(len(src)) / in
	dst := make([]byte, n*s.elemSize())
	toF32 := func(i int64) uint32 {
		switch dtype {
		case "F16":
			return f16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
		case "BF16":
			return bf16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
		default:
			return binary.LittleEndian.Uint32(src[4*i:])
		}
	}
	for i := range n {
		if s == storeF32 {
			binary.LittleEndian.PutUint32(dst[4*i:], toF32(i))
			continue
		}
		var h uint16
		if dtype == "F16" {
			h = binary.LittleEndian.Uint16(src[2*i:])
		} else {
			h = f32ToF16(toF32(i))
		}
		if h&0x7c00 == 0x7c00 {
			return nil, fmt.Errorf("%w: tensor %s: element %d is %g; float16 weights must be finite, within ±%d",
				ErrUnsupported, name, i, math.Float32frombits(toF32(i)), maxF16)
		}
		if s == storeF16 {
			binary.LittleEndian.PutUint16(dst[2*i:], h)
		} else {
			binary.LittleEndian.PutUint32(dst[4*i:], f16ToF32(h))
		}
	}
	return dst, nil
}
