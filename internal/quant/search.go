package quant

import (
	"fmt"
	"math"
	"math/bits"
)

// stackDim is the largest dimension whose quantized query is kept on the
// stack during a search; larger ones allocate.
const stackDim = 1024

// Int8Matrix is a collection of per-vector int8 codes ([QuantizeInt8]) in one
// contiguous row-major block, searched by brute force. Row i has ID i.
//
// Searches may run concurrently with each other; Append must not run
// concurrently with any other method.
type Int8Matrix struct {
	dim    int
	codes  []int8    // row i is codes[i*dim : (i+1)*dim]
	scales []float32 // scales[i] is row i's scale
}

// NewInt8Matrix returns a matrix of dim-dimensional rows holding codes and
// scales, which it uses without copying (pass nil for an empty matrix). It is
// how a stored collection is loaded; the codes are trusted to lie in
// [-127, 127] as [QuantizeInt8] writes them.
//
// It returns [ErrEmpty] if dim < 1 and [ErrLengthMismatch] if
// len(codes) != len(scales)·dim.
func NewInt8Matrix(dim int, codes []int8, scales []float32) (*Int8Matrix, error) {
	if dim < 1 {
		return nil, fmt.Errorf("new int8 matrix: dimension %d: %w", dim, ErrEmpty)
	}
	if len(codes) != len(scales)*dim {
		return nil, fmt.Errorf("new int8 matrix: %d codes for %d rows of %d: %w", len(codes), len(scales), dim, ErrLengthMismatch)
	}
	return &Int8Matrix{dim: dim, codes: codes, scales: scales}, nil
}

// QuantizeInt8Matrix quantizes vectors with [QuantizeInt8] into a new matrix.
// It returns [ErrEmpty] for no vectors, [ErrLengthMismatch] if their lengths
// differ and the errors of QuantizeInt8 with the vector's index.
func QuantizeInt8Matrix(vectors [][]float32) (*Int8Matrix, error) {
	if len(vectors) == 0 {
		return nil, fmt.Errorf("quantize int8 matrix: %w", ErrEmpty)
	}
	dim := len(vectors[0])
	m, err := NewInt8Matrix(dim, make([]int8, 0, len(vectors)*dim), make([]float32, 0, len(vectors)))
	if err != nil {
		return nil, fmt.Errorf("quantize int8 matrix: %w", err)
	}
	for i, v := range vectors {
		if err := m.Append(v); err != nil {
			return nil, fmt.Errorf("quantize int8 matrix: vector %d: %w", i, err)
		}
	}
	return m, nil
}

// Dim returns the number of dimensions of each row.
func (m *Int8Matrix) Dim() int { return m.dim }

// Len returns the number of rows.
func (m *Int8Matrix) Len() int { return len(m.scales) }

// Row returns row i, sharing the matrix's memory. It panics if i is out of
// range.
func (m *Int8Matrix) Row(i int) Int8 {
	return Int8{Codes: m.codes[i*m.dim : (i+1)*m.dim : (i+1)*m.dim], Scale: m.scales[i]}
}

// Codes returns all rows' codes, row-major, sharing the matrix's memory, for
// persisting. Callers must not modify them.
func (m *Int8Matrix) Codes() []int8 { return m.codes }

// Scales returns all rows' scales, sharing the matrix's memory, for
// persisting. Callers must not modify them.
func (m *Int8Matrix) Scales() []float32 { return m.scales }

// Append quantizes x with [QuantizeInt8] and adds it as row m.Len(). On
// error the matrix is unchanged.
func (m *Int8Matrix) Append(x []float32) error {
	if len(x) != m.dim {
		return fmt.Errorf("append: vector has %d dimensions, matrix %d: %w", len(x), m.dim, ErrLengthMismatch)
	}
	n := len(m.codes)
	m.codes = append(m.codes, make([]int8, m.dim)...)
	scale, err := QuantizeInt8Into(m.codes[n:], x)
	if err != nil {
		m.codes = m.codes[:n]
		return fmt.Errorf("append: %w", err)
	}
	m.scales = append(m.scales, scale)
	return nil
}

// Search returns the k rows with the highest approximate dot product with
// query, best first (ties by ascending ID), or all rows if there are fewer.
// The query is quantized with [QuantizeInt8] and each row scored
// DotInt8(q, row)·scale_q·scale_row, which approximates the float dot product
// (the cosine similarity for unit vectors).
//
// It returns [ErrInvalidK] if k < 1, [ErrLengthMismatch] if len(query) !=
// m.Dim() and [ErrNonFinite] if the query holds NaN or ±Inf.
func (m *Int8Matrix) Search(query []float32, k int) ([]Result, error) {
	if k < 1 {
		return nil, fmt.Errorf("int8 search: k = %d: %w", k, ErrInvalidK)
	}
	if len(query) != m.dim {
		return nil, fmt.Errorf("int8 search: query has %d dimensions, matrix %d: %w", len(query), m.dim, ErrLengthMismatch)
	}
	var buf [stackDim]int8
	q := buf[:0]
	if m.dim <= stackDim {
		q = buf[:m.dim]
	} else {
		q = make([]int8, m.dim)
	}
	qs, err := QuantizeInt8Into(q, query)
	if err != nil {
		return nil, fmt.Errorf("int8 search: %w", err)
	}
	top := newTopK(min(k, m.Len()))
	if top.k == 0 {
		return top.results(), nil
	}
	dim := m.dim
	for i, s := range m.scales {
		score := float32(DotInt8(q, m.codes[i*dim:(i+1)*dim:(i+1)*dim])) * (qs * s)
		// Rows arrive in ascending ID order, so a later row that only
		// ties the current worst can never displace it.
		if top.full() && score <= top.worst().Score {
			continue
		}
		top.push(Result{ID: int64(i), Score: score})
	}
	return top.results(), nil
}

// BinaryMatrix is a collection of binary codes in word form
// ([PackBinaryWords]) in one contiguous row-major block, searched by Hamming
// distance. Row i has ID i.
//
// Searches may run concurrently with each other; Append must not run
// concurrently with any other method.
type BinaryMatrix struct {
	dim    int
	stride int      // BinaryWords(dim)
	words  []uint64 // row i is words[i*stride : (i+1)*stride]
}

// NewBinaryMatrix returns a matrix of dim-dimensional rows holding words (the
// word form, BinaryWords(dim) words per row), which it uses without copying
// (pass nil for an empty matrix). Padding bits must be zero, as
// [PackBinaryWords] writes them.
//
// It returns [ErrEmpty] if dim < 1 and [ErrLengthMismatch] if len(words) is
// not a multiple of BinaryWords(dim).
func NewBinaryMatrix(dim int, words []uint64) (*BinaryMatrix, error) {
	if dim < 1 {
		return nil, fmt.Errorf("new binary matrix: dimension %d: %w", dim, ErrEmpty)
	}
	stride := BinaryWords(dim)
	if len(words)%stride != 0 {
		return nil, fmt.Errorf("new binary matrix: %d words is not a whole number of %d-word rows: %w", len(words), stride, ErrLengthMismatch)
	}
	return &BinaryMatrix{dim: dim, stride: stride, words: words}, nil
}

// PackBinaryMatrix packs vectors with [PackBinaryWords] into a new matrix. It
// returns [ErrEmpty] for no vectors, [ErrLengthMismatch] if their lengths
// differ and the errors of PackBinaryWords with the vector's index.
func PackBinaryMatrix(vectors [][]float32) (*BinaryMatrix, error) {
	if len(vectors) == 0 {
		return nil, fmt.Errorf("pack binary matrix: %w", ErrEmpty)
	}
	dim := len(vectors[0])
	m, err := NewBinaryMatrix(dim, make([]uint64, 0, len(vectors)*BinaryWords(dim)))
	if err != nil {
		return nil, fmt.Errorf("pack binary matrix: %w", err)
	}
	for i, v := range vectors {
		if err := m.Append(v); err != nil {
			return nil, fmt.Errorf("pack binary matrix: vector %d: %w", i, err)
		}
	}
	return m, nil
}

// Dim returns the number of dimensions (bits) of each row.
func (m *BinaryMatrix) Dim() int { return m.dim }

// Len returns the number of rows.
func (m *BinaryMatrix) Len() int { return len(m.words) / m.stride }

// Row returns row i's words, sharing the matrix's memory. It panics if i is
// out of range.
func (m *BinaryMatrix) Row(i int) []uint64 {
	return m.words[i*m.stride : (i+1)*m.stride : (i+1)*m.stride]
}

// Words returns all rows' words, row-major, sharing the matrix's memory, for
// persisting. Callers must not modify them.
func (m *BinaryMatrix) Words() []uint64 { return m.words }

// Append packs x with [PackBinaryWords] and adds it as row m.Len(). On error
// the matrix is unchanged.
func (m *BinaryMatrix) Append(x []float32) error {
	if len(x) != m.dim {
		return fmt.Errorf("append: vector has %d dimensions, matrix %d: %w", len(x), m.dim, ErrLengthMismatch)
	}
	n := len(m.words)
	m.words = append(m.words, make([]uint64, m.stride)...)
	if err := PackBinaryWordsInto(m.words[n:], x); err != nil {
		m.words = m.words[:n]
		return fmt.Errorf("append: %w", err)
	}
	return nil
}

// Search returns the k rows nearest to query in Hamming distance, nearest
// first (ties by ascending ID), or all rows if there are fewer. Score is
// Dim - 2·Hamming, the dot product of the ±1 sign vectors, so that higher is
// better as everywhere in this package; the distance is (Dim - Score)/2.
// Rescore the results, typically k·4 of them, with [RescoreFloat].
//
// It returns [ErrInvalidK] if k < 1, [ErrLengthMismatch] if len(query) !=
// m.Dim() and [ErrNonFinite] if the query holds NaN or ±Inf.
func (m *BinaryMatrix) Search(query []float32, k int) ([]Result, error) {
	if k < 1 {
		return nil, fmt.Errorf("binary search: k = %d: %w", k, ErrInvalidK)
	}
	if len(query) != m.dim {
		return nil, fmt.Errorf("binary search: query has %d dimensions, matrix %d: %w", len(query), m.dim, ErrLengthMismatch)
	}
	var buf [stackWords]uint64
	q := buf[:0]
	if m.stride <= len(buf) {
		q = buf[:m.stride]
	} else {
		q = make([]uint64, m.stride)
	}
	if err := PackBinaryWordsInto(q, query); err != nil {
		return nil, fmt.Errorf("binary search: %w", err)
	}
	n := m.Len()
	top := newTopK(min(k, n))
	if top.k == 0 {
		return top.results(), nil
	}
	stride := m.stride
	// A distance worse than the current k-th cannot enter, so the scan
	// compares integers and touches the heap only on improvement.
	cutoff := math.MaxInt
	for i := range n {
		h := Hamming(q, m.words[i*stride:(i+1)*stride:(i+1)*stride])
		if h >= cutoff {
			continue
		}
		top.push(Result{ID: int64(i), Score: float32(m.dim - 2*h)})
		if top.full() {
			cutoff = (m.dim - int(top.worst().Score)) / 2
		}
	}
	return top.results(), nil
}

// stackWords is the number of query words a binary search keeps on the
// stack (4096 dimensions); larger queries allocate.
const stackWords = 64

// SearchAsymmetric returns the k rows with the highest dot product of the
// float query with the row's ±1 sign vector, best first (ties by ascending
// ID), or all rows if there are fewer. Score is that dot product. Keeping the
// query in float loses far less than binarizing it too: on 384-dimensional
// MiniLM embeddings recall@10 after rescoring 4·k candidates with
// [RescoreFloat] rises from about 0.90 with [BinaryMatrix.Search] to about
// 0.97. The price is time: a table lookup per byte of code instead of a
// popcount per word, several times slower, and a per-query table of
// 256·BinaryBytes(Dim) float32 values.
//
// Errors are those of [BinaryMatrix.Search].
func (m *BinaryMatrix) SearchAsymmetric(query []float32, k int) ([]Result, error) {
	if k < 1 {
		return nil, fmt.Errorf("binary asymmetric search: k = %d: %w", k, ErrInvalidK)
	}
	if len(query) != m.dim {
		return nil, fmt.Errorf("binary asymmetric search: query has %d dimensions, matrix %d: %w", len(query), m.dim, ErrLengthMismatch)
	}
	if err := checkFinite(query); err != nil {
		return nil, fmt.Errorf("binary asymmetric search: query: %w", err)
	}
	n := m.Len()
	top := newTopK(min(k, n))
	if top.k == 0 {
		return top.results(), nil
	}
	// One table per code byte, padded to whole words: tab[j][b] is the
	// query's dot product with byte j's eight signs when the byte is b.
	tab := signTables(query, 8*m.stride)
	stride := m.stride
	for i := range n {
		row := m.words[i*stride : (i+1)*stride : (i+1)*stride]
		t := tab[:8*len(row)]
		var s0, s1 float32
		for w, x := range row {
			tw := t[8*w : 8*w+8 : 8*w+8]
			s0 += tw[0][uint8(x>>56)] + tw[2][uint8(x>>40)] + tw[4][uint8(x>>24)] + tw[6][uint8(x>>8)]
			s1 += tw[1][uint8(x>>48)] + tw[3][uint8(x>>32)] + tw[5][uint8(x>>16)] + tw[7][uint8(x)]
		}
		score := s0 + s1
		if top.full() && score <= top.worst().Score {
			continue
		}
		top.push(Result{ID: int64(i), Score: score})
	}
	return top.results(), nil
}

// signTables returns nbytes tables; entry b of table j is the dot product
// of query[8j : 8j+8] with the signs of b's bits, most significant first,
// a set bit counting +1 and a clear bit -1. Dimensions past the query's end
// contribute nothing.
func signTables(query []float32, nbytes int) [][256]float32 {
	tab := make([][256]float32, nbytes)
	for j := range tab {
		var q [8]float32
		copy(q[:], query[min(8*j, len(query)):min(8*j+8, len(query))])
		t := &tab[j]
		for _, v := range q {
			t[0] -= v
		}
		// Each entry adds one set bit, its lowest, to an entry already
		// filled: flipping a sign from -1 to +1 adds twice the value.
		for b := 1; b < 256; b++ {
			low := b & -b
			t[b] = t[b&^low] + 2*q[7-bits.TrailingZeros8(uint8(low))]
		}
	}
	return tab
}

// SearchFloat returns the k vectors with the highest exact dot product with
// query (the cosine similarity for unit vectors), best first with ties by
// ascending index, or all of them if there are fewer. Result IDs are indexes
// into vectors. It is the ground truth quantized searches are measured
// against.
//
// It returns [ErrInvalidK] if k < 1, [ErrEmpty] for an empty query,
// [ErrLengthMismatch] naming the first vector whose length differs from the
// query's, and [ErrNonFinite] if the query holds NaN or ±Inf or a score is
// NaN.
func SearchFloat(vectors [][]float32, query []float32, k int) ([]Result, error) {
	if k < 1 {
		return nil, fmt.Errorf("float search: k = %d: %w", k, ErrInvalidK)
	}
	if len(query) == 0 {
		return nil, fmt.Errorf("float search: %w", ErrEmpty)
	}
	if err := checkFinite(query); err != nil {
		return nil, fmt.Errorf("float search: query: %w", err)
	}
	top := newTopK(min(k, len(vectors)))
	if top.k == 0 {
		return top.results(), nil
	}
	for i, v := range vectors {
		if len(v) != len(query) {
			return nil, fmt.Errorf("float search: vector %d has %d dimensions, query %d: %w", i, len(v), len(query), ErrLengthMismatch)
		}
		score := DotFloat32(query, v)
		if score != score {
			return nil, fmt.Errorf("float search: vector %d scores NaN: %w", i, ErrNonFinite)
		}
		if top.full() && score <= top.worst().Score {
			continue
		}
		top.push(Result{ID: int64(i), Score: score})
	}
	return top.results(), nil
}
