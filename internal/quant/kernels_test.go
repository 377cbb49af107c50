package quant

import (
	"errors"
	"math"
	"math/bits"
	"math/rand/v2"
	"strings"
	"testing"
)

func randInt8s(rng *rand.Rand, n int) []int8 {
	v := make([]int8, n)
	for i := range v {
		v[i] = int8(rng.IntN(256) - 128)
	}
	return v
}

func randFloats(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// Lengths around the unroll widths, and the embedding sizes in use.
var kernelLengths = []int{0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 63, 64, 65, 127, 384, 768, 1024}

func TestDotInt8(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range kernelLengths {
		a, b := randInt8s(rng, n), randInt8s(rng, n)
		var want int32
		for i := range a {
			want += int32(a[i]) * int32(b[i])
		}
		if got := DotInt8(a, b); got != want {
			t.Errorf("n=%d: got %v; want %v", n, got, want)
		}
	}
}

func TestDotInt8Extremes(t *testing.T) {
	tests := []struct {
		name string
		a, b int8
		n    int
		want int32
	}{
		{"min times min", -128, -128, 1000, 1000 * 16384},
		{"max times min", 127, -128, 1000, 1000 * -16256},
		{"max times max", 127, 127, 384, 384 * 16129},
		{"longest supported", -128, -128, 131071, 131071 * 16384},
	}
	for _, tt := range tests {
		a, b := make([]int8, tt.n), make([]int8, tt.n)
		for i := range a {
			a[i], b[i] = tt.a, tt.b
		}
		if got := DotInt8(a, b); got != tt.want {
			t.Errorf("%s: got %v; want %v", tt.name, got, tt.want)
		}
	}
}

func TestDotFloat32(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range kernelLengths {
		a, b := randFloats(rng, n), randFloats(rng, n)
		var want, mag float64
		for i := range a {
			want += float64(a[i]) * float64(b[i])
			mag += math.Abs(float64(a[i]) * float64(b[i]))
		}
		got := DotFloat32(a, b)
		// float32 accumulation: error bounded by n·ε·Σ|a·b| in the worst
		// case, far less in practice.
		if tol := 1e-6*mag + 1e-12; math.Abs(float64(got)-want) > tol {
			t.Errorf("n=%d: got %v; want %v (±%g)", n, got, want, tol)
		}
	}
}

func TestHamming(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{0, 1, 3, 4, 5, 6, 8, 9, 16} {
		a, b := make([]uint64, n), make([]uint64, n)
		want := 0
		for i := range a {
			a[i], b[i] = rng.Uint64(), rng.Uint64()
			for bit := range 64 {
				if (a[i]>>bit)&1 != (b[i]>>bit)&1 {
					want++
				}
			}
		}
		if got := Hamming(a, b); got != want {
			t.Errorf("n=%d: got %v; want %v", n, got, want)
		}
		if got := Hamming(a, a); got != 0 {
			t.Errorf("n=%d: Hamming(a, a): got %v; want 0", n, got)
		}
	}
}

func TestHammingBytes(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, n := range []int{0, 1, 7, 8, 9, 15, 16, 48, 49} {
		a, b := make([]byte, n), make([]byte, n)
		want := 0
		for i := range a {
			a[i], b[i] = byte(rng.Uint32()), byte(rng.Uint32())
			want += bits.OnesCount8(a[i] ^ b[i])
		}
		if got := HammingBytes(a, b); got != want {
			t.Errorf("n=%d: got %v; want %v", n, got, want)
		}
	}
}

func TestKernelsPanicOnLengthMismatch(t *testing.T) {
	tests := []struct {
		name string
		call func()
	}{
		{"DotInt8", func() { DotInt8(make([]int8, 3), make([]int8, 4)) }},
		{"DotFloat32", func() { DotFloat32(make([]float32, 4), make([]float32, 3)) }},
		{"Hamming", func() { Hamming(make([]uint64, 6), make([]uint64, 5)) }},
		{"HammingBytes", func() { HammingBytes(make([]byte, 48), nil) }},
		{"Cosine", func() { Cosine(make([]float32, 2), make([]float32, 3)) }},
	}
	for _, tt := range tests {
		func() {
			defer func() {
				r := recover()
				msg, _ := r.(string)
				if !strings.HasPrefix(msg, "quant: "+tt.name+": length mismatch") {
					t.Errorf("%s: got panic %v; want a quant length mismatch panic", tt.name, r)
				}
			}()
			tt.call()
		}()
	}
}

func TestCosine(t *testing.T) {
	tests := []struct {
		name string
		a, b []float32
		want float32
	}{
		{"identical", []float32{1, 2, 3}, []float32{1, 2, 3}, 1},
		{"scaled", []float32{1, 2, 3}, []float32{2, 4, 6}, 1},
		{"opposite", []float32{1, -2}, []float32{-1, 2}, -1},
		{"orthogonal", []float32{1, 0}, []float32{0, 1}, 0},
		{"zero vector", []float32{0, 0}, []float32{1, 1}, 0},
		{"both zero", []float32{0, 0}, []float32{0, 0}, 0},
		{"empty", nil, nil, 0},
	}
	for _, tt := range tests {
		if got := Cosine(tt.a, tt.b); math.Abs(float64(got-tt.want)) > 1e-7 {
			t.Errorf("%s: got %v; want %v", tt.name, got, tt.want)
		}
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		name    string
		x       []float32
		want    []float32
		wantErr error
	}{
		{"3-4-5", []float32{3, 4}, []float32{0.6, 0.8}, nil},
		{"zero stays zero", []float32{0, 0, 0}, []float32{0, 0, 0}, nil},
		{"tiny", []float32{1e-30, 0}, []float32{1, 0}, nil},
		{"NaN", []float32{1, float32(math.NaN())}, nil, ErrNonFinite},
		{"Inf", []float32{float32(math.Inf(-1)), 1}, nil, ErrNonFinite},
	}
	for _, tt := range tests {
		dst := make([]float32, len(tt.x))
		err := Normalize(dst, tt.x)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: got error %v; want %v", tt.name, err, tt.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		for i := range dst {
			if math.Abs(float64(dst[i]-tt.want[i])) > 1e-7 {
				t.Errorf("%s: got %v; want %v", tt.name, dst, tt.want)
				break
			}
		}
	}
	if err := Normalize(make([]float32, 1), []float32{1, 2}); !errors.Is(err, ErrLengthMismatch) {
		t.Errorf("short dst: got %v; want %v", err, ErrLengthMismatch)
	}
	x := []float32{0, 5}
	if err := Normalize(x, x); err != nil || x[1] != 1 {
		t.Errorf("in place: got %v, %v; want [0 1], nil", x, err)
	}
	if got := Norm([]float32{3, 4}); got != 5 {
		t.Errorf("Norm: got %v; want 5", got)
	}
}
