package bertonnx

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
)

// TestF32ToF16Numpy checks f32ToF16 against what numpy 2.4.6 gives for
// np.array(bits, np.uint32).view(np.float32).astype(np.float16).
func TestF32ToF16Numpy(t *testing.T) {
	tests := []struct {
		f    uint32
		h    uint16
		what string
	}{
		{0x00000000, 0x0000, "+0"},
		{0x80000000, 0x8000, "-0"},
		{0x3f800000, 0x3c00, "1"},
		{0xbf800000, 0xbc00, "-1"},
		{0x3eaaaaab, 0x3555, "1/3 rounds down"},
		{0x3f801000, 0x3c00, "1+2^-11: tie, to even (down)"},
		{0x3f803000, 0x3c02, "1+3·2^-11: tie, to even (up)"},
		{0x3f801001, 0x3c01, "just above a tie: up"},
		{0x477fe000, 0x7bff, "65504, largest finite"},
		{0x477fefff, 0x7bff, "just below 65520: 65504"},
		{0x477ff000, 0x7c00, "65520: tie, to even = inf"},
		{0x47800000, 0x7c00, "65536: inf"},
		{0x7f7fffff, 0x7c00, "max float32: inf"},
		{0xff7fffff, 0xfc00, "-max float32: -inf"},
		{0x38800000, 0x0400, "2^-14, smallest normal"},
		{0x387fe000, 0x0400, "just below 2^-14: rounds up to normal"},
		{0x387fc000, 0x03ff, "largest subnormal 1023·2^-24"},
		{0x33800000, 0x0001, "2^-24, smallest subnormal"},
		{0x33000000, 0x0000, "2^-25: tie, to even = 0"},
		{0x33000001, 0x0001, "just above 2^-25: 2^-24"},
		{0x32ffffff, 0x0000, "just below 2^-25: 0"},
		{0xb3000001, 0x8001, "-just above 2^-25"},
		{0x33c00000, 0x0002, "1.5·2^-24: tie, to even = 2·2^-24"},
		{0x34200000, 0x0002, "2.5·2^-24: tie, to even = 2·2^-24"},
		{0x00000001, 0x0000, "smallest float32 subnormal: 0"},
		{0x7f800000, 0x7c00, "+inf"},
		{0xff800000, 0xfc00, "-inf"},
		{0x7fc00000, 0x7e00, "quiet NaN"},
		{0xffc00000, 0xfe00, "-quiet NaN"},
		{0x7f800001, 0x7c01, "NaN with only low payload bits: 0x7c01"},
		{0x7fa00000, 0x7d00, "signalling NaN keeps its payload"},
		{0x7fffffff, 0x7fff, "NaN, all payload bits"},
		{0x3dcccccd, 0x2e66, "0.1"},
		{0x40490fdb, 0x4248, "pi"},
		{0xc2c80000, 0xd640, "-100"},
	}
	for _, tc := range tests {
		if got := f32ToF16(tc.f); got != tc.h {
			t.Errorf("f32ToF16(%#08x) (%s) = %#04x; want %#04x", tc.f, tc.what, got, tc.h)
		}
	}
}

// halfMags holds the finite non-negative float16 values, indexed by their
// bits (0..0x7bff), in increasing order.
var halfMags = func() []float64 {
	m := make([]float64, 0x7c00)
	for h := range m {
		e, f := h>>10, float64(h&0x3ff)
		if e == 0 {
			m[h] = math.Ldexp(f, -24)
		} else {
			m[h] = math.Ldexp(1+f/1024, e-15)
		}
	}
	return m
}()

// refF16 rounds a non-NaN x to float16 the slow way, sharing no code with
// f32ToF16: the nearest float16 by binary search in float64, ties to the
// even bit pattern, and ±inf from 65520 (half way to 2^16) up.
func refF16(x float32) uint16 {
	v := float64(x)
	var sign uint16
	if math.Signbit(v) {
		sign, v = 0x8000, -v
	}
	if v >= 65520 {
		return sign | 0x7c00
	}
	i := sort.SearchFloat64s(halfMags, v)
	switch {
	case i == len(halfMags): // (65504, 65520)
		return sign | 0x7bff
	case halfMags[i] == v:
		return sign | uint16(i)
	}
	lo, hi := i-1, i
	dlo, dhi := v-halfMags[lo], halfMags[hi]-v
	if dlo < dhi || dlo == dhi && lo%2 == 0 {
		return sign | uint16(lo)
	}
	return sign | uint16(hi)
}

// TestF32ToF16Nearest compares f32ToF16 with refF16 on every float16 value,
// every midpoint between neighbours and the float32s on either side of both,
// and on random bit patterns.
func TestF32ToF16Nearest(t *testing.T) {
	var xs []float32
	for h := range len(halfMags) {
		v := float32(halfMags[h])
		xs = append(xs, v, math.Nextafter32(v, 0), math.Nextafter32(v, 1e6))
		if h+1 < len(halfMags) {
			mid := float32((halfMags[h] + halfMags[h+1]) / 2) // exact: 12 significant bits
			xs = append(xs, mid, math.Nextafter32(mid, 0), math.Nextafter32(mid, 1e6))
		}
	}
	xs = append(xs, 65520, math.Nextafter32(65520, 0), float32(math.Inf(1)))
	rng := rand.New(rand.NewPCG(3, 4))
	for range 1 << 18 {
		xs = append(xs, math.Float32frombits(rng.Uint32()))
	}
	bad := 0
	for _, x := range xs {
		for _, x := range []float32{x, -x} {
			if x != x {
				continue
			}
			if got, want := f32ToF16(math.Float32bits(x)), refF16(x); got != want {
				if bad++; bad <= 10 {
					t.Errorf("f32ToF16(%g = %#08x) = %#04x; want %#04x", x, math.Float32bits(x), got, want)
				}
			}
		}
	}
	if bad > 10 {
		t.Errorf("... %d mismatches in all", bad)
	}
}

// TestF16ToF32 checks that widening is exact (value and round trip) for
// every float16, NaN payloads included.
func TestF16ToF32(t *testing.T) {
	for h := range 1 << 16 {
		f := f16ToF32(uint16(h))
		if back := f32ToF16(f); back != uint16(h) {
			t.Errorf("f32ToF16(f16ToF32(%#04x)) = %#04x", h, back)
		}
		if h&0x7c00 == 0x7c00 {
			continue
		}
		want := halfMags[h&0x7fff]
		if h&0x8000 != 0 {
			want = -want
		}
		if got := float64(math.Float32frombits(f)); got != want || math.Signbit(got) != (h&0x8000 != 0) {
			t.Errorf("f16ToF32(%#04x) = %g; want %g", h, got, want)
		}
	}
	if got := math.Float32frombits(f16ToF32(0x7c00)); !math.IsInf(float64(got), 1) {
		t.Errorf("f16ToF32(0x7c00) = %g; want +Inf", got)
	}
}

func TestBF16ToF32(t *testing.T) {
	for _, tc := range []struct {
		b    uint16
		want float32
	}{{0x3f80, 1}, {0xc000, -2}, {0x4049, 3.140625}, {0x0001, math.Float32frombits(0x10000)}, {0x7f7f, math.Float32frombits(0x7f7f0000)}} {
		if got := math.Float32frombits(bf16ToF32(tc.b)); got != tc.want {
			t.Errorf("bf16ToF32(%#04x) = %g; want %g", tc.b, got, tc.want)
		}
	}
}

func TestConvertRejectsNonFiniteF16(t *testing.T) {
	f32 := func(v ...float32) []byte {
		var b []byte
		for _, x := range v {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
		}
		return b
	}
	for _, tc := range []struct {
		name, dtype string
		src         []byte
		s           storage
		msg         string
	}{
		{"overflow", "F32", f32(1, 65520), storeF16, "element 1 is 65520"},
		{"overflow in norm storage", "F32", f32(-70000), storeF32ViaF16, "element 0 is -70000"},
		{"nan", "F32", f32(0, 0, float32(math.NaN())), storeF16, "element 2 is NaN"},
		{"f16 inf", "F16", []byte{0, 0, 0x00, 0x7c}, storeF16, "element 1 is +Inf"},
		{"bf16 overflow", "BF16", []byte{0x80, 0x47}, storeF16, "element 0 is 65536"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := convert("w", tc.dtype, tc.src, tc.s)
			if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "tensor w: "+tc.msg) || !strings.Contains(err.Error(), "65504") {
				t.Errorf("convert = %v; want ErrUnsupported naming tensor w, %q and the float16 limit", err, tc.msg)
			}
		})
	}
	// float32 storage keeps any value, as the default export always has.
	if got, err := convert("w", "F16", []byte{0x00, 0x7c}, storeF32); err != nil || math.Float32frombits(binary.LittleEndian.Uint32(got)) != float32(math.Inf(1)) {
		t.Errorf("convert(F16 inf, storeF32) = %v, %v; want +Inf", got, err)
	}
}
