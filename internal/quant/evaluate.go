package quant

import (
	"fmt"
	"math"
	"strings"
)

// Report is what [Evaluate] measured. Cosines compare each database vector
// with its own dequantized form. A recall is the fraction of the exact float
// top-k (by dot product) that a quantized search also returns in its top-k,
// averaged over queries.
type Report struct {
	Vectors       int // database size
	Queries       int // number of queries
	Dim           int // dimensions per vector
	K             int // results per query
	RescoreFactor int // binary search keeps K·RescoreFactor candidates to rescore

	// Per-vector int8 ([QuantizeInt8]).
	Int8CosineMean, Int8CosineMin float64
	// Calibrated int8 ([Calibrate] over the database, [Calibration.Quantize]).
	CalibratedCosineMean, CalibratedCosineMin float64

	// Int8Recall: [Int8Matrix.Search], query and database both int8.
	Int8Recall float64
	// CalibratedRecall: float query against the dequantized calibrated
	// database.
	CalibratedRecall float64
	// BinaryRecall: [BinaryMatrix.Search] top-K by Hamming, no rescoring.
	BinaryRecall float64
	// BinaryRescoredRecall: Hamming top K·RescoreFactor rescored with the
	// float database vectors ([RescoreFloat]), keeping K.
	BinaryRescoredRecall float64
	// BinaryBitRescoredRecall: the same candidates rescored with the float
	// query against the bits only ([RescoreBinary]), as
	// sentence-transformers does when no float vectors are kept.
	BinaryBitRescoredRecall float64
	// AsymmetricRecall: [BinaryMatrix.SearchAsymmetric] top-K, float query
	// against the sign bits, no rescoring.
	AsymmetricRecall float64
	// AsymmetricRescoredRecall: SearchAsymmetric top K·RescoreFactor
	// rescored with the float database vectors, keeping K.
	AsymmetricRescoredRecall float64
}

// String formats the report as aligned lines for a terminal or log.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "vectors %d, queries %d, dim %d, k %d, rescore factor %d\n", r.Vectors, r.Queries, r.Dim, r.K, r.RescoreFactor)
	fmt.Fprintf(&b, "int8 per-vector   cosine mean %.6f min %.6f  recall@%d %.4f\n", r.Int8CosineMean, r.Int8CosineMin, r.K, r.Int8Recall)
	fmt.Fprintf(&b, "int8 calibrated   cosine mean %.6f min %.6f  recall@%d %.4f\n", r.CalibratedCosineMean, r.CalibratedCosineMin, r.K, r.CalibratedRecall)
	fmt.Fprintf(&b, "binary            recall@%d %.4f\n", r.K, r.BinaryRecall)
	fmt.Fprintf(&b, "binary rescored   recall@%d %.4f (float vectors), %.4f (bits only), %dx candidates\n",
		r.K, r.BinaryRescoredRecall, r.BinaryBitRescoredRecall, r.RescoreFactor)
	fmt.Fprintf(&b, "binary asymmetric recall@%d %.4f, rescored %.4f (float vectors, %dx candidates)\n",
		r.K, r.AsymmetricRecall, r.AsymmetricRescoredRecall, r.RescoreFactor)
	return b.String()
}

// Evaluate measures what quantizing db costs: reconstruction cosine for both
// int8 schemes and recall@k for int8, calibrated int8 and binary search, the
// latter with and without rescoring k·rescoreFactor candidates, each against
// exact float search for every query. The calibration is computed from db
// itself. Scores are dot products, so db and queries should be
// L2-normalized as sentence embeddings usually are. It runs single-threaded
// and costs about len(queries)·len(db)·dim multiply-adds per search kind.
//
// It returns [ErrEmpty] for an empty db or queries, [ErrInvalidK] if k < 1,
// [ErrInvalidFactor] if rescoreFactor < 1, and [ErrLengthMismatch] or
// [ErrNonFinite] naming the offending vector.
func Evaluate(db, queries [][]float32, k, rescoreFactor int) (Report, error) {
	switch {
	case len(db) == 0 || len(queries) == 0:
		return Report{}, fmt.Errorf("evaluate: %d vectors, %d queries: %w", len(db), len(queries), ErrEmpty)
	case k < 1:
		return Report{}, fmt.Errorf("evaluate: k = %d: %w", k, ErrInvalidK)
	case rescoreFactor < 1:
		return Report{}, fmt.Errorf("evaluate: rescore factor %d: %w", rescoreFactor, ErrInvalidFactor)
	}
	dim := len(db[0])
	for i, q := range queries {
		if len(q) != dim {
			return Report{}, fmt.Errorf("evaluate: query %d has %d dimensions, database %d: %w", i, len(q), dim, ErrLengthMismatch)
		}
	}
	r := Report{Vectors: len(db), Queries: len(queries), Dim: dim, K: k, RescoreFactor: rescoreFactor}

	// Building the matrices validates every database vector.
	im, err := QuantizeInt8Matrix(db)
	if err != nil {
		return Report{}, fmt.Errorf("evaluate: %w", err)
	}
	bm, err := PackBinaryMatrix(db)
	if err != nil {
		return Report{}, fmt.Errorf("evaluate: %w", err)
	}
	cal, err := Calibrate(db)
	if err != nil {
		return Report{}, fmt.Errorf("evaluate: %w", err)
	}

	calDB, err := r.reconstruct(db, im, cal)
	if err != nil {
		return Report{}, err
	}
	e := evaluator{db: db, calDB: calDB, im: im, bm: bm, k: k, factor: rescoreFactor,
		floatCands: make([]FloatCandidate, 0, k*rescoreFactor), bitCands: make([]BinaryCandidate, 0, k*rescoreFactor)}
	for qi, q := range queries {
		if err := e.query(q); err != nil {
			return Report{}, fmt.Errorf("evaluate: query %d: %w", qi, err)
		}
	}
	frac := func(n int) float64 { return float64(n) / float64(e.total) }
	r.Int8Recall = frac(e.int8Hits)
	r.CalibratedRecall = frac(e.calHits)
	r.BinaryRecall = frac(e.binHits)
	r.BinaryRescoredRecall = frac(e.rescoredHits)
	r.BinaryBitRescoredRecall = frac(e.bitHits)
	r.AsymmetricRecall = frac(e.asymHits)
	r.AsymmetricRescoredRecall = frac(e.asymRescoredHits)
	return r, nil
}

// reconstruct fills r's reconstruction cosines (int8 per vector, and the
// calibrated codec) and returns the database as the calibrated codec
// reconstructs it.
func (r *Report) reconstruct(db [][]float32, im *Int8Matrix, cal *Calibration) ([][]float32, error) {
	dim := len(db[0])
	var int8Cos, calCos cosineStats
	buf := make([]float32, dim)
	codes := make([]int8, dim)
	calDB := make([][]float32, len(db))
	for i, v := range db {
		row := im.Row(i)
		dequantizeInt8(buf, row.Codes, row.Scale)
		int8Cos.add(reconstructionCosine(v, buf))
		if err := cal.QuantizeInto(codes, v); err != nil {
			return nil, fmt.Errorf("evaluate: vector %d: %w", i, err)
		}
		calDB[i] = make([]float32, dim)
		if err := cal.DequantizeInto(calDB[i], codes); err != nil {
			return nil, fmt.Errorf("evaluate: vector %d: %w", i, err)
		}
		calCos.add(reconstructionCosine(v, calDB[i]))
	}
	r.Int8CosineMean, r.Int8CosineMin = int8Cos.mean(), int8Cos.min
	r.CalibratedCosineMean, r.CalibratedCosineMin = calCos.mean(), calCos.min
	return calDB, nil
}

// evaluator counts, over the queries it is given, how many of the exact
// top-k each search method finds.
type evaluator struct {
	db, calDB  [][]float32
	im         *Int8Matrix
	bm         *BinaryMatrix
	k, factor  int
	floatCands []FloatCandidate
	bitCands   []BinaryCandidate

	int8Hits, calHits, binHits, rescoredHits, bitHits, asymHits, asymRescoredHits, total int
}

func (e *evaluator) query(q []float32) error {
	exact, err := SearchFloat(e.db, q, e.k)
	if err != nil {
		return err
	}
	truth := make(map[int64]bool, len(exact))
	for _, x := range exact {
		truth[x.ID] = true
	}
	e.total += len(exact)
	count := func(n *int, got []Result, err error) error {
		if err == nil {
			*n += hits(truth, got)
		}
		return err
	}
	for _, s := range []struct {
		n   *int
		run func() ([]Result, error)
	}{
		{&e.int8Hits, func() ([]Result, error) { return e.im.Search(q, e.k) }},
		{&e.calHits, func() ([]Result, error) { return SearchFloat(e.calDB, q, e.k) }},
		{&e.binHits, func() ([]Result, error) { return e.bm.Search(q, e.k) }},
		{&e.rescoredHits, func() ([]Result, error) { return e.rescored(q, e.bm.Search, false) }},
		{&e.bitHits, func() ([]Result, error) { return e.rescored(q, e.bm.Search, true) }},
		{&e.asymHits, func() ([]Result, error) { return e.bm.SearchAsymmetric(q, e.k) }},
		{&e.asymRescoredHits, func() ([]Result, error) { return e.rescored(q, e.bm.SearchAsymmetric, false) }},
	} {
		got, err := s.run()
		if err := count(s.n, got, err); err != nil {
			return err
		}
	}
	return nil
}

// rescored takes k*factor candidates from search and rescores them to k
// with the float query against the float vectors, or against the sign bits
// when bits is set.
func (e *evaluator) rescored(q []float32, search func([]float32, int) ([]Result, error), bits bool) ([]Result, error) {
	cands, err := search(q, e.k*e.factor)
	if err != nil {
		return nil, err
	}
	if bits {
		e.bitCands = e.bitCands[:0]
		for _, c := range cands {
			e.bitCands = append(e.bitCands, BinaryCandidate{ID: c.ID, Words: e.bm.Row(int(c.ID))})
		}
		return RescoreBinary(q, e.bitCands, e.k)
	}
	e.floatCands = e.floatCands[:0]
	for _, c := range cands {
		e.floatCands = append(e.floatCands, FloatCandidate{ID: c.ID, Vector: e.db[c.ID]})
	}
	return RescoreFloat(q, e.floatCands, e.k)
}

func hits(truth map[int64]bool, got []Result) int {
	n := 0
	for _, g := range got {
		if truth[g.ID] {
			n++
		}
	}
	return n
}

// reconstructionCosine is cosine64 except that a zero vector reconstructed
// as zeros counts as perfect rather than as 0.
func reconstructionCosine(x, y []float32) float64 {
	if norm64(x) == 0 && norm64(y) == 0 {
		return 1
	}
	return cosine64(x, y)
}

type cosineStats struct {
	sum, min float64
	n        int
}

func (s *cosineStats) add(c float64) {
	if s.n == 0 {
		s.min = c
	}
	s.sum += c
	s.min = math.Min(s.min, c)
	s.n++
}

func (s *cosineStats) mean() float64 { return s.sum / float64(s.n) }
