package quant

import (
	"cmp"
	"slices"
)

// Result is one ranked candidate. Higher scores rank first; equal scores
// rank by ascending ID, so every result list is deterministic.
type Result struct {
	ID    int64
	Score float32
}

// better reports whether a ranks before b.
func better(a, b Result) bool {
	return a.Score > b.Score || (a.Score == b.Score && a.ID < b.ID)
}

// topK keeps the k best results seen so far in a binary heap whose root is
// the worst of them, so that a candidate is admitted or rejected by one
// comparison with the root.
type topK struct {
	k int
	h []Result
}

func newTopK(k int) topK {
	return topK{k: k, h: make([]Result, 0, k)}
}

// full reports whether k results are held; then worst is valid.
func (t *topK) full() bool { return len(t.h) == t.k }

// worst returns the lowest-ranked result held.
func (t *topK) worst() Result { return t.h[0] }

func (t *topK) push(r Result) {
	if len(t.h) < t.k {
		t.h = append(t.h, r)
		t.up(len(t.h) - 1)
		return
	}
	if better(r, t.h[0]) {
		t.h[0] = r
		t.down(0)
	}
}

func (t *topK) up(i int) {
	h := t.h
	for i > 0 {
		p := (i - 1) / 2
		if !better(h[p], h[i]) {
			break
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
}

func (t *topK) down(i int) {
	h := t.h
	for {
		w := i
		if l := 2*i + 1; l < len(h) && better(h[w], h[l]) {
			w = l
		}
		if r := 2*i + 2; r < len(h) && better(h[w], h[r]) {
			w = r
		}
		if w == i {
			return
		}
		h[i], h[w] = h[w], h[i]
		i = w
	}
}

// results returns the held results best first, reusing the heap's memory.
func (t *topK) results() []Result {
	slices.SortFunc(t.h, func(a, b Result) int {
		if c := cmp.Compare(b.Score, a.Score); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return t.h
}
