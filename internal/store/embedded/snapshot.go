package embedded

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/crc64"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Snapshot format (one file per collection that has a graph, in
// Options.Dir, named "hnsw-" + hex(SHA-256(collection name)[:16]) + ".snap"
// so that any valid name maps to a safe file name):
//
//	file    = magic "EMBDSNAP" | u32le version (1) | u32le hlen | hfields
//	          | u32le CRC-32C(hfields) | body
//	hfields = name (uvarint length + bytes) | dims | M | efConstruction
//	          | nodes | log offset | log entries (all uvarint)
//	          | u64le log sum | body length (uvarint) | u32le CRC-32C(body)
//	body    = PCG state (uvarint length + bytes) | top (varint, -1 when
//	          empty) | entry (uvarint) | nodes * node
//	node    = flags byte (bit 0: tombstone) | id (uvarint length + bytes)
//	          | [tombstone only: dims * f32le unit vector]
//	          | levels (uvarint, 1..maxLevels)
//	          | levels * (count uvarint, count * neighbour slot uvarint)
//
// Node i is graph slot i. Live nodes carry no vector: theirs is the
// record's, which the log holds. The log position (offset in bytes, number
// of entries, and a CRC-64/ECMA chained over the 8-byte headers of those
// entries; see logPos) names the log prefix whose records the graph
// indexes: Open replays that prefix into the records, installs the graph
// and replays only the entries after it into the graph. A snapshot is used
// only if every check passes (sizes, both CRCs, version, name, dims, M,
// efConstruction, the position is an entry boundary of this log with the
// same count and sum, every live node names a distinct record and every
// record has one live node, link counts and levels in range); otherwise the
// graph is rebuilt from the records and the reason is logged.
const (
	snapMagic   = "EMBDSNAP"
	snapVersion = 1
	snapPrefix  = "hnsw-"
	snapExt     = ".snap"
	snapTmpExt  = ".tmp"
	// maxSnapHeader bounds hfields: a name of at most store.MaxIDBytes
	// plus nine numbers.
	maxSnapHeader = 512
	// maxSnapBytes bounds the file read into memory at Open (16 GiB:
	// 2^31 tombstones of 2 dims, or millions of 8192-dim ones).
	maxSnapBytes = 16 << 30
	// snapFixed is the size of magic, version, hlen and the header CRC.
	snapFixed = len(snapMagic) + 12
	// noSlot marks a record that has no graph node (yet).
	noSlot = ^uint32(0)
)

// ErrSnapshot reports a graph snapshot that Open did not use; the graph is
// rebuilt from the records instead. It wraps the reason.
var ErrSnapshot = errors.New("embedded: graph snapshot not used")

var crc64Table = crc64.MakeTable(crc64.ECMA)

// logPos identifies a prefix of the log: its length in bytes (magic
// included), its number of entries and a CRC-64 chained over the entries'
// headers, which carry each payload's length and CRC-32C. Two logs with the
// same position hold the same entries up to it, whatever happened to the
// file in between (compaction rewrites it; a snapshot of the old file then
// no longer matches).
type logPos struct {
	off int64
	seq uint64
	sum uint64
}

// add moves the position past one entry: its header and its payload's
// length.
func (p *logPos) add(header []byte, n int) {
	p.off += int64(entryHead + n)
	p.seq++
	p.sum = crc64.Update(p.sum, crc64Table, header)
}

// snapHeader is the decoded hfields.
type snapHeader struct {
	name         string
	dims, m, efc int
	nodes        int
	pos          logPos
	bodyLen      int
	bodyCRC      uint32
}

// snapFile names the snapshot file of collection name.
func snapFile(name string) string {
	h := sha256.Sum256([]byte(name))
	return snapPrefix + hex.EncodeToString(h[:16]) + snapExt
}

// encodeSnapHeader returns the file up to the body.
func encodeSnapHeader(h snapHeader) []byte {
	f := &enc{}
	f.str(h.name)
	for _, v := range []int{h.dims, h.m, h.efc, h.nodes} {
		f.uvarint(uint64(v))
	}
	f.uvarint(uint64(h.pos.off))
	f.uvarint(h.pos.seq)
	f.b = binary.LittleEndian.AppendUint64(f.b, h.pos.sum)
	f.uvarint(uint64(h.bodyLen))
	f.b = binary.LittleEndian.AppendUint32(f.b, h.bodyCRC)
	out := make([]byte, 0, snapFixed+len(f.b))
	out = append(out, snapMagic...)
	out = binary.LittleEndian.AppendUint32(out, snapVersion)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(f.b)))
	out = append(out, f.b...)
	return binary.LittleEndian.AppendUint32(out, crc32.Checksum(f.b, crcTable))
}

// encodeSnapshot serializes c's graph as the index of the log prefix pos.
// Callers hold the store's mutex (read or write) and c.g is not nil.
func encodeSnapshot(name string, c *collection, pos logPos) []byte {
	g := c.g
	b := &enc{b: make([]byte, 0, len(g.vecs)*(2*g.m0+16)+g.ndead*4*c.dims+64)}
	st, _ := g.src.MarshalBinary() // never fails
	b.bytes(st)
	b.varint(int64(g.top))
	b.uvarint(uint64(g.entry))
	for slot, ls := range g.links {
		if g.dead[slot] {
			b.byte(1)
			b.str(c.slots[slot])
			b.f32s(g.vecs[slot])
		} else {
			b.byte(0)
			b.str(c.slots[slot])
		}
		b.uvarint(uint64(len(ls)))
		for _, nb := range ls {
			b.uvarint(uint64(len(nb)))
			for _, n := range nb {
				b.uvarint(uint64(n))
			}
		}
	}
	h := snapHeader{
		name: name, dims: c.dims, m: g.m, efc: g.efConstruction, nodes: len(g.vecs),
		pos: pos, bodyLen: len(b.b), bodyCRC: crc32.Checksum(b.b, crcTable),
	}
	return append(encodeSnapHeader(h), b.b...)
}

// parseSnapshot checks a whole snapshot file's framing and CRCs and returns
// its header and body.
func parseSnapshot(b []byte) (snapHeader, []byte, error) {
	var h snapHeader
	if len(b) < snapFixed || string(b[:len(snapMagic)]) != snapMagic {
		return h, nil, fmt.Errorf("%w: not a snapshot (%d bytes, no %q magic)", ErrSnapshot, len(b), snapMagic)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != snapVersion {
		return h, nil, fmt.Errorf("%w: format version %d; this build reads %d", ErrSnapshot, v, snapVersion)
	}
	hlen := int(binary.LittleEndian.Uint32(b[12:]))
	if hlen > maxSnapHeader || snapFixed+hlen > len(b) {
		return h, nil, fmt.Errorf("%w: header of %d bytes in a %d-byte file; limit %d", ErrSnapshot, hlen, len(b), maxSnapHeader)
	}
	hf := b[16 : 16+hlen]
	if got, want := crc32.Checksum(hf, crcTable), binary.LittleEndian.Uint32(b[16+hlen:]); got != want {
		return h, nil, fmt.Errorf("%w: header CRC %08x; stored %08x", ErrSnapshot, got, want)
	}
	d := &dec{b: hf}
	h.name = d.str()
	h.dims, h.m, h.efc, h.nodes = int(d.uvarint()), int(d.uvarint()), int(d.uvarint()), int(d.uvarint())
	h.pos.off, h.pos.seq = int64(d.uvarint()), d.uvarint()
	h.pos.sum = d.u64()
	h.bodyLen = int(d.uvarint())
	h.bodyCRC = d.u32()
	if d.err != nil || len(d.b) != 0 {
		return h, nil, fmt.Errorf("%w: malformed header", ErrSnapshot)
	}
	body := b[snapFixed+hlen:]
	if h.bodyLen != len(body) {
		return h, nil, fmt.Errorf("%w: body is %d bytes; header says %d", ErrSnapshot, len(body), h.bodyLen)
	}
	if got := crc32.Checksum(body, crcTable); got != h.bodyCRC {
		return h, nil, fmt.Errorf("%w: body CRC %08x; header says %08x", ErrSnapshot, got, h.bodyCRC)
	}
	return h, body, nil
}

// readSnapshot reads and checks the snapshot file at path.
func readSnapshot(path string) (snapHeader, []byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return snapHeader{}, nil, fmt.Errorf("%w: %w", ErrSnapshot, err)
	}
	if st.Size() > maxSnapBytes {
		return snapHeader{}, nil, fmt.Errorf("%w: file is %d bytes; limit %d", ErrSnapshot, st.Size(), int64(maxSnapBytes))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return snapHeader{}, nil, fmt.Errorf("%w: %w", ErrSnapshot, err)
	}
	return parseSnapshot(b)
}

// decodeGraph rebuilds the graph in a checked body for a collection of dims
// whose records, replayed from the log prefix the snapshot names, are recs.
// It returns the graph and its slot -> id table and sets every record's
// slot; on error the records' slots are meaningless.
func decodeGraph(h snapHeader, body []byte, dims int, recs map[string]*record) (*graph, []string, error) {
	bad := func(format string, args ...any) (*graph, []string, error) {
		return nil, nil, fmt.Errorf("%w: "+format, append([]any{ErrSnapshot}, args...)...)
	}
	n := h.nodes
	if n > len(body)/3 || uint64(n) >= uint64(noSlot) { // a node takes at least 3 bytes
		return bad("%d nodes in a %d-byte body", n, len(body))
	}
	g := newGraph(h.m, h.efc, 0)
	d := &dec{b: body}
	if err := g.src.UnmarshalBinary(d.bytes()); err != nil {
		return bad("level generator state: %v", err)
	}
	top, entry := d.varint(), d.uvarint()
	for _, r := range recs {
		r.slot = noSlot
	}
	g.vecs, g.links, g.dead = make([][]float32, n), make([][][]uint32, n), make([]bool, n)
	slots := make([]string, n)
	var arena []uint32 // link lists are carved from shared chunks
	live := 0
	for slot := range n {
		flags, id := d.byte(), d.bytes()
		switch {
		case d.err != nil:
			return bad("node %d: truncated", slot)
		case flags > 1:
			return bad("node %d: flags %#x", slot, flags)
		case flags == 1:
			g.dead[slot] = true
			g.ndead++
			slots[slot] = string(id)
			g.vecs[slot] = make([]float32, dims)
			d.f32s(g.vecs[slot])
		default:
			r := recs[string(id)]
			if r == nil {
				return bad("node %d: id %q is not in the log", slot, id)
			}
			if r.slot != noSlot {
				return bad("nodes %d and %d: both live for id %q", r.slot, slot, id)
			}
			r.slot, slots[slot], g.vecs[slot] = uint32(slot), r.ID, r.unit
			live++
		}
		nl := d.uvarint()
		if nl < 1 || nl > maxLevels {
			return bad("node %d: %d levels; want 1 to %d", slot, nl, maxLevels)
		}
		ls := make([][]uint32, nl)
		for l := range ls {
			k, limit := int(d.uvarint()), g.m
			if l == 0 {
				limit = g.m0
			}
			if k > limit {
				return bad("node %d level %d: %d links; limit %d", slot, l, k, limit)
			}
			if cap(arena)-len(arena) < k {
				arena = make([]uint32, 0, max(1<<14, k))
			}
			start := len(arena)
			for range k {
				x := d.uvarint()
				if x >= uint64(n) {
					return bad("node %d level %d: link to slot %d of %d", slot, l, x, n)
				}
				arena = append(arena, uint32(x))
			}
			ls[l] = arena[start:len(arena):len(arena)] // full slice: appends copy
		}
		g.links[slot] = ls
	}
	if d.err != nil || len(d.b) != 0 {
		return bad("body does not end after %d nodes", n)
	}
	if live != len(recs) {
		return bad("%d live nodes; the log holds %d records", live, len(recs))
	}
	for slot, ls := range g.links {
		for l, nb := range ls {
			for _, x := range nb {
				if len(g.links[x]) <= l {
					return bad("node %d level %d: neighbour %d has only %d levels", slot, l, x, len(g.links[x]))
				}
			}
		}
	}
	switch {
	case n == 0 && top != -1:
		return bad("empty graph with top level %d", top)
	case n > 0 && (entry >= uint64(n) || top != int64(len(g.links[entry])-1)):
		return bad("entry %d at level %d does not match the nodes", entry, top)
	}
	g.entry, g.top = uint32(entry), int(top)
	return g, slots, nil
}

// writeSnapshot replaces dir/file with data atomically: a crash leaves the
// old file or the new one, never a mix.
func writeSnapshot(dir, file string, data []byte, sync bool) error {
	tmp, err := writeSnapshotTemp(dir, file, data, sync)
	if err != nil {
		return err
	}
	return commitSnapshotTemp(dir, tmp, file, sync)
}

// writeSnapshotTemp writes data to a temporary file next to file and, when
// sync, fsyncs it.
func writeSnapshotTemp(dir, file string, data []byte, sync bool) (string, error) {
	tmp := filepath.Join(dir, file+snapTmpExt)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err == nil && sync {
		err = f.Sync()
	}
	if err = errors.Join(err, f.Close()); err != nil {
		return "", errors.Join(err, os.Remove(tmp))
	}
	return tmp, nil
}

// commitSnapshotTemp renames tmp over file and, when sync, fsyncs dir so the
// rename is durable.
func commitSnapshotTemp(dir, tmp, file string, sync bool) error {
	if err := os.Rename(tmp, filepath.Join(dir, file)); err != nil {
		return errors.Join(err, os.Remove(tmp))
	}
	if sync {
		return syncDir(dir)
	}
	return nil
}

// removeSnapshot deletes dir/file if it exists.
func removeSnapshot(dir, file string) error {
	if err := os.Remove(filepath.Join(dir, file)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// snapFiles lists the snapshot files and leftover temporary files in dir.
func snapFiles(dir string) (snaps, temps []string, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range ents {
		name := e.Name()
		switch {
		case !e.Type().IsRegular() || !strings.HasPrefix(name, snapPrefix):
		case strings.HasSuffix(name, snapExt):
			snaps = append(snaps, name)
		case strings.HasSuffix(name, snapExt+snapTmpExt):
			temps = append(temps, name)
		}
	}
	slices.Sort(snaps)
	return snaps, temps, nil
}

// snapJob is one encoded snapshot on its way to disk; data nil means the
// collection has no graph and its file is removed.
type snapJob struct {
	name string
	mark snapMark
	data []byte
}

// snapshotDue reports whether c's graph has taken SnapshotEvery inserts
// since its last snapshot.
func (s *Store) snapshotDue(c *collection) bool {
	return s.opts.SnapshotEvery > 0 && c.g != nil && c.adds.Load() >= int64(s.opts.SnapshotEvery)
}

// encodeJob encodes c's snapshot at the current end of the log. Callers hold
// s.mu (read or write).
func (s *Store) encodeJob(name string, c *collection) snapJob {
	j := snapJob{name: name, mark: snapMark{epoch: s.epoch, off: s.pos.off, gen: c.gen}}
	if c.g != nil {
		j.data = encodeSnapshot(name, c, s.pos)
		c.adds.Store(0)
	}
	return j
}

// commitSnapshot writes (or removes) j's file unless the file already holds
// the same or a later state, which happens when a compaction or Close got
// there between the background goroutine's encode and its write.
func (s *Store) commitSnapshot(j snapJob) error {
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	if m, ok := s.marks[j.name]; ok && !j.mark.newer(m) {
		return nil
	}
	file := snapFile(j.name)
	var err error
	if j.data == nil {
		err = removeSnapshot(s.opts.Dir, file)
	} else {
		err = writeSnapshot(s.opts.Dir, file, j.data, !s.opts.NoSync)
	}
	if err != nil {
		return fmt.Errorf("embedded: snapshot of collection %q: %w", j.name, err)
	}
	s.marks[j.name] = j.mark
	return nil
}

// snapshotAllLocked brings every collection's snapshot file up to date:
// written for a graph that changed (or whose file names an older log
// epoch), removed for a collection without a graph. Callers hold s.mu for
// writing.
func (s *Store) snapshotAllLocked() error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(s.colls)) {
		c := s.colls[name]
		s.snapMu.Lock()
		m, ok := s.marks[name]
		s.snapMu.Unlock()
		if ok && m.epoch == s.epoch && m.gen == c.gen {
			continue
		}
		if err := s.commitSnapshot(s.encodeJob(name, c)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// snapshotLoop is the background goroutine: woken by Upsert (or Open) when a
// collection is due, it encodes the due snapshots under the read lock and
// writes them without the store lock. Close stops it.
func (s *Store) snapshotLoop() {
	defer close(s.done)
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
		}
		var jobs []snapJob
		s.mu.RLock()
		if !s.closed {
			for _, name := range slices.Sorted(maps.Keys(s.colls)) {
				if c := s.colls[name]; s.snapshotDue(c) {
					jobs = append(jobs, s.encodeJob(name, c))
				}
			}
		}
		s.mu.RUnlock()
		for _, j := range jobs {
			if err := s.commitSnapshot(j); err != nil {
				s.logger.Warn("embedded: background snapshot", "collection", j.name, "err", err)
			} else {
				s.logger.Debug("embedded: background snapshot", "collection", j.name, "log_offset", j.mark.off, "bytes", len(j.data))
			}
		}
	}
}
