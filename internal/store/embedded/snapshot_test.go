package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/store"
)

const snapDims = 16

// snapOpts keeps graphs small enough for -race: the graph starts at 300
// records and background snapshots are off unless a test turns them on.
func snapOpts(o *Options) {
	o.ExactThreshold = 300
	o.M = 8
	o.EfConstruction = 40
	o.EfSearch = 32
	o.SnapshotEvery = -1
}

// fill writes n records with ids from off in batches of 250 and returns
// them.
func fill(t *testing.T, s *Store, r *rand.Rand, off, n int) []store.Record {
	t.Helper()
	ctx := context.Background()
	var all []store.Record
	for i := 0; i < n; i += 250 {
		var recs []store.Record
		for j := i; j < min(n, i+250); j++ {
			recs = append(recs, store.Record{ID: fmt.Sprintf("r%05d", off+j), Vector: vec(r, snapDims), Metadata: []byte(`{"k":1}`), UpdatedAt: time.Unix(int64(j), 0)})
		}
		if err := s.Upsert(ctx, "c", recs); err != nil {
			t.Fatalf("Upsert: %v", err)
		}
		all = append(all, recs...)
	}
	return all
}

// churn overwrites and deletes some records so the graph has tombstones.
func churn(t *testing.T, s *Store, r *rand.Rand, ids []string) {
	t.Helper()
	ctx := context.Background()
	var over []store.Record
	for _, id := range ids[:50] {
		over = append(over, store.Record{ID: id, Vector: vec(r, snapDims)})
	}
	if err := s.Upsert(ctx, "c", over); err != nil {
		t.Fatalf("Upsert: %v", err)
	}
	if err := s.Delete(ctx, "c", ids[50:90]); err != nil {
		t.Fatalf("Delete: %v", err)
	}
}

func searchAll(t *testing.T, s *Store, qs [][]float32) [][]store.Hit {
	t.Helper()
	var out [][]store.Hit
	for _, q := range qs {
		h, err := s.Search(context.Background(), store.SearchRequest{Collection: "c", Vector: q, TopK: 10})
		if err != nil {
			t.Fatalf("Search: %v", err)
		}
		out = append(out, h)
	}
	return out
}

// sameHits compares results by id, score and metadata bytes (a record read
// back from the log has empty, not nil, metadata).
func sameHits(a, b [][]store.Hit) bool {
	return slices.EqualFunc(a, b, func(x, y []store.Hit) bool {
		return slices.EqualFunc(x, y, func(p, q store.Hit) bool {
			return p.ID == q.ID && p.Score == q.Score && bytes.Equal(p.Metadata, q.Metadata)
		})
	})
}

func queries(seed uint64) [][]float32 {
	r := rand.New(rand.NewPCG(seed, 9))
	qs := make([][]float32, 40)
	for i := range qs {
		qs[i] = vec(r, snapDims)
	}
	return qs
}

// sameGraph fails unless b's graph for "c" is a's, node for node.
func sameGraph(t *testing.T, a, b *Store) {
	t.Helper()
	ca, cb := a.colls["c"], b.colls["c"]
	ga, gb := ca.g, cb.g
	if ga == nil || gb == nil {
		t.Fatalf("graphs: got %v, %v; want both built", ga != nil, gb != nil)
	}
	if ga.entry != gb.entry || ga.top != gb.top || ga.ndead != gb.ndead || len(ga.vecs) != len(gb.vecs) {
		t.Fatalf("graph: got entry %d top %d dead %d nodes %d; want %d %d %d %d", gb.entry, gb.top, gb.ndead, len(gb.vecs), ga.entry, ga.top, ga.ndead, len(ga.vecs))
	}
	sa, _ := ga.src.MarshalBinary()
	sb, _ := gb.src.MarshalBinary()
	if !bytes.Equal(sa, sb) {
		t.Errorf("level generator state differs")
	}
	for slot := range ga.vecs {
		if ga.dead[slot] != gb.dead[slot] || !slices.Equal(ga.vecs[slot], gb.vecs[slot]) || len(ga.links[slot]) != len(gb.links[slot]) {
			t.Fatalf("node %d: dead/vector/levels differ", slot)
		}
		if !ga.dead[slot] && ca.slots[slot] != cb.slots[slot] {
			t.Fatalf("node %d: id %q; want %q", slot, cb.slots[slot], ca.slots[slot])
		}
		for l := range ga.links[slot] {
			if !slices.Equal(ga.links[slot][l], gb.links[slot][l]) {
				t.Fatalf("node %d level %d: links %v; want %v", slot, l, gb.links[slot][l], ga.links[slot][l])
			}
		}
	}
	for id, r := range ca.recs {
		if rb := cb.recs[id]; rb == nil || rb.slot != r.slot {
			t.Fatalf("record %q: slot differs", id)
		}
	}
}

// copyDir copies the regular files of src into a new directory, as a crash
// of the process would leave them.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// build makes a store with a graph of 1,200 records and some tombstones,
// and returns it open with its directory.
func build(t *testing.T) (*Store, string, []store.Record) {
	t.Helper()
	dir := t.TempDir()
	s := openT(t, dir, snapOpts)
	if err := s.EnsureCollection(context.Background(), "c", snapDims); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(11, 12))
	recs := fill(t, s, r, 0, 1200)
	ids := make([]string, len(recs))
	for i, rec := range recs {
		ids[i] = rec.ID
	}
	churn(t, s, r, ids[100:])
	return s, dir, recs
}

func TestSnapshotRoundTrip(t *testing.T) {
	s, dir, _ := build(t)
	qs := queries(1)
	before := searchAll(t, s, qs)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, snapFile("c"))); err != nil {
		t.Fatalf("snapshot after Close: %v", err)
	}
	var logBuf bytes.Buffer
	s2 := openT(t, dir, func(o *Options) { snapOpts(o); o.Logger = slog.New(slog.NewTextHandler(&logBuf, nil)) })
	if err := s2.snapState["c"]; err != nil {
		t.Fatalf("snapshot: got %v; want it used", err)
	}
	if got := s2.colls["c"].adds.Load(); got != 0 {
		t.Errorf("inserts replayed into the graph: got %d; want 0", got)
	}
	if !strings.Contains(logBuf.String(), "graph loaded from snapshot") {
		t.Errorf("log: got %q; want the load reported", logBuf.String())
	}
	sameGraph(t, s, s2)
	if after := searchAll(t, s2, qs); !sameHits(after, before) {
		t.Errorf("search after reopen differs:\n got %v\nwant %v", after[0], before[0])
	}
	// A Close without changes leaves the file alone.
	st, _ := os.Stat(filepath.Join(dir, snapFile("c")))
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	if st2, _ := os.Stat(filepath.Join(dir, snapFile("c"))); !st2.ModTime().Equal(st.ModTime()) || st2.Size() != st.Size() {
		t.Errorf("unchanged graph: snapshot rewritten at Close")
	}
}

// TestSnapshotReplaysLaterWrites takes a snapshot, writes more (inserts,
// overwrites, deletes), copies the directory as a crash would leave it and
// checks that the copy's graph is the live one.
func TestSnapshotReplaysLaterWrites(t *testing.T) {
	s, dir, recs := build(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openT(t, dir, snapOpts)
	r := rand.New(rand.NewPCG(21, 22))
	more := fill(t, s2, r, 5000, 600)
	var ids []string
	for _, rec := range slices.Concat(recs[200:245], more[:45], more[100:200]) {
		ids = append(ids, rec.ID)
	}
	churn(t, s2, r, ids[:90]) // overwrites old and new records, deletes new ones
	churn(t, s2, r, ids[90:]) // on new records only
	qs := queries(2)
	live := searchAll(t, s2, qs)

	s3 := openT(t, copyDir(t, dir), snapOpts) // s2 never closed: its snapshot is the old one
	if err := s3.snapState["c"]; err != nil {
		t.Fatalf("snapshot: got %v; want it used", err)
	}
	if got, want := s3.colls["c"].adds.Load(), int64(600+50+50); got != want {
		t.Errorf("inserts replayed into the graph: got %d; want %d", got, want)
	}
	sameGraph(t, s2, s3)
	if got := searchAll(t, s3, qs); !sameHits(got, live) {
		t.Errorf("search after replay differs:\n got %v\nwant %v", got[0], live[0])
	}
}

func TestSnapshotCorrupt(t *testing.T) {
	s, dir, _ := build(t)
	qs := queries(3)
	before := searchAll(t, s, qs)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(filepath.Join(dir, snapFile("c")))
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte { b := slices.Clone(good); b[i] ^= 0x40; return b }
	version := slices.Clone(good)
	binary.LittleEndian.PutUint32(version[8:], snapVersion+1)
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"body byte flipped", flip(len(good) - 3), "body CRC"},
		{"header byte flipped", flip(20), "header CRC"},
		{"magic byte flipped", flip(0), "not a snapshot"},
		{"truncated by one", good[:len(good)-1], "body is"},
		{"truncated to half", good[:len(good)/2], "body is"},
		{"truncated in header", good[:24], "header of"},
		{"empty", nil, "not a snapshot"},
		{"newer version", version, "format version 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := copyDir(t, dir)
			if err := os.WriteFile(filepath.Join(d, snapFile("c")), tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			var logBuf bytes.Buffer
			s2 := openT(t, d, func(o *Options) { snapOpts(o); o.Logger = slog.New(slog.NewTextHandler(&logBuf, nil)) })
			err := s2.snapState["c"]
			if !errors.Is(err, ErrSnapshot) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("snapshot: got %v; want ErrSnapshot with %q", err, tc.want)
			}
			if !strings.Contains(logBuf.String(), "graph rebuilt") || !strings.Contains(logBuf.String(), tc.want) {
				t.Errorf("log: got %q; want the rebuild and its reason", logBuf.String())
			}
			// Unusable at the file level, the snapshot takes no part in the
			// replay, which rebuilds the graph the store had.
			sameGraph(t, s, s2)
			if got := searchAll(t, s2, qs); !sameHits(got, before) {
				t.Errorf("search after rebuild differs:\n got %v\nwant %v", got[0], before[0])
			}
			// Close replaces the bad file with a good one.
			if err := s2.Close(); err != nil {
				t.Fatal(err)
			}
			if s3 := openT(t, d, snapOpts); s3.snapState["c"] != nil {
				t.Errorf("snapshot after the rebuild: got %v; want it used", s3.snapState["c"])
			}
		})
	}
}

// rewriteHeader changes a snapshot's header fields and fixes its CRC, as a
// snapshot of another configuration would have them.
func rewriteHeader(t *testing.T, path string, mod func(*snapHeader)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h, body, err := parseSnapshot(b)
	if err != nil {
		t.Fatal(err)
	}
	mod(&h)
	if err := os.WriteFile(path, append(encodeSnapHeader(h), body...), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSnapshotMismatch(t *testing.T) {
	s, dir, recs := build(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		header func(*snapHeader)
		opts   func(*Options)
		want   string
	}{
		{"other M", nil, func(o *Options) { o.M = 12 }, "built with M 8"},
		{"other efConstruction", nil, func(o *Options) { o.EfConstruction = 50 }, "efConstruction 40"},
		{"other dims", func(h *snapHeader) { h.dims = 32 }, nil, "32 dims"},
		{"other log prefix", func(h *snapHeader) { h.pos.sum ^= 1 }, nil, "compacted or replaced"},
		{"not an entry boundary", func(h *snapHeader) { h.pos.off-- }, nil, "not an entry boundary"},
		{"beyond the log", func(h *snapHeader) { h.pos.off += 100 }, nil, "log ends at"},
		{"other collection", func(h *snapHeader) { h.name = "d" }, nil, "whose file is"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := copyDir(t, dir)
			if tc.header != nil {
				rewriteHeader(t, filepath.Join(d, snapFile("c")), tc.header)
			}
			s2 := openT(t, d, func(o *Options) {
				snapOpts(o)
				if tc.opts != nil {
					tc.opts(o)
				}
			})
			err := s2.snapState["c"]
			if !errors.Is(err, ErrSnapshot) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("snapshot: got %v; want ErrSnapshot with %q", err, tc.want)
			}
			// The rebuilt graph answers: every stored vector finds itself.
			for _, rec := range recs[:20] {
				hits, err := s2.Search(context.Background(), store.SearchRequest{Collection: "c", Vector: rec.Vector, TopK: 3})
				if err != nil || len(hits) != 3 || hits[0].ID != rec.ID {
					t.Fatalf("search for %s after rebuild: got %v, %v; want it first", rec.ID, hits, err)
				}
			}
		})
	}
}

// TestSnapshotCrashBeforeRename leaves a finished temporary file that was
// never renamed (a crash between the two) next to an older snapshot.
func TestSnapshotCrashBeforeRename(t *testing.T) {
	s, dir, _ := build(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(filepath.Join(dir, snapFile("c")))
	s2 := openT(t, dir, snapOpts)
	fill(t, s2, rand.New(rand.NewPCG(31, 32)), 7000, 300)
	s2.mu.RLock()
	j := s2.encodeJob("c", s2.colls["c"])
	s2.mu.RUnlock()
	if _, err := writeSnapshotTemp(dir, snapFile("c"), j.data, true); err != nil {
		t.Fatal(err)
	}
	if cur, _ := os.ReadFile(filepath.Join(dir, snapFile("c"))); !bytes.Equal(cur, old) {
		t.Fatalf("snapshot changed before the rename")
	}
	qs := queries(4)
	live := searchAll(t, s2, qs)

	d := copyDir(t, dir)
	s3 := openT(t, d, snapOpts)
	if err := s3.snapState["c"]; err != nil {
		t.Fatalf("old snapshot: got %v; want it used", err)
	}
	if got := s3.colls["c"].adds.Load(); got != 300 {
		t.Errorf("inserts replayed: got %d; want 300", got)
	}
	if _, err := os.Stat(filepath.Join(d, snapFile("c")+snapTmpExt)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file after Open: got %v; want it removed", err)
	}
	sameGraph(t, s2, s3)
	if got := searchAll(t, s3, qs); !sameHits(got, live) {
		t.Errorf("search differs:\n got %v\nwant %v", got[0], live[0])
	}
}

func TestSnapshotCompaction(t *testing.T) {
	s, dir, _ := build(t)
	qs := queries(5)
	before := searchAll(t, s, qs)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	preCompact, _ := os.ReadFile(filepath.Join(dir, snapFile("c")))
	s2 := openT(t, dir, snapOpts)
	if err := s2.Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	post, _ := os.ReadFile(filepath.Join(dir, snapFile("c")))
	if bytes.Equal(post, preCompact) {
		t.Fatalf("compaction left the old snapshot")
	}
	// A crash right after compaction: the new snapshot is used.
	s3 := openT(t, copyDir(t, dir), snapOpts)
	if err := s3.snapState["c"]; err != nil {
		t.Fatalf("snapshot after compaction: got %v; want it used", err)
	}
	sameGraph(t, s, s3)
	if got := searchAll(t, s3, qs); !sameHits(got, before) {
		t.Errorf("search after compaction differs")
	}
	// A crash between the log's rename and the snapshot's: the old
	// snapshot names the old log and is not used.
	d := copyDir(t, dir)
	if err := os.WriteFile(filepath.Join(d, snapFile("c")), preCompact, 0o644); err != nil {
		t.Fatal(err)
	}
	s4 := openT(t, d, snapOpts)
	if err := s4.snapState["c"]; !errors.Is(err, ErrSnapshot) {
		t.Fatalf("pre-compaction snapshot: got %v; want ErrSnapshot", err)
	}
	if got := searchAll(t, s4, qs); len(got) != len(qs) || len(got[0]) != 10 {
		t.Fatalf("search after rebuild: got %d results", len(got[0]))
	}
}

func TestSnapshotBackground(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, func(o *Options) { snapOpts(o); o.SnapshotEvery = 500 })
	if err := s.EnsureCollection(context.Background(), "c", snapDims); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(41, 42))
	fill(t, s, r, 0, 1000) // graph of 500 at the 2nd batch: due
	path := filepath.Join(dir, snapFile("c"))
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no background snapshot after 20s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Wait for the goroutine to finish (its mark), then write more.
	for {
		s.snapMu.Lock()
		_, ok := s.marks["c"]
		s.snapMu.Unlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("background snapshot unfinished after 20s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	fill(t, s, r, 1000, 250)
	qs := queries(6)
	live := searchAll(t, s, qs)
	s2 := openT(t, copyDir(t, dir), snapOpts)
	if err := s2.snapState["c"]; err != nil {
		t.Fatalf("background snapshot: got %v; want it used", err)
	}
	// The goroutine may have taken a later snapshot meanwhile; any of them
	// spares replaying the whole log.
	if got := s2.colls["c"].adds.Load(); got >= 1250 {
		t.Errorf("inserts replayed: got %d; want fewer than all 1250", got)
	}
	sameGraph(t, s, s2)
	if got := searchAll(t, s2, qs); !sameHits(got, live) {
		t.Errorf("search differs")
	}
}

// TestSnapshotShrink drops the graph when the collection shrinks to exact
// search; Close then removes the snapshot.
func TestSnapshotShrink(t *testing.T) {
	s, dir, recs := build(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openT(t, dir, snapOpts)
	var ids []string
	for _, r := range recs[:1000] {
		ids = append(ids, r.ID)
	}
	for len(ids) > 0 {
		if err := s2.Delete(context.Background(), "c", ids[:min(len(ids), 400)]); err != nil {
			t.Fatal(err)
		}
		ids = ids[min(len(ids), 400):]
	}
	if s2.colls["c"].g != nil {
		t.Fatalf("graph kept below ExactThreshold")
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, snapFile("c"))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("snapshot of a collection without a graph: got %v; want removed", err)
	}
}

func TestOpenOptionLimits(t *testing.T) {
	for _, mod := range []func(*Options){
		func(o *Options) { o.M = 1 },
		func(o *Options) { o.M = MaxM + 1 },
		func(o *Options) { o.EfConstruction = MaxEf + 1 },
		func(o *Options) { o.EfSearch = MaxEf + 1 },
	} {
		o := DefaultOptions(t.TempDir())
		mod(&o)
		if _, err := Open(o); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Open(M %d, efC %d, ef %d): got %v; want ErrInvalid", o.M, o.EfConstruction, o.EfSearch, err)
		}
	}
}

func FuzzSnapshot(f *testing.F) {
	// Seed: a real snapshot of a small graph.
	dir := f.TempDir()
	o := DefaultOptions(dir)
	o.NoSync, o.ExactThreshold, o.M, o.SnapshotEvery = true, -1, 4, -1
	s, err := Open(o)
	if err != nil {
		f.Fatal(err)
	}
	ctx := context.Background()
	if err := s.EnsureCollection(ctx, "c", 2); err != nil {
		f.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	var recs []store.Record
	for i := range 40 {
		recs = append(recs, store.Record{ID: fmt.Sprint(i), Vector: vec(r, 2)})
	}
	if err := s.Upsert(ctx, "c", recs); err != nil {
		f.Fatal(err)
	}
	if err := s.Delete(ctx, "c", []string{"3", "5"}); err != nil {
		f.Fatal(err)
	}
	if err := s.Close(); err != nil {
		f.Fatal(err)
	}
	seed, err := os.ReadFile(filepath.Join(dir, snapFile("c")))
	if err != nil {
		f.Fatal(err)
	}
	h0, body0, err := parseSnapshot(seed)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed, body0, uint16(h0.nodes))
	f.Add([]byte(snapMagic), []byte{}, uint16(0))
	f.Fuzz(func(t *testing.T, file, body []byte, nodes uint16) {
		parseSnapshot(file) // must not panic
		h := h0
		h.nodes = int(nodes)
		recs := map[string]*record{}
		for i := range 40 {
			if i != 3 && i != 5 {
				id := fmt.Sprint(i)
				recs[id] = &record{Record: store.Record{ID: id}, unit: []float32{1, 0}}
			}
		}
		g, slots, err := decodeGraph(h, body, 2, recs)
		if err != nil {
			return
		}
		// A graph that passes the checks must be searchable and growable.
		if len(slots) != len(g.vecs) {
			t.Fatalf("slots %d for %d nodes", len(slots), len(g.vecs))
		}
		g.search([]float32{0, 1}, 5, 10)
		g.add([]float32{1, 0})
	})
}
