package cuda

import (
	"fmt"
	"math"
)

// F32ToF16 rounds a float32 to the nearest IEEE 754 binary16, ties to even
// (what the GPU's cvt.rn.f16.f32 does): magnitudes from 65520 up become ±inf,
// magnitudes below the smallest subnormal half (2^-24) round to a subnormal
// or a signed zero, ±inf stays ±inf and a NaN stays a NaN with its sign and
// the top ten bits of its payload (0x7e00 with the sign if those are zero).
// It is the GPU's conversion, which the kernel emulator's test checks too;
// internal/bertonnx keeps numpy's (a NaN becomes 0x7c01 there), because its
// exported graphs must match numpy's bit for bit. The two agree on every
// non-NaN value.
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	man := b & 0x7fffff
	switch {
	case exp == 0xff: // inf or NaN
		if man == 0 {
			return sign | 0x7c00
		}
		h := uint16(man >> 13)
		if h == 0 {
			h = 0x200 // keep it a NaN: quiet bit
		}
		return sign | 0x7c00 | h
	case exp > 142: // |f| >= 2^16: beyond the largest half even after rounding
		return sign | 0x7c00
	case exp >= 113: // normal half: |f| >= 2^-14
		// Drop 13 mantissa bits, rounding to nearest even; a carry out of
		// the mantissa bumps the exponent (up to inf for 65520 and above),
		// which is the correct result.
		h := uint32(exp-112)<<10 | man>>13
		rest := man & 0x1fff
		if rest > 0x1000 || (rest == 0x1000 && h&1 == 1) {
			h++
		}
		return sign | uint16(h)
	case exp >= 102: // subnormal half (or rounds up to the smallest normal)
		// The value is m · 2^(exp-150) with the implicit bit; a subnormal
		// half is k · 2^-24, so k = m >> (126 - exp), rounded to even.
		m := man | 0x800000
		shift := uint(126 - exp) // 14 .. 24
		k := m >> shift
		rest := m & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rest > half || (rest == half && k&1 == 1) {
			k++
		}
		return sign | uint16(k) // k == 0x400 is the smallest normal: correct
	default: // |f| < 2^-25: rounds to zero (2^-25 itself is a tie to even 0)
		return sign
	}
}

// F16ToF32 widens an IEEE 754 binary16 to float32 exactly (NaN payloads
// kept).
func F16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	man := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	case exp != 0:
		return math.Float32frombits(sign | (exp+112)<<23 | man<<13)
	case man == 0:
		return math.Float32frombits(sign)
	default: // subnormal: normalize
		e := uint32(113)
		for man&0x400 == 0 {
			man <<= 1
			e--
		}
		return math.Float32frombits(sign | e<<23 | (man&0x3ff)<<13)
	}
}

// toF16 rounds src into dst (len(dst) >= len(src)) and fails, naming the
// tensor, the element and its value, if an element is not finite as fp16
// (a weight out of fp16 range would make every output inf or NaN).
func toF16(name string, dst []uint16, src []float32) error {
	dst = dst[:len(src)]
	for i, v := range src {
		h := F32ToF16(v)
		if h&0x7c00 == 0x7c00 {
			return fmt.Errorf("cuda: fp16 weights: %s[%d] = %g is not finite in fp16 (|x| must stay below 65520)", name, i, v)
		}
		dst[i] = h
	}
	return nil
}

// roundF16 returns v rounded to fp16 and widened back: what the GPU holds
// for a value stored in fp16.
func roundF16(v float32) float32 { return F16ToF32(F32ToF16(v)) }
