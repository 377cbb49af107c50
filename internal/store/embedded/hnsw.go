package embedded

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"

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
// Inserts go in batches of insertBatch (see insert): every node of a batch
// plans its links against the graph as it stood before the batch, with the
// batch's earlier nodes as extra exact candidates, and the reverse links are
// then applied per target in slot order. The graph is therefore a function
// of the inserted vectors, their order and the seed only, never of the
// number of workers or their scheduling; a batch of one is the paper's
// sequential Algorithm 1.
//
// graph is not safe for concurrent use on its own: the store's RWMutex
// serializes insert against search; concurrent searches are safe.
type graph struct {
	m, m0, efConstruction int
	ml                    float64
	src                   *rand.PCG // level draws; its state is snapshotted
	rng                   *rand.Rand

	vecs   [][]float32  // slot -> unit vector
	links  [][][]uint32 // slot -> level -> neighbour slots
	dead   []bool       // slot -> tombstone
	ndead  int
	entry  uint32
	top    int // level of entry; -1 when empty
	visits sync.Pool
}

// Graph limits. MinM keeps the level multiplier 1/ln(M) finite; with M >= 2
// a level never exceeds 53 (the deepest -ln of a float64 in (0, 1] times
// 1/ln 2), so maxLevels bounds a snapshot's levels without rejecting any
// graph this code builds.
const (
	MinM      = 2
	MaxM      = 256
	MaxEf     = 4096
	maxLevels = 64
	// insertBatch is the number of nodes planned against one frozen graph.
	// Larger batches give the workers more to share but let more new nodes
	// miss each other in the graph search (they still meet as exact
	// candidates); 64 is under 1% of the smallest graph built from scratch
	// with the default ExactThreshold.
	insertBatch = 64
)

func newGraph(m, efConstruction int, seed uint64) *graph {
	src := rand.NewPCG(seed, seed+1)
	return &graph{
		m: m, m0: 2 * m, efConstruction: efConstruction,
		ml:  1 / math.Log(float64(m)),
		src: src, rng: rand.New(src),
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

// candHeap is a binary heap of candidates: container/heap's algorithms
// specialised to cand, so that pushes and pops do not box through
// interfaces (a fifth of the build time before). One implementation serves
// both orders, nearFirst (pops the closest) and farFirst (pops the
// farthest): the order is the sign distances are compared with, and a
// product with ±1 is exact, so ties come out in the same order as from two
// heaps each written for one order.
type candHeap struct {
	s    []cand
	sign float32 // 1: nearest first; -1: farthest first
}

func nearFirst(cs ...cand) candHeap { return candHeap{s: cs, sign: 1} }
func farFirst(cs ...cand) candHeap  { return candHeap{s: cs, sign: -1} }

func (h *candHeap) push(c cand) {
	s, sign := append(h.s, c), h.sign
	for j := len(s) - 1; ; {
		i := (j - 1) / 2
		if i == j || !(s[j].d*sign < s[i].d*sign) {
			break
		}
		s[i], s[j] = s[j], s[i]
		j = i
	}
	h.s = s
}

func (h *candHeap) pop() cand {
	s, sign := h.s, h.sign
	n := len(s) - 1
	s[0], s[n] = s[n], s[0]
	for i := 0; ; {
		j := 2*i + 1
		if j >= n {
			break
		}
		if j2 := j + 1; j2 < n && s[j2].d*sign < s[j].d*sign {
			j = j2
		}
		if !(s[j].d*sign < s[i].d*sign) {
			break
		}
		s[i], s[j] = s[j], s[i]
		i = j
	}
	h.s = s[:n]
	return s[n]
}

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
func (g *graph) searchLayer(q []float32, ep cand, ef, level int, vis *visited) candHeap {
	vis.stamp[ep.slot] = vis.gen
	cands := nearFirst(ep)
	res := farFirst(ep)
	for len(cands.s) > 0 {
		c := cands.pop()
		if len(res.s) >= ef && c.d > res.s[0].d {
			break
		}
		for _, n := range g.links[c.slot][level] {
			if vis.stamp[n] == vis.gen {
				continue
			}
			vis.stamp[n] = vis.gen
			d := g.dist(q, n)
			if len(res.s) < ef || d < res.s[0].d {
				cands.push(cand{d, n})
				res.push(cand{d, n})
				if len(res.s) > ef {
					res.pop()
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

// sortAsc empties the farthest-first heap h into a slice, nearest first.
func sortAsc(h candHeap) []cand {
	out := make([]cand, len(h.s))
	for i := len(h.s) - 1; i >= 0; i-- {
		out[i] = h.pop()
	}
	return out
}

func (g *graph) randomLevel() int { return int(-math.Log(1-g.rng.Float64()) * g.ml) }

// add inserts one unit vector and returns its slot: a batch of one, which is
// the paper's sequential insert.
func (g *graph) add(v []float32) uint32 { return g.insert([][]float32{v}, 1) }

// insert adds the unit vectors vs as consecutive slots, in batches of
// insertBatch spread over up to workers goroutines, and returns the first
// slot. The result does not depend on workers.
func (g *graph) insert(vs [][]float32, workers int) uint32 {
	first := uint32(len(g.vecs))
	for len(vs) > 0 {
		n := min(len(vs), insertBatch)
		g.insertBatch(vs[:n], workers)
		vs = vs[n:]
	}
	return first
}

// backLink is one reverse link to add: slot s into n's list at level l.
type backLink struct {
	n, s uint32
	l    int
}

func (g *graph) insertBatch(vs [][]float32, workers int) {
	base := uint32(len(g.vecs))
	levels := make([]int, len(vs))
	for i, v := range vs {
		levels[i] = g.randomLevel()
		g.vecs = append(g.vecs, v)
		g.dead = append(g.dead, false)
		g.links = append(g.links, make([][]uint32, levels[i]+1))
	}
	// Phase 1: each node's own links. Workers only read the frozen graph
	// (nothing links to the new slots yet) and write their own node's lists.
	parallel(len(vs), workers, func(i int) { g.plan(base, vs, levels, i) })
	// Phase 2: reverse links. Each target's list is owned by one worker and
	// sees its appends in slot order, as in a sequential insert.
	var back []backLink
	for i := range vs {
		s := base + uint32(i)
		for l, nb := range g.links[s] {
			for _, n := range nb {
				back = append(back, backLink{n, s, l})
			}
		}
	}
	w := max(1, min(workers, len(back)/(2*g.m0)))
	parallel(w, w, func(k int) {
		for _, b := range back {
			if int(b.n%uint32(w)) == k {
				g.linkBack(b)
			}
		}
	})
	for i, lv := range levels {
		if lv > g.top {
			g.entry, g.top = base+uint32(i), lv
		}
	}
}

// plan sets the links of batch node i (slot base+i) on every level it has:
// the graph search of Algorithm 1 against the frozen graph, plus the batch's
// earlier nodes at that level as exact candidates, through the heuristic.
func (g *graph) plan(base uint32, vs [][]float32, levels []int, i int) {
	v, level, slot := vs[i], levels[i], base+uint32(i)
	var ep cand
	var vis *visited
	if g.top >= 0 {
		vis = g.getVisited()
		defer g.visits.Put(vis)
		ep = g.greedy(v, level)
	}
	for l := level; l >= 0; l-- {
		var cs []cand
		if l <= g.top {
			vis.gen++
			cs = sortAsc(g.searchLayer(v, ep, g.efConstruction, l, vis))
			ep = cs[0] // from the frozen graph: the next level's search starts there
		}
		mates := false
		for j := range i {
			if levels[j] >= l {
				cs = append(cs, cand{1 - dot(v, vs[j]), base + uint32(j)})
				mates = true
			}
		}
		if mates {
			slices.SortStableFunc(cs, func(a, b cand) int { return cmp.Compare(a.d, b.d) })
			cs = cs[:min(len(cs), g.efConstruction)]
		}
		if len(cs) > 0 {
			g.links[slot][l] = g.selectNeighbors(cs, g.m)
		}
	}
}

// linkBack adds b.s to b.n's links at level b.l, shrinking the list with the
// heuristic when it overflows.
func (g *graph) linkBack(b backLink) {
	mmax := g.m
	if b.l == 0 {
		mmax = g.m0
	}
	ln := append(g.links[b.n][b.l], b.s)
	if len(ln) > mmax {
		cs := make([]cand, len(ln))
		for i, x := range ln {
			cs[i] = cand{1 - dot(g.vecs[b.n], g.vecs[x]), x}
		}
		sortCands(cs)
		ln = g.selectNeighbors(cs, mmax)
	}
	g.links[b.n][b.l] = ln
}

// parallel calls f(0), ..., f(n-1) on up to workers goroutines and returns
// when all calls have returned.
func parallel(n, workers int, f func(int)) {
	if workers <= 1 || n <= 1 {
		for i := range n {
			f(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				f(i)
			}
		})
	}
	wg.Wait()
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
	out := make([]cand, 0, len(res.s))
	for _, c := range res.s {
		if !g.dead[c.slot] {
			out = append(out, c)
		}
	}
	return out
}
