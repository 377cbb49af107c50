package embedded

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestHNSWRecall checks the graph against exact search on a small set.
func TestHNSWRecall(t *testing.T) {
	const n, d = 3000, 64
	r := rand.New(rand.NewPCG(3, 4))
	g := newGraph(16, 100, 1)
	vecs := make([][]float32, n)
	for i := range vecs {
		vecs[i] = unitOf(vec(r, d))
		g.add(vecs[i])
	}
	if recall := recallAt10(r, g, vecs); recall < 0.9 {
		t.Errorf("recall@10: got %.3f; want >= 0.9", recall)
	}
}

// recallAt10 is the share of the exact top 10 that g's search (ef 64)
// finds, over 50 random queries.
func recallAt10(r *rand.Rand, g *graph, vecs [][]float32) float64 {
	hit := 0
	for range 50 {
		q := unitOf(vec(r, len(vecs[0])))
		truth := exactTop(vecs, q, 10)
		for _, c := range g.search(q, 10, 64) {
			if truth[c.slot] {
				hit++
			}
		}
	}
	return float64(hit) / 500
}

func exactTop(vecs [][]float32, q []float32, k int) map[uint32]bool {
	type sc struct {
		i int
		s float32
	}
	all := make([]sc, len(vecs))
	for i, v := range vecs {
		all[i] = sc{i, dot(q, v)}
	}
	for i := range k { // partial selection sort
		for j := i + 1; j < len(all); j++ {
			if all[j].s > all[i].s {
				all[i], all[j] = all[j], all[i]
			}
		}
	}
	out := map[uint32]bool{}
	for _, x := range all[:k] {
		out[uint32(x.i)] = true
	}
	return out
}

// TestInsertWorkers checks that the graph does not depend on the number of
// workers, and that batched inserts keep the recall of TestHNSWRecall.
func TestInsertWorkers(t *testing.T) {
	const n, d = 3000, 64
	r := rand.New(rand.NewPCG(3, 4))
	vecs := make([][]float32, n)
	for i := range vecs {
		vecs[i] = unitOf(vec(r, d))
	}
	one, three := newGraph(16, 100, 1), newGraph(16, 100, 1)
	one.insert(vecs, 1)
	three.insert(vecs, 3)
	for slot := range one.links {
		for l := range one.links[slot] {
			if !slices.Equal(one.links[slot][l], three.links[slot][l]) {
				t.Fatalf("node %d level %d: 3 workers %v; 1 worker %v", slot, l, three.links[slot][l], one.links[slot][l])
			}
		}
	}
	if recall := recallAt10(r, three, vecs); recall < 0.9 {
		t.Errorf("recall@10 of a batched build: got %.3f; want >= 0.9", recall)
	}
}
