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

	var int8Cos, calCos cosineStats
	buf := make([]float32, dim)
	codes := make([]int8, dim)
	calDB := make([][]float32, len(db))
	for i, v := range db {
		row := im.Row(i)
		dequantizeInt8(buf, row.Codes, row.Scale)
		int8Cos.add(reconstructionCosine(v, buf))
		if err := cal.QuantizeInto(codes, v); err != nil {
			return Report{}, fmt.Errorf("evaluate: vector %d: %w", i, err)
		}
		calDB[i] = make([]float32, dim)
		if err := cal.DequantizeInto(calDB[i], codes); err != nil {
			return Report{}, fmt.Errorf("evaluate: vector %d: %w", i, err)
		}
		calCos.add(reconstructionCosine(v, calDB[i]))
	}
	r.Int8CosineMean, r.Int8CosineMin = int8Cos.mean(), int8Cos.min
	r.CalibratedCosineMean, r.CalibratedCosineMin = calCos.mean(), calCos.min

	var int8Hits, calHits, binHits, rescoredHits, bitHits, asymHits, asymRescoredHits, total int
	floatCands := make([]FloatCandidate, 0, k*rescoreFactor)
	bitCands := make([]BinaryCandidate, 0, k*rescoreFactor)
	for qi, q := range queries {
		exact, err := SearchFloat(db, q, k)
		if err != nil {
			return Report{}, fmt.Errorf("evaluate: query %d: %w", qi, err)
		}
		truth := make(map[int64]bool, len(exact))
		for _, e := range exact {
			truth[e.ID] = true
		}
		total += len(exact)

		got, err := im.Search(q, k)
		if err != nil {
			return Report{}, fmt.Errorf("evaluate: query %d: %w", qi, err)
		}
		int8Hits += hits(truth, got)

		got, err = SearchFloat(calDB, q, k)
		if err != nil {
			return Report{}, fmt.Errorf("evaluate: query %d: %w", qi, err)
		}
		calHits += hits(truth, got)

		got, err = bm.Search(q, k)
		if err != nil {
			return Report{}, fmt.Errorf("evaluate: query %d: %w", qi, err)
		}
		binHits += hits(truth, got)

		cands, err := bm.Search(q, k*rescoreFactor)
		if err != nil {
			return Report{}, fmt.Errorf("evaluate: query %d: %w", qi, err)
		}
		floatCands, bitCands = floatCands[:0], bitCands[:0]
		for _, c := range cands {
			floatCands = append(floatCands, FloatCandidate{ID: c.ID, Vector: db[c.ID]})
			bitCands = append(bitCands, BinaryCandidate{ID: c.ID, Words: bm.Row(int(c.ID))})
		}
		got, err = RescoreFloat(q, floatCands, k)
		if err != nil {
			return Report{}, fmt.Errorf("evaluate: query %d: %w", qi, err)
		}
		rescoredHits += hits(truth, got)
		got, err = RescoreBinary(q, bitCands, k)
		if err != nil {
			return Report{}, fmt.Errorf("evaluate: query %d: %w", qi, err)
		}
		bitHits += hits(truth, got)

		got, err = bm.SearchAsymmetric(q, k)
		if err != nil {
			return Report{}, fmt.Errorf("evaluate: query %d: %w", qi, err)
		}
		asymHits += hits(truth, got)
		cands, err = bm.SearchAsymmetric(q, k*rescoreFactor)
		if err != nil {
			return Report{}, fmt.Errorf("evaluate: query %d: %w", qi, err)
		}
		floatCands = floatCands[:0]
		for _, c := range cands {
			floatCands = append(floatCands, FloatCandidate{ID: c.ID, Vector: db[c.ID]})
		}
		got, err = RescoreFloat(q, floatCands, k)
		if err != nil {
			return Report{}, fmt.Errorf("evaluate: query %d: %w", qi, err)
		}
		asymRescoredHits += hits(truth, got)
	}
	frac := func(n int) float64 { return float64(n) / float64(total) }
	r.Int8Recall = frac(int8Hits)
	r.CalibratedRecall = frac(calHits)
	r.BinaryRecall = frac(binHits)
	r.BinaryRescoredRecall = frac(rescoredHits)
	r.BinaryBitRescoredRecall = frac(bitHits)
	r.AsymmetricRecall = frac(asymHits)
	r.AsymmetricRescoredRecall = frac(asymRescoredHits)
	return r, nil
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
