package cuda

import (
	"math/rand/v2"
	"testing"
)

func TestNextChunk(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 2))
	for trial := range 2000 {
		n := 1 + rng.IntN(60)
		start := make([]int32, n+1)
		longest := 0
		for i := range n {
			l := 1 + rng.IntN(40)
			longest = max(longest, l)
			start[i+1] = start[i] + int32(l)
		}
		maxTokens := longest + rng.IntN(200)
		maxTexts := 1 + rng.IntN(10)
		var chunks [][2]int
		for r0 := 0; r0 < n; {
			r1 := nextChunk(start, r0, maxTokens, maxTexts)
			chunks = append(chunks, [2]int{r0, r1})
			r0 = r1
		}
		// The chunks tile 0..n, each within both limits, each as long as
		// the limits allow (greedy).
		next := 0
		for _, c := range chunks {
			r0, r1 := c[0], c[1]
			tok := int(start[r1] - start[r0])
			switch {
			case r0 != next || r1 <= r0:
				t.Fatalf("trial %d: chunks %v do not tile 0..%d", trial, chunks, n)
			case r1-r0 > maxTexts || tok > maxTokens:
				t.Fatalf("trial %d: chunk %v: %d texts, %d tokens; limits %d and %d", trial, c, r1-r0, tok, maxTexts, maxTokens)
			case r1 < n && r1-r0 < maxTexts && int(start[r1+1]-start[r0]) <= maxTokens:
				t.Fatalf("trial %d: chunk %v could take text %d", trial, c, r1)
			}
			next = r1
		}
		if next != n {
			t.Fatalf("trial %d: chunks %v end at %d; want %d", trial, chunks, next, n)
		}
	}
	// A text longer than maxTokens is a chunk of its own.
	if got := nextChunk([]int32{0, 10, 11}, 0, 5, 4); got != 1 {
		t.Errorf("oversized text: chunk ends at %d; want 1", got)
	}
}

func TestLayouts(t *testing.T) {
	in := layoutInputs(7, 3)
	if in.types != 7 || in.pos != 14 || in.start != 21 || in.len != 25 {
		t.Errorf("layoutInputs(7, 3) = %+v", in)
	}
	for _, q := range []bool{false, true} {
		for b := 1; b < 20; b++ {
			for _, dims := range []int{1, 7, 384} {
				l := layoutResults(b, dims, q)
				if l.norms != 4*b*dims || l.scales != l.norms+4*b || l.codes != l.scales+4*b {
					t.Fatalf("layoutResults(%d, %d, %v) = %+v", b, dims, q, l)
				}
				want := l.norms + 4*b // out, norms
				if q {
					want = l.codes + b*dims // ... scales, codes
				}
				if l.bytes != want || int64(l.bytes) > resultBytes(b, dims) || int64(l.bytes) > resultBytes(b+1, dims+1) {
					t.Fatalf("layoutResults(%d, %d, %v).bytes = %d; want %d, within resultBytes %d", b, dims, q, l.bytes, want, resultBytes(b, dims))
				}
			}
		}
	}
	if got := resultBytes(3, 8); got != int64(layoutResults(3, 8, true).bytes) {
		t.Errorf("resultBytes(3, 8) = %d; want %d", got, layoutResults(3, 8, true).bytes)
	}
}
