package quant

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
)

// naiveTop ranks every score by sorting, the reference for the heap.
func naiveTop(scores []float32, k int) []Result {
	all := make([]Result, len(scores))
	for i, s := range scores {
		all[i] = Result{ID: int64(i), Score: s}
	}
	slices.SortStableFunc(all, func(a, b Result) int {
		switch {
		case a.Score > b.Score:
			return -1
		case a.Score < b.Score:
			return 1
		}
		return 0
	})
	return all[:min(k, len(all))]
}

func randUnitVectors(rng *rand.Rand, n, dim int) [][]float32 {
	out := make([][]float32, n)
	for i := range out {
		out[i] = randFloats(rng, dim)
		if err := Normalize(out[i], out[i]); err != nil {
			panic(err)
		}
	}
	return out
}

func TestSearchesMatchNaiveRanking(t *testing.T) {
	rng := rand.New(rand.NewPCG(51, 52))
	const dim = 67 // not a multiple of 8 or 64
	db := randUnitVectors(rng, 300, dim)
	im, err := QuantizeInt8Matrix(db)
	if err != nil {
		t.Fatal(err)
	}
	bm, err := PackBinaryMatrix(db)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []int{1, 5, 10, 299, 300, 1000} {
		q := randUnitVectors(rng, 1, dim)[0]
		qi, _ := QuantizeInt8(q)
		qb, _ := PackBinaryWords(q)
		var fs, is, bs []float32
		for i, v := range db {
			fs = append(fs, DotFloat32(q, v))
			r := im.Row(i)
			is = append(is, float32(DotInt8(qi.Codes, r.Codes))*(qi.Scale*r.Scale))
			bs = append(bs, float32(dim-2*Hamming(qb, bm.Row(i))))
		}
		for _, c := range []struct {
			name   string
			search func([]float32, int) ([]Result, error)
			scores []float32
		}{
			{"float", func(q []float32, k int) ([]Result, error) { return SearchFloat(db, q, k) }, fs},
			{"int8", im.Search, is},
			{"binary", bm.Search, bs},
		} {
			got, err := c.search(q, k)
			if err != nil {
				t.Fatalf("%s k=%d: %v", c.name, k, err)
			}
			if want := naiveTop(c.scores, k); !slices.Equal(got, want) {
				t.Errorf("%s k=%d: got %v; want %v", c.name, k, got, want)
			}
		}
		// Asymmetric scores are float sums in a different order, so
		// compare them with a tolerance rather than expect identical ties.
		var as []float32
		for _, v := range db {
			var s float64
			for i, x := range v {
				if x > 0 {
					s += float64(q[i])
				} else {
					s -= float64(q[i])
				}
			}
			as = append(as, float32(s))
		}
		got, err := bm.SearchAsymmetric(q, k)
		if err != nil {
			t.Fatalf("asymmetric k=%d: %v", k, err)
		}
		want := naiveTop(as, k)
		if len(got) != len(want) {
			t.Fatalf("asymmetric k=%d: got %d results; want %d", k, len(got), len(want))
		}
		for r := range got {
			if d := got[r].Score - want[r].Score; d > 1e-5 || d < -1e-5 || got[r].Score-as[got[r].ID] > 1e-5 || as[got[r].ID]-got[r].Score > 1e-5 {
				t.Errorf("asymmetric k=%d rank %d: got %v; want %v", k, r, got[r], want[r])
			}
		}
	}
}

// Binary scores are small integers, so ties are common; they must resolve
// to the lowest IDs.
func TestSearchTiesBreakByID(t *testing.T) {
	db := [][]float32{{1, -1}, {1, 1}, {1, -1}, {1, 1}, {1, 1}, {-1, -1}}
	bm, err := PackBinaryMatrix(db)
	if err != nil {
		t.Fatal(err)
	}
	got, err := bm.Search([]float32{1, 1}, 4)
	if err != nil {
		t.Fatal(err)
	}
	want := []Result{{1, 2}, {3, 2}, {4, 2}, {0, 0}}
	if !slices.Equal(got, want) {
		t.Errorf("binary: got %v; want %v", got, want)
	}
	got, err = SearchFloat(db, []float32{1, 1}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Result{{1, 2}, {3, 2}, {4, 2}}; !slices.Equal(got, want) {
		t.Errorf("float: got %v; want %v", got, want)
	}
	im, err := QuantizeInt8Matrix(db)
	if err != nil {
		t.Fatal(err)
	}
	got, err = im.Search([]float32{1, 0}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Result{{0, 1}, {1, 1}}; !slices.Equal(got, want) {
		t.Errorf("int8: got %v; want %v", got, want)
	}
}

func TestSearchErrors(t *testing.T) {
	db := [][]float32{{1, 0, 0}, {0, 1, 0}}
	im, err := QuantizeInt8Matrix(db)
	if err != nil {
		t.Fatal(err)
	}
	bm, err := PackBinaryMatrix(db)
	if err != nil {
		t.Fatal(err)
	}
	q := []float32{1, 1, 0}
	searches := []struct {
		name   string
		search func([]float32, int) ([]Result, error)
	}{
		{"float", func(q []float32, k int) ([]Result, error) { return SearchFloat(db, q, k) }},
		{"int8", im.Search},
		{"binary", bm.Search},
		{"asymmetric", bm.SearchAsymmetric},
	}
	tests := []struct {
		name    string
		q       []float32
		k       int
		wantErr error
	}{
		{"k zero", q, 0, ErrInvalidK},
		{"k negative", q, -1, ErrInvalidK},
		{"short query", q[:2], 1, ErrLengthMismatch},
		{"NaN query", []float32{1, nan, 0}, 1, ErrNonFinite},
		{"Inf query", []float32{1, 0, pinf}, 1, ErrNonFinite},
	}
	for _, s := range searches {
		for _, tt := range tests {
			if _, err := s.search(tt.q, tt.k); !errors.Is(err, tt.wantErr) {
				t.Errorf("%s %s: got %v; want %v", s.name, tt.name, err, tt.wantErr)
			}
		}
		got, err := s.search(q, 5)
		if err != nil || len(got) != 2 {
			t.Errorf("%s k > n: got %v, %v; want both rows", s.name, got, err)
		}
	}
	if _, err := SearchFloat([][]float32{{1, 0, 0}, {1}}, q, 1); !errors.Is(err, ErrLengthMismatch) {
		t.Errorf("float ragged: got %v; want %v", err, ErrLengthMismatch)
	}
	if _, err := SearchFloat([][]float32{{1, 0, 0}, {0, 0, pinf}}, q, 1); !errors.Is(err, ErrNonFinite) {
		t.Errorf("float Inf·0 = NaN score: got %v; want %v", err, ErrNonFinite)
	}
	got, err := SearchFloat(nil, q, 3)
	if err != nil || len(got) != 0 {
		t.Errorf("float empty db: got %v, %v; want no results", got, err)
	}
}

func TestMatrixConstruction(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		wantErr error
	}{
		{"int8 zero dim", second(NewInt8Matrix(0, nil, nil)), ErrEmpty},
		{"int8 codes and scales disagree", second(NewInt8Matrix(2, make([]int8, 3), make([]float32, 2))), ErrLengthMismatch},
		{"int8 valid", second(NewInt8Matrix(2, make([]int8, 4), make([]float32, 2))), nil},
		{"int8 no vectors", second(QuantizeInt8Matrix(nil)), ErrEmpty},
		{"int8 ragged", second(QuantizeInt8Matrix([][]float32{{1, 2}, {1}})), ErrLengthMismatch},
		{"int8 NaN", second(QuantizeInt8Matrix([][]float32{{1, 2}, {nan, 1}})), ErrNonFinite},
		{"binary zero dim", second(NewBinaryMatrix(0, nil)), ErrEmpty},
		{"binary partial row", second(NewBinaryMatrix(65, make([]uint64, 3))), ErrLengthMismatch},
		{"binary valid", second(NewBinaryMatrix(65, make([]uint64, 4))), nil},
		{"binary no vectors", second(PackBinaryMatrix(nil)), ErrEmpty},
		{"binary ragged", second(PackBinaryMatrix([][]float32{{1}, {1, 2}})), ErrLengthMismatch},
		{"binary empty vector", second(PackBinaryMatrix([][]float32{{}})), ErrEmpty},
	}
	for _, tt := range tests {
		if !errors.Is(tt.err, tt.wantErr) {
			t.Errorf("%s: got %v; want %v", tt.name, tt.err, tt.wantErr)
		}
	}
}

func second[T any](_ T, err error) error { return err }

// A failed Append leaves the matrix as it was, and matrices rebuilt from
// their persisted slices search identically.
func TestMatrixAppendAndReload(t *testing.T) {
	im, _ := NewInt8Matrix(2, nil, nil)
	bm, _ := NewBinaryMatrix(2, nil)
	for _, x := range [][]float32{{1, 2}, {-3, 0.5}} {
		if err := im.Append(x); err != nil {
			t.Fatal(err)
		}
		if err := bm.Append(x); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range [][]float32{{1}, {nan, 1}} {
		if err := im.Append(bad); err == nil {
			t.Errorf("int8 append %v: got nil error; want one", bad)
		}
		if err := bm.Append(bad); err == nil {
			t.Errorf("binary append %v: got nil error; want one", bad)
		}
	}
	if im.Len() != 2 || len(im.Codes()) != 4 || len(im.Scales()) != 2 || im.Dim() != 2 {
		t.Errorf("int8: got %d rows, %d codes; want 2 rows, 4 codes", im.Len(), len(im.Codes()))
	}
	if bm.Len() != 2 || len(bm.Words()) != 2 || bm.Dim() != 2 {
		t.Errorf("binary: got %d rows, %d words; want 2 rows, 2 words", bm.Len(), len(bm.Words()))
	}
	im2, err := NewInt8Matrix(im.Dim(), im.Codes(), im.Scales())
	if err != nil {
		t.Fatal(err)
	}
	bm2, err := NewBinaryMatrix(bm.Dim(), bm.Words())
	if err != nil {
		t.Fatal(err)
	}
	q := []float32{-1, 0.2}
	a, _ := im.Search(q, 2)
	b, _ := im2.Search(q, 2)
	if !slices.Equal(a, b) || a[0].ID != 1 {
		t.Errorf("int8 reloaded: got %v; want %v with row 1 first", b, a)
	}
	a, _ = bm.Search(q, 2)
	b, _ = bm2.Search(q, 2)
	if !slices.Equal(a, b) || a[0].ID != 1 {
		t.Errorf("binary reloaded: got %v; want %v with row 1 first", b, a)
	}
}

// Dimensions past the stack buffers take the allocating path.
func TestSearchLargeDim(t *testing.T) {
	rng := rand.New(rand.NewPCG(53, 54))
	const dim = 5000
	db := randUnitVectors(rng, 20, dim)
	im, err := QuantizeInt8Matrix(db)
	if err != nil {
		t.Fatal(err)
	}
	bm, err := PackBinaryMatrix(db)
	if err != nil {
		t.Fatal(err)
	}
	for name, search := range map[string]func([]float32, int) ([]Result, error){
		"int8": im.Search, "binary": bm.Search, "asymmetric": bm.SearchAsymmetric,
	} {
		got, err := search(db[7], 1)
		if err != nil || len(got) != 1 || got[0].ID != 7 {
			t.Errorf("%s: got %v, %v; want row 7 first", name, got, err)
		}
	}
}

func TestSearchConcurrent(t *testing.T) {
	rng := rand.New(rand.NewPCG(55, 56))
	db := randUnitVectors(rng, 500, 64)
	im, _ := QuantizeInt8Matrix(db)
	bm, _ := PackBinaryMatrix(db)
	want, _ := im.Search(db[3], 10)
	wantB, _ := bm.Search(db[3], 10)
	done := make(chan error)
	for range 4 {
		go func() {
			for range 20 {
				got, err := im.Search(db[3], 10)
				if err != nil || !slices.Equal(got, want) {
					done <- errors.New("int8 search differs under concurrency")
					return
				}
				got, err = bm.Search(db[3], 10)
				if err != nil || !slices.Equal(got, wantB) {
					done <- errors.New("binary search differs under concurrency")
					return
				}
			}
			done <- nil
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
