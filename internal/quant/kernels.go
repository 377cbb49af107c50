package quant

import (
	"fmt"
	"math"
	"math/bits"
)

// The kernels below sit in the innermost loop of a search, so they do not
// return errors: len(a) == len(b) is a precondition, checked once up front
// with a panic (as an out-of-range index would) so that the compiler can drop
// the per-element bounds checks. Loops are unrolled by sixteen into four
// independent accumulators, which lets the CPU overlap the multiplies; Go
// does not vectorise them on its own, so about one element per cycle is the
// ceiling for this pure Go code.

// DotInt8 returns the dot product of a and b accumulated in int32.
//
// It panics if len(a) != len(b). The sum cannot overflow for vectors of up to
// 131072 elements (131072·(-128)² = 2³¹); longer vectors are not supported.
func DotInt8(a, b []int8) int32 {
	if len(a) != len(b) {
		panic(lengthPanic("DotInt8", len(a), len(b)))
	}
	var s0, s1, s2, s3 int32
	// Converting to array pointers proves the sixteen indexes in range, so
	// each element costs two sign-extending loads, a multiply and an add.
	for len(a) >= 16 {
		x, y := (*[16]int8)(a), (*[16]int8)(b)
		s0 += int32(x[0])*int32(y[0]) + int32(x[1])*int32(y[1]) + int32(x[2])*int32(y[2]) + int32(x[3])*int32(y[3])
		s1 += int32(x[4])*int32(y[4]) + int32(x[5])*int32(y[5]) + int32(x[6])*int32(y[6]) + int32(x[7])*int32(y[7])
		s2 += int32(x[8])*int32(y[8]) + int32(x[9])*int32(y[9]) + int32(x[10])*int32(y[10]) + int32(x[11])*int32(y[11])
		s3 += int32(x[12])*int32(y[12]) + int32(x[13])*int32(y[13]) + int32(x[14])*int32(y[14]) + int32(x[15])*int32(y[15])
		a, b = a[16:], b[16:]
	}
	b = b[:len(a)]
	for i, x := range a {
		s0 += int32(x) * int32(b[i])
	}
	return s0 + s1 + s2 + s3
}

// DotFloat32 returns the dot product of a and b accumulated in float32.
//
// It panics if len(a) != len(b). The order of the additions differs from a
// plain loop, so the result may differ from one in the last bits.
func DotFloat32(a, b []float32) float32 {
	if len(a) != len(b) {
		panic(lengthPanic("DotFloat32", len(a), len(b)))
	}
	var s0, s1, s2, s3 float32
	for len(a) >= 16 {
		x, y := (*[16]float32)(a), (*[16]float32)(b)
		s0 += x[0]*y[0] + x[4]*y[4] + x[8]*y[8] + x[12]*y[12]
		s1 += x[1]*y[1] + x[5]*y[5] + x[9]*y[9] + x[13]*y[13]
		s2 += x[2]*y[2] + x[6]*y[6] + x[10]*y[10] + x[14]*y[14]
		s3 += x[3]*y[3] + x[7]*y[7] + x[11]*y[11] + x[15]*y[15]
		a, b = a[16:], b[16:]
	}
	b = b[:len(a)]
	for i, x := range a {
		s0 += x * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// Hamming returns the number of bits that differ between a and b, the
// packed sign vectors produced by [PackBinaryWords].
//
// It panics if len(a) != len(b).
func Hamming(a, b []uint64) int {
	if len(a) != len(b) {
		panic(lengthPanic("Hamming", len(a), len(b)))
	}
	var n0, n1 int
	i := 0
	for ; i+4 <= len(a); i += 4 {
		x := a[i : i+4 : i+4]
		y := b[i : i+4 : i+4]
		n0 += bits.OnesCount64(x[0]^y[0]) + bits.OnesCount64(x[2]^y[2])
		n1 += bits.OnesCount64(x[1]^y[1]) + bits.OnesCount64(x[3]^y[3])
	}
	for ; i < len(a); i++ {
		n0 += bits.OnesCount64(a[i] ^ b[i])
	}
	return n0 + n1
}

// HammingBytes returns the number of bits that differ between a and b, the
// packed sign vectors produced by [PackBinary] (or numpy's np.packbits).
//
// It panics if len(a) != len(b).
func HammingBytes(a, b []byte) int {
	if len(a) != len(b) {
		panic(lengthPanic("HammingBytes", len(a), len(b)))
	}
	n := 0
	i := 0
	// The popcount of a word does not depend on its byte order, so the
	// bytes are read eight at a time in whatever order is cheapest.
	for ; i+8 <= len(a); i += 8 {
		n += bits.OnesCount64(le64(a[i:i+8:i+8]) ^ le64(b[i:i+8:i+8]))
	}
	for ; i < len(a); i++ {
		n += bits.OnesCount8(a[i] ^ b[i])
	}
	return n
}

// le64 reads a little-endian uint64; the compiler turns it into one load.
func le64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// Norm returns the Euclidean norm of x, accumulated in float64.
func Norm(x []float32) float32 {
	return float32(norm64(x))
}

func norm64(x []float32) float64 {
	var s float64
	for _, v := range x {
		s += float64(v) * float64(v)
	}
	return math.Sqrt(s)
}

// Cosine returns the cosine similarity of a and b, accumulated in float64.
// It returns 0 when either vector is all zeros rather than NaN.
//
// It panics if len(a) != len(b).
func Cosine(a, b []float32) float32 {
	if len(a) != len(b) {
		panic(lengthPanic("Cosine", len(a), len(b)))
	}
	return float32(cosine64(a, b))
}

func cosine64(a, b []float32) float64 {
	b = b[:len(a)]
	var dot, na, nb float64
	for i, x := range a {
		y := float64(b[i])
		dot += float64(x) * y
		na += float64(x) * float64(x)
		nb += y * y
	}
	if na == 0 || nb == 0 {
		return 0
	}
	return dot / math.Sqrt(na*nb)
}

// Normalize writes x scaled to unit Euclidean norm into dst, which may be x
// itself. A zero vector is written as zeros. It returns [ErrLengthMismatch]
// if len(dst) != len(x) and [ErrNonFinite] if x holds NaN or ±Inf.
func Normalize(dst, x []float32) error {
	if len(dst) != len(x) {
		return fmt.Errorf("normalize: dst has %d elements, x has %d: %w", len(dst), len(x), ErrLengthMismatch)
	}
	if err := checkFinite(x); err != nil {
		return fmt.Errorf("normalize: %w", err)
	}
	n := norm64(x)
	if n == 0 {
		clear(dst)
		return nil
	}
	inv := 1 / n
	for i, v := range x {
		dst[i] = float32(float64(v) * inv)
	}
	return nil
}

// checkFinite returns an error naming the first NaN or ±Inf in x.
func checkFinite(x []float32) error {
	for i, v := range x {
		if !isFinite(v) {
			return fmt.Errorf("element %d is %v: %w", i, v, ErrNonFinite)
		}
	}
	return nil
}

func isFinite(v float32) bool {
	return math.Float32bits(v)&0x7f800000 != 0x7f800000
}

func lengthPanic(fn string, a, b int) string {
	return fmt.Sprintf("quant: %s: length mismatch: %d != %d", fn, a, b)
}
