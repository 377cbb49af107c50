package quant

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Binary codes keep one bit per dimension, 1 where x > 0 (so 0, -0 and
// negative values give 0), packed most significant bit first:
//
//   - Byte form ([PackBinary]): dimension i is bit 7 - i%8 of byte i/8, as
//     numpy's np.packbits(x > 0, axis=-1) and sentence-transformers'
//     "ubinary" precision lay it out. The last byte is padded with zero bits.
//   - Word form ([PackBinaryWords]): word w is the big-endian reading of
//     bytes 8w..8w+7 of the byte form, so dimension i is bit 63 - i%64 of
//     word i/64. The last word is padded with zero bits.
//
// Zero padding is the same in every vector, so it never adds to a Hamming
// distance. sentence-transformers packs a whole batch as one flat bit
// string; its rows match the byte form only when the dimension is a
// multiple of 8, which holds for every common embedding size.

// BinaryBytes returns the length of the byte form of a dim-dimensional
// binary code, ceil(dim/8).
func BinaryBytes(dim int) int { return (dim + 7) / 8 }

// BinaryWords returns the length of the word form of a dim-dimensional
// binary code, ceil(dim/64).
func BinaryWords(dim int) int { return (dim + 63) / 64 }

// PackBinary returns the byte form of the sign bits of x. It returns
// [ErrEmpty] for an empty x and [ErrNonFinite] if x holds NaN or ±Inf (a NaN
// has no sign to keep).
func PackBinary(x []float32) ([]byte, error) {
	dst := make([]byte, BinaryBytes(len(x)))
	if err := PackBinaryInto(dst, x); err != nil {
		return nil, err
	}
	return dst, nil
}

// PackBinaryInto is [PackBinary] writing into dst, which must have
// BinaryBytes(len(x)) elements; it does not allocate. On error the contents
// of dst are unspecified.
func PackBinaryInto(dst []byte, x []float32) error {
	if err := checkBinary("pack binary", len(dst), BinaryBytes(len(x))); err != nil {
		return err
	}
	full := len(x) / 64
	bad := false
	for w := range full {
		v, b := pack64((*[64]float32)(x[64*w:]))
		binary.BigEndian.PutUint64(dst[8*w:], v)
		bad = bad || b
	}
	if rest := x[64*full:]; len(rest) > 0 {
		v, b := packTail(rest)
		for i := range dst[8*full:] {
			dst[8*full+i] = byte(v >> (56 - 8*i))
		}
		bad = bad || b
	}
	if bad {
		return fmt.Errorf("pack binary: %w", checkFinite(x))
	}
	return nil
}

// PackBinaryWords returns the word form of the sign bits of x, for
// [Hamming]. Errors are those of [PackBinary].
func PackBinaryWords(x []float32) ([]uint64, error) {
	dst := make([]uint64, BinaryWords(len(x)))
	if err := PackBinaryWordsInto(dst, x); err != nil {
		return nil, err
	}
	return dst, nil
}

// PackBinaryWordsInto is [PackBinaryWords] writing into dst, which must have
// BinaryWords(len(x)) elements; it does not allocate. On error the contents
// of dst are unspecified.
func PackBinaryWordsInto(dst []uint64, x []float32) error {
	if err := checkBinary("pack binary words", len(dst), BinaryWords(len(x))); err != nil {
		return err
	}
	full := len(x) / 64
	bad := false
	for w := range full {
		v, b := pack64((*[64]float32)(x[64*w:]))
		dst[w] = v
		bad = bad || b
	}
	if rest := x[64*full:]; len(rest) > 0 {
		v, b := packTail(rest)
		dst[full] = v
		bad = bad || b
	}
	if bad {
		return fmt.Errorf("pack binary words: %w", checkFinite(x))
	}
	return nil
}

// pack64 returns the sign bits of v, v[0] in the most significant bit, and
// whether any value is NaN or ±Inf, in one pass. Four bit chains over the
// four quarters of v keep four shifts in flight, and the comparisons compile
// to flag-setting instructions rather than unpredictable branches.
func pack64(v *[64]float32) (uint64, bool) {
	var w0, w1, w2, w3 uint64
	var bad uint32
	for k := range 16 {
		a, b, c, d := v[k], v[16+k], v[32+k], v[48+k]
		var ba, bb, bc, bd uint64
		if a > 0 {
			ba = 1
		}
		if b > 0 {
			bb = 1
		}
		if c > 0 {
			bc = 1
		}
		if d > 0 {
			bd = 1
		}
		w0 = w0<<1 | ba
		w1 = w1<<1 | bb
		w2 = w2<<1 | bc
		w3 = w3<<1 | bd
		bad |= nonFiniteBit(a) | nonFiniteBit(b) | nonFiniteBit(c) | nonFiniteBit(d)
	}
	return w0<<48 | w1<<32 | w2<<16 | w3, bad != 0
}

// packTail packs fewer than 64 values into the high bits of a word.
func packTail(v []float32) (uint64, bool) {
	var w uint64
	var bad uint32
	for i, x := range v {
		if x > 0 {
			w |= 1 << (63 - i)
		}
		bad |= nonFiniteBit(x)
	}
	return w, bad != 0
}

// nonFiniteBit returns 1<<31 if v is NaN or ±Inf and 0 otherwise: adding one
// to an all-ones exponent carries into the (cleared) sign bit.
func nonFiniteBit(v float32) uint32 {
	return (math.Float32bits(v)&0x7fffffff + 0x00800000) & (1 << 31)
}

// WordsFromBytes converts the byte form src (for example sentence-transformers
// "ubinary" rows) to the word form in dst, which must have
// ceil(len(src)/8) elements.
func WordsFromBytes(dst []uint64, src []byte) error {
	if len(dst) != (len(src)+7)/8 {
		return fmt.Errorf("words from bytes: dst has %d words, %d bytes need %d: %w", len(dst), len(src), (len(src)+7)/8, ErrLengthMismatch)
	}
	for w := range dst {
		var v uint64
		for k := range 8 {
			v <<= 8
			if i := 8*w + k; i < len(src) {
				v |= uint64(src[i])
			}
		}
		dst[w] = v
	}
	return nil
}

func checkBinary(op string, ndst, want int) error {
	if want == 0 {
		return fmt.Errorf("%s: %w", op, ErrEmpty)
	}
	if ndst != want {
		return fmt.Errorf("%s: dst has %d elements, want %d: %w", op, ndst, want, ErrLengthMismatch)
	}
	return nil
}
