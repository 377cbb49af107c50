package embedded

import (
	"container/heap"
	"math"
	"math/rand/v2"
	"sync"

	"github.com/viterin/vek/vek32"
)

// graph is a Hierarchical Navigable Small World index (Malkov & Yashunin,
// arXiv:1603.09320) over unit vectors with distance 1 - dot(a, b), i.e.
// cosine distance. It follows the paper: layer 0 keeps up to 2*M links, the
// upper layers M, and links are chosen with the diversity heuristic
// (Algorithm 4), which is what keeps recall high on clustered embeddings.
//
// Nodes are dense uint32 slots. A deleted or replaced record's slot stays in
// the graph as a tombstone (it still routes searches) and is skipped in
// results; the owner rebuilds the graph when tombstones dominate.
//
// graph is not safe for concurrent use on its own: the collection's RWMutex
// serializes insert against search; concurrent searches are safe.
type graph struct {
	m, m0, efConstruction int
	ml                    float64
	rng                   *rand.Rand

	vecs   [][]float32  // slot -> unit vector
	links  [][][]uint32 // slot -> level -> neighbour slots
	dead   []bool       // slot -> tombstone
	ndead  int
	entry  uint32
	top    int // level of entry; -1 when empty
	visits sync.Pool
}

func newGraph(m, efConstruction int, seed uint64) *graph {
	return &graph{
		m: m, m0: 2 * m, efConstruction: efConstruction,
		ml:  1 / math.Log(float64(m)),
		rng: rand.New(rand.NewPCG(seed, seed+1)),
		top: -1,
	}
}

// dot is the inner product; vek32 uses AVX2/FMA where the CPU has it
// (8-10x the scalar loop at 384 dims) and falls back to Go otherwise.
func dot(a, b []float32) float32 { return vek32.Dot(a, b) }

type cand struct {
	d    float32
	slot uint32
}

// minHeap pops the closest candidate; maxHeap pops the farthest.
type minHeap []cand
type maxHeap []cand

func (h minHeap) Len() int           { return len(h) }
func (h minHeap) Less(i, j int) bool { return h[i].d < h[j].d }
func (h minHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *minHeap) Push(x any)        { *h = append(*h, x.(cand)) }
func (h *minHeap) Pop() any          { o := *h; x := o[len(o)-1]; *h = o[:len(o)-1]; return x }
func (h maxHeap) Len() int           { return len(h) }
func (h maxHeap) Less(i, j int) bool { return h[i].d > h[j].d }
func (h maxHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *maxHeap) Push(x any)        { *h = append(*h, x.(cand)) }
func (h *maxHeap) Pop() any          { o := *h; x := o[len(o)-1]; *h = o[:len(o)-1]; return x }

// visited is a generation-stamped set, reused through a pool so that
// concurrent searches do not allocate a map per query.
type visited struct {
	gen   uint32
	stamp []uint32
}

func (g *graph) getVisited() *visited {
	v, _ := g.visits.Get().(*visited)
	if v == nil {
		v = &visited{}
	}
	if len(v.stamp) < len(g.vecs) {
		v.stamp = make([]uint32, len(g.vecs)+len(g.vecs)/4+64)
		v.gen = 0
	}
	v.gen++
	if v.gen == 0 {
		clear(v.stamp)
		v.gen = 1
	}
	return v
}

func (g *graph) dist(q []float32, slot uint32) float32 { return 1 - dot(q, g.vecs[slot]) }

// searchLayer is Algorithm 2: a beam search of width ef from ep at level.
func (g *graph) searchLayer(q []float32, ep cand, ef, level int, vis *visited) maxHeap {
	vis.stamp[ep.slot] = vis.gen
	cands := minHeap{ep}
	res := maxHeap{ep}
	for len(cands) > 0 {
		c := heap.Pop(&cands).(cand)
		if len(res) >= ef && c.d > res[0].d {
			break
		}
		for _, n := range g.links[c.slot][level] {
			if vis.stamp[n] == vis.gen {
				continue
			}
			vis.stamp[n] = vis.gen
			d := g.dist(q, n)
			if len(res) < ef || d < res[0].d {
				heap.Push(&cands, cand{d, n})
				heap.Push(&res, cand{d, n})
				if len(res) > ef {
					heap.Pop(&res)
				}
			}
		}
	}
	return res
}

// greedy descends from the entry point to level+1 with ef = 1.
func (g *graph) greedy(q []float32, level int) cand {
	ep := cand{g.dist(q, g.entry), g.entry}
	for l := g.top; l > level; l-- {
		for changed := true; changed; {
			changed = false
			for _, n := range g.links[ep.slot][l] {
				if d := g.dist(q, n); d < ep.d {
					ep, changed = cand{d, n}, true
				}
			}
		}
	}
	return ep
}

// selectNeighbors is Algorithm 4 without extension: keep a candidate only
// if it is closer to the base than to every neighbour already kept.
func (g *graph) selectNeighbors(cs []cand, m int) []uint32 {
	// cs sorted ascending by distance.
	out := make([]uint32, 0, m)
	var pruned []uint32
	for _, c := range cs {
		if len(out) >= m {
			break
		}
		ok := true
		for _, o := range out {
			if 1-dot(g.vecs[c.slot], g.vecs[o]) < c.d {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, c.slot)
		} else {
			pruned = append(pruned, c.slot)
		}
	}
	// keepPrunedConnections: fill up with the closest pruned ones.
	for _, p := range pruned {
		if len(out) >= m {
			break
		}
		out = append(out, p)
	}
	return out
}

func sortAsc(h maxHeap) []cand {
	out := make([]cand, len(h))
	for i := len(h) - 1; i >= 0; i-- {
		out[i] = heap.Pop(&h).(cand)
	}
	return out
}

// add inserts a unit vector and returns its slot.
func (g *graph) add(v []float32) uint32 {
	slot := uint32(len(g.vecs))
	level := int(-math.Log(1-g.rng.Float64()) * g.ml)
	g.vecs = append(g.vecs, v)
	g.dead = append(g.dead, false)
	g.links = append(g.links, make([][]uint32, level+1))
	if g.top < 0 {
		g.entry, g.top = slot, level
		return slot
	}
	vis := g.getVisited()
	defer g.visits.Put(vis)
	ep := g.greedy(v, level)
	for l := min(level, g.top); l >= 0; l-- {
		vis.gen++
		cs := sortAsc(g.searchLayer(v, ep, g.efConstruction, l, vis))
		mmax := g.m
		if l == 0 {
			mmax = g.m0
		}
		nb := g.selectNeighbors(cs, g.m)
		g.links[slot][l] = nb
		for _, n := range nb {
			ln := append(g.links[n][l], slot)
			if len(ln) > mmax {
				// Shrink n's links with the same heuristic.
				cs2 := make([]cand, len(ln))
				for i, x := range ln {
					cs2[i] = cand{1 - dot(g.vecs[n], g.vecs[x]), x}
				}
				sortCands(cs2)
				ln = g.selectNeighbors(cs2, mmax)
			}
			g.links[n][l] = ln
		}
		ep = cs[0]
	}
	if level > g.top {
		g.entry, g.top = slot, level
	}
	return slot
}

func sortCands(cs []cand) {
	// Insertion sort: lists are at most 2*M+1 long.
	for i := 1; i < len(cs); i++ {
		for j := i; j > 0 && cs[j].d < cs[j-1].d; j-- {
			cs[j], cs[j-1] = cs[j-1], cs[j]
		}
	}
}

// kill tombstones slot.
func (g *graph) kill(slot uint32) {
	if !g.dead[slot] {
		g.dead[slot] = true
		g.ndead++
	}
}

// search returns up to k live slots nearest to the unit vector q, searching
// with beam width max(ef, k); results are unordered.
func (g *graph) search(q []float32, k, ef int) []cand {
	if g.top < 0 {
		return nil
	}
	vis := g.getVisited()
	defer g.visits.Put(vis)
	ep := g.greedy(q, 0)
	res := g.searchLayer(q, ep, max(ef, k), 0, vis)
	out := make([]cand, 0, len(res))
	for _, c := range res {
		if !g.dead[c.slot] {
			out = append(out, c)
		}
	}
	return out
}
