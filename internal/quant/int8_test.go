package quant

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

var (
	nan  = float32(math.NaN())
	pinf = float32(math.Inf(1))
	ninf = float32(math.Inf(-1))
)

func TestQuantizeInt8(t *testing.T) {
	tests := []struct {
		name      string
		x         []float32
		wantCodes []int8
		wantScale float32
		wantErr   error
	}{
		{"max maps to 127", []float32{1, -0.5, 0.25}, []int8{127, -64, 32}, 1.0 / 127, nil},
		{"negative max maps to -127", []float32{-2, 1}, []int8{-127, 64}, float32(2.0 / 127), nil},
		{"halves round away from zero", []float32{127, 0.5, -0.5, 1.5, -2.5}, []int8{127, 1, -1, 2, -3}, 1, nil},
		{"zero vector", []float32{0, 0, 0}, []int8{0, 0, 0}, 0, nil},
		{"negative zero", []float32{float32(math.Copysign(0, -1)), 0}, []int8{0, 0}, 0, nil},
		{"single element", []float32{-3}, []int8{-127}, float32(3.0 / 127), nil},
		{"subnormal", []float32{3e-39, 0}, []int8{127, 0}, float32(float64(float32(3e-39)) / 127), nil},
		{"scale underflows to zero", []float32{1e-45, 0}, []int8{127, 0}, 0, nil},
		{"largest float32", []float32{math.MaxFloat32, -math.MaxFloat32}, []int8{127, -127}, float32(math.MaxFloat32 / 127.0), nil},
		{"empty", nil, nil, 0, ErrEmpty},
		{"NaN", []float32{1, nan}, nil, 0, ErrNonFinite},
		{"+Inf", []float32{pinf, 1}, nil, 0, ErrNonFinite},
		{"-Inf", []float32{0, ninf}, nil, 0, ErrNonFinite},
	}
	for _, tt := range tests {
		got, err := QuantizeInt8(tt.x)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: got error %v; want %v", tt.name, err, tt.wantErr)
			continue
		}
		if !slices.Equal(got.Codes, tt.wantCodes) || got.Scale != tt.wantScale {
			t.Errorf("%s: got %v × %v; want %v × %v", tt.name, got.Codes, got.Scale, tt.wantCodes, tt.wantScale)
		}
	}
}

func TestQuantizeInt8IntoLengthMismatch(t *testing.T) {
	_, err := QuantizeInt8Into(make([]int8, 2), []float32{1, 2, 3})
	if !errors.Is(err, ErrLengthMismatch) {
		t.Errorf("got %v; want %v", err, ErrLengthMismatch)
	}
	if err := DequantizeInt8Into(make([]float32, 2), []int8{1, 2, 3}, 1); !errors.Is(err, ErrLengthMismatch) {
		t.Errorf("dequantize: got %v; want %v", err, ErrLengthMismatch)
	}
}

// The error of every element is at most half a step, and the largest
// element is reproduced to within float32 rounding.
func TestInt8RoundTripBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for trial := range 200 {
		n := 1 + rng.IntN(700)
		x := randFloats(rng, n)
		mag := float32(math.Pow(10, rng.Float64()*20-10))
		for i := range x {
			x[i] *= mag
		}
		q, err := QuantizeInt8(x)
		if err != nil {
			t.Fatal(err)
		}
		y := q.Dequantize()
		for i := range x {
			if d := math.Abs(float64(x[i] - y[i])); d > 0.5001*float64(q.Scale) {
				t.Fatalf("trial %d element %d: |%v - %v| = %v; want <= scale/2 = %v", trial, i, x[i], y[i], d, q.Scale/2)
			}
		}
		for _, c := range q.Codes {
			if c == -128 {
				t.Fatalf("trial %d: got code -128; want codes in [-127, 127]", trial)
			}
		}
	}
}

func TestDequantizeInt8ZeroScale(t *testing.T) {
	got := DequantizeInt8([]int8{0, 0}, 0)
	if !slices.Equal(got, []float32{0, 0}) {
		t.Errorf("got %v; want [0 0]", got)
	}
}

func TestQuantizeInt8IntoDoesNotAllocate(t *testing.T) {
	x := randFloats(rand.New(rand.NewPCG(1, 1)), 384)
	dst := make([]int8, 384)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := QuantizeInt8Into(dst, x); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("got %v allocations; want 0", allocs)
	}
}

func TestRoundHalfAway(t *testing.T) {
	tests := []float64{0, 0.5, -0.5, 1.5, -1.5, 2.5, 0.49999999999999994, -0.49999999999999994,
		126.5, -127.49999999999999, 1e15 + 0.5, math.Nextafter(0.5, 0), math.Nextafter(1.5, 2)}
	rng := rand.New(rand.NewPCG(13, 14))
	for range 100000 {
		// Random halves and their neighbours, and random values, in the
		// range the quantizers use.
		h := float64(rng.IntN(260)-130) + 0.5
		tests = append(tests, h, math.Nextafter(h, 0), math.Nextafter(h, 1000), rng.Float64()*260-130)
	}
	for _, x := range tests {
		if got, want := roundHalfAway(x), int64(math.Round(x)); got != want {
			t.Errorf("roundHalfAway(%v): got %v; want %v", x, got, want)
		}
	}
}
