package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/store"
)

// Versioned is what TestVersions needs of a store.
type Versioned interface {
	store.Vectors
	store.Versioned
	store.VersionReader
}

// TestVersions runs the store.Versioned conformance suite. open is called
// once per subtest, as for TestVectors; reopen closes s and returns a new
// store on the same data (the embedded store reopened on its directory, a
// new Milvus client), for the restart subtest. A store with a
// Drop(ctx, logical) method has its collections dropped at the end.
func TestVersions(t *testing.T, open func(t *testing.T) Versioned, reopen func(t *testing.T, s Versioned) Versioned) {
	v := versionsSuite{open: open, reopen: reopen}
	t.Run("CreateList", v.createList)
	t.Run("SwapDrop", v.swapDrop)
	t.Run("ReadWriteVersion", v.readWriteVersion)
	t.Run("ScanExactlyOnce", v.scanExactlyOnce)
	t.Run("AtomicSwap", v.atomicSwap)
	t.Run("Restart", v.restart)
}

type versionsSuite struct {
	open   func(t *testing.T) Versioned
	reopen func(t *testing.T, s Versioned) Versioned
}

// setup opens a store and a fresh logical collection with DefaultVersion
// (EnsureCollection) and version "v2" bound to "m2", both of dims.
func (v versionsSuite) setup(t *testing.T) (Versioned, string) {
	t.Helper()
	s := v.open(t)
	name := uniqueName(t)
	dropAtEnd(t, s, name)
	ctx := ctxFor(t)
	if err := s.EnsureCollection(ctx, name, dims); err != nil {
		t.Fatalf("EnsureCollection(%s): %v", name, err)
	}
	if err := s.CreateVersion(ctx, name, "v2", dims, "m2"); err != nil {
		t.Fatalf("CreateVersion(%s, v2): %v", name, err)
	}
	return s, name
}

func dropAtEnd(t *testing.T, s store.Vectors, name string) {
	d, ok := s.(interface {
		Drop(context.Context, string) error
	})
	if !ok {
		return
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := d.Drop(ctx, name); err != nil {
			t.Errorf("Drop(%s): %v", name, err)
		}
	})
}

// versionsOf lists name's versions as "version:model:live" strings.
func versionsOf(t *testing.T, s Versioned, name string) []string {
	t.Helper()
	vs, err := s.ListVersions(ctxFor(t), name)
	if err != nil {
		t.Fatalf("ListVersions(%s): %v", name, err)
	}
	var out []string
	for _, x := range vs {
		if x.Dims != dims {
			t.Errorf("version %s: dims %d; want %d", x.Version, x.Dims, dims)
		}
		out = append(out, fmt.Sprintf("%s:%s:%v", x.Version, x.ModelVersion, x.Live))
	}
	return out
}

func (v versionsSuite) createList(t *testing.T) {
	s, name := v.setup(t)
	ctx := ctxFor(t)
	if got, want := versionsOf(t, s, name), []string{"v1::true", "v2:m2:false"}; !slices.Equal(got, want) {
		t.Fatalf("versions: got %v; want %v", got, want)
	}
	vs, _ := s.ListVersions(ctx, name)
	if vs[1].CreatedAt.IsZero() || time.Since(vs[1].CreatedAt) > time.Hour {
		t.Errorf("v2 created at %v; want about now", vs[1].CreatedAt)
	}
	if err := s.CreateVersion(ctx, name, "v2", dims, "m2"); err != nil {
		t.Errorf("CreateVersion of an existing version, same binding: got %v; want nil", err)
	}
	wantErr(t, s.CreateVersion(ctx, name, "v2", dims, "m3"), store.ErrInvalid, `"m2"`)
	wantErr(t, s.CreateVersion(ctx, name, "v2", dims+1, "m2"), store.ErrInvalid, "dimensions")
	for _, bad := range []string{"", "a/b", "v 2", strings.Repeat("v", store.MaxVersionBytes+1)} {
		if err := s.CreateVersion(ctx, name, bad, dims, "m"); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("CreateVersion(version %q): got %v; want ErrInvalid", bad, err)
		}
	}
	_, err := s.ListVersions(ctx, name+"_none")
	wantErr(t, err, store.ErrNotFound, "")
	live, err := s.LiveVersion(ctx, name)
	if err != nil || live.Version != store.DefaultVersion || !live.Live {
		t.Errorf("LiveVersion: got %+v, %v; want %s live", live, err, store.DefaultVersion)
	}
}

func (v versionsSuite) swapDrop(t *testing.T) {
	s, name := v.setup(t)
	ctx := ctxFor(t)
	if err := s.Upsert(ctx, name, []store.Record{rec("old", 1)}); err != nil {
		t.Fatalf("Upsert: %v", err)
	}
	if err := s.UpsertVersion(ctx, name, "v2", []store.Record{rec("new", 2)}); err != nil {
		t.Fatalf("UpsertVersion: %v", err)
	}
	search := func(want string) {
		t.Helper()
		hits, err := s.Search(ctx, store.SearchRequest{Collection: name, Vector: unit(3), TopK: 5})
		if err != nil || !slices.Equal(hitIDs(hits), []string{want}) {
			t.Fatalf("Search: got %v, %v; want [%s]", hitIDs(hits), err, want)
		}
	}
	search("old")
	wantErr(t, s.SwapAlias(ctx, name, "v9"), store.ErrNotFound, "v9")
	search("old")
	if err := s.SwapAlias(ctx, name, "v2"); err != nil {
		t.Fatalf("SwapAlias(v2): %v", err)
	}
	search("new")
	if err := s.SwapAlias(ctx, name, "v2"); err != nil {
		t.Errorf("SwapAlias to the live version: got %v; want nil (no-op)", err)
	}
	wantErr(t, s.DropVersion(ctx, name, "v2"), store.ErrInvalid, "live")
	for range 2 { // gc is idempotent
		if err := s.DropVersion(ctx, name, store.DefaultVersion); err != nil {
			t.Fatalf("DropVersion(v1): %v", err)
		}
	}
	if got, want := versionsOf(t, s, name), []string{"v2:m2:true"}; !slices.Equal(got, want) {
		t.Fatalf("versions after drop: got %v; want %v", got, want)
	}
	search("new")
	wantErr(t, s.UpsertVersion(ctx, name, store.DefaultVersion, []store.Record{rec("x", 4)}), store.ErrNotFound, "")
	wantErr(t, s.SwapAlias(ctx, name, store.DefaultVersion), store.ErrNotFound, "")
	// A dropped version can be created again, bound anew.
	if err := s.CreateVersion(ctx, name, store.DefaultVersion, dims, "m3"); err != nil {
		t.Fatalf("CreateVersion(v1) again: %v", err)
	}
	if got, want := versionsOf(t, s, name), []string{"v2:m2:true", "v1:m3:false"}; !slices.Equal(got, want) {
		t.Fatalf("versions after re-creating v1: got %v; want %v", got, want)
	}
}

func (v versionsSuite) readWriteVersion(t *testing.T) {
	s, name := v.setup(t)
	ctx := ctxFor(t)
	recs := []store.Record{rec("a", 1), rec("b", 2), rec("c", 3)}
	recs[0].TextHash, recs[1].TextHash = "00112233445566778899aabbccddeeff", "ffeeddccbbaa99887766554433221100"
	if err := s.UpsertVersion(ctx, name, "v2", recs); err != nil {
		t.Fatalf("UpsertVersion: %v", err)
	}
	if got, err := s.Get(ctx, name, []string{"a"}); err != nil || len(got) != 0 {
		t.Fatalf("Get on the live version: got %v, %v; want nothing (v2 is not live)", ids(got), err)
	}
	got, err := s.GetVersion(ctx, name, "v2", []string{"c", "a", "zz"})
	if err != nil || !slices.Equal(ids(got), []string{"c", "a"}) {
		t.Fatalf("GetVersion: got %v, %v; want [c a]", ids(got), err)
	}
	checkRecord(t, got[1], recs[0])
	if got[1].TextHash != recs[0].TextHash || got[0].TextHash != "" {
		t.Errorf("text hashes: got %q, %q; want %q, \"\"", got[1].TextHash, got[0].TextHash, recs[0].TextHash)
	}
	hits, err := s.SearchVersion(ctx, name, "v2", store.SearchRequest{Collection: name, Vector: unit(2), TopK: 1})
	if err != nil || !slices.Equal(hitIDs(hits), []string{"b"}) {
		t.Errorf("SearchVersion: got %v, %v; want [b]", hitIDs(hits), err)
	}
	if err := s.DeleteVersion(ctx, name, "v2", []string{"a", "zz"}); err != nil {
		t.Fatalf("DeleteVersion: %v", err)
	}
	if got, err := s.GetVersion(ctx, name, "v2", []string{"a", "b"}); err != nil || !slices.Equal(ids(got), []string{"b"}) {
		t.Errorf("GetVersion after DeleteVersion: got %v, %v; want [b]", ids(got), err)
	}
	_, err = s.GetVersion(ctx, name, "v9", []string{"a"})
	wantErr(t, err, store.ErrNotFound, "v9")
	_, err = s.SearchVersion(ctx, name, "v9", store.SearchRequest{Collection: name, Vector: unit(2), TopK: 1})
	wantErr(t, err, store.ErrNotFound, "v9")
	bad := rec("bad", 5)
	bad.Vector = bad.Vector[1:]
	wantErr(t, s.UpsertVersion(ctx, name, "v2", []store.Record{rec("ok", 6), bad}), store.ErrInvalid, "dimensions")
	if got, _ := s.GetVersion(ctx, name, "v2", []string{"ok"}); len(got) != 0 {
		t.Errorf("a rejected UpsertVersion wrote %v", ids(got))
	}
}

// scanIDs are awkward ids for a scan that pages by id: quotes,
// backslashes, control and non-ASCII characters.
var scanIDs = []string{`q"uote`, `back\slash`, `\"`, "tab\tx", "nbsp\u00a0x", "日本", "ctl\x01"}

func (v versionsSuite) scanExactlyOnce(t *testing.T) {
	s, name := v.setup(t)
	ctx := ctxFor(t)
	const n = 3000
	want := map[string]store.Record{}
	var batch []store.Record
	for i := range n {
		r := rec(fmt.Sprintf("r%05d", i), uint64(i))
		if i < len(scanIDs) {
			r.ID = scanIDs[i]
		}
		r.TextHash = fmt.Sprintf("%032x", i)
		want[r.ID] = r
		if batch = append(batch, r); len(batch) == 500 {
			if err := s.UpsertVersion(ctx, name, "v2", batch); err != nil {
				t.Fatalf("UpsertVersion: %v", err)
			}
			batch = nil
		}
	}
	seen := map[string]int{}
	err := s.ScanVersion(ctx, name, "v2", func(r store.Record) error {
		seen[r.ID]++
		w, ok := want[r.ID]
		switch {
		case !ok:
			return fmt.Errorf("scan visited unknown id %q", r.ID)
		case r.Vector != nil:
			return fmt.Errorf("scan of %q returned a vector", r.ID)
		case r.TextHash != w.TextHash || r.ModelVersion != w.ModelVersion || !jsonEqual(r.Metadata, w.Metadata) || r.UpdatedAt.UnixMilli() != w.UpdatedAt.UnixMilli():
			return fmt.Errorf("scan of %q: got %+v; want %+v", r.ID, r, w)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("ScanVersion: %v", err)
	}
	for id := range want {
		if seen[id] != 1 {
			t.Errorf("id %q visited %d times; want once", id, seen[id])
		}
	}
	if len(seen) != n {
		t.Errorf("scan visited %d ids; want %d", len(seen), n)
	}
	stop := errors.New("stop")
	calls := 0
	err = s.ScanVersion(ctx, name, "v2", func(store.Record) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("ScanVersion stopping: got %v after %d calls; want the fn's error after 1", err, calls)
	}
	wantErr(t, s.ScanVersion(ctx, name, "v9", func(store.Record) error { return nil }), store.ErrNotFound, "v9")
	v.waitCount(t, s, name, "v2", n)
}

// waitCount waits (up to 20 s: Milvus counts at Bounded consistency) until
// ListVersions reports n records in version.
func (v versionsSuite) waitCount(t *testing.T, s Versioned, name, version string, n int64) {
	t.Helper()
	var got int64 = -1
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		vs, err := s.ListVersions(ctxFor(t), name)
		if err != nil {
			t.Fatalf("ListVersions: %v", err)
		}
		for _, x := range vs {
			if x.Version == version {
				got = x.Count
			}
		}
		if got == n {
			return
		}
	}
	t.Errorf("version %s count: got %d; want %d", version, got, n)
}

// atomicSwap searches the logical name from several goroutines while the
// alias moves back and forth between two versions whose ids differ by
// prefix: every search succeeds with hits of one version only.
func (v versionsSuite) atomicSwap(t *testing.T) {
	s, name := v.setup(t)
	ctx := ctxFor(t)
	var a, b []store.Record
	for i := range 20 {
		a = append(a, rec(fmt.Sprintf("a%02d", i), uint64(i)))
		b = append(b, rec(fmt.Sprintf("b%02d", i), uint64(100+i)))
	}
	if err := errors.Join(s.Upsert(ctx, name, a), s.UpsertVersion(ctx, name, "v2", b)); err != nil {
		t.Fatalf("filling both versions: %v", err)
	}
	var done atomic.Bool
	var searches atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for r := range 3 {
		wg.Go(func() {
			for i := 0; !done.Load(); i++ {
				hits, err := s.Search(ctx, store.SearchRequest{Collection: name, Vector: unit(uint64(1000*r + i)), TopK: 10})
				if err == nil && len(hits) != 10 {
					err = fmt.Errorf("%d hits; want 10", len(hits))
				}
				if err == nil && slices.ContainsFunc(hits, func(h store.Hit) bool { return h.ID[0] != hits[0].ID[0] }) {
					err = fmt.Errorf("mixed versions: %v", hitIDs(hits))
				}
				if err != nil {
					errs <- fmt.Errorf("searcher %d, search %d: %w", r, i, err)
					return
				}
				searches.Add(1)
			}
		})
	}
	for i := range 6 {
		time.Sleep(150 * time.Millisecond)
		if err := s.SwapAlias(ctx, name, []string{"v2", store.DefaultVersion}[i%2]); err != nil {
			t.Errorf("swap %d: %v", i, err)
		}
	}
	done.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if searches.Load() < 3 {
		t.Errorf("%d searches ran during the swaps; want at least 3", searches.Load())
	}
}

func (v versionsSuite) restart(t *testing.T) {
	s, name := v.setup(t)
	ctx := ctxFor(t)
	r := rec("x", 7)
	r.TextHash = "abc123"
	if err := s.UpsertVersion(ctx, name, "v2", []store.Record{r}); err != nil {
		t.Fatalf("UpsertVersion: %v", err)
	}
	if err := errors.Join(s.SwapAlias(ctx, name, "v2"), s.DropVersion(ctx, name, store.DefaultVersion),
		s.CreateVersion(ctx, name, "v3", dims, "m3")); err != nil {
		t.Fatalf("swap, drop, create: %v", err)
	}
	before, err := s.ListVersions(ctx, name)
	if err != nil {
		t.Fatalf("ListVersions: %v", err)
	}
	s = v.reopen(t, s)
	if got, want := versionsOf(t, s, name), []string{"v2:m2:true", "v3:m3:false"}; !slices.Equal(got, want) {
		t.Fatalf("versions after restart: got %v; want %v", got, want)
	}
	after, _ := s.ListVersions(ctx, name)
	for i := range after {
		if after[i].CreatedAt.UnixMilli() != before[i].CreatedAt.UnixMilli() {
			t.Errorf("version %s created at %v after restart; %v before", after[i].Version, after[i].CreatedAt, before[i].CreatedAt)
		}
	}
	got, err := s.Get(ctx, name, []string{"x"})
	if err != nil || len(got) != 1 || got[0].TextHash != "abc123" {
		t.Fatalf("Get after restart: got %+v, %v; want x with its text hash", got, err)
	}
}
