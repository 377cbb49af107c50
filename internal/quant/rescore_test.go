package quant

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestRescoreFloat(t *testing.T) {
	cands := []FloatCandidate{
		{ID: 40, Vector: []float32{0, 1}},
		{ID: 7, Vector: []float32{1, 0}},
		{ID: 3, Vector: []float32{0, 1}},
		{ID: 9, Vector: []float32{-1, 0}},
	}
	tests := []struct {
		name string
		k    int
		want []Result
	}{
		{"top 1", 1, []Result{{7, 2}}},
		{"ties by id", 3, []Result{{7, 2}, {3, 1}, {40, 1}}},
		{"k > n", 10, []Result{{7, 2}, {3, 1}, {40, 1}, {9, -2}}},
	}
	for _, tt := range tests {
		got, err := RescoreFloat([]float32{2, 1}, cands, tt.k)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %v; want %v", tt.name, got, tt.want)
		}
	}
}

func TestRescoreInt8(t *testing.T) {
	rng := rand.New(rand.NewPCG(61, 62))
	q := randFloats(rng, 50)
	var cands []Int8Candidate
	var scores []float64
	for i := range 30 {
		v, _ := QuantizeInt8(randFloats(rng, 50))
		cands = append(cands, Int8Candidate{ID: int64(100 - i), Codes: v.Codes, Scale: v.Scale})
		scores = append(scores, float64(DotFloat32(q, v.Dequantize())))
	}
	got, err := RescoreInt8(q, cands, 5)
	if err != nil {
		t.Fatal(err)
	}
	order := make([]int, len(scores))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		if scores[a] > scores[b] {
			return -1
		}
		return 1
	})
	for r, g := range got {
		want := cands[order[r]]
		if g.ID != want.ID || math.Abs(float64(g.Score)-scores[order[r]]) > 1e-4 {
			t.Errorf("rank %d: got %v; want id %d score %v", r, g, want.ID, scores[order[r]])
		}
	}
}

func TestRescoreBinary(t *testing.T) {
	// Score is the sum of the query over set bits: candidate 2 has bits
	// for the two positive query values.
	q := []float32{0.5, -1, 2, 0.25, 0, 0, 0, 0, 0, -3}
	words := func(x []float32) []uint64 {
		w, err := PackBinaryWords(x)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	cands := []BinaryCandidate{
		{ID: 1, Words: words([]float32{1, 1, 1, 1, 1, 1, 1, 1, 1, 1})},      // -1.25
		{ID: 2, Words: words([]float32{1, -1, 1, -1, 0, 0, 0, 0, 0, -1})},   // 2.5
		{ID: 3, Words: words([]float32{-1, -1, -1, -1, 0, 0, 0, 0, 0, -1})}, // 0
		{ID: 0, Words: words([]float32{0, 0, 0, 0, 1, 1, 1, 1, 1, -1})},     // 0
	}
	got, err := RescoreBinary(q, cands, 3)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Result{{2, 2.5}, {0, 0}, {3, 0}}; !slices.Equal(got, want) {
		t.Errorf("got %v; want %v", got, want)
	}
}

func TestRescoreErrors(t *testing.T) {
	q := []float32{1, 2}
	tests := []struct {
		name    string
		err     error
		wantErr error
	}{
		{"float k zero", second(RescoreFloat(q, nil, 0)), ErrInvalidK},
		{"int8 k negative", second(RescoreInt8(q, nil, -3)), ErrInvalidK},
		{"binary empty query", second(RescoreBinary(nil, nil, 1)), ErrEmpty},
		{"float NaN query", second(RescoreFloat([]float32{nan, 1}, nil, 1)), ErrNonFinite},
		{"int8 Inf query", second(RescoreInt8([]float32{pinf, 1}, nil, 1)), ErrNonFinite},
		{"float short candidate", second(RescoreFloat(q, []FloatCandidate{{ID: 1, Vector: []float32{1}}}, 1)), ErrLengthMismatch},
		{"int8 short candidate", second(RescoreInt8(q, []Int8Candidate{{ID: 1, Codes: []int8{1, 2, 3}}}, 1)), ErrLengthMismatch},
		{"binary long candidate", second(RescoreBinary(q, []BinaryCandidate{{ID: 1, Words: make([]uint64, 2)}}, 1)), ErrLengthMismatch},
		{"float NaN score", second(RescoreFloat(q, []FloatCandidate{{ID: 1, Vector: []float32{nan, 0}}}, 1)), ErrNonFinite},
		{"no candidates", second(RescoreFloat(q, nil, 3)), nil},
	}
	for _, tt := range tests {
		if !errors.Is(tt.err, tt.wantErr) {
			t.Errorf("%s: got %v; want %v", tt.name, tt.err, tt.wantErr)
		}
	}
}

func TestBitDotMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(63, 64))
	for n := 1; n <= 200; n++ {
		q, x := randFloats(rng, n), randFloats(rng, n)
		w, err := PackBinaryWords(x)
		if err != nil {
			t.Fatal(err)
		}
		var want float64
		for i := range q {
			if x[i] > 0 {
				want += float64(q[i])
			}
		}
		if got := bitDot(q, w); math.Abs(float64(got)-want) > 1e-4 {
			t.Fatalf("n=%d: got %v; want %v", n, got, want)
		}
	}
}
