package quant

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestPackBinary(t *testing.T) {
	negZero := float32(math.Copysign(0, -1))
	tests := []struct {
		name      string
		x         []float32
		wantBytes []byte
		wantWords []uint64
		wantErr   error
	}{
		{"msb first", []float32{1, -1, -1, -1, -1, -1, -1, 2}, []byte{0x81}, []uint64{0x81 << 56}, nil},
		{"Inf has a sign but is rejected", []float32{0, negZero, 1e-45, -1e-45, pinf, ninf, 0, 0}, nil, nil, ErrNonFinite},
		{"signed zeros and subnormals", []float32{0, negZero, 1e-45, -1e-45, 3, -3, 0, 0}, []byte{0x28}, []uint64{0x28 << 56}, nil},
		{"tail padded with zeros", []float32{1, 1, 1}, []byte{0xe0}, []uint64{0xe0 << 56}, nil},
		{"nine dims", []float32{1, 0, 0, 0, 0, 0, 0, 1, 1}, []byte{0x81, 0x80}, []uint64{0x8180 << 48}, nil},
		{"empty", nil, nil, nil, ErrEmpty},
		{"NaN", []float32{1, nan}, nil, nil, ErrNonFinite},
	}
	for _, tt := range tests {
		gotBytes, err := PackBinary(tt.x)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: got error %v; want %v", tt.name, err, tt.wantErr)
			continue
		}
		gotWords, err := PackBinaryWords(tt.x)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("%s (words): got error %v; want %v", tt.name, err, tt.wantErr)
			continue
		}
		if !slices.Equal(gotBytes, tt.wantBytes) {
			t.Errorf("%s: got %08b; want %08b", tt.name, gotBytes, tt.wantBytes)
		}
		if !slices.Equal(gotWords, tt.wantWords) {
			t.Errorf("%s: got %016x; want %016x", tt.name, gotWords, tt.wantWords)
		}
	}
}

// The word form is the big-endian reading of the byte form at every length,
// and both agree with a bit-at-a-time reference.
func TestPackBinaryFormsAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	for n := 1; n <= 200; n++ {
		x := randFloats(rng, n)
		b, err := PackBinary(x)
		if err != nil {
			t.Fatal(err)
		}
		w, err := PackBinaryWords(x)
		if err != nil {
			t.Fatal(err)
		}
		fromBytes := make([]uint64, len(w))
		if err := WordsFromBytes(fromBytes, b); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(w, fromBytes) {
			t.Fatalf("n=%d: got words %x; want %x", n, w, fromBytes)
		}
		for i, v := range x {
			want := v > 0
			if got := b[i/8]>>(7-i%8)&1 == 1; got != want {
				t.Fatalf("n=%d dim %d: got byte bit %v; want %v", n, i, got, want)
			}
			if got := w[i/64]>>(63-i%64)&1 == 1; got != want {
				t.Fatalf("n=%d dim %d: got word bit %v; want %v", n, i, got, want)
			}
		}
	}
}

// For ±1 sign vectors the dot product is dim - 2·Hamming.
func TestHammingMatchesSignDot(t *testing.T) {
	rng := rand.New(rand.NewPCG(43, 44))
	for _, n := range []int{5, 64, 100, 384} {
		a, b := randFloats(rng, n), randFloats(rng, n)
		wa, _ := PackBinaryWords(a)
		wb, _ := PackBinaryWords(b)
		want := 0
		for i := range a {
			if (a[i] > 0) == (b[i] > 0) {
				want++
			} else {
				want--
			}
		}
		if got := n - 2*Hamming(wa, wb); got != want {
			t.Errorf("n=%d: got %v; want %v", n, got, want)
		}
	}
}

func TestPackBinaryLengthErrors(t *testing.T) {
	x := make([]float32, 65)
	tests := []struct {
		name string
		err  error
	}{
		{"bytes dst too short", PackBinaryInto(make([]byte, 8), x)},
		{"bytes dst too long", PackBinaryInto(make([]byte, 10), x)},
		{"words dst too short", PackBinaryWordsInto(make([]uint64, 1), x)},
		{"words from bytes", WordsFromBytes(make([]uint64, 1), make([]byte, 9))},
	}
	for _, tt := range tests {
		if !errors.Is(tt.err, ErrLengthMismatch) {
			t.Errorf("%s: got %v; want %v", tt.name, tt.err, ErrLengthMismatch)
		}
	}
	if got, want := BinaryBytes(384), 48; got != want {
		t.Errorf("BinaryBytes(384): got %v; want %v", got, want)
	}
	if got, want := BinaryWords(385), 7; got != want {
		t.Errorf("BinaryWords(385): got %v; want %v", got, want)
	}
}

func TestPackBinaryIntoDoesNotAllocate(t *testing.T) {
	x := randFloats(rand.New(rand.NewPCG(1, 1)), 384)
	b := make([]byte, 48)
	w := make([]uint64, 6)
	allocs := testing.AllocsPerRun(100, func() {
		if err := PackBinaryInto(b, x); err != nil {
			t.Fatal(err)
		}
		if err := PackBinaryWordsInto(w, x); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("got %v allocations; want 0", allocs)
	}
}
