package cuda

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestF16RoundTrip: every fp16 value widens exactly and rounds back to
// itself (NaNs stay NaNs with their sign).
func TestF16RoundTrip(t *testing.T) {
	for i := range 1 << 16 {
		h := uint16(i)
		f := F16ToF32(h)
		back := F32ToF16(f)
		isNaN := h&0x7c00 == 0x7c00 && h&0x3ff != 0
		if isNaN {
			if !math.IsNaN(float64(f)) || back&0x7c00 != 0x7c00 || back&0x3ff == 0 || back&0x8000 != h&0x8000 {
				t.Fatalf("NaN %#04x: widened to %v, rounded back to %#04x", h, f, back)
			}
			continue
		}
		if back != h {
			t.Fatalf("%#04x: widened to %v (%#08x), rounded back to %#04x", h, f, math.Float32bits(f), back)
		}
	}
}

// f16Value is the exact value of a finite fp16, in float64.
func f16Value(h uint16) float64 { return float64(F16ToF32(h)) }

// TestF16Ties: the float32 halfway between two adjacent fp16 values rounds to
// the one with an even mantissa, and a float32 just off the midpoint rounds to
// the nearer one; over every pair of adjacent positive finite fp16 values,
// subnormals included, and the pair (65504, inf).
func TestF16Ties(t *testing.T) {
	for h := uint16(0); h < 0x7c00; h++ {
		lo, hi := f16Value(h), f16Value(h+1)
		if h+1 == 0x7c00 {
			hi = 65536 // the "next value" past the largest finite half
		}
		mid := float32((lo + hi) / 2) // exact: mid needs at most 12 significant bits
		if float64(mid) != (lo+hi)/2 {
			t.Fatalf("midpoint of %#04x not exact in float32", h)
		}
		want := h
		if h&1 == 1 {
			want = h + 1
		}
		for _, sign := range []uint16{0, 0x8000} {
			m := mid
			if sign != 0 {
				m = -mid
			}
			if got := F32ToF16(m); got != want|sign {
				t.Fatalf("tie %v between %#04x and %#04x: got %#04x, want %#04x", m, h, h+1, got, want|sign)
			}
		}
		below := math.Nextafter32(mid, 0)
		above := math.Nextafter32(mid, float32(math.Inf(1)))
		if got := F32ToF16(below); got != h {
			t.Fatalf("%v just below the midpoint of %#04x and %#04x: got %#04x, want %#04x", below, h, h+1, got, h)
		}
		if got := F32ToF16(above); got != h+1 {
			t.Fatalf("%v just above the midpoint of %#04x and %#04x: got %#04x, want %#04x", above, h, h+1, got, h+1)
		}
	}
}

// TestF16Nearest: random float32 values (all exponents) round to a nearest
// fp16, checked against the exact values in float64.
func TestF16Nearest(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 2_000_000 {
		f := math.Float32frombits(r.Uint32())
		if math.IsNaN(float64(f)) {
			continue
		}
		got := F32ToF16(f)
		a := math.Abs(float64(f))
		switch {
		case a >= 65520:
			if got&0x7fff != 0x7c00 {
				t.Fatalf("%v: got %#04x, want inf", f, got)
			}
			continue
		case got&0x7c00 == 0x7c00:
			t.Fatalf("%v: got %#04x (inf or NaN)", f, got)
		}
		if (got&0x8000 != 0) != math.Signbit(float64(f)) {
			t.Fatalf("%v: got %#04x with the wrong sign", f, got)
		}
		g := got & 0x7fff
		err := math.Abs(f16Value(g) - a)
		if g > 0 && math.Abs(f16Value(g-1)-a) < err {
			t.Fatalf("%v: got %#04x; %#04x is nearer", f, got, g-1)
		}
		if g < 0x7bff && math.Abs(f16Value(g+1)-a) < err {
			t.Fatalf("%v: got %#04x; %#04x is nearer", f, got, g+1)
		}
	}
}

func TestF16Special(t *testing.T) {
	cases := []struct {
		in   float32
		want uint16
	}{
		{0, 0},
		{float32(math.Copysign(0, -1)), 0x8000},
		{1, 0x3c00},
		{-2, 0xc000},
		{65504, 0x7bff},
		{65519.99, 0x7bff},
		{65520, 0x7c00},
		{1e10, 0x7c00},
		{float32(math.Inf(-1)), 0xfc00},
		{0x1p-24, 0x0001},
		{0x1p-25, 0x0000},
		{0x1.000002p-25, 0x0001},
		{0x1p-14, 0x0400},
		{0x1.ff8p-15, 0x03ff}, // the largest subnormal
		{0x1.ffcp-15, 0x0400}, // it + half an ulp: ties to the even smallest normal
		{1e-30, 0},
	}
	for _, c := range cases {
		if got := F32ToF16(c.in); got != c.want {
			t.Errorf("F32ToF16(%v) = %#04x; want %#04x", c.in, got, c.want)
		}
	}
	if h := F32ToF16(float32(math.NaN())); h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
		t.Errorf("F32ToF16(NaN) = %#04x; want a NaN", h)
	}
}

func TestToF16(t *testing.T) {
	dst := make([]uint16, 3)
	if err := toF16("w", dst, []float32{1, -0.5, 65504}); err != nil {
		t.Fatal(err)
	}
	if dst[0] != 0x3c00 || dst[1] != 0xb800 || dst[2] != 0x7bff {
		t.Errorf("got %#04x", dst)
	}
	err := toF16("Layers[2].FF1", dst, []float32{1, 70000, 2})
	if err == nil || !strings.Contains(err.Error(), "Layers[2].FF1[1] = 70000") {
		t.Errorf("out of range: got %v", err)
	}
}
