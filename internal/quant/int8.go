package quant

import (
	"fmt"
	"math"
)

// Int8 is a vector quantized with one symmetric scale: element i stands for
// float32(Codes[i])·Scale. Codes lie in [-127, 127], so negating a vector
// never overflows and the code range is symmetric around zero.
type Int8 struct {
	Codes []int8
	Scale float32
}

// QuantizeInt8 quantizes x with one symmetric scale, scale = max|x|/127:
//
//	q[i] = round(x[i] · 127/max|x|)
//
// computed in float64 and rounding half away from zero (math.Round), which
// keeps every code in [-127, 127]. The element of largest magnitude maps to
// ±127. A zero vector yields zero codes and Scale 0, which dequantizes to
// zeros; so does a vector so small that its scale underflows float32
// (max|x| < 127·2⁻¹⁴⁹).
//
// It returns [ErrEmpty] for an empty x and [ErrNonFinite] if x holds NaN or
// ±Inf.
func QuantizeInt8(x []float32) (Int8, error) {
	codes := make([]int8, len(x))
	scale, err := QuantizeInt8Into(codes, x)
	if err != nil {
		return Int8{}, err
	}
	return Int8{Codes: codes, Scale: scale}, nil
}

// QuantizeInt8Into is [QuantizeInt8] writing the codes into dst, which must
// have len(x) elements; it returns the scale and does not allocate.
func QuantizeInt8Into(dst []int8, x []float32) (scale float32, err error) {
	if len(x) == 0 {
		return 0, fmt.Errorf("quantize int8: %w", ErrEmpty)
	}
	if len(dst) != len(x) {
		return 0, fmt.Errorf("quantize int8: dst has %d elements, x has %d: %w", len(dst), len(x), ErrLengthMismatch)
	}
	m, err := maxAbs(x)
	if err != nil {
		return 0, fmt.Errorf("quantize int8: %w", err)
	}
	if m == 0 {
		clear(dst)
		return 0, nil
	}
	r := 127 / float64(m)
	dst = dst[:len(x)]
	for i, v := range x {
		// |float64(v)*r| <= 127·(1+2⁻⁵²), which rounds to at most 127:
		// no clamp is needed.
		dst[i] = int8(roundHalfAway(float64(v) * r))
	}
	return float32(float64(m) / 127), nil
}

// maxAbs returns max|x[i]|, or ErrNonFinite naming the first NaN or ±Inf.
func maxAbs(x []float32) (float32, error) {
	var m uint32
	var bad uint32
	for _, v := range x {
		// For non-negative floats the bit patterns order like the values,
		// so the maximum is taken on integers; the exponent field is all
		// ones exactly for NaN and ±Inf.
		a := math.Float32bits(v) &^ (1 << 31)
		bad |= a + 0x00800000 // sets bit 31 iff the exponent is all ones
		m = max(m, a)
	}
	if bad&(1<<31) != 0 {
		return 0, checkFinite(x)
	}
	return math.Float32frombits(m), nil
}

// DequantizeInt8 returns float32(codes[i])·scale for each code.
func DequantizeInt8(codes []int8, scale float32) []float32 {
	dst := make([]float32, len(codes))
	dequantizeInt8(dst, codes, scale)
	return dst
}

// DequantizeInt8Into is [DequantizeInt8] writing into dst, which must have
// len(codes) elements. It returns [ErrLengthMismatch] otherwise.
func DequantizeInt8Into(dst []float32, codes []int8, scale float32) error {
	if len(dst) != len(codes) {
		return fmt.Errorf("dequantize int8: dst has %d elements, codes %d: %w", len(dst), len(codes), ErrLengthMismatch)
	}
	dequantizeInt8(dst, codes, scale)
	return nil
}

func dequantizeInt8(dst []float32, codes []int8, scale float32) {
	dst = dst[:len(codes)]
	for i, c := range codes {
		dst[i] = float32(c) * scale
	}
}

// Dequantize returns the float32 approximation of v.
func (v Int8) Dequantize() []float32 {
	return DequantizeInt8(v.Codes, v.Scale)
}

// roundHalfAway rounds t to the nearest integer, halves away from zero,
// exactly like math.Round, for |t| < 2⁵² (the caller keeps it far smaller).
// Adding the largest float64 below one half with t's sign and truncating is
// exact without a branch: a tie reaches the next integer through
// round-to-nearest-even of the sum, anything below a tie stays short of it.
// Adding 0.5 itself would be wrong for 0.49999999999999994, whose sum rounds
// up to 1.
func roundHalfAway(t float64) int64 {
	return int64(t + math.Copysign(0.49999999999999994, t))
}
