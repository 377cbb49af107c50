package embedded

import (
	"encoding/json"
	"maps"
	"math"
	"slices"

	"github.com/embedd/embedd/internal/store"
)

// The in-memory state that Upsert, Delete and the replay change: records
// and their graph.

func unitOf(v []float32) []float32 {
	var n float64
	for _, x := range v {
		n += float64(x) * float64(x)
	}
	u := make([]float32, len(v))
	if n == 0 {
		return u
	}
	n = math.Sqrt(n)
	for i, x := range v {
		u[i] = float32(float64(x) / n)
	}
	return u
}

// upsertMem applies one batch: an overwritten record's node becomes a
// tombstone and the batch's records are inserted into the graph in order.
func (s *Store) upsertMem(c *collection, recs []store.Record) {
	var fresh []*record // waiting for the graph, in batch order
	for _, r := range recs {
		nr := &record{Record: r, unit: unitOf(r.Vector), slot: noSlot}
		if len(r.Metadata) > 0 {
			_ = json.Unmarshal(r.Metadata, &nr.meta) // non-objects never match a filter
		}
		if old := c.recs[r.ID]; old != nil && c.g != nil {
			if old.slot == noSlot {
				// The id came earlier in this batch (a log entry not
				// written by Upsert, which rejects repeats): insert
				// that one first, as a record-at-a-time apply would.
				s.index(c, fresh)
				fresh = fresh[:0]
			}
			c.g.kill(old.slot)
			c.gen++
		}
		c.recs[r.ID] = nr
		if c.g != nil {
			fresh = append(fresh, nr)
		}
	}
	s.index(c, fresh)
	s.maybeIndex(c)
}

// index inserts recs into c's graph.
func (s *Store) index(c *collection, recs []*record) {
	if len(recs) == 0 {
		return
	}
	vs := make([][]float32, len(recs))
	for i, r := range recs {
		vs[i] = r.unit
	}
	first := c.g.insert(vs, s.opts.IndexWorkers)
	for i, r := range recs {
		r.slot = first + uint32(i)
		c.slots = append(c.slots, r.ID)
	}
	c.gen++
	c.adds.Add(int64(len(recs)))
}

func (s *Store) deleteMem(c *collection, id string) {
	if old := c.recs[id]; old != nil {
		if c.g != nil {
			c.g.kill(old.slot)
			c.gen++
		}
		delete(c.recs, id)
	}
}

// maybeIndex builds the graph once a collection outgrows exact search,
// rebuilds it when tombstones outnumber live nodes, and drops it when the
// collection shrinks back.
func (s *Store) maybeIndex(c *collection) {
	switch {
	case c.deferGraph:
		return
	case len(c.recs) <= s.opts.ExactThreshold && s.opts.ExactThreshold >= 0:
		if c.g != nil {
			c.gen++
		}
		c.g, c.slots = nil, nil
		return
	case c.g != nil && c.g.ndead <= len(c.recs):
		return
	}
	ids := slices.Sorted(maps.Keys(c.recs)) // deterministic build order
	recs := make([]*record, len(ids))
	for i, id := range ids {
		recs[i] = c.recs[id]
	}
	c.g, c.slots = newGraph(s.opts.M, s.opts.EfConstruction, 42), nil
	s.index(c, recs)
}
