package embedded

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/embedd/embedd/internal/store"
	"github.com/embedd/embedd/internal/store/storetest"
)

// TestVersionsConformanceHNSW runs the versions suite with every version on
// the graph, so the graphs and their snapshots follow versions too.
func TestVersionsConformanceHNSW(t *testing.T) {
	storetest.TestVersions(t,
		func(t *testing.T) storetest.Versioned {
			return openT(t, t.TempDir(), func(o *Options) { o.ExactThreshold = -1; o.EfSearch = 200 })
		},
		func(t *testing.T, s storetest.Versioned) storetest.Versioned {
			old := s.(*Store)
			if err := old.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			return openT(t, old.opts.Dir, func(o *Options) { o.ExactThreshold = -1; o.EfSearch = 200 })
		})
}

// legacyUpsert is an opUpsert payload as written before text hashes.
func legacyUpsert(coll string, recs []store.Record) []byte {
	e := &enc{}
	e.byte(opUpsert)
	e.str(coll)
	e.uvarint(uint64(len(recs)))
	for _, r := range recs {
		e.str(r.ID)
		e.f32s(r.Vector)
		e.bytes(r.Metadata)
		e.str(r.ModelVersion)
		e.varint(r.UpdatedAt.UnixNano())
	}
	return e.b
}

// TestLegacyLog opens a log written before versions: its collection is
// version v1, live and unbound; versions added to it survive compaction
// and reopening.
func TestLegacyLog(t *testing.T) {
	dir := t.TempDir()
	ts := time.Unix(1_700_000_000, 0).UTC()
	log := []byte(logMagic)
	for _, p := range [][]byte{
		encodeColl("docs", 2).b,
		legacyUpsert("docs", []store.Record{{ID: "a", Vector: []float32{1, 0}, ModelVersion: "m1", UpdatedAt: ts}}),
	} {
		log = append(log, (&enc{b: p}).frame()...)
	}
	if err := os.WriteFile(filepath.Join(dir, logName), log, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s := openT(t, dir, nil)
	vs, err := s.ListVersions(ctx, "docs")
	if err != nil || len(vs) != 1 || vs[0].Version != store.DefaultVersion || !vs[0].Live || vs[0].ModelVersion != "" || !vs[0].CreatedAt.IsZero() || vs[0].Count != 1 {
		t.Fatalf("ListVersions = %+v, %v; want v1 live, unbound, 1 record", vs, err)
	}
	if err := s.CreateVersion(ctx, "docs", "v2", 2, "m2"); err != nil {
		t.Fatal(err)
	}
	if err := s.UpsertVersion(ctx, "docs", "v2", []store.Record{{ID: "b", Vector: []float32{0, 1}, ModelVersion: "m2", TextHash: "h", UpdatedAt: ts}}); err != nil {
		t.Fatal(err)
	}
	if err := s.SwapAlias(ctx, "docs", "v2"); err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	want := dump(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir, nil)
	if got := dump(s); got != want {
		t.Fatalf("state after compaction and reopen:\n%s\nwant\n%s", got, want)
	}
	got, err := s.Get(ctx, "docs", []string{"a", "b"})
	if err != nil || len(got) != 1 || got[0].ID != "b" || got[0].TextHash != "h" {
		t.Fatalf("Get on the live version = %+v, %v; want b with its text hash", got, err)
	}
	if err := s.EnsureCollection(ctx, "docs\x00v2", 2); err == nil {
		t.Errorf("EnsureCollection of a name with NUL: got nil; want ErrInvalid")
	}
}
