package embedded

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/embedd/embedd/internal/store"
)

// Open's replay: the log's entries back into memory (apply), with the
// graph snapshots installed when the replay reaches the log position they
// index.

// readSnapshots loads and checks every snapshot file in the directory into
// s.pending, removes temporary files a crash left behind, and returns the
// files that failed their checks (logged when no collection claims them).
func (s *Store) readSnapshots() (map[string]error, error) {
	snaps, temps, err := snapFiles(s.opts.Dir)
	if err != nil {
		return nil, err
	}
	for _, t := range temps {
		err := os.Remove(filepath.Join(s.opts.Dir, t))
		s.logger.Info("embedded: removed an unfinished snapshot", "file", t, "err", err)
	}
	bad := map[string]error{}
	for _, file := range snaps {
		h, body, err := readSnapshot(filepath.Join(s.opts.Dir, file))
		if err == nil && snapFile(h.name) != file {
			err = fmt.Errorf("%w: file holds collection %q, whose file is %s", ErrSnapshot, h.name, snapFile(h.name))
		}
		if err != nil {
			bad[file] = fmt.Errorf("%s: %w", file, err)
			continue
		}
		s.pending = append(s.pending, &pendingSnap{file: file, h: h, body: body})
	}
	slices.SortStableFunc(s.pending, func(a, b *pendingSnap) int { return cmp.Compare(a.h.pos.off, b.h.pos.off) })
	return bad, nil
}

// reachSnapshots is called by the replay at every entry boundary: it
// resolves the snapshots whose position is at or before pos.
func (s *Store) reachSnapshots(pos logPos) {
	for len(s.pending) > 0 && s.pending[0].h.pos.off <= pos.off {
		p := s.pending[0]
		s.pending = s.pending[1:]
		s.resolveSnapshot(p, pos)
	}
}

// resolveSnapshot installs p's graph in its collection when the replay is
// at p's position, or records why not and lets the collection build its
// graph from the records.
func (s *Store) resolveSnapshot(p *pendingSnap, pos logPos) {
	h := p.h
	c := s.colls[h.name]
	if c == nil {
		s.logger.Warn("embedded: snapshot of a collection the log does not hold", "file", p.file, "collection", h.name, "log_offset", h.pos.off)
		return
	}
	var g *graph
	var slots []string
	var err error
	switch {
	case h.dims != c.dims:
		err = fmt.Errorf("%w: %d dims; the collection has %d", ErrSnapshot, h.dims, c.dims)
	case h.m != s.opts.M || h.efc != s.opts.EfConstruction:
		err = fmt.Errorf("%w: built with M %d, efConstruction %d; options say %d, %d", ErrSnapshot, h.m, h.efc, s.opts.M, s.opts.EfConstruction)
	case h.pos.off > pos.off:
		err = fmt.Errorf("%w: indexes the log up to byte %d; the log ends at %d", ErrSnapshot, h.pos.off, pos.off)
	case h.pos.off < pos.off:
		err = fmt.Errorf("%w: log offset %d is not an entry boundary of this log", ErrSnapshot, h.pos.off)
	case h.pos != pos:
		err = fmt.Errorf("%w: the log's first %d bytes are not the ones it indexes (entries %d, sum %016x; snapshot says %d, %016x): the log was compacted or replaced since", ErrSnapshot, pos.off, pos.seq, pos.sum, h.pos.seq, h.pos.sum)
	case s.opts.ExactThreshold >= 0 && len(c.recs) <= s.opts.ExactThreshold:
		// The collection is on exact search here: no graph to load.
	default:
		g, slots, err = decodeGraph(h, p.body, c.dims, c.recs)
	}
	p.body = nil
	c.deferGraph = false
	if err != nil {
		s.snapState[h.name] = fmt.Errorf("%s: %w", p.file, err)
	} else if g != nil {
		c.g, c.slots = g, slots
		s.snapState[h.name] = nil
		s.marks[h.name] = snapMark{off: h.pos.off, gen: c.gen}
	}
	s.maybeIndex(c)
}

// apply decodes one log payload into memory. Counts and dimensions in p
// are claims: loops stop at the first short read, and allocations are
// bounded by the bytes left in p. A corrupt entry fails with errShort and
// changes nothing, as the replay drops it from the log.
func (s *Store) apply(p []byte) error {
	d := &dec{b: p}
	switch d.byte() {
	case opColl:
		s.applyColl(d)
	case opVersion:
		return s.applyVersion(d)
	case opAlias, opDrop:
		return s.applyAlias(p[0], d)
	case opUpsert, opUpsertH:
		return s.applyUpsert(d, p[0] == opUpsertH)
	case opDelete:
		s.applyDelete(d)
	case opEntSet:
		s.applyEntSet(d)
	case opEntDel:
		if ids := d.strs(); d.err == nil {
			for _, id := range ids {
				delete(s.ents, id)
			}
		}
	default:
		return errShort
	}
	return d.err
}

// applyColl is a collection of a log written before versions: version
// DefaultVersion of the logical name, unbound, live unless another is.
func (s *Store) applyColl(d *dec) {
	name, dims := d.str(), d.uvarint()
	if d.err == nil && (dims < 1 || dims > store.MaxDims) {
		d.fail()
	}
	if d.err != nil {
		return
	}
	if _, ok := s.colls[name]; !ok {
		s.addColl(&collection{logical: name, version: store.DefaultVersion, dims: int(dims)})
	}
	if _, ok := s.alias[name]; !ok {
		s.alias[name] = store.DefaultVersion
	}
}

// addColl installs a new version c.
func (s *Store) addColl(c *collection) {
	key := versionKey(c.logical, c.version)
	c.recs = map[string]*record{}
	c.deferGraph = slices.ContainsFunc(s.pending, func(p *pendingSnap) bool { return p.h.name == key })
	s.colls[key] = c
}

// applyVersion creates a version (an existing one must be the same), and
// makes it live when the entry says so.
func (s *Store) applyVersion(d *dec) error {
	c := &collection{logical: d.str(), version: d.str()}
	dims := d.uvarint()
	c.model = d.str()
	if ns := d.varint(); ns != 0 {
		c.created = time.Unix(0, ns).UTC()
	}
	live := d.byte()
	if d.err != nil || dims < 1 || dims > store.MaxDims || live > 1 || store.CheckVersion(c.version) != nil {
		return errShort
	}
	c.dims = int(dims)
	if old := s.colls[versionKey(c.logical, c.version)]; old == nil {
		s.addColl(c)
	} else if old.logical != c.logical || old.version != c.version || old.dims != c.dims || old.model != c.model {
		return errShort // the writer checks this
	}
	if live == 1 {
		s.alias[c.logical] = c.version
	}
	return nil
}

// applyAlias points a logical name at an existing version (opAlias) or
// drops a version that is not live (opDrop).
func (s *Store) applyAlias(op byte, d *dec) error {
	logical, version := d.str(), d.str()
	key := versionKey(logical, version)
	c := s.colls[key]
	if d.err != nil || c == nil || c.logical != logical || c.version != version {
		return errShort // the writer checks this
	}
	if op == opAlias {
		s.alias[logical] = version
		return nil
	}
	if s.alias[logical] == version {
		return errShort
	}
	s.forgetColl(key)
	return nil
}

func (s *Store) applyUpsert(d *dec, hashes bool) error {
	c := s.colls[d.str()]
	n := d.uvarint()
	if c == nil {
		return errShort
	}
	recs := make([]store.Record, 0, min(n, uint64(len(d.b))))
	for i := uint64(0); i < n && d.err == nil; i++ {
		r := store.Record{ID: d.str(), Vector: make([]float32, c.dims)}
		d.f32s(r.Vector)
		r.Metadata, r.ModelVersion = d.bytes(), d.str()
		r.UpdatedAt = time.Unix(0, d.varint()).UTC()
		if hashes {
			r.TextHash = d.str()
		}
		recs = append(recs, r)
	}
	if d.err == nil {
		s.upsertMem(c, recs)
	}
	return d.err
}

func (s *Store) applyDelete(d *dec) {
	c := s.colls[d.str()]
	ids := d.strs()
	if c != nil && d.err == nil {
		for _, id := range ids {
			s.deleteMem(c, id)
		}
	}
	if c != nil {
		s.maybeIndex(c) // as Delete does, so the replayed graph is the live one
	}
}

func (s *Store) applyEntSet(d *dec) {
	n := d.uvarint()
	ents := make([]*entity, 0, min(n, uint64(len(d.b))))
	for i := uint64(0); i < n && d.err == nil; i++ {
		e := &entity{}
		e.ID = d.str()
		emb := d.bytes()
		e.Embedding = make([]int8, len(emb))
		for i, b := range emb {
			e.Embedding[i] = int8(b)
		}
		e.Scale, e.ModelVersion = d.f32(), d.str()
		e.UpdatedAt = time.UnixMilli(d.varint()).UTC()
		e.expire = d.varint()
		nf := d.uvarint()
		if nf > 0 {
			e.Features = make(map[string]float64, min(nf, uint64(len(d.b))))
		}
		for j := uint64(0); j < nf && d.err == nil; j++ {
			k := d.str()
			e.Features[k] = d.f64()
		}
		ents = append(ents, e)
	}
	if d.err == nil {
		for _, e := range ents {
			s.ents[e.ID] = e
		}
	}
}
