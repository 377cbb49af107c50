package quant

import (
	"fmt"
	"math"
)

// Rescoring takes the candidates a quantized search returned, typically k
// times a small factor of them, and ranks them again with the float query,
// keeping the k best. The candidate's representation decides how exact the
// new score is:
//
//   - RescoreFloat uses the stored float vectors: exact.
//   - RescoreInt8 uses per-vector int8 codes: query·dequantized codes.
//   - RescoreBinary uses only the sign bits, as sentence-transformers does:
//     query·bits with bits read as 0 or 1.
//
// IDs are the caller's; they should be unique, and only break ties.

// FloatCandidate is a candidate with its float vector.
type FloatCandidate struct {
	ID     int64
	Vector []float32
}

// Int8Candidate is a candidate with its per-vector int8 codes
// ([QuantizeInt8]).
type Int8Candidate struct {
	ID    int64
	Codes []int8
	Scale float32
}

// BinaryCandidate is a candidate with its binary code in word form
// ([PackBinaryWords]); the byte form converts with [WordsFromBytes].
type BinaryCandidate struct {
	ID    int64
	Words []uint64
}

// RescoreFloat returns the k candidates with the highest dot product
// query·Vector, best first with ties by ascending ID, or all of them if there
// are fewer.
//
// It returns [ErrInvalidK] if k < 1, [ErrEmpty] for an empty query,
// [ErrNonFinite] if the query holds NaN or ±Inf or a score is NaN, and
// [ErrLengthMismatch] naming the first candidate whose length differs from
// the query's.
func RescoreFloat(query []float32, cands []FloatCandidate, k int) ([]Result, error) {
	if err := checkRescore("rescore float", query, k); err != nil {
		return nil, err
	}
	top := newTopK(min(k, len(cands)))
	for _, c := range cands {
		if len(c.Vector) != len(query) {
			return nil, fmt.Errorf("rescore float: candidate %d has %d dimensions, query %d: %w", c.ID, len(c.Vector), len(query), ErrLengthMismatch)
		}
		if err := pushScore(&top, "rescore float", c.ID, DotFloat32(query, c.Vector)); err != nil {
			return nil, err
		}
	}
	return top.results(), nil
}

// RescoreInt8 returns the k candidates with the highest dot product of the
// query with the dequantized codes, query·Codes·Scale, best first with ties
// by ascending ID, or all of them if there are fewer. Errors are those of
// [RescoreFloat].
func RescoreInt8(query []float32, cands []Int8Candidate, k int) ([]Result, error) {
	if err := checkRescore("rescore int8", query, k); err != nil {
		return nil, err
	}
	top := newTopK(min(k, len(cands)))
	for _, c := range cands {
		if len(c.Codes) != len(query) {
			return nil, fmt.Errorf("rescore int8: candidate %d has %d dimensions, query %d: %w", c.ID, len(c.Codes), len(query), ErrLengthMismatch)
		}
		var s float32
		codes := c.Codes[:len(query)]
		for i, q := range query {
			s += q * float32(codes[i])
		}
		if err := pushScore(&top, "rescore int8", c.ID, s*c.Scale); err != nil {
			return nil, err
		}
	}
	return top.results(), nil
}

// RescoreBinary returns the k candidates with the highest score
// Σ query[i]·bit[i], bits read as 0 or 1, which is how sentence-transformers
// rescores binary search results. It ranks as the dot product with the ±1
// sign vector does: that is 2·score - Σ query[i], the same shift for every
// candidate. Results are best first with ties by ascending ID, or all
// candidates if there are fewer.
//
// Errors are those of [RescoreFloat], with a candidate's length checked
// against BinaryWords(len(query)).
func RescoreBinary(query []float32, cands []BinaryCandidate, k int) ([]Result, error) {
	if err := checkRescore("rescore binary", query, k); err != nil {
		return nil, err
	}
	nw := BinaryWords(len(query))
	top := newTopK(min(k, len(cands)))
	for _, c := range cands {
		if len(c.Words) != nw {
			return nil, fmt.Errorf("rescore binary: candidate %d has %d words, query needs %d: %w", c.ID, len(c.Words), nw, ErrLengthMismatch)
		}
		if err := pushScore(&top, "rescore binary", c.ID, bitDot(query, c.Words)); err != nil {
			return nil, err
		}
	}
	return top.results(), nil
}

// bitDot returns Σ query[i] over the set bits of words.
func bitDot(query []float32, words []uint64) float32 {
	var s0, s1 float32
	for w, bits := range words {
		q := query[64*w : min(64*w+64, len(query))]
		// Masking each float's bits with all ones or all zeros selects it
		// or +0 without a branch; bits is consumed from the top.
		for j := 0; j+1 < len(q); j += 2 {
			s0 += math.Float32frombits(math.Float32bits(q[j]) & -uint32(bits>>63))
			s1 += math.Float32frombits(math.Float32bits(q[j+1]) & -uint32(bits>>62&1))
			bits <<= 2
		}
		if len(q)%2 == 1 {
			s0 += math.Float32frombits(math.Float32bits(q[len(q)-1]) & -uint32(bits>>63))
		}
	}
	return s0 + s1
}

func checkRescore(op string, query []float32, k int) error {
	if k < 1 {
		return fmt.Errorf("%s: k = %d: %w", op, k, ErrInvalidK)
	}
	if len(query) == 0 {
		return fmt.Errorf("%s: %w", op, ErrEmpty)
	}
	if err := checkFinite(query); err != nil {
		return fmt.Errorf("%s: query: %w", op, err)
	}
	return nil
}

func pushScore(top *topK, op string, id int64, score float32) error {
	if score != score {
		return fmt.Errorf("%s: candidate %d scores NaN: %w", op, id, ErrNonFinite)
	}
	if top.k > 0 {
		top.push(Result{ID: id, Score: score})
	}
	return nil
}
